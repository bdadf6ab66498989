"""What producers put on the writer's queue, and how snapshot arrays are chunked and checked."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy.typing as npt
import zarr

from hooks import schema
from hooks.errors import WriterError

__all__ = ["MetricRecord", "Snapshot", "StreamBatch"]

Array = npt.NDArray[Any]
# Snapshot rows below this size share chunks along ``snapshot``; a partly filled chunk is
# rewritten on every append, so it is kept well below schema.CHUNK_BYTES.
_SNAPSHOT_CHUNK_BYTES = 256 << 10
_MAX_SNAPSHOTS_PER_CHUNK = 1024
SCALAR_SNAPSHOT_CHUNK = 1024


class Ready(Protocol):
    """What the writer waits on before reading an item's arrays (a `torch.cuda.Event`)."""

    def synchronize(self) -> None: ...


@dataclass
class Snapshot:
    """One snapshot: arrays keyed by store path, with their dims after the ``snapshot`` dim.

    ``ready``: the arrays are being filled by non-blocking device-to-host copies until it is
    synchronised (None: they are complete). ``attrs``: zarr attributes of arrays, set when
    the array is created (the module's own layout, `hooks._batch_dim.Layout.attrs`).
    """

    step: int
    epoch: int
    wall_time: float
    arrays: dict[str, Array]
    dims: dict[str, tuple[str, ...]]
    ready: Ready | None = None
    attrs: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class MetricRecord:
    """Scalars logged at one step (values may be 0-d tensors, converted in the writer thread)."""

    step: int
    epoch: int
    values: dict[str, Any]


@dataclass
class StreamBatch:
    """Activations of one watched training forward: ``(n_rows, ...)`` arrays keyed by store path."""

    step: int
    sample_id: Array
    arrays: dict[str, Array]
    ready: Ready | None = None  # as in `Snapshot`
    attrs: dict[str, dict[str, Any]] = field(default_factory=dict)  # as in `Snapshot`
    n_rows: int = field(init=False)

    def __post_init__(self) -> None:
        self.n_rows = int(self.sample_id.shape[0])


def check_row(arr: zarr.Array[Any], path: str, row: Array) -> None:
    """Raise if ``row`` does not fit the rows of ``arr`` (e.g. a resumed run's layer got wider)."""
    if arr.shape[1:] != row.shape or arr.dtype != row.dtype:
        msg = (
            f"array {path!r} in the store has rows of shape {arr.shape[1:]} and dtype "
            f"{arr.dtype}; got {row.shape} {row.dtype}. Record into a new store."
        )
        raise ValueError(msg)


def snapshot_chunks(s: Snapshot, path: str) -> tuple[int, ...]:
    """Chunk shape of a snapshot array: small rows grouped along ``snapshot``, large split.

    A row (one snapshot) under `_SNAPSHOT_CHUNK_BYTES` shares its chunk with the next snapshots,
    so recording a small probe set every step does not make one file per step and array; a
    larger row gets its own chunks, split along ``sample`` to about `schema.CHUNK_BYTES`.
    """
    a = s.arrays[path]
    if a.nbytes < _SNAPSHOT_CHUNK_BYTES:
        k = min(_MAX_SNAPSHOTS_PER_CHUNK, _SNAPSHOT_CHUNK_BYTES // max(1, a.nbytes))
        return (k, *a.shape)
    if s.dims[path] and s.dims[path][0] == "sample" and a.ndim:
        rows = schema.rows_per_chunk(a.shape[1:], a.dtype.itemsize, a.shape[0])
        return (1, rows, *a.shape[1:])
    return (1, *a.shape)


def to_float(value: Any) -> float:
    try:
        return float(value)  # 0-d tensors are synchronised here, off the training thread
    except (TypeError, ValueError, RuntimeError):
        return math.nan


def writer_error(
    root: zarr.Group, error: BaseException, last_step: int | None, n_committed: int
) -> WriterError:
    """Return the `WriterError` for a writer stopped by ``error``, naming the last commit."""
    last = "none" if last_step is None else f"step {last_step}"
    msg = (
        f"writing the run at {root.store_path} failed: {error}. The last committed "
        f"snapshot is {last} ({n_committed} snapshots); the store stays readable with "
        "probe.open_run. Fix the cause (e.g. free disk space) and continue with "
        "Recorder(..., resume=True)."
    )
    err = WriterError(msg)
    err.__cause__ = error  # as `raise err from error` would set it
    err.__suppress_context__ = True
    return err
