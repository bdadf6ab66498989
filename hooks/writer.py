"""The background writer: one thread owns every zarr call of a run.

Producers (hooks, `Recorder.step`) put numpy arrays on a queue bounded by a byte budget, so a slow
disk applies back-pressure instead of growing memory. Small items (metric records, stream batches)
wake the thread only once enough of them are queued, or when a producer must wait for the budget:
a wake-up per training step costs the training thread more in GIL hand-offs than the write itself.
The thread appends data-first (`hooks._zarr_io.append_many`) and commits by rewriting the root
attrs' counters last.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy.typing as npt
import zarr

from hooks._appender import RunAppender
from hooks._items import MetricRecord, Snapshot, StreamBatch, writer_error
from hooks.errors import RecorderClosedError

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
        `flush` and `close` wake it at once, and so does a `put` that must wait for the budget
        while small items are queued. Capped at a quarter of ``max_bytes``.
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
        self.store = RunAppender(
            root,
            compressors=compressors,
            metrics_every=metrics_every,
            metrics_interval_s=metrics_interval_s,
        )
        self.root = root
        self.max_bytes = int(max_bytes)
        self.metrics_every = int(metrics_every)
        self.metrics_interval_s = float(metrics_interval_s)
        self.wake_bytes = min(int(wake_bytes), self.max_bytes // 4)
        self._lazy_bytes = self._lazy_items = 0  # small items queued since the last wake-up
        self.n_wakeups = 0  # producer-side wake-ups of the writer thread
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

    @property
    def n_committed(self) -> int:
        """Snapshots committed to the store."""
        return self.store.n_committed

    @property
    def last_step(self) -> int | None:
        """Step of the last committed snapshot (None: none yet)."""
        return self.store.last_step

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
                if self._lazy_items:  # the writer must drain them before this item fits
                    self._wake()
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
        if self.error is not None:
            raise writer_error(self.root, self.error, self.last_step, self.n_committed)

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
                    self.store.write_tails(final=True)
                    return
                if isinstance(item, _Flush):
                    self.store.write_tails(final=False)
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
                                self.store.add_metrics([more])  # type: ignore[list-item]
                    self.store.write_snapshots(batch)
                elif isinstance(item, MetricRecord):
                    self.store.add_metrics([item])
                elif isinstance(item, StreamBatch):
                    self.store.add_stream(item)
                self.store.write_metrics_if_due()
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
