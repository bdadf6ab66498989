"""Figures of `probe.experiments.mnist_clustering.experiment`: the matrices and r over training."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from probe.experiments.mnist_clustering._analysis import VARIANTS, NetRecord

__all__ = ["plot_clustering", "plot_trajectory"]

_TITLES = {
    "r_all": "r, all entries vs raw prediction",
    "r_between": "r, between-class entries vs raw prediction",
    "r_all_normalised": "r, all entries vs class-size-normalised",
    "r_between_normalised": "r, between-class vs class-size-normalised",
}


def _class_ticks(ax: Any, labels: npt.NDArray[Any]) -> None:
    """Label each class block at its centre and draw white lines at the class boundaries."""
    classes, starts, counts = np.unique(labels, return_index=True, return_counts=True)
    centres = starts + counts / 2 - 0.5
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_ticks(centres, [str(c) for c in classes], fontsize=7)
    for b in starts[1:] - 0.5:
        ax.axhline(b, color="w", lw=0.4)
        ax.axvline(b, color="w", lw=0.4)


def _num(value: float | None) -> float:
    return np.nan if value is None else value  # summary.json stores NaN as None


def _x(steps: Any) -> npt.NDArray[np.float64]:
    return np.maximum(np.asarray(steps, dtype=np.float64), 1.0)  # step 0 drawn at 1 (log axis)


def plot_clustering(
    matrices: dict[str, npt.NDArray[np.float64]],
    labels: npt.NDArray[Any],
    steps: pd.DataFrame,
    summary: dict[str, Any],
    path: str | Path,
) -> None:
    """Draw the averaged measured and the predicted matrices (sorted by label) and their r.

    Parameters
    ----------
    matrices : dict of str to ndarray of shape (n, n)
        ``measured``, ``measured_scaled``, ``predicted``, ``predicted_normalised``.
    labels : ndarray of shape (n,)
        Sorted probe labels.
    steps : pandas.DataFrame
        ``steps.csv``: one row per (average, step) with the r columns of `VARIANTS`.
    summary : dict
        The experiment summary.
    path : str or path
        PNG file to write.
    """
    fig = Figure(figsize=(17.0, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 5)
    k, n = len(summary["averaged_nets"]), summary["config"]["n_nets"]
    which = f"mean of {k} of {n} nets\n({summary['n_diverged']} diverged"
    which += ", included)" if summary["config"]["include_diverged"] else ", excluded)"
    final = summary["final"]["raw"]
    titles = {
        "measured": f"measured dist², {which}",
        "measured_scaled": "measured dist² / its mean, same nets",
        "predicted": f"predicted (class-pair sums)\nr all / between {_num(final['r_all']):.3f}"
        f" / {_num(final['r_between']):.3f}",
        "predicted_normalised": "predicted / (n_c n_c')\nr all / between "
        f"{_num(final['r_all_normalised']):.3f} / {_num(final['r_between_normalised']):.3f}",
    }
    for ax, (key, title) in zip(axes[:4], titles.items(), strict=True):
        img = ax.imshow(matrices[key], cmap="viridis", interpolation="nearest")
        fig.colorbar(img, ax=ax, shrink=0.8)
        _class_ticks(ax, labels)
        ax.set_title(title, fontsize=7)
    ax = axes[4]
    for average, style in (("raw", "-"), ("scaled", "--")):
        rows = steps[steps["average"] == average]
        for colour, key in enumerate(VARIANTS):
            ax.plot(_x(rows["step"]), rows[key], style, color=f"C{colour}", marker=".", ms=3,
                    label=f"{key} ({average} mean)")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("optimizer step (0 drawn at 1)")
    ax.set_ylabel("Pearson r of the averaged matrix")
    ax.set_title(f"r of the {k}-net average matrix", fontsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=5)
    fig.savefig(path, dpi=130)


def _binned_max(
    steps: npt.NDArray[Any], values: npt.NDArray[Any], bins: int = 600
) -> tuple[npt.NDArray[Any], npt.NDArray[np.float64]]:
    # the maximum per bin keeps every spike visible at a few hundred points per net; NaN and
    # infinite losses cannot be drawn on a log axis and are left out
    size = max(1, len(values) // bins)
    n = len(values) // size * size
    v = np.where(np.isfinite(values[:n]), values[:n], -np.inf).reshape(-1, size)
    peak = v.max(axis=1, initial=-np.inf)
    return steps[:n].reshape(-1, size)[:, 0], np.where(np.isfinite(peak), peak, np.nan)


def plot_trajectory(
    per_net: pd.DataFrame,
    trajectory: pd.DataFrame,
    nets: Sequence[NetRecord],
    summary: dict[str, Any],
    path: str | Path,
) -> None:
    """Draw each r over training per net with the mean and CI band, and the loss and accuracy.

    Four panels, one per variant of `VARIANTS`: every net's r (kept nets grey, diverged nets
    red dashed) and the mean over the averaged nets with its bootstrap CI band; then the batch
    loss (maximum per bin of steps, log scale) and the test accuracy per epoch of every net
    with the accuracy floor.

    Parameters
    ----------
    per_net : pandas.DataFrame
        ``per_net_steps.csv``.
    trajectory : pandas.DataFrame
        ``trajectory.csv``.
    nets : sequence of NetRecord
        The nets, for their losses and accuracies.
    summary : dict
        The experiment summary (``nets``, ``config``, ``final_ci``).
    path : str or path
        PNG file to write.
    """
    fig = Figure(figsize=(15.0, 7.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3)
    diverged = {r["net"] for r in summary["nets"] if r["diverged"]}
    cfg = summary["config"]
    for ax, key in zip((axes[0, 0], axes[0, 1], axes[1, 0], axes[1, 1]), VARIANTS, strict=True):
        for i, part in per_net.groupby("net"):
            bad = i in diverged
            ax.plot(_x(part["step"]), part[key], "--" if bad else "-", lw=0.8,
                    color="C3" if bad else "0.55", alpha=0.9 if bad else 0.6)  # fmt: skip
        t = trajectory[trajectory["variant"] == key]
        ax.fill_between(_x(t["step"]), t["ci_low"], t["ci_high"], color="C0", alpha=0.25,
                        lw=0, label=f"{cfg['ci_level']:.0%} bootstrap CI")  # fmt: skip
        ax.plot(_x(t["step"]), t["mean"], color="C0", lw=2, marker=".", ms=4, label="mean")
        ax.axhline(0.0, color="k", lw=0.6)
        ax.axhline(_num(summary["input_pixels"][key]), color="C2", ls=":", lw=1.2,
                   label="input pixels")  # fmt: skip
        ci = summary["final_ci"][key]
        ax.set_title(f"{_TITLES[key]}\nfinal mean {_num(ci['mean']):.3f} "
                     f"[{_num(ci['ci_low']):.3f}, {_num(ci['ci_high']):.3f}], "
                     f"{ci['n_nets']} nets", fontsize=8)  # fmt: skip
        ax.set_xscale("log")
        ax.set_ylim(-1.05, 1.05)
        ax.set_xlabel("optimizer step (0 drawn at 1)")
        ax.set_ylabel("Pearson r")
        ax.grid(alpha=0.3)
    axes[0, 0].plot([], [], color="0.55", label="kept net")
    axes[0, 0].plot([], [], "--", color="C3", label="diverged net")
    axes[0, 0].legend(fontsize=7, loc="lower right")
    loss_ax, acc_ax = axes[0, 2], axes[1, 2]
    for i, net in enumerate(nets):
        bad = i in diverged
        style = {"color": "C3" if bad else "0.55", "lw": 0.7, "ls": "--" if bad else "-"}
        loss_ax.plot(*_binned_max(net.loss_steps, net.losses), **style)
        acc_ax.plot(net.accuracy_steps, net.accuracies, marker=".", ms=3, **style)
    loss_ax.set_yscale("log")
    loss_ax.set_title("batch loss (0.5·MSE), max per bin of steps", fontsize=8)
    loss_ax.set_xlabel("optimizer step")
    acc_ax.axhline(cfg["accuracy_floor"], color="k", ls=":", lw=1, label="accuracy floor")
    acc_ax.set_title(f"test accuracy per epoch; {len(diverged)} of {cfg['n_nets']} nets diverged",
                     fontsize=8)  # fmt: skip
    acc_ax.set_xlabel("optimizer step")
    acc_ax.legend(fontsize=7)
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
