"""One writer per run: an exclusive OS lock on the run's folder, held for the Recorder's life.

The lock is `flock` on the run's directory itself (no lock file, so zarr and xarray see nothing
new in the store). The kernel releases it when the holding process dies, so a crashed run stays
resumable, and a second writer (new, ``resume`` or ``overwrite``) is refused while the first one
lives. Who holds it is written to the run's root attrs (``writer``: pid, host, start time) so the
refusal can say so. Creating a run takes a short lock on the parent folder, so two Recorders
started at the same instant on one path are serialised: one creates the run, the other is told
it exists (or resumes it after the first closes).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hooks.errors import StoreLockedError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are then not protected against a second writer
    fcntl = None  # type: ignore[assignment]

__all__ = ["HOLDER_KEY", "WriterLock", "check_unlocked", "creating", "holder_attrs"]

HOLDER_KEY = "writer"
_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def holder_attrs() -> dict[str, Any]:
    """Return who writes the run: this process's pid, host and the time it took the lock."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _open_dir(path: Path) -> int:
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
    return os.open(path, flags)


def _flock(fd: int, blocking: bool) -> bool:
    """Lock ``fd`` exclusively; return False when another process holds it (non-blocking)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        if err.errno in _UNSUPPORTED:
            msg = (
                f"this file system does not support locks ({err.strerror}); a second Recorder "
                "on the same store would not be refused. Record to a local disk to be safe."
            )
            warnings.warn(msg, UserWarning, stacklevel=4)
            return True
        raise
    return True


class WriterLock:
    """An exclusive lock on one run folder (the run root or one rank group).

    Use `acquire`; `release` (idempotent) or process exit frees it.
    """

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: Path, holder: object = None) -> WriterLock:
        """Lock the run folder ``path`` for this process, or raise if another process holds it.

        Parameters
        ----------
        path : Path
            The run's (or rank group's) folder.
        holder : dict, optional
            The run's ``writer`` attrs (pid, host, start), named in the error message.

        Raises
        ------
        StoreLockedError
            Another live process writes this run.
        """
        if fcntl is None:  # no flock here (Windows): nothing to hold, a second writer goes unseen
            return cls(path, None)
        fd = _open_dir(path)
        if _flock(fd, blocking=False):
            return cls(path, fd)
        os.close(fd)
        raise StoreLockedError(_locked_message(path, holder))

    @property
    def held(self) -> bool:
        """Whether this object still holds the lock."""
        return self._fd is not None

    def release(self) -> None:
        """Free the lock (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor releases the flock

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.release()


def check_unlocked(path: Path, holder: object = None) -> None:
    """Raise `StoreLockedError` if a live process holds the lock of the run folder ``path``."""
    WriterLock.acquire(path, holder).release()


@contextlib.contextmanager
def creating(parent: Path) -> Iterator[None]:
    """Serialise the creation, overwrite or reopening of runs inside the folder ``parent``.

    A blocking lock on the parent folder, held for milliseconds: two processes that start a
    Recorder on the same path at the same instant take turns instead of racing on the rename.
    """
    if fcntl is None:
        yield
        return
    fd = _open_dir(parent)
    try:
        _flock(fd, blocking=True)
        yield
    finally:
        os.close(fd)


def _locked_message(path: Path, holder: object) -> str:
    who = "another process"
    if isinstance(holder, dict):
        who = (
            f"process {holder.get('pid', '?')} on host {holder.get('host', '?')} "
            f"(since {holder.get('started_utc', '?')})"
        )
    return (
        f"the run at {str(path)!r} is being written by {who}, which holds its writer lock; "
        "a second Recorder (new, resume=True or overwrite=True) would corrupt it. Wait for that "
        "process to finish (or stop it: a dead process frees the lock, and the run can then be "
        "resumed), or record into another store."
    )
