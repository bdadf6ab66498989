"""Create a run store, or reopen one for `resume`: root attrs, validation, trimming to counters.

Runs on the training thread before the writer thread starts, so the writer still owns every zarr
call made while recording.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import zarr

from hooks import schema
from hooks._lock import HOLDER_KEY, WriterLock, check_unlocked, creating, holder_attrs
from hooks._options import toolkit_version
from hooks._probe_set import ProbeSet
from hooks._zarr_io import append_many, create_array, remove_partials, trim, update_attributes
from hooks.errors import (
    HooksError,
    ResumeMismatchError,
    SchemaMismatchError,
    StoreCorruptError,
    StoreExistsError,
    StoreNotWritableError,
)


def probe_digest(inputs: npt.NDArray[Any]) -> str:
    """Return a SHA-256 of the probe inputs (dtype, shape and bytes), to check them on resume."""
    h = hashlib.sha256(f"{inputs.dtype.str}{inputs.shape}".encode())
    h.update(np.ascontiguousarray(inputs).data)
    return h.hexdigest()


# Root attrs that must agree between a run and a Recorder resuming it (or another rank of it):
# a resumed run that starts recording weights or AGOPs would have no rows for earlier snapshots.
SAME_RUN_KEYS = (
    "layers",
    "n_samples",
    "dtype",
    "probe_sha256",
    schema.WORLD_SIZE,
    "weights",
    "agop",
)


def probe_attrs(probe: ProbeSet | None) -> dict[str, Any]:
    """Return the attrs that identify a probe set: its size and the digest of its inputs."""
    return {
        "n_samples": probe.n_samples if probe else 0,
        "probe_sha256": probe_digest(probe.inputs.detach().cpu().numpy()) if probe else None,
    }


def run_attrs(
    *,
    model_class: str,
    layers: list[str],
    probe: ProbeSet | None,
    dtype: torch.dtype,
    weights: bool,
    agop: list[str],
    config: Mapping[str, Any] | None,
    seed: int | None,
    estimate: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the root attrs of a new run (schema, versions, settings, zeroed commit counters).

    ``estimate`` is the pre-flight size estimate (`hooks._estimate.Estimate.attrs`; None
    without a probe set).
    """
    return {
        "schema": schema.SCHEMA,
        "schema_version": schema.SCHEMA_VERSION,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "toolkit_version": toolkit_version(),
        "torch_version": torch.__version__,
        "model_class": model_class,
        "config": dict(config or {}),
        "seed": seed,
        "layers": layers,
        **probe_attrs(probe),
        "dtype": str(dtype).removeprefix("torch."),
        "weights": weights,
        "agop": agop,
        "estimate": dict(estimate) if estimate is not None else None,
        schema.N_COMMITTED: 0,
        schema.N_METRIC_RECORDS: 0,
        schema.N_STREAM_ROWS: 0,
    }


def mismatch(stored: Mapping[str, Any], expected: Mapping[str, Any]) -> tuple[str, Any, Any] | None:
    """Return the first of `SAME_RUN_KEYS` on which two runs' attrs differ, with both values."""
    a: Any
    b: Any
    for key in SAME_RUN_KEYS:
        if key == schema.WORLD_SIZE:
            a, b = schema.world_size(stored), schema.world_size(expected)
        else:
            a, b = stored.get(key), expected.get(key)
        if a != b:
            return key, a, b
    return None


