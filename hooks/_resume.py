"""Reopen a run for `resume`: validate it, check its counters against its data, trim to them.

Rows past the commit counters (a snapshot a killed writer had started), arrays it created but
never committed, and the ``*.partial`` files of interrupted writes are removed, but only once the
counters agree with the data on disk.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from hooks import schema
from hooks._lock import HOLDER_KEY, holder_attrs
from hooks._run_attrs import mismatch, read_root_attrs
from hooks._store import check_writable, store_write_failed
from hooks._zarr_io import remove_partials, trim, update_attributes
from hooks.errors import ResumeMismatchError, SchemaMismatchError, StoreCorruptError


def _remove_partials(path: Path) -> None:
    """Delete stray ``*.partial`` files, except in the rank groups (their own ranks clean them)."""
    for p in path.iterdir():
        if p.is_dir() and p.name != schema.RANKS:
            remove_partials(p)
        elif p.name.endswith(".partial"):
            p.unlink(missing_ok=True)


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
                "closed_utc": None,  # recording again: readers must not see it closed
                "n_resumes": int(attrs.get("n_resumes", 0)) + 1,
                HOLDER_KEY: holder_attrs(),
            },
        )
    except OSError as err:  # e.g. the disk is full: trimming and the attrs write are atomic
        raise store_write_failed(path, err, resuming=True) from err
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
