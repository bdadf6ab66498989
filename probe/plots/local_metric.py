"""Figure of the static-vs-local metric summary: `plot_static_vs_local`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # not pyplot: no global state, no GUI backend

from probe.analysis.local_metric import StaticVsLocal

__all__ = ["plot_static_vs_local"]


def plot_static_vs_local(summary: StaticVsLocal, path: str | Path) -> Path:
    """Plot a `StaticVsLocal` summary: is ``WᵀW`` a good stand-in for the local metric.

    Three panels: the per-sample correlation ``ρ(g(x_i)^p, WᵀW)`` (histogram, with the
    correlation of the averaged metric marked), the ranks of the local metrics against the rank
    of ``WᵀW``, and the k-nearest-neighbour agreement of the three distances against chance.
    Writes the image to ``path`` (format from the suffix) and returns it.
    """
    s = summary
    fig = Figure(figsize=(13.0, 3.8), layout="constrained")
    ax_corr, ax_rank, ax_knn = fig.subplots(1, 3)
    corr = s.corr[np.isfinite(s.corr)]
    ax_corr.hist(corr, bins=30, range=(-1, 1), color="C0", alpha=0.8)
    ax_corr.axvline(s.mean_corr, color="C3", label=f"ρ((mean g)^p, WᵀW) = {s.mean_corr:.3f}")
    med = float(np.median(corr)) if corr.size else float("nan")
    ax_corr.set(xlabel=f"Pearson ρ(g(x_i)^{s.power:g}, WᵀW)", ylabel="samples")
    ax_corr.set_title(f"per-sample agreement (median {med:.3f})", fontsize=10)
    ax_corr.legend(fontsize=8, loc="upper left")  # "best" searches every bar: slow
    ranks, counts = np.unique(s.rank, return_counts=True)
    ax_rank.bar(ranks, counts, color="C0")
    ax_rank.axvline(s.rank_static, color="C3", ls="--", label=f"rank WᵀW = {s.rank_static}")
    ax_rank.set(xlabel="rank of local metric", ylabel="samples")
    ax_rank.set_title("rank of each g(x_i) vs rank of WᵀW", fontsize=10)
    ax_rank.legend(fontsize=8, loc="upper right")
    names = list(s.knn)
    ax_knn.bar(names, [s.knn[x] for x in names], color=["C1", "C2", "C0"])
    ax_knn.axhline(s.chance, color="0.4", ls=":", label=f"chance k/(n-1) = {s.chance:.3f}")
    ax_knn.set(ylim=(0, 1), ylabel=f"mean overlap of {s.k}-NN sets")
    ax_knn.set_title("neighbourhoods: which distances agree", fontsize=10)
    ax_knn.legend(fontsize=8, loc="upper right")
    fig.suptitle("Is WᵀW a good stand-in for the local metric g(x)?")
    fig.savefig(path, dpi=110)
    return Path(path)