def _remove_partials(path: Path) -> None:
    """Delete stray ``*.partial`` files, except in the rank groups (their own ranks clean them)."""
    for p in path.iterdir():
        if p.is_dir() and p.name != schema.RANKS:
            remove_partials(p)
        elif p.name.endswith(".partial"):
            p.unlink(missing_ok=True)


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def read_root_attrs(path: Path) -> dict[str, Any] | None:
    """Return the root attrs of the zarr group at ``path``, or None when it is not a zarr v3 group.

    Raises
    ------
    StoreCorruptError
        ``zarr.json`` exists but is not valid JSON.
    """
    meta = path / "zarr.json"
    if not meta.is_file():
        return None
    try:
        doc = json.loads(meta.read_text())
    except (OSError, ValueError) as err:
        msg = f"{meta} cannot be parsed ({err}); the store's metadata is corrupted."
        raise StoreCorruptError(msg) from err
    if not isinstance(doc, dict) or doc.get("node_type") != "group":
        return None
    attrs = doc.get("attributes", {})
    return attrs if isinstance(attrs, dict) else None


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
        if resume and path.exists() and not _is_empty_dir(path):
            lock = WriterLock.acquire(path, _holder(path))
            try:
                return reopen_run(path, attrs), True, lock
            except BaseException:
                lock.release()
                raise
        group, lock = create_run(path, attrs, probe, overwrite=overwrite, groups=groups)
        return group, False, lock


def _holder(path: Path) -> object:
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
    if path.exists() and not _is_empty_dir(path):
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
                check_unlocked(sub, _holder(sub))
        shutil.rmtree(path)
    check_writable(path.parent)
    # Build the store under a temporary name and rename it into place (atomic on one file
    # system): a process killed while creating leaves no half-made run at ``path``.
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.creating-", dir=path.parent))
    except OSError as err:
        raise _creation_failed(path, err) from err
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
            raise _creation_failed(path, err) from err
        raise
    return zarr.open_group(str(path), mode="r+"), lock


def _creation_failed(path: Path, err: OSError, *, resuming: bool = False) -> StoreNotWritableError:
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


def reopen_run(path: Path, expected: Mapping[str, Any]) -> zarr.Group:
    """Open an existing run for appending: validate it against ``expected``, trim uncommitted rows.

    The caller holds the run's writer lock (`open_locked`). Rows past the commit counters (a
    snapshot a killed writer had started) are removed, as are the ``*.partial`` temp files of
    interrupted atomic writes, but only once the counters agree with the data on disk.

    Raises
    ------
    SchemaMismatchError
        The path is not a run of this schema version.
    ResumeMismatchError
        The run was recorded with other layers, probe inputs, dtype, recorded extras or number
        of processes.
    StoreCorruptError
        Its metadata cannot be parsed, or its counters contradict its arrays (`probe verify`
        tells what is wrong).
    StoreNotWritableError
        Reopening failed on the file system (e.g. the disk is full).
    """
    attrs = read_root_attrs(path)
    if attrs is None:
        msg = (
            f"store path {str(path)!r} is not a probe run (no zarr group metadata); "
            "cannot resume it."
        )
        raise SchemaMismatchError(msg)
    problem = schema.check_root_attrs(attrs)
    if problem:
        msg = f"store path {str(path)!r} cannot be resumed: {problem}."
        raise SchemaMismatchError(msg)
    diff = mismatch(attrs, expected)
    if diff:
        key, stored, wanted = diff
        msg = (
            f"resume=True needs the run's {key} to match; the store has {stored!r}, "
            f"this Recorder has {wanted!r}. Record into a new store instead."
        )
        raise ResumeMismatchError(msg)
    check_writable(path)
    want = attrs.get(schema.COMMIT_DIGEST)
    if want is not None and schema.commit_digest(attrs) != want:
        msg = (
            f"store path {str(path)!r} cannot be resumed: its commit counters do not match "
            "their digest (they were damaged or edited), so trimming to them could destroy "
            f"committed rows. Run `probe verify {path}`, and record into a new store."
        )
        raise StoreCorruptError(msg)
    root = zarr.open_group(str(path), mode="r+")
    counters = {
        schema.SNAPSHOTS: attrs[schema.N_COMMITTED],
        schema.LAYERS: attrs[schema.N_COMMITTED],
        schema.OUTPUTS: attrs[schema.N_COMMITTED],
        schema.METRICS: attrs.get(schema.N_METRIC_RECORDS, 0),
        schema.STREAM: attrs.get(schema.N_STREAM_ROWS, 0),
    }
    arrays = [
        (member, node, counters[member.split("/", 1)[0]])
        for member, node in root.members(max_depth=None)
        if isinstance(node, zarr.Array) and member.split("/", 1)[0] in counters
    ]
    manifest = attrs.get(schema.MANIFEST)
    uncommitted: list[str] = []
    if manifest is not None:  # arrays a killed writer created but never committed: redo them
        uncommitted = [m for m, _, _ in arrays if m not in manifest]
        arrays = [a for a in arrays if a[0] in manifest]
    problem = counters_problem(root, attrs, {m: (n.shape[0], c) for m, n, c in arrays})
    if problem:  # trimming would destroy committed rows for good: refuse instead
        msg = (
            f"store path {str(path)!r} cannot be resumed: {problem}. The store is damaged; "
            f"run `probe verify {path}` to see what is wrong, and record into a new store."
        )
        raise StoreCorruptError(msg)
    try:
        _remove_partials(path)
        for member in uncommitted:
            shutil.rmtree(path / member)
        for _, node, n in arrays:
            trim(node, n)
        update_attributes(
            root,
            {
                "resumed_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "n_resumes": int(attrs.get("n_resumes", 0)) + 1,
                HOLDER_KEY: holder_attrs(),
            },
        )
    except OSError as err:  # e.g. the disk is full: trimming and the attrs write are atomic
        raise _creation_failed(path, err, resuming=True) from err
    return root


