"""Neural-race figures: singular values and loss vs the exact theory, and the init-scale sweep."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from probe.theory.routing import RoutingTrajectory

__all__ = ["plot_race", "plot_sweep"]

_MODE_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red")
_PANELS = (("in", "W_in[0]", "b_io"), ("h", "W_h (shared)", "b_h"), ("out", "W_out[0]", "b_io"))
_FLOOR = 1e-8  # errors below it are drawn at it (a trained path reaches ~1e-20)


def plot_race(
    traces: Sequence[Any], theory: RoutingTrajectory, path: str | Path, title: str = ""
) -> Path:
    """Plot loss and the top-4 singular values of W_in[0], W_h, W_out[0]; return ``path``.

    Like the authors' ``routing_network_solution.pdf``: every seed solid, theory dotted.
    ``traces`` are `probe.experiments.neural_race.experiment.RaceTraces`.
    """
    fig = Figure(figsize=(12.0, 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 4)
    ax = axes[0]
    for tr in traces:
        ax.semilogy(tr.loss_steps, np.maximum(tr.loss, 1e-12), color="tab:gray", lw=1.5)
    ax.semilogy(theory.t, np.maximum(theory.loss, 1e-12), color="k", ls=":", lw=2, label="theory")
    ax.set_ylim(bottom=max(1e-4, float(np.min(theory.loss)) / 10))
    ax.set(xlabel="epoch (full-batch step)", ylabel="gated loss", title="loss")
    ax.legend(fontsize=8)
    for ax, (key, name, var) in zip(axes[1:], _PANELS, strict=True):
        th = getattr(theory, var)
        for a, color in enumerate(_MODE_COLORS):
            for tr in traces:
                ax.plot(tr.steps, tr.sv[key][:, a], color=color, lw=1.5, alpha=0.8)
            ax.plot(theory.t, th[:, a], color="k", ls=":", lw=1.5)
        ax.set(xlabel="epoch", ylabel="singular value", title=name)
    axes[1].plot([], [], color="k", ls=":", label="theory")
    for a, color in enumerate(_MODE_COLORS):
        axes[1].plot([], [], color=color, label=f"mode {a + 1}")
    axes[1].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=120)
    return Path(path)


def plot_sweep(
    table: pd.DataFrame,
    traces: Mapping[tuple[float, int], Any],
    zero_error: float,
    path: str | Path,
    *,
    epochs: int,
) -> Path:
    """Plot final trained/untrained path error vs init scale, and both errors over training.

    Left: error ``‖Y - O‖_F²/2`` per path at the end, every seed (points) and the mean (line),
    with the error of predicting 0 dashed. Right: the errors over epochs per ``sigma0``
    (untrained solid, trained dashed). Log axes, errors below 1e-8 drawn at 1e-8.
    """
    fig = Figure(figsize=(11.0, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    means = table.groupby("sigma0").mean(numeric_only=True).reset_index()
    for col, color, label in (
        ("trained_error", "tab:blue", "trained paths"),
        ("untrained_error", "tab:red", "untrained paths"),
    ):
        ax1.plot(table["sigma0"], table[col].clip(_FLOOR), "o", color=color, ms=4, alpha=0.6)
        ax1.plot(means["sigma0"], means[col].clip(_FLOOR), "-", color=color, lw=2, label=label)
    ax1.axhline(zero_error, color="0.4", ls="--", lw=1, label=f"predict 0 ({zero_error:g})")
    ax1.set(xlabel="init scale sigma0 (orthogonal gain)", ylabel="error ||Y - O||_F^2 / 2")
    ax1.set_yscale("log")
    ax1.set_ylim(_FLOOR / 2, 4 * zero_error)
    ax1.set_title(f"error per path after {epochs} epochs")
    ax1.legend(fontsize=8)
    sigmas = sorted({k[0] for k in traces})
    cmap = colormaps["viridis"]
    for n, sigma in enumerate(sigmas):
        shade = cmap(n / max(1, len(sigmas) - 1))
        for (sg, _seed), tr in traces.items():
            if sg != sigma:
                continue
            ax2.plot(tr.steps, np.maximum(tr.untrained_error, _FLOOR), color=shade, lw=1.5)
            ax2.plot(tr.steps, np.maximum(tr.trained_error, _FLOOR), color=shade, lw=1.2, ls="--")
        ax2.plot([], [], color=shade, label=f"sigma0={sigma:g}")
    ax2.plot([], [], color="k", label="untrained")
    ax2.plot([], [], color="k", ls="--", label="trained")
    ax2.axhline(zero_error, color="0.4", ls=":", lw=1)
    ax2.set_yscale("log")
    ax2.set_ylim(_FLOOR / 2, 4 * zero_error)
    ax2.set(xlabel="epoch", ylabel="error per path", title="path error over training")
    ax2.legend(fontsize=7, ncol=2)
    fig.savefig(path, dpi=120)
    return Path(path)
