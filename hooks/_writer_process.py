"""The writer as a separate process: the training loop shares no GIL with the writes.

A writer thread in the training process takes the GIL back after each of its system calls, and the
training thread, between two torch ops, waits for it: a CPU-bound loop pays for that (docs/
storage.md §4: about +30 %). `ProcessWriter` has `RunWriter`'s interface but copies each
item's arrays into a shared memory arena (a Linux ``memfd``) and sends one small message per item
to `hooks._writer_child`, which writes them with the same `RunAppender`. Arena space is reused in
FIFO order once the child reports an item written: the arena is the queue's byte budget.
"""

from __future__ import annotations

import collections
import json
import mmap
import os
import select
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from hooks import _wire
from hooks._items import MetricRecord, Snapshot, StreamBatch, to_float, writer_error
from hooks.errors import NonFiniteWarning, RecorderClosedError
from hooks.writer import RunWriter

__all__ = ["ProcessWriter", "make_writer", "process_writer_available"]

_START_TIMEOUT_S = 120.0


def process_writer_available() -> bool:
    """Return whether this platform can run the writer process (Linux: ``os.memfd_create``)."""
    return hasattr(os, "memfd_create") and sys.platform.startswith("linux")


class ProcessWriter:
    """Write a run group from a child process; the interface of `hooks.writer.RunWriter`.

    Parameters
    ----------
    root : zarr.Group
        The run's group on local disk, created or reopened (and trimmed) by the Recorder.
    max_bytes : int
        Size of the shared arena: the byte budget of items sent but not yet written. An item
        larger than it grows it.
    compressors, metrics_every, metrics_interval_s, wake_bytes
        As for `RunWriter`. Metric records and stream batches are sent in bulk (per
        ``metrics_every`` items, ``wake_bytes`` or ``metrics_interval_s``, checked at each `put`),
        so a killed process loses at most those; metric tensors are converted to floats when sent.

    Raises
    ------
    WriterError
        The writer process could not start or open the store.
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
        self.metrics_every = int(metrics_every)
        self.metrics_interval_s = float(metrics_interval_s)
        self.wake_bytes = min(int(wake_bytes), self.max_bytes // 4)
        self.n_committed = 0
        self.last_step: int | None = None
        self.peak_bytes = 0
        self.wait_s = self.busy_s = self.cpu_s = 0.0
        self.bytes_written = 0
        self.n_wakeups = 0  # messages sent
        self.error: BaseException | None = None
        self._closed = False
        self._seq = 0
        self._done = -1  # highest message seq the child has answered (0: started)
        self._spans: collections.deque[tuple[int, int, int]] = collections.deque()  # seq, lo, hi
        self._head = 0
        self._metrics: list[list[Any]] = []
        self._stream: list[dict[str, Any]] = []
        self._stream_bytes = 0
        self._sent_at = time.monotonic()
        self._arena_fd = os.memfd_create("probe-writer-arena")
        os.ftruncate(self._arena_fd, self.max_bytes)
        self._arena = mmap.mmap(self._arena_fd, self.max_bytes)
        self._start(root, compressors)

    # ------------------------------------------------------------------ process
    def _start(self, root: zarr.Group, compressors: object) -> None:
        to_child, self._out = os.pipe()
        self._in, from_child = os.pipe()
        codecs = None if compressors is None else [c.to_dict() for c in compressors]  # type: ignore[attr-defined]
        cfg = {
            "root": str(root.store_path.store.root),  # type: ignore[attr-defined]
            "group": root.store_path.path,
            "arena_fd": self._arena_fd,
            "arena_size": self.max_bytes,
            "in_fd": to_child,
            "out_fd": from_child,
            "parent": os.getpid(),
            "compressors": codecs,
            "metrics_every": self.metrics_every,
            "metrics_interval_s": self.metrics_interval_s,
        }
        # The child imports this checkout's `hooks`, also when it is not installed.
        env = dict(os.environ)
        here = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "hooks._writer_child", json.dumps(cfg)],
            pass_fds=(self._arena_fd, to_child, from_child),
            env=env,
        )
        os.close(to_child)
        os.close(from_child)
        self._reader = _wire.Reader(self._in)
        self._wait_for(0, timeout=_START_TIMEOUT_S)
        if self.error is not None:
            self._release()
        self.check()

    @property
    def alive(self) -> bool:
        """Whether the writer process still takes items."""
        return not self._closed and self.error is None and self._proc.poll() is None

    # ------------------------------------------------------------------ producer side
    def put(self, item: object, nbytes: int = 0) -> None:
        """Hand ``item`` to the writer process; block while the arena is full of unwritten items."""
        t0 = time.perf_counter()
        if self._closed:
            msg = "the run's writer is closed; create a new Recorder (resume=True) to record more."
            raise RecorderClosedError(msg)
        self._poll()
        self.check()
        if isinstance(item, MetricRecord):
            values = {k: to_float(v) for k, v in item.values.items()}
            self._metrics.append([item.step, item.epoch, values])
        elif isinstance(item, StreamBatch):
            arrays = {**item.arrays, "stream/sample_id": item.sample_id.astype(np.int64)}
            self._stream.append(
                {
                    "step": item.step,
                    "arrays": self._store(arrays, item.ready),
                    "attrs": item.attrs,
                    "nbytes": nbytes,
                }
            )
            self._stream_bytes += nbytes
        elif isinstance(item, Snapshot):
            self._send_pending()  # keeps arena spans in the order the child answers them
            doc = {
                "step": item.step,
                "epoch": item.epoch,
                "wall_time": item.wall_time,
                "arrays": self._store(item.arrays, item.ready),
                "dims": {p: list(d) for p, d in item.dims.items()},
                "attrs": item.attrs,  # the arrays' layouts (JSON, as stored in zarr)
            }
            self._send({"kind": "snapshots", "items": [doc], "nbytes": nbytes}, spans=True)
        if (
            len(self._metrics) + len(self._stream) >= self.metrics_every
            or self._stream_bytes >= self.wake_bytes
            or time.monotonic() - self._sent_at > self.metrics_interval_s
        ):
            self._send_pending()
        self.wait_s += time.perf_counter() - t0

    def flush(self) -> None:
        """Block until every item handed over is written and committed."""
        if self.alive:
            self._send_pending()
            self._wait_for(self._send({"kind": "flush"}))
        self.check()

    def close(self) -> None:
        """Write everything handed over, commit the tails, stop the process; raise its error."""
        if self.alive:
            self._send_pending()
            self._wait_for(self._send({"kind": "close"}))
        self._release()
        self.check()

    def _release(self) -> None:
        """Stop the process (ending its input; killing it if it failed) and free the arena."""
        if self._closed:
            return
        self._closed = True
        os.close(self._out)
        if self.error is not None:
            self._proc.kill()  # it may hang; what it had committed stays committed
        self._proc.wait()
        os.close(self._in)
        self._arena.close()
        os.close(self._arena_fd)

    def check(self) -> None:
        """Raise `WriterError` if the writer process has failed."""
        if self.error is not None:
            raise writer_error(self.root, self.error, self.last_step, self.n_committed)

    # ------------------------------------------------------------------ internals
    def _store(self, arrays: dict[str, Any], ready: Any) -> list[dict[str, Any]]:
        """Copy ``arrays`` into one arena span; return their message entries."""
        if ready is not None:
            ready.synchronize()  # device-to-host copies must land before the copy into the arena
        sizes = [_aligned(a.nbytes) for a in arrays.values()]
        lo = self._alloc(sum(sizes))
        entries = []
        for (path, a), size in zip(arrays.items(), sizes, strict=True):
            entry = _wire.describe(path, a, lo)
            np.copyto(_wire.view(self._arena, entry), a)
            entries.append(entry)
            lo += size
        return entries

    def _alloc(self, n: int) -> int:
        """Return the arena offset of ``n`` free bytes, in FIFO order, waiting for the child.

        The used region runs from the oldest span's start to `_head`, possibly wrapping around
        the arena's end. A span is freed when the message that carries it is answered.
        """
        while True:
            if not self._spans:
                self._head = 0
                if n > len(self._arena):
                    self._grow(n)
            tail = self._spans[0][1] if self._spans else 0
            lo = None
            if not self._spans or self._head > tail:  # used: [tail, head)
                if self._head + n <= len(self._arena):
                    lo = self._head
                elif n <= tail:
                    lo = 0  # wrap around
            elif self._head + n <= tail:  # used: [tail, end) and [0, head)
                lo = self._head
            if lo is not None:
                self._head = lo + n
                self._spans.append((0, lo, self._head))  # seq 0: not sent yet
                used = sum(hi - s for _, s, hi in self._spans)
                self.peak_bytes = max(self.peak_bytes, used)
                return lo
            if self._spans[0][0] == 0:  # the oldest span is still waiting to be sent
                self._send_pending()
            self._wait_for(self._spans[0][0])
            self.check()

    def _grow(self, n: int) -> None:
        self._arena.close()
        size = -(-n // mmap.PAGESIZE) * mmap.PAGESIZE
        os.ftruncate(self._arena_fd, size)
        self._arena = mmap.mmap(self._arena_fd, size)

    def _send_pending(self) -> None:
        if self._stream:
            nbytes = sum(s.pop("nbytes") for s in self._stream)
            self._send({"kind": "stream", "items": self._stream, "nbytes": nbytes}, spans=True)
            self._stream, self._stream_bytes = [], 0
        if self._metrics:
            self._send({"kind": "metrics", "items": self._metrics})
            self._metrics = []
        self._sent_at = time.monotonic()

    def _send(self, doc: dict[str, Any], spans: bool = False) -> int:
        """Send ``doc``; with ``spans`` it carries every span not yet sent (freed on its answer)."""
        self._seq += 1
        if spans:
            self._spans = collections.deque(
                (seq or self._seq, lo, hi) for seq, lo, hi in self._spans
            )
        doc.update(seq=self._seq, arena_size=len(self._arena))
        try:
            _wire.send(self._out, doc)
        except OSError:  # the child is gone: its answer (or exit code) says why
            self._wait_for(self._seq)
        self.n_wakeups += 1
        return self._seq

    def _poll(self) -> None:
        """Take in the child's answers that have arrived, without blocking."""
        while not self._reader.eof and select.select([self._in], [], [], 0)[0]:
            self._answers(self._reader.read())

    def _wait_for(self, seq: int, timeout: float | None = None) -> None:
        """Block until the child has answered message ``seq``, failed or exited."""
        end = None if timeout is None else time.monotonic() + timeout
        while self._done < seq and self.error is None:
            if self._reader.eof:
                code = self._proc.wait()
                msg = f"the writer process exited with code {code}; its messages are above"
                self.error = ChildProcessError(msg)
                return
            left = 1.0 if end is None else min(1.0, end - time.monotonic())
            if left <= 0:
                self.error = TimeoutError(f"the writer process did not answer in {timeout:g} s")
                return
            if select.select([self._in], [], [], left)[0]:
                self._answers(self._reader.read())

    def _answers(self, docs: list[dict[str, Any]]) -> None:
        for doc in docs:
            if "error" in doc:
                self.error = OSError(doc["error"])
                continue
            self._done = max(self._done, doc["seq"])
            self.n_committed = doc["n_committed"]
            self.last_step = doc["last_step"]
            self.busy_s, self.cpu_s = doc["busy_s"], doc["cpu_s"]
            self.bytes_written = doc["bytes_written"]
            for category, text in doc.get("warnings", []):
                cls = NonFiniteWarning if category == NonFiniteWarning.__name__ else UserWarning
                warnings.warn(text, cls, stacklevel=4)
        while self._spans and self._spans[0][0] <= self._done:
            self._spans.popleft()


def make_writer(kind: str, root: zarr.Group, **options: Any) -> RunWriter | ProcessWriter:
    """Return the writer of ``kind`` ("thread" or "process", see `parse_writer`) for ``root``."""
    return ProcessWriter(root, **options) if kind == "process" else RunWriter(root, **options)


def _aligned(n: int) -> int:
    return max(64, -(-n // 64) * 64)  # 64-byte aligned arrays, as numpy allocates them
