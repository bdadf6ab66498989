"""Tables, ground-truth measures and the static-vs-local metric of the NFA experiment.

`nfa_steps` (every measure of every layer over snapshots, NFM ``M`` and ``dM``),
`final_table` (the per-layer table at init and at the end), `ground_truth_steps` and
`plot_ground_truth` (alignment with G* of the polynomial task), `local_metric` (per-sample
output pullbacks vs the NFM), `format_table`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
from torch import nn

from probe.analysis.features import nfa_over_steps, nfm, rho_cos
from probe.analysis.local_metric import (
    output_pullback,
    per_sample_jacobians,
    static_vs_local,
)
from probe.plots.local_metric import plot_static_vs_local
from probe.store import Run

__all__ = [
    "GSTAR_COLUMNS",
    "final_table",
    "format_table",
    "ground_truth_steps",
    "gstar",
    "local_metric",
    "nfa_steps",
    "plot_ground_truth",
]

POWERS = (1.0, 0.5)
GSTAR_COLUMNS = ("cos_M_Gstar", "cos_dM_Gstar", "cos_G_Gstar", "trace_share_M", "trace_share_dM")
_POWER_NAMES = {1.0: "G", 0.5: "sqrtG"}


def nfa_steps(run: Run, seed: int) -> pd.DataFrame:
    """Return `features.nfa_over_steps` of every layer, plain (``nfm="M"``) and of dM.

    Columns ``seed, nfm, layer, step, measure, power, value, init, nfm_change``; ``nfm="dM"``
    rows use ``(W_t - W_0)ᵀ(W_t - W_0)`` (NaN at step 0, where dM = 0).
    """
    frames = [
        nfa_over_steps(run, layer, powers=POWERS, subtract_init=sub).assign(
            nfm="dM" if sub else "M"
        )
        for layer in run.layers
        for sub in (False, True)
    ]
    df = pd.concat(frames, ignore_index=True).assign(seed=seed)
    return df[["seed", "nfm", *df.columns[:-2]]]


def _wide(rows: pd.DataFrame) -> dict[str, float]:
    """Return one snapshot's tidy rows of one layer as ``{measure}_{nfm}_{sqrtG|G|M0}``."""
    out: dict[str, float] = {}
    for r in rows.itertuples():
        out[f"{r.measure}_{r.nfm}_{_POWER_NAMES[float(r.power)]}"] = float(r.value)
        if r.nfm == "M":
            out[f"{r.measure}_M_M0"] = float(r.nfm_change)
    return out


def gstar(dim: int) -> npt.NDArray[np.float64]:
    """Return ``G* = E[∇f* ∇f*ᵀ] = e0 e0ᵀ + e1 e1ᵀ`` of ``f*(x) = x0 x1``, x ~ N(0, I_dim)."""
    G = np.zeros((dim, dim))
    G[0, 0] = G[1, 1] = 1.0
    return G


def _share(M: npt.NDArray[np.float64]) -> float:
    """Return ``tr(M[:2, :2]) / tr(M)`` (2/d for an isotropic M), NaN for M = 0."""
    tr = float(np.trace(M))
    return float(np.trace(M[:2, :2]) / tr) if tr > 0 else float("nan")


def _cos_or_nan(A: npt.NDArray[np.float64], B: npt.NDArray[np.float64]) -> float:
    """Return `rho_cos`, NaN for a zero matrix (dM at step 0)."""
    return rho_cos(A, B) if np.any(A) else float("nan")


def ground_truth_steps(run: Run, layer: str, seed: int) -> pd.DataFrame:
    """Return the alignment of ``layer``'s NFM and AGOP with G* at every snapshot.

    Columns ``seed, step`` and `GSTAR_COLUMNS`: uncentred cosines (`rho_cos`) of M, dM and the
    AGOP G with G* (`gstar`), and the trace shares ``tr(X[:2, :2]) / tr(X)`` of M and dM.
    """
    W, G = run.weights(layer).astype(np.float64), run.agop(layer).astype(np.float64)
    Gs = gstar(W.shape[-1])
    rows = []
    for t, step in enumerate(run.steps):
        M, dM = nfm(W[t]), nfm(W[t], W[0], subtract_init=True)
        rows.append(
            (seed, int(step), rho_cos(M, Gs), _cos_or_nan(dM, Gs), rho_cos(G[t], Gs))
            + (_share(M), _share(dM))
        )
    return pd.DataFrame(rows, columns=["seed", "step", *GSTAR_COLUMNS])


