"""Scalar summaries of a run per snapshot and layer, and their export to TensorBoard.

Three numbers per recorded layer and snapshot, small enough to watch in any experiment tracker:

* ``cka_prev``: linear CKA (biased HSIC, `probe.analysis.similarity.linear_cka`) between the layer's
  probe-set activations at this snapshot and at the previous one; a similarity in [0, 1],
  1 = unchanged up to rotation and isotropic scaling. NaN at the first snapshot.
* ``effective_rank``: entropy effective rank of the centred activations
  (`probe.analysis.dimension.effective_rank`, of the singular values, not of the covariance).
* ``centroid_separation``: distance between the two closest class means in units of the
  within-class spread, ``min ‖μ_c - μ_c'‖ / sqrt(tr Σ_W)``
  (`probe.analysis.clusters.centroid_separation`); NaN when the probe targets are not integer class
  labels of shape (n_samples,).

A value is NaN where its quantity is undefined (constant or non-finite activations, fewer than
2 classes). `probe.export.scalars.to_tensorboard` writes the finite ones as TensorBoard scalars.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from probe.analysis import clusters, dimension, similarity
from probe.errors import InvalidArrayError
from probe.store import Run, open_run

__all__ = ["SUMMARY_NAMES", "snapshot_summary", "summaries"]

SUMMARY_NAMES = ("cka_prev", "effective_rank", "centroid_separation")

PathLike = str | os.PathLike[str]


def _or_nan(fn: Callable[..., float], *args: Any) -> float:
    """Return ``fn(*args)``, or NaN where the quantity is undefined for these activations."""
    try:
        return fn(*args)
    except InvalidArrayError:
        return math.nan


def _class_labels(run: Run) -> npt.NDArray[Any] | None:
    """Return the probe targets if they are int class labels of shape (n_samples,), else None."""
    y = run.targets
    if y is None or y.ndim != 1 or y.dtype.kind not in "biu":
        return None
    return y


def snapshot_summary(
    acts: npt.NDArray[Any], prev: npt.NDArray[Any] | None, labels: npt.NDArray[Any] | None
) -> dict[str, float]:
    """Return `SUMMARY_NAMES` of one layer at one snapshot (NaN where undefined).

    Parameters
    ----------
    acts : ndarray, shape (n_samples, ...)
        The layer's activations at this snapshot.
    prev : ndarray or None, shape (n_samples, ...)
        Its activations at the previous snapshot (None at the first: ``cka_prev`` is NaN).
    labels : ndarray or None, shape (n_samples,)
        Int class labels (None: ``centroid_separation`` is NaN).
    """
    return {
        "cka_prev": math.nan if prev is None else _or_nan(similarity.linear_cka, prev, acts),
        "effective_rank": _or_nan(dimension.effective_rank, acts),
        "centroid_separation": math.nan
        if labels is None
        else _or_nan(clusters.centroid_separation, acts, labels),
    }


def summaries(
    run: Run | PathLike, *, layers: Sequence[str] | None = None, key: str = "acts"
) -> pd.DataFrame:
    """Return the scalar summaries of every recorded layer at every snapshot.

    Parameters
    ----------
    run : Run or path
        An opened run (`probe.open_run`) or its folder.
    layers : sequence of str, optional
        Layers to summarise (default: every recorded layer that has array ``key``).
    key : str
        Which recorded array of each layer (``acts``, ``acts.0`` ...; see `Run.keys`).

    Returns
    -------
    pandas.DataFrame
        One row per (layer, snapshot), layers in run order and steps ascending, with columns
        ``layer`` (str), ``step`` (int64) and the float64 columns of `SUMMARY_NAMES` (see the
        module docstring for their conventions).

    Raises
    ------
    LayerNotInRunError
        A layer in ``layers`` was not recorded, or has no array ``key``.

    Examples
    --------
    >>> import tempfile, os, torch
    >>> from hooks import Recorder
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh())
    >>> x, y = torch.randn(32, 4), torch.arange(32) % 2
    >>> path = os.path.join(tempfile.mkdtemp(), "run.zarr")
    >>> with Recorder(net, ["0"], path, (x, y), every=1) as rec:
    ...     rec.step()
    >>> df = summaries(path)
    >>> df[["layer", "step"]].values.tolist(), round(float(df["cka_prev"].iloc[1]), 6)
    ([['0', 0], ['0', 1]], 1.0)
    """
    run = run if isinstance(run, Run) else open_run(run)
    if layers is None:
        layers = [name for name in run.layers if key in run.keys(name)]
    y = _class_labels(run)
    rows = []
    for layer in layers:
        prev = None
        for step in run.steps.tolist():
            acts = run.acts(layer, step, key=key)
            rows.append({"layer": layer, "step": step, **snapshot_summary(acts, prev, y)})
            prev = acts
    frame = pd.DataFrame(rows, columns=["layer", "step", *SUMMARY_NAMES])
    return frame.astype({"layer": object, "step": np.int64} | dict.fromkeys(SUMMARY_NAMES, float))
