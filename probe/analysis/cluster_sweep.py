"""Cluster geometry over a run: `sweep` (every layer and step) and `plot_sweep` (its figure).

Re-exported by `probe.clusters`, whose `geometry` each (layer, step) goes through.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from probe._validation import InvalidArrayError, MissingTargetsError

if TYPE_CHECKING:
    from probe.store import Run

__all__ = ["plot_sweep", "sweep"]


def sweep(
    run: Run,
    layers: Sequence[str] | None = None,
    steps: Sequence[int] | None = None,
    *,
    progress: bool = True,
    **kw: Any,
) -> pd.DataFrame:
    """Return `geometry` of every (layer, step) of a run as a tidy table.

    Parameters
    ----------
    run : Run
        An opened run (`probe.open_run`) that stored integer class labels as probe targets.
        Activations ``run.acts(layer, step)`` of shape (n_samples, ...) are flattened.
    layers : sequence of str, optional
        Recorded layers (default: all, ``run.layers``).
    steps : sequence of int, optional
        Steps with a snapshot; negative values count from the end (default: all, ``run.steps``).
    progress : bool
        Show a tqdm progress bar over the (layer, step) pairs.
    **kw
        Passed to `geometry` (``sample_size``, ``n_neighbors``, ``cv``, ``seed``).

    Returns
    -------
    pandas.DataFrame
        Columns ``layer``, ``step`` (the recorded step), ``metric``, ``value`` (float): one row
        per metric per (layer, step).

    Raises
    ------
    MissingTargetsError
        The run stored no probe targets.
    InvalidArrayError
        The targets are not 1-D integer labels, or `geometry` rejects a snapshot (the message
        names the layer and step).
    LayerNotInRunError, StepNotFoundError
        Unknown layer, or no snapshot at a requested step.
    """
    # Imported here: probe.clusters re-exports sweep, so it imports this module first.
    from probe.clusters import geometry

    targets = run.targets
    if targets is None:
        msg = "run.targets must hold class labels; got None. Record with Recorder(probe=(x, y))."
        raise MissingTargetsError(msg)
    y = np.asarray(targets)
    if y.ndim != 1 or y.dtype.kind not in "iub":
        msg = (
            "run.targets must be integer class labels of shape (n_samples,); "
            f"got dtype {y.dtype}, shape {y.shape}."
        )
        raise InvalidArrayError(msg)
    layers = list(run.layers if layers is None else layers)
    steps = [int(s) for s in (run.steps if steps is None else steps)]
    rows: list[tuple[str, int, str, float]] = []
    with tqdm(total=len(layers) * len(steps), desc="cluster geometry", disable=not progress) as bar:
        for layer in layers:
            for step in steps:
                acts = run.acts(layer, step)
                recorded = int(run.steps[run.snapshot_index(step)])
                try:
                    g = geometry(acts.reshape(acts.shape[0], -1), y, **kw)
                except InvalidArrayError as err:
                    msg = f"layer {layer!r} at step {recorded}: {err}"
                    raise InvalidArrayError(msg) from err
                rows += [(layer, recorded, k, v) for k, v in g.items()]
                bar.update()
    return pd.DataFrame(rows, columns=["layer", "step", "metric", "value"])


def plot_sweep(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Draw each metric of a `sweep` table against step, one line per layer, and save it.

    One panel per metric, four per row, drawn on an Agg canvas without pyplot's global state.

    Parameters
    ----------
    df : pandas.DataFrame
        A `sweep` table (columns ``layer``, ``step``, ``metric``, ``value``).
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
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

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
