"""The writer process: appends what the training process sends to the run, one message at a time.

Started by `hooks._writer_process.ProcessWriter` as ``python -m hooks._writer_child CONFIG``. It
imports no torch and shares no GIL with training. Messages (`hooks._wire`) name arrays in a shared
memory arena; each is answered with the run's counters once written, so the sender may reuse its
arena space, or with the error that stopped the writer. It dies with the training process (a
watcher thread on the parent's pidfd; also on end of input), like the writer thread it replaces:
the data-first commit keeps the store consistent wherever it stops.
"""

from __future__ import annotations

import json
import mmap
import os
import select
import signal
import sys
import threading
import time
import warnings
from typing import Any

import zarr

from hooks import _wire
from hooks._appender import RunAppender
from hooks._items import MetricRecord, Snapshot, StreamBatch


def _die_with_parent(parent: int) -> None:
    """Exit as soon as the process ``parent`` ends, whichever of its threads started us.

    Not ``PR_SET_PDEATHSIG``: Linux sends that when the *thread* that forked us exits, so a
    Recorder made in a short-lived thread would lose its writer. End of input is no substitute:
    processes forked from the parent (data-loader workers) may hold the pipe open.
    """

    def watch() -> None:
        try:
            fd = os.pidfd_open(parent)  # Linux >= 5.3: readable once the process has ended
        except (AttributeError, OSError):  # older kernel, or the parent is already gone
            while os.getppid() == parent:
                time.sleep(0.2)
        else:
            if os.getppid() == parent:  # not reparented: the pidfd names our parent, not a reuse
                select.select([fd], [], [])
        os._exit(0)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def _compressors(spec: list[dict[str, Any]] | None) -> object:
    if spec is None:
        return None
    from zarr.registry import get_codec_class

    return tuple(get_codec_class(d["name"]).from_dict(d) for d in spec)


class _Child:
    def __init__(self, cfg: dict[str, Any]) -> None:
        root = zarr.open_group(cfg["root"], path=cfg["group"], mode="r+")
        self.store = RunAppender(
            root,
            compressors=_compressors(cfg["compressors"]),
            metrics_every=cfg["metrics_every"],
            metrics_interval_s=cfg["metrics_interval_s"],
        )
        self.arena_fd = cfg["arena_fd"]
        self.arena = mmap.mmap(self.arena_fd, cfg["arena_size"])
        self.busy_s = self.cpu_s = 0.0
        self.bytes_written = 0

    def handle(self, msg: dict[str, Any]) -> bool:
        """Carry out one message; return False after ``close``."""
        if msg.get("arena_size", len(self.arena)) != len(self.arena):  # the sender grew it
            self.arena.close()
            self.arena = mmap.mmap(self.arena_fd, msg["arena_size"])
        kind = msg["kind"]
        if kind == "snapshots":
            batch = [
                Snapshot(
                    s["step"],
                    s["epoch"],
                    s["wall_time"],
                    {e["path"]: _wire.view(self.arena, e) for e in s["arrays"]},
                    {p: tuple(d) for p, d in s["dims"].items()},
                    attrs=s.get("attrs", {}),
                )
                for s in msg["items"]
            ]
            self.store.write_snapshots(batch)
        elif kind == "stream":
            for s in msg["items"]:  # copied out: rows wait in the buffer for a whole chunk
                arrays = {e["path"]: _wire.view(self.arena, e).copy() for e in s["arrays"]}
                ids = arrays.pop("stream/sample_id")
                self.store.add_stream(StreamBatch(s["step"], ids, arrays, attrs=s.get("attrs", {})))
        elif kind == "metrics":
            self.store.add_metrics([MetricRecord(*r) for r in msg["items"]])
            self.store.write_metrics_if_due()
        elif kind in ("flush", "close"):
            self.store.write_tails(final=kind == "close")
        self.bytes_written += msg.get("nbytes", 0)
        return kind != "close"

    def counters(self) -> dict[str, Any]:
        s = self.store
        return {
            "n_committed": s.n_committed,
            "last_step": s.last_step,
            "busy_s": self.busy_s,
            "cpu_s": self.cpu_s,
            "bytes_written": self.bytes_written,
        }


def main(cfg: dict[str, Any]) -> None:
    """Serve the messages of ``cfg["in_fd"]`` and answer on ``cfg["out_fd"]`` until close."""
    _die_with_parent(cfg["parent"])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the training process
    out = cfg["out_fd"]
    try:
        child = _Child(cfg)
    except Exception as exc:  # noqa: BLE001 - reported to the training process
        _wire.send(out, {"seq": 0, "error": f"{type(exc).__name__}: {exc}"})
        return
    _wire.send(out, {"seq": 0, **child.counters()})
    reader = _wire.Reader(cfg["in_fd"])
    while not reader.eof:
        for msg in reader.read():
            t0, c0 = time.perf_counter(), time.process_time()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    going = child.handle(msg)
                except Exception as exc:  # noqa: BLE001 - reported to the training process
                    _wire.send(out, {"seq": msg["seq"], "error": f"{type(exc).__name__}: {exc}"})
                    return
            child.busy_s += time.perf_counter() - t0
            child.cpu_s += time.process_time() - c0
            said = [[w.category.__name__, str(w.message)] for w in caught]
            _wire.send(out, {"seq": msg["seq"], **child.counters(), "warnings": said})
            if not going:  # every file is written and closed: skip the interpreter's teardown
                sys.stderr.flush()  # (~60 ms, which the training process would wait for)
                os._exit(0)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
