"""`verify_run`: read every committed chunk of a run and check it against what the writer wrote.

`probe.open_run` checks what it reads (checksums, presence, metadata) as it reads it; this walks
the whole run once, so damage anywhere is found before an analysis trips on it, and lists every
problem instead of stopping at the first. `probe verify RUN` is its command line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from hooks import schema
from probe.errors import CorruptRunError, ProbeError
from probe.store._run_attrs import read_run_attrs
from probe.store.checked_store import CheckedLocalStore

__all__ = ["VerifyReport", "verify_run"]

# Rows read at once (whole chunks): bounds memory on runs of many GB.
_BLOCK_BYTES = 64 << 20
_INT_ARRAYS = {
    f"{schema.SNAPSHOTS}/step": "int64",
    f"{schema.SNAPSHOTS}/epoch": "int64",
    f"{schema.SNAPSHOTS}/wall_time": "float64",
    f"{schema.METRICS}/step": "int64",
    f"{schema.METRICS}/epoch": "int64",
    f"{schema.STREAM}/step": "int64",
    f"{schema.STREAM}/sample_id": "int64",
}


@dataclass
class VerifyReport:
    """What `verify_run` checked and found.

    Attributes
    ----------
    path : str
        The run's folder.
    problems : list of str
        One line per problem found (empty: the run is intact).
    notes : list of str
        What could not be checked (e.g. arrays written before checksums existed).
    n_arrays, n_chunks, n_bytes : int
        Arrays, chunk files and committed bytes read.
    """

    path: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    n_arrays: int = 0
    n_chunks: int = 0
    n_bytes: int = 0

    @property
    def ok(self) -> bool:
        """Whether no problem was found."""
        return not self.problems

    def __str__(self) -> str:
        head = (
            f"{self.path}: {self.n_arrays} arrays, {self.n_chunks} chunks, "
            f"{self.n_bytes / 1e6:.1f} MB read: "
        )
        lines = [head + ("intact" if self.ok else f"{len(self.problems)} problem(s)")]
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def verify_run(path: str | os.PathLike[str], *, progress: bool = False) -> VerifyReport:
    """Check a whole run store: every committed chunk, every array's metadata, the counters.

    Parameters
    ----------
    path : str or path
        A run folder written by `hooks.Recorder` (a multi-process run: its root).
    progress : bool
        Show a progress bar over the arrays.

    Returns
    -------
    VerifyReport
        ``report.ok`` is True when nothing is wrong; ``report.problems`` lists what is.

    Notes
    -----
    Checked: each chunk of each committed row exists and matches its crc32c; each array the
    writer created exists with the dtype, byte order, codecs and chunks it was created with;
    arrays hold at least their committed rows; ``last_step`` equals the step of the last
    committed snapshot; snapshot steps increase; the fixed dtypes of steps, epochs and ids.
    Raises only when ``path`` is not a run at all (`probe.open_run`'s errors other than
    `CorruptRunError`, which is reported).
    """
    root = Path(os.fspath(path)).expanduser()
    report = VerifyReport(str(root))
    try:
        attrs = read_run_attrs(root)
    except CorruptRunError as err:  # damaged root attrs: nothing else can be trusted
        report.problems.append(str(err))
        return report
    groups = [(root, attrs)]
    if schema.is_multi_rank_root(attrs):
        for r in range(schema.world_size(attrs)):
            sub = root / schema.rank_group(r)
            try:
                groups.append((sub, read_run_attrs(sub)))
            except ProbeError as err:
                report.problems.append(f"rank {r}: {err}")
    items = [(g, a, name, node) for g, a in groups for name, node in _arrays(g)]
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc="verify", unit="array")
    for group, group_attrs in groups:
        _check_group(group, group_attrs, report)
    for _, group_attrs, name, node in items:
        _check_array(group_attrs, name, node, report)
    return report


def _arrays(group: Path) -> Iterator[tuple[str, zarr.Array[Any] | Exception]]:
    """Yield (path, array) of one group's arrays (not its rank groups'); unreadable: the error."""
    store = CheckedLocalStore(group)
    for meta in sorted(group.rglob("zarr.json")):
        rel = meta.parent.relative_to(group).as_posix()
        if rel == "." or rel.split("/", 1)[0] == schema.RANKS:
            continue
        try:
            node = zarr.open(store, path=rel, mode="r", zarr_format=3)
        except Exception as err:  # noqa: BLE001 - reported as a problem of that array
            yield rel, err
            continue
        if isinstance(node, zarr.Array):
            yield rel, node


def _label(attrs: dict[str, Any]) -> str:
    rank = attrs.get(schema.RANK)
    return "" if rank is None else f"rank {rank}: "


def _check_group(group: Path, attrs: dict[str, Any], report: VerifyReport) -> None:
    """Counters against the data; arrays the writer created must all be there."""
    label = _label(attrs)
    for p in sorted(attrs.get(schema.MANIFEST, {})):
        if not (group / p / "zarr.json").is_file():
            report.problems.append(f"{label}array {p!r} was written but is missing")
    if schema.MANIFEST not in attrs:
        report.notes.append(
            f"{label}no array manifest (written before checksums): metadata not checked"
        )
    n = attrs[schema.N_COMMITTED]
    if not n or schema.is_multi_rank_root(attrs):
        return
    try:
        arr = zarr.open_array(CheckedLocalStore(group), path=f"{schema.SNAPSHOTS}/step", mode="r")
        steps = np.asarray(arr[:n])
    except Exception as err:  # noqa: BLE001 - the array's own check names the damage
        report.problems.append(f"{label}snapshot steps cannot be read ({err})")
        return
    if steps.size < n:
        report.problems.append(f"{label}n_committed={n} but only {steps.size} snapshot steps")
        return
    if np.any(np.diff(steps) <= 0):
        report.problems.append(f"{label}snapshot steps do not increase: {steps.tolist()[:20]}")
    last = attrs.get("last_step")
    if last is not None and int(steps[-1]) != last:
        report.problems.append(
            f"{label}last_step={last} but snapshot {n - 1} (the last of n_committed={n}) is at "
            f"step {int(steps[-1])}: the counters were changed after the commit"
        )


def _committed_rows(name: str, node: zarr.Array[Any], attrs: dict[str, Any]) -> int:
    top = name.split("/", 1)[0]
    n = {
        schema.SNAPSHOTS: attrs[schema.N_COMMITTED],
        schema.LAYERS: attrs[schema.N_COMMITTED],
        schema.OUTPUTS: attrs[schema.N_COMMITTED],
        schema.METRICS: attrs.get(schema.N_METRIC_RECORDS, 0),
        schema.STREAM: attrs.get(schema.N_STREAM_ROWS, 0),
    }.get(top)
    return node.shape[0] if n is None and node.shape else int(n or 0)


def _check_array(
    attrs: dict[str, Any],
    name: str,
    node: zarr.Array[Any] | Exception,
    report: VerifyReport,
) -> None:
    """One array: metadata against the manifest and schema, then every committed chunk."""
    label = _label(attrs)
    if isinstance(node, Exception):
        report.problems.append(f"{label}array {name!r} cannot be opened ({node})")
        return
    report.n_arrays += 1
    manifest = attrs.get(schema.MANIFEST)
    if manifest is not None:
        want = manifest.get(name)
        got = schema.metadata_digest(node.metadata.to_dict())
        if want is not None and got != want:
            report.problems.append(
                f"{label}array {name!r}: metadata (dtype, byte order, codecs or chunks) differs "
                "from what the writer created"
            )
            return
    if name in _INT_ARRAYS and str(node.dtype) != _INT_ARRAYS[name]:
        report.problems.append(
            f"{label}array {name!r} has dtype {node.dtype}; the schema says {_INT_ARRAYS[name]}"
        )
        return
    n = _committed_rows(name, node, attrs)
    if node.shape and node.shape[0] < n:
        report.problems.append(
            f"{label}array {name!r} has {node.shape[0]} rows but {n} are committed"
        )
        return
    if not any(c.to_dict().get("name") == "crc32c" for c in getattr(node.metadata, "codecs", ())):
        report.notes.append(f"{label}array {name!r} has no checksums (written before them)")
    _read_chunks(label, name, node, n, report)


def _read_chunks(
    label: str, name: str, node: zarr.Array[Any], n: int, report: VerifyReport
) -> None:
    """Read rows ``:n`` in whole-chunk blocks; each failing block is one problem."""
    if not node.shape:
        blocks: list[Any] = [()]
        rows_per_block = 0
    else:
        chunk_rows = node.chunks[0]
        row_bytes = max(1, int(np.prod(node.shape[1:], dtype=np.int64)) * node.dtype.itemsize)
        rows_per_block = max(chunk_rows, (_BLOCK_BYTES // row_bytes) // chunk_rows * chunk_rows)
        blocks = [slice(i, min(n, i + rows_per_block)) for i in range(0, n, rows_per_block)]
    grid = zip(node.shape[1:], node.chunks[1:], strict=True)
    per_row = int(np.prod([-(-s // c) for s, c in grid]))  # chunks per row block
    for sel in blocks:
        try:
            data = node[sel]
        except Exception as err:  # noqa: BLE001 - every damaged block is listed, not raised
            report.problems.append(f"{label}array {name!r}: {err}")
            continue
        report.n_bytes += int(np.asarray(data).nbytes)
        if isinstance(sel, slice):
            first, last = sel.start // node.chunks[0], (sel.stop - 1) // node.chunks[0]
            report.n_chunks += (last - first + 1) * per_row
        else:
            report.n_chunks += 1
