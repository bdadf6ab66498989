"""Two-point figures: measured ``h, y, w`` with the fitted ODE, one small panel per setting."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from probe.theory.effective import TwoPointTrajectory
from probe.theory.effective_fit import TwoPointTraces

__all__ = ["FitPanel", "plot_fit_grid"]

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