def counters_problem(
    root: zarr.Group, attrs: Mapping[str, Any], rows: Mapping[str, tuple[int, int]]
) -> str | None:
    """Return why a run's commit counters contradict its arrays, or None when they agree.

    Parameters
    ----------
    root : zarr.Group
        The run's root group.
    attrs : mapping
        Its root attrs.
    rows : mapping of str to (int, int)
        For each array path: its stored rows and the rows its counter says are committed.
    """
    for member, (n_rows, n) in rows.items():
        if n_rows < n:
            return (
                f"array {member!r} has {n_rows} rows but the run's counters say {n} were committed"
            )
    n = attrs[schema.N_COMMITTED]
    last = attrs.get("last_step")
    if n and last is not None:
        key = f"{schema.SNAPSHOTS}/step"
        if key not in root:
            return f"{schema.N_COMMITTED}={n} but the run has no {key!r} array"
        try:
            step = _row_int(root, key, n - 1)
        except Exception as err:  # noqa: BLE001 - a damaged chunk: reported, not raised raw
            return f"the step of snapshot {n - 1} cannot be read ({err})"
        if step != last:
            return (
                f"{schema.N_COMMITTED}={n} says the last committed snapshot is at step {step}, "
                f"but last_step={last}: the counters were changed after the commit"
            )
    return None


def store_path(store: str | os.PathLike[str]) -> Path:
    """Return the store argument as a `Path` (local folders only in schema v1)."""
    return Path(os.fspath(store)).expanduser()


def _row_int(root: zarr.Group, key: str, i: int) -> int:
    """Return row ``i`` of the 1-d integer array ``key`` of ``root`` as an int."""
    arr = root[key]
    if not isinstance(arr, zarr.Array):
        msg = f"{key!r} of the run is a group, not an array; the store is damaged."
        raise StoreCorruptError(msg)
    return int(np.asarray(arr[i]))


def _count(root: zarr.Group, key: str) -> int:
    """Return the commit counter ``key`` of the root attrs (0 when absent)."""
    value = root.attrs.get(key, 0)
    return int(value) if isinstance(value, (int, float)) else 0


def last_metric_step(root: zarr.Group) -> int:
    """Return the step of the last committed metric record (0 if none)."""
    n = _count(root, schema.N_METRIC_RECORDS)
    if n and f"{schema.METRICS}/step" in root:
        return _row_int(root, f"{schema.METRICS}/step", n - 1)
    return 0


def last_epoch(root: zarr.Group) -> int:
    """Return the epoch of the last committed snapshot (0 if none)."""
    n = _count(root, schema.N_COMMITTED)
    if n and f"{schema.SNAPSHOTS}/epoch" in root:
        return _row_int(root, f"{schema.SNAPSHOTS}/epoch", n - 1)
    return 0
