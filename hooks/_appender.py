"""Append snapshots, metric records and stream rows to a run group, synchronously.

`RunAppender` holds everything a run's writer does to the store: it appends data-first
(`hooks._zarr_io.append_many`) and commits by rewriting the root attrs' counters last. The
background writers (`hooks.writer.RunWriter`, a thread; `hooks._writer_child`, a process) feed
it in order.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import zarr

from hooks import schema
from hooks._items import (
    SCALAR_SNAPSHOT_CHUNK,
    MetricRecord,
    Snapshot,
    StreamBatch,
    check_row,
    snapshot_chunks,
    to_float,
)
from hooks._zarr_io import append_many, create_array, fill_value, update_attributes
from hooks.errors import NonFiniteWarning

__all__ = ["RunAppender"]

Array = npt.NDArray[Any]
_MAX_NONFINITE_ENTRIES = 100


def last_snapshot_step(root: zarr.Group) -> int | None:
    """Return the step of the last committed snapshot, read from ``snapshots/step`` (None if none).

    The array, trimmed to ``n_committed``, is the truth; the ``last_step`` attr is a summary.
    """
    n = int(cast(int, root.attrs.get(schema.N_COMMITTED, 0)))
    if n and f"{schema.SNAPSHOTS}/step" in root:
        return int(cast(Any, root[f"{schema.SNAPSHOTS}/step"])[n - 1])
    return None


class RunAppender:
    """Write a run group's snapshots, metrics and stream rows, and commit them.

    Parameters
    ----------
    root : zarr.Group
        The run's root group, opened for writing (counters already trimmed on resume).
    compressors : object
        Passed to `zarr.Group.create_array` (None: raw bytes, the default for dense float data).
    metrics_every : int
        `metrics_due` once this many metric records are buffered ...
    metrics_interval_s : float
        ... or once this many seconds have passed since the last metrics write.
    """

    def __init__(
        self,
        root: zarr.Group,
        *,
        compressors: object = None,
        metrics_every: int = 256,
        metrics_interval_s: float = 1.0,
    ) -> None:
        self.root = root
        self.compressors = compressors
        self.metrics_every = int(metrics_every)
        self.metrics_interval_s = float(metrics_interval_s)
        attrs: dict[str, Any] = dict(root.attrs)
        self.n_committed: int = attrs.get(schema.N_COMMITTED, 0)
        self.n_metric_records: int = attrs.get(schema.N_METRIC_RECORDS, 0)
        self.n_stream_rows: int = attrs.get(schema.N_STREAM_ROWS, 0)
        self.last_step: int | None = last_snapshot_step(root)
        self.nonfinite: dict[str, list[list[int]]] = dict(attrs.get("nonfinite", {}))
        # A run written before manifests existed gets none: a partial one would hide its arrays.
        manifest = attrs.get(schema.MANIFEST)
        self.manifest: dict[str, str] | None = None if manifest is None else dict(manifest)
        self.absent: dict[str, list[list[int]]] = dict(attrs.get(schema.ABSENT, {}))
        self._arrays: dict[str, zarr.Array[Any]] = {}
        self._new_attrs: dict[str, dict[str, Any]] = {}  # set on arrays when they are created
        self._snapshot_paths = self._existing_paths(root, "snapshot")
        self._stream_paths = self._existing_paths(root, "row")
        self._metrics_buf: list[MetricRecord] = []
        self._metrics_flushed = time.monotonic()
        self._stream_buf: list[StreamBatch] = []
        self._stream_rows_per_chunk = 0

    def add_metrics(self, records: list[MetricRecord]) -> None:
        """Buffer metric records; `write_metrics_if_due` or `write_tails` writes them."""
        self._metrics_buf.extend(records)

    def write_metrics_if_due(self) -> None:
        """Write and commit the buffered metric records if `metrics_every` or the interval is up."""
        if self._metrics_buf and (
            len(self._metrics_buf) >= self.metrics_every
            or time.monotonic() - self._metrics_flushed > self.metrics_interval_s
        ):
            self._commit(self._write_metrics())

    def add_stream(self, item: StreamBatch) -> None:
        """Buffer a stream batch; write and commit the whole chunks of rows buffered so far."""
        item.arrays["stream/step"] = np.full(item.n_rows, item.step, np.int64)
        item.arrays["stream/sample_id"] = item.sample_id.astype(np.int64)
        self._new_attrs.update(item.attrs)
        self._stream_buf.append(item)
        self._commit(self._write_stream(final=False))

    @staticmethod
    def _existing_paths(root: zarr.Group, lead: str) -> set[str]:
        paths = set()
        for path, node in root.members(max_depth=None):
            if isinstance(node, zarr.Array) and not path.startswith(f"{schema.SNAPSHOTS}/"):
                dims = getattr(node.metadata, "dimension_names", None) or ()
                if dims and dims[0] == lead:
                    paths.add(path)
        return paths

    def _array(
        self,
        path: str,
        like: Array,
        lead: tuple[str, ...],
        dims: tuple[str, ...],
        n_rows: int,
        chunks: tuple[int, ...],
    ) -> zarr.Array[Any]:
        arr = self._arrays.get(path)
        if arr is None:
            if path in self.root:
                arr = cast(zarr.Array[Any], self.root[path])
                check_row(arr, path, like)
            else:
                group, _, name = path.rpartition("/")
                arr = create_array(
                    self.root.require_group(group) if group else self.root,
                    name,
                    shape=(0, *like.shape),
                    chunks=chunks,
                    dtype=like.dtype,
                    dims=(*lead, *dims),
                    compressors=self.compressors,
                )
                if path in self._new_attrs:
                    arr = arr.update_attributes(self._new_attrs.pop(path))
                if n_rows:  # first seen after n_rows committed rows: those hold fill values
                    fill = np.full((n_rows, *like.shape), fill_value(like.dtype), like.dtype)
                    append_many([(arr, fill)])
                    if lead == ("snapshot",):  # metrics and stream rows: NaN means "not logged"
                        self._mark_absent(path, 0, n_rows)
                if self.manifest is not None:
                    self.manifest[path] = schema.metadata_digest(arr.metadata.to_dict())
            self._arrays[path] = arr
        return arr

    def _check_finite(self, path: str, step: int, a: Array) -> None:
        if a.dtype.kind not in "fc":
            return
        n_bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        if n_bad:
            entries = self.nonfinite.setdefault(path, [])
            if not entries:
                msg = (
                    f"{path} holds {n_bad} NaN/Inf values at step {step}; recorded as is and "
                    "listed in Run.info()['nonfinite']."
                )
                warnings.warn(msg, NonFiniteWarning, stacklevel=2)
            if len(entries) < _MAX_NONFINITE_ENTRIES:
                entries.append([int(step), n_bad])

    def _mark_absent(self, path: str, start: int, stop: int) -> None:
        """Record that rows ``start:stop`` of ``path`` hold fill values, not recorded data."""
        spans = self.absent.setdefault(path, [])
        if spans and spans[-1][1] == start:
            spans[-1][1] = stop
        else:
            spans.append([start, stop])

    def write_snapshots(self, batch: list[Snapshot]) -> None:
        """Append the snapshots of ``batch`` as rows of every array, then commit them at once.

        A writer that falls behind (many small snapshots, e.g. every step) thus writes each
        array's chunk and ``zarr.json`` once per batch instead of once per snapshot.
        """
        n0, n = self.n_committed, len(batch)
        rows: dict[str, list[Array | None]] = {}
        for i, s in enumerate(batch):
            self._new_attrs.update(s.attrs)
            for path, a in s.arrays.items():
                self._check_finite(path, s.step, a)
                arr = self._array(
                    path, a, ("snapshot",), s.dims[path], n0, snapshot_chunks(s, path)
                )
                check_row(arr, path, a)
                self._snapshot_paths.add(path)
                rows.setdefault(path, [None] * n)[i] = a
        pairs = []
        for path in self._snapshot_paths:
            arr = self._arrays.get(path) or cast(zarr.Array[Any], self.root[path])
            self._arrays[path] = arr
            got = rows.get(path, [None] * n)
            if n == 1 and got[0] is not None:
                pairs.append((arr, got[0][None]))  # the common case: no copy
                continue
            stack = np.empty((n, *arr.shape[1:]), arr.dtype)
            for i, row in enumerate(got):
                if row is None:  # the layer did not fire at this snapshot
                    stack[i] = fill_value(arr.dtype)
                    self._mark_absent(path, n0 + i, n0 + i + 1)
                else:
                    stack[i] = row
            pairs.append((arr, stack))
        for name, dtype in (("step", np.int64), ("epoch", np.int64), ("wall_time", np.float64)):
            a = np.asarray([getattr(s, name) for s in batch], dtype=dtype)
            path = f"{schema.SNAPSHOTS}/{name}"
            chunks = (SCALAR_SNAPSHOT_CHUNK,)
            pairs.append((self._array(path, a[0], ("snapshot",), (), n0, chunks), a))
        append_many(pairs)
        self.n_committed += n
        self.last_step = batch[-1].step
        # The metric records logged up to these snapshots commit with them: a crash never
        # leaves committed snapshots without the learning curve that led to them.
        updates = self._write_metrics()
        updates.update({schema.N_COMMITTED: self.n_committed, "last_step": self.last_step})
        self._commit(updates)

    def _write_metrics(self) -> dict[str, Any]:
        if not self._metrics_buf:
            return {}
        recs, self._metrics_buf = self._metrics_buf, []
        self._metrics_flushed = time.monotonic()
        cols: dict[str, Array] = {
            "step": np.array([r.step for r in recs], np.int64),
            "epoch": np.array([r.epoch for r in recs], np.int64),
        }
        names = list(dict.fromkeys(k for r in recs for k in r.values))
        for name in names:
            cols[name] = np.array(
                [to_float(r.values.get(name, math.nan)) for r in recs], np.float64
            )
        for name in self._metric_names() - set(cols):
            cols[name] = np.full(len(recs), np.nan)
        append_many(
            [
                (
                    self._array(
                        f"{schema.METRICS}/{name}",
                        col[0],
                        ("record",),
                        (),
                        self.n_metric_records,
                        (schema.METRICS_CHUNK,),
                    ),
                    col,
                )
                for name, col in cols.items()
            ]
        )
        self.n_metric_records += len(recs)
        return {schema.N_METRIC_RECORDS: self.n_metric_records}

    def _metric_names(self) -> set[str]:
        if schema.METRICS not in self.root:
            return set()
        return {name for name, _ in cast(zarr.Group, self.root[schema.METRICS]).arrays()}

    def _write_stream(self, final: bool) -> dict[str, Any]:
        buffered = sum(b.n_rows for b in self._stream_buf)
        if not buffered:
            return {}
        if not self._stream_rows_per_chunk:
            first = self._stream_buf[0]
            self._stream_rows_per_chunk = (
                min(
                    schema.rows_per_chunk(
                        a.shape[1:], a.dtype.itemsize, multiple=max(1, first.n_rows)
                    )
                    for a in first.arrays.values()
                )
                if first.arrays
                else 4096
            )
        r = self._stream_rows_per_chunk
        n_write = buffered if final else (buffered // r) * r
        if not n_write:
            return {}
        batches, self._stream_buf = self._stream_buf, []
        cols = self._stream_columns(batches)
        rest = buffered - n_write
        if rest:  # keep the tail rows for the next whole chunk
            keep = {p: c[n_write:] for p, c in cols.items()}
            self._stream_buf = [StreamBatch(-1, keep["stream/sample_id"], keep)]
        pairs = []
        for path, col in cols.items():
            col = col[:n_write]
            dims = schema.array_dims(path, ("row",), col.ndim - 1)[1:]
            arr = self._array(path, col[0], ("row",), dims, self.n_stream_rows, (r, *col.shape[1:]))
            self._stream_paths.add(path)
            self._check_finite(path, int(cols["stream/step"][0]), col)
            pairs.append((arr, col))
        append_many(pairs)
        self.n_stream_rows += n_write
        return {schema.N_STREAM_ROWS: self.n_stream_rows}

    def _stream_columns(self, batches: list[StreamBatch]) -> dict[str, Array]:
        """Concatenate batches per path; rows of a path missing from a batch are fill-valued."""
        protos: dict[str, Array] = {}
        for b in batches:
            for p, a in b.arrays.items():
                protos.setdefault(p, a)
        for p in self._stream_paths - set(protos):
            arr = self._arrays.get(p) or cast(zarr.Array[Any], self.root[p])
            protos[p] = np.empty((0, *arr.shape[1:]), arr.dtype)
        cols: dict[str, Array] = {}
        for p, proto in protos.items():
            parts = [
                b.arrays[p]
                if p in b.arrays
                else np.full((b.n_rows, *proto.shape[1:]), fill_value(proto.dtype), proto.dtype)
                for b in batches
            ]
            cols[p] = np.concatenate(parts)
        return cols

    def write_tails(self, final: bool) -> None:
        """Write every buffered metric and stream row (``final``: also mark the run closed)."""
        updates = self._write_metrics()
        updates.update(self._write_stream(final=True))
        if self.nonfinite:
            updates["nonfinite"] = self.nonfinite
        if final:
            updates["closed_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._commit(updates)

    def _commit(self, updates: dict[str, Any]) -> None:
        if updates:
            if self.nonfinite:
                updates["nonfinite"] = self.nonfinite
            if self.manifest is not None:
                updates[schema.MANIFEST] = self.manifest
            if self.absent:
                updates[schema.ABSENT] = self.absent
            merged = {**self.root.metadata.attributes, **updates}
            updates[schema.COMMIT_DIGEST] = schema.commit_digest(merged)
            # One metadata write for all counters: `attrs.update` writes once per key, and a
            # crash between those writes left n_committed and last_step disagreeing (kill test).
            update_attributes(self.root, updates)
