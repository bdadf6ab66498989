"""Figures of cluster geometry: `plot_sweep` draws a `probe.analysis.cluster_sweep.sweep` table."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from probe.errors import InvalidArrayError

__all__ = ["plot_sweep"]


def plot_sweep(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Draw each metric of a `sweep` table against step, one line per layer, and save it.

    One panel per metric, four per row, drawn on an Agg canvas without pyplot's global state.

    Parameters
    ----------
    df : pandas.DataFrame
        A `probe.analysis.cluster_sweep.sweep` table (columns ``layer``, ``step``, ``metric``,
        ``value``).
    path : str or path
        Image file to write (format from the suffix, e.g. ``.png``); parents are created.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    InvalidArrayError
        ``df`` lacks one of the columns or has no rows.
    """
    missing = [c for c in ("layer", "step", "metric", "value") if c not in df.columns]
    if missing or df.empty:
        msg = (
            f"df must be a non-empty sweep() table with columns layer, step, metric, value; "
            f"got {len(df)} rows, missing columns {missing}."
        )
        raise InvalidArrayError(msg)
    metrics = list(dict.fromkeys(df["metric"]))
    ncols, nrows = min(4, len(metrics)), -(-len(metrics) // 4)
    fig = Figure(figsize=(3.6 * ncols, 2.8 * nrows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    fig.subplots_adjust(wspace=0.3, hspace=0.55)  # fixed spacing: constrained layout is slow
    for ax, metric in zip(axes, metrics, strict=False):
        part = df[df["metric"] == metric]
        for layer, rows in part.groupby("layer", sort=False):
            rows = rows.sort_values("step")
            ax.plot(rows["step"], rows["value"], marker="o", ms=3, label=str(layer))
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7, title="layer", title_fontsize=7)
    out = Path(os.fspath(path))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out