def final_table(
    steps: pd.DataFrame,
    seed: int,
    d_in: dict[str, int],
    metrics: dict[str, dict[str, float]],
    truth: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Return the per-layer table of one seed at init (first snapshot) and trained (last).

    Parameters
    ----------
    steps : pandas.DataFrame
        `nfa_steps` of the seed.
    seed : int
    d_in : dict of str to int
        Input width of each layer.
    metrics : dict
        ``{"init": {...}, "trained": {...}}`` test metrics, copied into every row.
    truth : pandas.DataFrame, optional
        `ground_truth_steps` of the input layer: its columns fill that layer's rows (NaN in
        the others).

    Returns
    -------
    pandas.DataFrame
        One row per (layer, state); columns ``seed, layer, d_in, state, step``, then
        ``{pearson|cosine|offdiag}_{M|dM}_{sqrtG|G}`` (``measure(M, G^p)``) and
        ``{measure}_M_M0`` (the NFM-change baseline, 1 at init), the metrics, `GSTAR_COLUMNS`.
    """
    rows = []
    first, last = steps["step"].min(), steps["step"].max()
    for layer, sub in steps.groupby("layer", sort=False):
        for state, step in (("init", first), ("trained", last)):
            row = {"seed": seed, "layer": layer, "d_in": d_in[layer], "state": state}
            row["step"] = int(step)
            row |= _wide(sub[sub["step"] == step]) | metrics[state]
            if truth is not None:
                at = truth[truth["step"] == step].iloc[0]
                first_layer = layer == steps["layer"].iloc[0]
                row |= {c: float(at[c]) if first_layer else np.nan for c in GSTAR_COLUMNS}
            rows.append(row)
    return pd.DataFrame(rows)


def local_metric(
    upstream: nn.Module,
    downstream: nn.Module,
    W: npt.ArrayLike,
    x: torch.Tensor,
    *,
    k: int,
    path: Path,
) -> dict[str, Any]:
    """Compare a layer's static NFM ``WᵀW`` with the local output pullbacks ``J(x)ᵀJ(x)``.

    Parameters
    ----------
    upstream, downstream : nn.Module
        The network before the layer (input -> layer input ``h``) and from the layer on
        (``h`` -> outputs); evaluated on float64 copies, in eval mode.
    W : array_like of shape (m, d)
        The layer's weight.
    x : torch.Tensor of shape (n_samples, d_input)
        Probe points (training inputs).
    k : int
        Neighbours of the neighbourhood comparison.
    path : path
        Where `probe.plots.local_metric.plot_static_vs_local` draws the figure.

    Returns
    -------
    dict
        Summary of `probe.analysis.local_metric.static_vs_local` with power 1/2 (NFA: ``M ≈
        AGOP^{1/2}``): median per-sample Pearson and cosine of ``g(x_i)^{1/2}`` with ``WᵀW``,
        ``mean_corr`` (of the averaged metric, the AGOP on these points), rank counts, the
        rank of ``WᵀW``, the k-NN overlaps and their chance level.
    """
    # Copies: the modules are shared with the trained model, which must stay float32.
    up = copy.deepcopy(upstream).double().eval()
    down = copy.deepcopy(downstream).double().eval()
    with torch.no_grad():
        h = up(x.double())
    J = per_sample_jacobians(down, h)
    res = static_vs_local(nfm(W), output_pullback(J), h.numpy(), k=k, power=0.5)
    plot_static_vs_local(res, path)
    ranks, counts = np.unique(res.rank, return_counts=True)
    return {
        "n_samples": int(res.corr.size),
        "power": res.power,
        "median_corr": float(np.nanmedian(res.corr)),
        "median_cos": float(np.nanmedian(res.cos)),
        "mean_corr": res.mean_corr,
        "rank_counts": {str(r): int(c) for r, c in zip(ranks, counts, strict=True)},
        "rank_static": res.rank_static,
        "knn": res.knn,
        "chance": res.chance,
        "k": res.k,
    }


def format_table(table: pd.DataFrame, columns: list[str] | None = None) -> str:
    """Return a markdown table (layer x state) of the mean over seeds of ``columns``."""
    cols = columns or [
        c for c in table.columns if c not in ("seed", "layer", "d_in", "state", "step")
    ]
    mean = table.groupby(["layer", "state"], sort=False)[cols].mean().reset_index()
    head = "| layer | state | " + " | ".join(cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 2)]
    for r in mean.itertuples(index=False):
        vals = " | ".join("" if np.isnan(v) else f"{v:.3f}" for v in r[2:])
        lines.append(f"| {r[0]} | {r[1]} | {vals} |")
    return "\n".join(lines)


def plot_ground_truth(truth: pd.DataFrame, dim: int, path: Path) -> Path:
    """Plot `ground_truth_steps` (every seed, input width ``dim``) against steps; return path."""
    from matplotlib.figure import Figure  # not pyplot: no global state, no GUI backend

    fig = Figure(figsize=(10.0, 3.6), layout="constrained")
    ax_cos, ax_share = fig.subplots(1, 2)
    for seed, g in truth.groupby("seed"):
        for i, c in enumerate(GSTAR_COLUMNS):
            ax = ax_cos if c.startswith("cos") else ax_share
            label = c if seed == truth["seed"].iloc[0] else None
            ax.plot(g["step"], g[c], color=f"C{i}", marker=".", alpha=0.8, label=label)
    ax_share.axhline(2 / dim, color="0.4", ls=":", label="isotropic 2/d")
    ax_cos.set(title="input layer vs G* = e0e0ᵀ + e1e1ᵀ (cosine)", ylim=(0, 1.02))
    ax_share.set(title="trace share tr(X[:2,:2]) / tr(X)", ylim=(0, 1.02))
    for ax in (ax_cos, ax_share):
        ax.set(xlabel="step", xscale="symlog", xlim=(0, 1.2 * truth["step"].max()))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return path
