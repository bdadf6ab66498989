"""Open a run for writing: create it, or reopen it with ``resume``, under the writer lock."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy.typing as npt
import zarr

from hooks._lock import WriterLock, creating
from hooks._resume import reopen_run
from hooks._store import check_writable, create_run, is_empty_dir, run_holder


def open_locked(
    path: Path,
    attrs: Mapping[str, Any],
    probe: Mapping[str, npt.NDArray[Any]],
    *,
    resume: bool,
    overwrite: bool,
    groups: tuple[str, ...] = (),
) -> tuple[zarr.Group, bool, WriterLock]:
    """Create the run at ``path``, or reopen it with ``resume``; return it locked for writing.

    Deciding and creating happen under a lock of the parent folder, so two processes starting
    at the same instant take turns: the second finds the first's run (and its writer lock).

    Returns
    -------
    group : zarr.Group
        The run's root group, opened for writing.
    resumed : bool
        Whether an existing run was reopened.
    lock : WriterLock
        This process's writer lock on the run; release it when done.

    Raises
    ------
    StoreLockedError
        Another live process writes the run (with ``resume`` or ``overwrite``).
    StoreExistsError, SchemaMismatchError, ResumeMismatchError, StoreCorruptError
        See `create_run` and `reopen_run`.
    """
    check_writable(path.parent)
    with creating(path.parent):
        if resume and path.exists() and not is_empty_dir(path):
            lock = WriterLock.acquire(path, run_holder(path))
            try:
                return reopen_run(path, attrs), True, lock
            except BaseException:
                lock.release()
                raise
        group, lock = create_run(path, attrs, probe, overwrite=overwrite, groups=groups)
        return group, False, lock
