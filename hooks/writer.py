"""The background writer: one thread owns every zarr call of a run.

Producers (hooks, `Recorder.step`) put numpy arrays on a queue bounded by a byte budget, so a slow
disk applies back-pressure instead of growing memory. Small items (metric records, stream batches)
wake the thread only once enough of them are queued: a wake-up per training step costs the
training thread more in GIL hand-offs than the write itself. The thread appends data-first
(`hooks._zarr_io.append_many`) and commits by rewriting the root attrs' counters last.
"""

from __future__ import annotations

import collections
import math
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

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
from hooks._store import last_snapshot_step
from hooks._zarr_io import append_many, create_array, fill_value, update_attributes
from hooks.errors import NonFiniteWarning, RecorderClosedError, WriterError

__all__ = ["MetricRecord", "RunWriter", "Snapshot", "StreamBatch"]

Array = npt.NDArray[Any]
_MAX_NONFINITE_ENTRIES = 100
# Snapshots appended together when the writer finds them queued (bounds one commit's latency).
_MAX_SNAPSHOT_BATCH = 256


@dataclass
class _Flush:
    done: threading.Event = field(default_factory=threading.Event)


_CLOSE = object()


class RunWriter:
    """Own a run group's zarr calls on one background thread.

    Parameters
    ----------
    root : zarr.Group
        The run's root group, opened for writing (counters already trimmed on resume).
    max_bytes : int
        Byte budget of queued arrays; `put` blocks while it is exceeded (back-pressure).
    compressors : object
        Passed to `zarr.Group.create_array` (None: raw bytes, the default for dense float data).
    metrics_every : int
        Write buffered metric records once this many have accumulated ...
    metrics_interval_s : float
        ... or once this many seconds have passed since the last write (and at `flush`/`close`).
        A killed process loses about that much of its metric log; snapshots are unaffected.
    wake_bytes : int
        Metric records and stream batches wake the writer once this many bytes (or
        ``metrics_every`` items) of them are queued, or after ``metrics_interval_s``; snapshots,
        `flush` and `close` wake it at once. Capped at a quarter of ``max_bytes``.
    """

    def __init__(
        self,
        root: zarr.Group,
        *,
        max_bytes: int = 256 << 20,
        compressors: object = None,
        metrics_every: int = 256,
        metrics_interval_s: float = 1.0,
        wake_bytes: int = 4 << 20,
    ) -> None:
        self.root = root
        self.max_bytes = int(max_bytes)
        self.compressors = compressors
        self.metrics_every = int(metrics_every)
        self.metrics_interval_s = float(metrics_interval_s)
        self.wake_bytes = min(int(wake_bytes), self.max_bytes // 4)
        self._lazy_bytes = self._lazy_items = 0  # small items queued since the last wake-up
        self.n_wakeups = 0  # producer-side wake-ups of the writer thread
        attrs = dict(root.attrs)
        self.n_committed: int = attrs.get(schema.N_COMMITTED, 0)
        self.n_metric_records: int = attrs.get(schema.N_METRIC_RECORDS, 0)
        self.n_stream_rows: int = attrs.get(schema.N_STREAM_ROWS, 0)
        self.last_step: int | None = last_snapshot_step(root)
        self.nonfinite: dict[str, list[list[int]]] = dict(attrs.get("nonfinite", {}))
        self._arrays: dict[str, zarr.Array] = {}
        self._snapshot_paths = self._existing_paths(root, "snapshot")
        self._stream_paths = self._existing_paths(root, "row")
        self._metrics_buf: list[MetricRecord] = []
        self._metrics_flushed = time.monotonic()
        self._stream_buf: list[StreamBatch] = []
        self._stream_rows_per_chunk = 0
        self._queue: collections.deque[tuple[object, int]] = collections.deque()
        self._cond = threading.Condition()
        self._bytes = 0
        self.peak_bytes = 0
        self.wait_s = 0.0  # time producers spent blocked on the budget
        self.busy_s = 0.0  # wall time the writer thread spent writing
        self.cpu_s = 0.0  # CPU time of the writer thread (what it takes from training)
        self.bytes_written = 0  # array bytes handed to zarr
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="probe-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ producer side
    def put(self, item: object, nbytes: int = 0) -> None:
        """Queue ``item``; block while the byte budget is exceeded; raise if the writer failed."""
        t0 = time.perf_counter()
        with self._cond:
            while (
                self._bytes > 0
                and self._bytes + nbytes > self.max_bytes
                and self.error is None
                and self._thread.is_alive()
            ):
                self._cond.wait(0.5)
            self.check()
            if not self._thread.is_alive():
                msg = (
                    "the run's writer is closed; "
                    "create a new Recorder (resume=True) to record more."
                )
                raise RecorderClosedError(msg)
            self._queue.append((item, nbytes))
            self._bytes += nbytes
            self.peak_bytes = max(self.peak_bytes, self._bytes)
            if isinstance(item, (MetricRecord, StreamBatch)):
                self._lazy_bytes += nbytes
                self._lazy_items += 1
                if self._lazy_bytes >= self.wake_bytes or self._lazy_items >= self.metrics_every:
                    self._wake()
            else:
                self._wake()
        self.wait_s += time.perf_counter() - t0

    def _wake(self) -> None:
        """Wake the writer thread (caller holds ``_cond``)."""
        self.n_wakeups += 1
        self._lazy_bytes = self._lazy_items = 0
        self._cond.notify_all()

    def flush(self) -> None:
        """Block until every queued item is written and committed."""
        if not self._thread.is_alive():
            self.check()
            return
        item = _Flush()
        self.put(item)
        while not item.done.wait(0.2):
            if not self._thread.is_alive():
                break
        self.check()

    def close(self) -> None:
        """Write everything queued, commit the tails, stop the thread; raise any writer error."""
        if self._thread.is_alive():
            with self._cond:
                self._queue.append((_CLOSE, 0))
                self._wake()
            self._thread.join()
        self.check()

    def check(self) -> None:
        """Raise `WriterError` if the writer thread has failed."""
        if self.error is None:
            return
        last = "none" if self.last_step is None else f"step {self.last_step}"
        msg = (
            f"writing the run at {self.root.store_path} failed: {self.error}. The last committed "
            f"snapshot is {last} ({self.n_committed} snapshots); the store stays readable with "
            "probe.open_run. Fix the cause (e.g. free disk space) and continue with "
            "Recorder(..., resume=True)."
        )
        raise WriterError(msg) from self.error

    # ------------------------------------------------------------------ writer thread
    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._queue:  # the timeout drains lazily queued items and buffered metrics
                    self._cond.wait(self.metrics_interval_s)
                item, nbytes = self._queue.popleft() if self._queue else (None, 0)
                if not self._queue:
                    self._lazy_bytes = self._lazy_items = 0
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                if isinstance(item, (Snapshot, StreamBatch)) and item.ready is not None:
                    item.ready.synchronize()  # its device-to-host copies have landed
                if item is _CLOSE:
                    self._write_tails(final=True)
                    return
                if isinstance(item, _Flush):
                    self._write_tails(final=False)
                    item.done.set()
                elif isinstance(item, Snapshot):
                    batch = [item]
                    with self._cond:  # snapshots queued behind it go in the same appends
                        while (
                            self._queue
                            and isinstance(self._queue[0][0], (Snapshot, MetricRecord))
                            and len(batch) < _MAX_SNAPSHOT_BATCH
                        ):
                            more, more_bytes = self._queue.popleft()
                            nbytes += more_bytes
                            if isinstance(more, Snapshot):
                                if more.ready is not None:
                                    more.ready.synchronize()
                                batch.append(more)
                            else:  # metrics are independent of snapshots: buffer as usual
                                self._metrics_buf.append(more)  # type: ignore[arg-type]
                    self._write_snapshots(batch)
                elif isinstance(item, MetricRecord):
                    self._metrics_buf.append(item)
                elif isinstance(item, StreamBatch):
                    item.arrays["stream/step"] = np.full(item.n_rows, item.step, np.int64)
                    item.arrays["stream/sample_id"] = item.sample_id.astype(np.int64)
                    self._stream_buf.append(item)
                    self._commit(self._write_stream(final=False))
                if self._metrics_buf and (
                    len(self._metrics_buf) >= self.metrics_every
                    or time.monotonic() - self._metrics_flushed > self.metrics_interval_s
                ):
                    self._commit(self._write_metrics())
            except BaseException as exc:  # noqa: BLE001 - surfaced on the training thread
                self._fail(exc)
                return
            finally:
                self.busy_s += time.perf_counter() - t0
                self.cpu_s += time.thread_time() - c0
                self.bytes_written += nbytes
                with self._cond:
                    self._bytes -= nbytes
                    self._cond.notify_all()

    def _fail(self, exc: BaseException) -> None:
        with self._cond:
            self.error = exc
            for item, _ in self._queue:
                if isinstance(item, _Flush):
                    item.done.set()
            self._queue.clear()
            self._bytes = 0
            self._cond.notify_all()

    @staticmethod
    def _existing_paths(root: zarr.Group, lead: str) -> set[str]:
        paths = set()
        for path, node in root.members(max_depth=None):
            if isinstance(node, zarr.Array) and not path.startswith(f"{schema.SNAPSHOTS}/"):
                dims = node.metadata.dimension_names or ()
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
    ) -> zarr.Array:
        arr = self._arrays.get(path)
        if arr is None:
            if path in self.root:
                arr = self.root[path]
                check_row(arr, path, like)
            else:
                group, _, name = path.rpartition("/")
                arr = create_array(
                    self.root.require_group(group) if group else self.root,
                    name,
                    shape=(n_rows, *like.shape),
                    chunks=chunks,
                    dtype=like.dtype,
                    dims=(*lead, *dims),
                    compressors=self.compressors,
                )
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

    def _write_snapshots(self, batch: list[Snapshot]) -> None:
        """Append the snapshots of ``batch`` as rows of every array, then commit them at once.

        A writer that falls behind (many small snapshots, e.g. every step) thus writes each
        array's chunk and ``zarr.json`` once per batch instead of once per snapshot.
        """
        n0, n = self.n_committed, len(batch)
        rows: dict[str, list[Array | None]] = {}
        for i, s in enumerate(batch):
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
            arr = self._arrays.get(path) or self.root[path]
            self._arrays[path] = arr
            got = rows.get(path, [None] * n)
            if n == 1 and got[0] is not None:
                pairs.append((arr, got[0][None]))  # the common case: no copy
                continue
            stack = np.empty((n, *arr.shape[1:]), arr.dtype)
            for i, a in enumerate(got):
                stack[i] = fill_value(arr.dtype) if a is None else a  # None: layer did not fire
            pairs.append((arr, stack))
        for name, dtype in (("step", np.int64), ("epoch", np.int64), ("wall_time", np.float64)):
            a = np.asarray([getattr(s, name) for s in batch], dtype=dtype)
            path = f"{schema.SNAPSHOTS}/{name}"
            chunks = (SCALAR_SNAPSHOT_CHUNK,)
            pairs.append((self._array(path, a[0], ("snapshot",), (), n0, chunks), a))
        append_many(pairs)
        self.n_committed += n
        self.last_step = batch[-1].step
        self._commit({schema.N_COMMITTED: self.n_committed, "last_step": self.last_step})

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
        return {name for name, _ in self.root[schema.METRICS].arrays()}

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
            arr = self._arrays.get(p) or self.root[p]
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

    def _write_tails(self, final: bool) -> None:
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
            # One metadata write for all counters: `attrs.update` writes once per key, and a
            # crash between those writes left n_committed and last_step disagreeing (kill test).
            update_attributes(self.root, updates)
