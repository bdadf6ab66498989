"""Create a run store: checks of the place, the new run built aside and renamed into place.

Runs on the training thread before the writer thread starts, so the writer still owns every zarr
call made while recording.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy.typing as npt
import zarr

from hooks import schema
from hooks._lock import HOLDER_KEY, WriterLock, check_unlocked, holder_attrs
from hooks._run_attrs import read_root_attrs
from hooks._zarr_io import append_many, create_array, update_attributes
from hooks.errors import (
    HooksError,
    SchemaMismatchError,
    StoreCorruptError,
    StoreExistsError,
    StoreNotWritableError,
)


def is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def check_writable(path: Path) -> None:
    """Create ``path``'s parent folders and check that files can be written there.

    Raises
    ------
    StoreNotWritableError
        The folder cannot be created or written (read-only file system, permissions, a file in
        the way).
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-write-test-"):
            pass
    except OSError as err:
        msg = (
            f"store location {str(path)!r} must be a writable folder; "
            f"got {err.__class__.__name__}: "
            f"{err.strerror or err}. Choose another path (e.g. under artifacts/)."
        )
        raise StoreNotWritableError(msg) from err


def run_holder(path: Path) -> object:
    """Return the ``writer`` attrs (pid, host, start) of the run at ``path``, if readable."""
    try:
        return (read_root_attrs(path) or {}).get(HOLDER_KEY)
    except StoreCorruptError:
        return None


def create_run(
    path: Path,
    attrs: Mapping[str, Any],
    probe: Mapping[str, npt.NDArray[Any]],
    *,
    overwrite: bool,
    groups: tuple[str, ...] = (),
) -> tuple[zarr.Group, WriterLock]:
    """Create a new run store at ``path`` with its root attrs, the ``probe/`` group and ``groups``.

    The store appears at ``path`` complete and already locked for this process, in one rename.
    Call it under `creating` of the parent folder (`open_locked` does).

    Raises
    ------
    SchemaMismatchError
        ``path`` holds something that is not a probe run.
    StoreExistsError
        ``path`` holds a run and ``overwrite`` is False.
    StoreLockedError
        ``overwrite`` of a run (or a rank group of it) that a live process still writes.
    StoreNotWritableError
        The folder is not writable, or writing the new store failed (e.g. the disk is full).
    """
    if path.exists() and not is_empty_dir(path):
        existing = read_root_attrs(path)
        if existing is None or existing.get("schema") != schema.SCHEMA:
            msg = (
                f"store path {str(path)!r} exists and is not a probe run; "
                "refusing to write into it. "
                "Choose a new path or delete it yourself."
            )
            raise SchemaMismatchError(msg)
        if not overwrite:
            msg = (
                f"store path {str(path)!r} already holds a run; pass resume=True to continue it "
                "or overwrite=True to replace it."
            )
            raise StoreExistsError(msg)
        # Never delete a run that is being written: check its lock and every rank group's.
        check_unlocked(path, existing.get(HOLDER_KEY))
        ranks = path / schema.RANKS
        for sub in sorted(ranks.iterdir()) if ranks.is_dir() else ():
            if sub.is_dir():
                check_unlocked(sub, run_holder(sub))
        shutil.rmtree(path)
    check_writable(path.parent)
    # Build the store under a temporary name and rename it into place (atomic on one file
    # system): a process killed while creating leaves no half-made run at ``path``.
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.creating-", dir=path.parent))
    except OSError as err:
        raise store_write_failed(path, err) from err
    lock = None
    try:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=3)  # remakes the folder
        lock = WriterLock.acquire(tmp)  # the folder keeps its inode, and the lock, in the rename
        root.attrs.update(schema.to_json({**attrs, HOLDER_KEY: holder_attrs()}))
        for name in groups:
            root.require_group(name)
        group = root.require_group(schema.PROBE)
        manifest = {}
        for name, a in probe.items():
            rows = schema.rows_per_chunk(a.shape[1:], a.dtype.itemsize, a.shape[0])
            arr = create_array(
                group,
                name,
                shape=(0, *a.shape[1:]),
                chunks=(rows, *a.shape[1:]),
                dtype=a.dtype,
                compressors=None,
                dims=schema.array_dims(f"probe/{name}", ("sample",), a.ndim - 1),
            )
            append_many([(arr, a)])
            manifest[f"{schema.PROBE}/{name}"] = schema.metadata_digest(arr.metadata.to_dict())
        state = {**root.attrs, schema.MANIFEST: manifest}
        update_attributes(
            root, {schema.MANIFEST: manifest, schema.COMMIT_DIGEST: schema.commit_digest(state)}
        )
        if path.exists():
            path.rmdir()  # an empty folder the user made
        tmp.rename(path)
        lock.path = path
    except BaseException as err:
        if lock is not None:
            lock.release()
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError) and not isinstance(err, HooksError):
            raise store_write_failed(path, err) from err
        raise
    return zarr.open_group(str(path), mode="r+"), lock


def store_write_failed(
    path: Path, err: OSError, *, resuming: bool = False
) -> StoreNotWritableError:
    """Return the error for a store that could not be created or reopened (e.g. disk full)."""
    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:.1f} MiB free there"
    except OSError:
        free = "free space unknown"
    if resuming:
        msg = (
            f"resuming the run at {str(path)!r} failed: {err.strerror or err} ({free}); its "
            "committed snapshots are intact. Free disk space, then create the Recorder again "
            "with resume=True."
        )
    else:
        msg = (
            f"creating the run store at {str(path)!r} failed: {err.strerror or err} ({free}); "
            "nothing was left at that path. Free disk space or choose another path, then create "
            "the Recorder again."
        )
    return StoreNotWritableError(msg)


def store_path(store: str | os.PathLike[str]) -> Path:
    """Return the store argument as a `Path` (local folders only in schema v1)."""
    return Path(os.fspath(store)).expanduser()
