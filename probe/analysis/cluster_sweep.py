"""Cluster geometry over a run: `sweep` (every layer and step) through `clusters.geometry`.

Its figure is `probe.plots.clusters.plot_sweep`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from probe.analysis.clusters import geometry
from probe.errors import InvalidArrayError, MissingTargetsError

if TYPE_CHECKING:
    from probe.store import Run

__all__ = ["sweep"]


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
