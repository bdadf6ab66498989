"""Figures of the Neural Feature Ansatz: `plot_nfa` draws `nfa_over_steps` rows over training.

`nfa_panel` draws one layer and measure; the report's NFA section uses it too.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure  # not pyplot: no global state, no GUI backend

from probe.analysis.features import FRAME_COLUMNS
from probe.errors import InvalidArrayError

__all__ = ["nfa_panel", "plot_nfa"]


def plot_nfa(df: pd.DataFrame, path: str | Path) -> Path:
    """Plot `nfa_over_steps` rows: each measure against steps, with its baselines; return path.

    One row of panels per layer, one column per measure: a solid line per power p, its init
    value dashed in the same colour, the NFM change ``measure(M_t, M_0)`` dotted grey. ``path``
    is the image file (format from the suffix). Raises `InvalidArrayError` when ``df`` is empty
    or lacks a column of `nfa_over_steps`.
    """
    missing = [c for c in FRAME_COLUMNS if c not in df.columns]
    if missing or df.empty:
        msg = f"df must be non-empty nfa_over_steps output; got {len(df)} rows, missing {missing}."
        raise InvalidArrayError(msg)
    layers, measures = list(dict.fromkeys(df["layer"])), list(dict.fromkeys(df["measure"]))
    fig = Figure(figsize=(4.0 * len(measures), 3.0 * len(layers)), layout="constrained")
    axes = fig.subplots(len(layers), len(measures), squeeze=False, sharex=True)
    for row, layer in zip(axes, layers, strict=True):
        for ax, m in zip(row, measures, strict=True):
            sub = df[(df["layer"] == layer) & (df["measure"] == m)]
            nfa_panel(ax, sub)
            ax.set(title=f"{layer}: {m} (dashed: init)", xlabel="step")
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return Path(path)


def nfa_panel(ax: Axes, rows: pd.DataFrame) -> None:
    """Draw one layer's `nfa_over_steps` rows of one measure on ``ax``.

    A solid line per power p, its init value dashed in the same colour, and the NFM change
    ``measure(M_t, M_0)`` dotted grey.
    """
    for i, (p, g) in enumerate(rows.groupby("power", sort=False)):
        ax.plot(g["step"], g["value"], color=f"C{i}", marker=".", label=f"M vs G^{p:g}")
        ax.axhline(g["init"].iloc[0], color=f"C{i}", ls="--", lw=1)
    first = rows.drop_duplicates("step")
    ax.plot(first["step"], first["nfm_change"], color="0.5", ls=":", label="M vs M0")
