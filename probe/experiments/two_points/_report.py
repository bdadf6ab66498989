"""Two-points figures: measured (solid) vs fitted theory (dotted), and fit SSE by layer."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from probe.theory.effective_fit import TwoPointFit

__all__ = ["plot_fit", "plot_sse_by_layer"]

_COLORS = {"h": "tab:blue", "y": "tab:orange", "w": "tab:green"}


def plot_fit(fit: TwoPointFit, path: str | Path, title: str | None = None) -> Path:
    """Plot measured ``h, y, w`` (solid) and the fitted ODE (dotted) over steps; return ``path``.

    Like the authors' two-point figures: one panel, three variables, data solid, theory dotted,
    with the fitted rates in the legend title.
    """
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    m, p = fit.measured, fit.prediction
    for name in ("h", "y", "w"):
        ax.plot(m.t, getattr(m, name), color=_COLORS[name], lw=2, label=f"{name} measured")
        ax.plot(p.t, getattr(p, name), color="k", ls=":", lw=1.5)
    ax.plot([], [], color="k", ls=":", label="theory (fitted)")
    ax.axhline(0, color="0.8", lw=0.8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("squared distance")
    ax.set_title(title or "two-point dynamics: data vs effective theory")
    ax.legend(
        title=f"eta_h={fit.eta_h:.3g}, eta_y={fit.eta_y:.3g}, SSE={fit.sse:.3g}",
        fontsize=8,
        title_fontsize=8,
    )
    fig.savefig(path, dpi=120)
    return Path(path)


def plot_sse_by_layer(table: pd.DataFrame, path: str | Path) -> Path:
    """Plot fit SSE and fitted rates against hidden-layer index, one line per seed."""
    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    for seed, g in table.groupby("seed"):
        g = g.sort_values("index")
        ax1.semilogy(g["index"], g["sse"], marker="o", ms=3, label=f"seed {seed}")
        ax2.semilogy(g["index"], g["eta_h"], marker="o", ms=3, color="tab:blue")
        ax2.semilogy(g["index"], g["eta_y"], marker="s", ms=3, color="tab:orange")
    ax1.set_xlabel("hidden layer")
    ax1.set_ylabel("fit SSE (h, y, w)")
    ax1.legend(fontsize=8)
    ax2.set_xlabel("hidden layer")
    ax2.set_ylabel("fitted rate per step")
    ax2.plot([], [], color="tab:blue", marker="o", label="eta_h")
    ax2.plot([], [], color="tab:orange", marker="s", label="eta_y")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.savefig(path, dpi=120)
    return Path(path)
