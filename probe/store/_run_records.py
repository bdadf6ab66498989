"""A run's record tables (rows appended per step, not per snapshot): metrics and the stream.

`read_metrics` is `Run.metrics` (the logged scalars, or the records from one on, for a live
reader) and `read_stream` is `Run.stream` (watched training-batch activations). Both read a
single-process run's arrays trimmed to its counters, or a multi-process run's merged rows
(`probe.store._rank_merge`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from hooks import schema
from probe.errors import ConfigError, LayerNotInRunError
from probe.store._rank_merge import RunReader

__all__ = ["StreamRows", "read_metrics", "read_stream"]

Array = npt.NDArray[Any]


@dataclass
class StreamRows:
    """Watched training-batch activations of one layer: ``acts`` of shape (n_rows, ...).

    ``step``, ``sample_id`` and ``rank`` (the recording process) have shape (n_rows,).
    """

    acts: Array
    step: npt.NDArray[np.int64]
    sample_id: npt.NDArray[np.int64]
    rank: npt.NDArray[np.int64] | None = None


def read_metrics(run: RunReader, all_ranks: bool, start: int) -> pd.DataFrame:
    """Return `Run.metrics` of ``run`` (see there).

    Raises
    ------
    ConfigError
        ``start`` is negative, or given with ``all_ranks`` (whose rows interleave ranks).
    """
    if start < 0 or (start and all_ranks):
        msg = (
            f"start must be an int >= 0 and cannot be combined with all_ranks=True; got "
            f"start={start!r}, all_ranks={all_ranks}. Read every rank with start=0."
        )
        raise ConfigError(msg)
    merge = run.rank_merge
    if merge is not None and (table := merge.metrics(all_ranks, start)) is not None:
        return table
    n = run.n_metric_records
    group = run.path / schema.METRICS
    if merge is not None or not n or not group.is_dir():
        table = pd.DataFrame({"step": np.zeros(0, np.int64), "epoch": np.zeros(0, np.int64)})
    else:
        names = sorted(p.name for p in group.iterdir() if (p / "zarr.json").is_file())
        rows = slice(start, None)
        cols = {name: run.read_array(f"{schema.METRICS}/{name}", n, rows) for name in names}
        first = ["step", "epoch"]
        table = pd.DataFrame({k: cols[k] for k in first + [c for c in names if c not in first]})
    if all_ranks:
        table.insert(2, "rank", np.full(len(table), run.attrs.get(schema.RANK, 0), np.int64))
    return table


def read_stream(run: RunReader, layer: str, key: str) -> StreamRows:
    """Return `Run.stream` of ``run`` (see there).

    Raises
    ------
    LayerNotInRunError
        ``layer`` was never watched.
    """
    path = f"{schema.stream_group(layer)}/{key}"
    cols = None
    merge = run.rank_merge
    if merge is not None:
        cols = merge.stream(path)
    elif (run.path / path).is_dir():
        n = run.n_stream_rows
        step = run.read_array("stream/step", n)
        ids = run.read_array("stream/sample_id", n)
        rank = np.full(step.shape, run.attrs.get(schema.RANK, 0), np.int64)
        cols = (run.read_array(path, n), step, ids, rank)
    if cols is None:
        msg = f"layer {layer!r} has no stream {key!r}; record it inside Recorder.watch()."
        raise LayerNotInRunError(msg)
    return StreamRows(*cols)
