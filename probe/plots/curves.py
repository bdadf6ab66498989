"""Figures of learning curves and their metrics, drawn on Agg canvases (no display, no pyplot).

`plot_trajectory` (a developmental or information-processing trajectory, one polyline per group),
`plot_metric_ribbons` (each metric against epoch, mean ± SE per group, optional null reference)
and `plot_processing_curves` (the mean curve over t at every epoch, one panel per group).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from probe.analysis.curves import TRAJECTORIES
from probe.errors import CurveTableError

__all__ = ["plot_metric_ribbons", "plot_processing_curves", "plot_trajectory"]

_LABELS = {  # trajectory kind -> (x label, y label)
    "developmental": ("start performance v0", "maximum performance vmax"),
    "processing": ("time slice of maximum tmax", "end - start"),
}
_TITLES = {"start": "start", "end_minus_start": "end - start", "max": "max", "tmax": "tmax"}


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike[str] | None) -> Figure:
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def _require(table: pd.DataFrame, columns: list[str], what: str) -> None:
    """Raise `CurveTableError` unless ``table`` has rows and every one of ``columns``."""
    missing = [c for c in columns if c not in table.columns]
    if missing or table.empty:
        msg = (
            f"{what} must be a non-empty table with columns {columns}; got {len(table)} rows, "
            f"missing {missing}."
        )
        raise CurveTableError(msg)


def plot_trajectory(
    trajectory: pd.DataFrame, *, path: str | os.PathLike[str] | None = None
) -> Figure:
    """Plot a trajectory: one polyline per group, marker size growing with epoch, SE bars.

    Parameters
    ----------
    trajectory : DataFrame
        Output of `probe.analysis.curves.developmental_trajectory` or `processing_trajectory`.
    path : str or path, optional
        Save the figure there (format from the suffix).

    Returns
    -------
    matplotlib.figure.Figure
        Drawn with the Agg canvas (no display needed).

    Raises
    ------
    CurveTableError
        ``trajectory`` is not a trajectory table.
    """
    kind = trajectory["trajectory"].iloc[0] if "trajectory" in trajectory.columns else None
    if kind not in TRAJECTORIES or trajectory.empty:
        msg = (
            "trajectory must be a non-empty table from developmental_trajectory or "
            f"processing_trajectory; got columns {list(trajectory.columns)}."
        )
        raise CurveTableError(msg)
    (x, y), (xlabel, ylabel) = TRAJECTORIES[kind], _LABELS[kind]
    fig = _figure(5.0, 4.0)
    ax: Axes = fig.add_subplot()
    epochs = trajectory["epoch"].to_numpy(dtype=float)
    span = max(epochs.max() - epochs.min(), 1.0)
    for group, g in trajectory.sort_values("epoch").groupby("group", sort=True):
        sizes = 12.0 + 60.0 * (g["epoch"].to_numpy(dtype=float) - epochs.min()) / span
        xm, ym = g[f"{x}_mean"], g[f"{y}_mean"]
        (line,) = ax.plot(xm, ym, "-", lw=1.0, label=str(group))
        bars: dict[str, Any] = {"fmt": "none", "ecolor": line.get_color(), "alpha": 0.4, "lw": 0.8}
        ax.errorbar(xm, ym, xerr=g[f"{x}_se"], yerr=g[f"{y}_se"], **bars)
        ax.scatter(xm, ym, s=sizes, color=line.get_color(), zorder=3)
    if kind == "processing":
        ax.set_xlim(0.0, 1.05)  # tmax is a fraction of the sequence in (0, 1]
    ax.set(xlabel=xlabel, ylabel=ylabel, title=f"{kind} trajectory (marker size: epoch)")
    ax.legend(title="group", fontsize="small")
    return _save(fig, path)


def _ribbon(ax: Axes, table: pd.DataFrame, metric: str, **style: Any) -> None:
    """Draw mean ± SE over runs of ``metric`` against epoch."""
    g = table.groupby("epoch")[metric]
    mean, n = g.mean(), g.size()
    se = (g.std(ddof=1) / np.sqrt(n)).fillna(0.0)  # one run: no band
    (line,) = ax.plot(mean.index, mean.to_numpy(), **style)
    ax.fill_between(mean.index, mean - se, mean + se, color=line.get_color(), alpha=0.2, lw=0)


def plot_metric_ribbons(
    metrics: pd.DataFrame,
    *,
    reference: pd.DataFrame | None = None,
    title: str = "",
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Plot start, end - start, max and tmax against epoch: mean ± SE over runs per group.

    Parameters
    ----------
    metrics : DataFrame
        `probe.analysis.curves.metrics_table` output (columns ``run, group, epoch`` and the
        metrics).
    reference : DataFrame, optional
        The same table for a reference condition (e.g. the label-shuffled null model), drawn as
        one grey dashed ribbon over all its runs.
    title : str
        Figure title.
    path : str or path, optional
        Save the figure there (format from the suffix).

    Returns
    -------
    matplotlib.figure.Figure
        Four panels; the band is ``std(ddof=1) / sqrt(n_runs)`` around the mean.

    Raises
    ------
    CurveTableError
        ``metrics`` (or ``reference``) lacks a column or has no rows.
    """
    columns = ["group", "epoch", *_TITLES]
    _require(metrics, columns, "metrics")
    if reference is not None:
        _require(reference, columns, "reference")
    fig = _figure(12.0, 3.0)
    axes = fig.subplots(1, len(_TITLES))
    for ax, (metric, label) in zip(axes, _TITLES.items(), strict=True):
        for group, g in metrics.groupby("group", sort=True):
            _ribbon(ax, g, metric, marker="o", ms=3, lw=1.2, label=str(group))
        if reference is not None:
            _ribbon(ax, reference, metric, color="0.4", ls="--", lw=1.2, label="null")
        ax.set(xlabel="epoch", title=label)
        ax.grid(alpha=0.3)
    axes[-1].set_ylim(0.0, 1.05)  # tmax is a fraction of the sequence
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize="small", title="group")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_processing_curves(
    curves: pd.DataFrame,
    *,
    value: str = "value",
    title: str = "",
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Plot the mean curve over runs against t, one line per epoch, one panel per group.

    Parameters
    ----------
    curves : DataFrame
        Tidy curves as for `probe.analysis.curves.metrics_table`: columns ``run, group, epoch, t``
        and ``value``.
    value : str
        Name of the value column.
    title : str
        Figure title.
    path : str or path, optional
        Save the figure there (format from the suffix).

    Returns
    -------
    matplotlib.figure.Figure
        Raw (unsmoothed) means over runs; later epochs are drawn in lighter colours.

    Raises
    ------
    CurveTableError
        ``curves`` lacks a column or has no rows.
    """
    _require(curves, ["group", "epoch", "t", value], "curves")
    groups = sorted(pd.unique(curves["group"]), key=str)
    epochs = sorted(pd.unique(curves["epoch"]))
    colours = colormaps["viridis"](np.linspace(0.0, 0.9, len(epochs)))
    ncols = min(len(groups), 5)
    nrows = -(-len(groups) // ncols)
    fig = _figure(2.6 * ncols + 0.8, 2.6 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True).ravel()
    means = curves.groupby(["group", "epoch", "t"])[value].mean()
    for ax, group in zip(axes, groups, strict=False):
        for colour, epoch in zip(colours, epochs, strict=True):
            if (group, epoch) in means.index.droplevel("t"):
                m = means.loc[(group, epoch)]
                ax.plot(m.index, m.to_numpy(), color=colour, lw=1.2, label=f"epoch {epoch}")
        ax.set(title=str(group), xlabel="t")
        ax.grid(alpha=0.3)
    for ax in axes[len(groups) :]:
        ax.set_visible(False)
    axes[0].set_ylabel(value)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize="small")
    if title:
        fig.suptitle(title)
    return _save(fig, path)
