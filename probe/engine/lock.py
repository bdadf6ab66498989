"""One execution of a task at a time in its folder: an exclusive `flock` held while it runs.

A task rescheduled after its worker was lost can start while the first execution still runs
(a worker cut off from the scheduler but alive, or a task left running by a killed client).
Both would write the same folder; `folder_lock` makes the second wait for the first, so that
it can then see the first one's result instead of redoing it. The kernel frees the lock when
its process dies; on NFS, Linux maps `flock` to POSIX locks, which the server frees when the
client host is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from probe.errors import EngineError

__all__ = ["LOCK_NAME", "folder_lock"]

#: The lock file in the task's folder; it holds who took the lock (JSON: pid, host, time).
LOCK_NAME = ".task.lock"


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown holder"
    except OSError:
        return "unknown holder"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str], *, wait_s: float = 600.0) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (created if missing) for the ``with`` block.

    Parameters
    ----------
    folder : str or path
        The task's folder; the lock file is ``folder/.task.lock``.
    wait_s : float, default 600
        Seconds to wait while another process holds the lock.

    Yields
    ------
    None

    Raises
    ------
    EngineError
        Another process held the lock for more than ``wait_s`` seconds; the message names it.
    """
    path = Path(folder) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    msg = (
                        f"{path.parent} is still being written by another execution of the "
                        f"same task ({_holder(path)}) after {wait_s:g} s. Wait for it or stop "
                        "that process, then run again."
                    )
                    raise EngineError(msg) from None
                time.sleep(min(0.5, wait_s / 10))
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since_unix": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the last descriptor frees the flock
