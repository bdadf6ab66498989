"""Two-point figures: measured ``h, y, w`` with the fitted ODE per setting; distance matrices."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from probe.theory.effective import TwoPointTrajectory
from probe.theory.effective_fit import TwoPointTraces

__all__ = ["FitPanel", "plot_distance_matrices", "plot_fit_grid"]

_COLORS = {"h": "tab:blue", "y": "tab:orange", "w": "tab:green"}


@dataclass(frozen=True)
class FitPanel:
    """One panel of `plot_fit_grid`: a title, the measured traces and the fitted ODE (or None)."""

    title: str
    measured: TwoPointTraces
    prediction: TwoPointTrajectory | None


def plot_fit_grid(panels: Sequence[FitPanel], path: str | Path, *, ncols: int = 4) -> Path:
    """Plot one small panel per setting: measured ``h, y, w`` (solid) and the ODE (black dotted).

    Parameters
    ----------
    panels : sequence of FitPanel
        One per setting, in display order.
    path : str or Path
        PNG to write.
    ncols : int, default 4
        Panels per row.

    Returns
    -------
    Path
        ``path``.
    """
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig = Figure(figsize=(3.2 * ncols, 2.5 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, panel in zip(axes, panels, strict=False):
        m, p = panel.measured, panel.prediction
        for name in ("h", "y", "w"):
            ax.plot(m.t, getattr(m, name), color=_COLORS[name], lw=2, alpha=0.8)
            if p is not None:
                ax.plot(p.t, getattr(p, name), color="k", ls=":", lw=1.3)
        ax.axhline(0, color="0.8", lw=0.6)
        ax.set_title(panel.title, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    for name, color in _COLORS.items():
        axes[0].plot([], [], color=color, lw=2, label=f"{name} measured")
    axes[0].plot([], [], color="k", ls=":", label="fitted ODE")
    axes[0].legend(fontsize=6, loc="best")
    fig.supxlabel("optimizer step", fontsize=9)
    fig.supylabel("squared distance", fontsize=9)
    fig.savefig(path, dpi=110)
    return Path(path)


def plot_distance_matrices(
    mats: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]],
    labels: Sequence[str],
    path: str | Path,
) -> Path:
    """Plot predicted and measured distance matrices side by side, one row per setting.

    Parameters
    ----------
    mats : dict of str to (ndarray of shape (n, n), ndarray of shape (n, n))
        Per setting, the predicted and the measured distance matrix.
    labels : sequence of str
        The n point labels.
    path : str or Path
        PNG to write.

    Returns
    -------
    Path
        ``path``.
    """
    fig = Figure(figsize=(5.6, 2.6 * len(mats)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(mats), 2, squeeze=False)
    for (name, (pred, meas)), (a1, a2) in zip(mats.items(), axes, strict=True):
        vmax = float(max(pred.max(), meas.max(), 1e-12))
        for ax, m, what in ((a1, pred, "theory"), (a2, meas, "measured")):
            im = ax.imshow(m, vmin=0, vmax=vmax, cmap="viridis")
            ax.set_title(f"{name}: {what}", fontsize=9)
            ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=45)
            ax.set_yticks(range(len(labels)), labels, fontsize=7)
            for (r, c), v in np.ndenumerate(m):
                ax.text(c, r, f"{v:.2g}", ha="center", va="center", fontsize=6, color="w")
        fig.colorbar(im, ax=[a1, a2], shrink=0.8, label="final distance")
    fig.savefig(path, dpi=110)
    return Path(path)
