"""The on-disk layout of a run store (schema v1, zarr format 3): names, dimensions, chunks, attrs.

Shared by the writer (`hooks`) and the reader (`probe.store`); imports neither torch nor zarr.
A run recorded by several processes holds the shared attrs and ``probe/`` at its root and one
group ``ranks/<r>`` per process in the single-process layout, with its own commit counters.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

SCHEMA = "probe-run"
SCHEMA_VERSION = 1

# Group paths inside a run.
PROBE = "probe"
SNAPSHOTS = "snapshots"
LAYERS = "layers"
OUTPUTS = "outputs"
STREAM = "stream"
METRICS = "metrics"
RANKS = "ranks"  # multi-process runs: one group per rank, ranks/<r>, in the layout above

# Commit counters kept in the root attrs; readers trim every array to them.
N_COMMITTED = "n_committed"
N_METRIC_RECORDS = "n_metric_records"
N_STREAM_ROWS = "n_stream_rows"

# Root attr: array path -> `metadata_digest` of every array the writer created, so a reader
# notices an array that vanished or whose dtype, byte order, codecs or chunks were changed.
MANIFEST = "arrays"
# Root attr: array path -> [[start, stop], ...] rows that hold fill values because nothing was
# recorded there (a layer that did not fire at a snapshot, or first fired later).
ABSENT = "absent_rows"

# Root attr: a digest of the commit state (counters, last step, manifest, absent rows), rewritten
# with every commit, so a damaged or edited counter is noticed instead of trimming the run.
COMMIT_DIGEST = "commit_digest"
_COMMIT_STATE: dict[str, Any] = {
    N_COMMITTED: 0,
    N_METRIC_RECORDS: 0,
    N_STREAM_ROWS: 0,
    "last_step": None,
    MANIFEST: {},
    ABSENT: {},
}

# Multi-process runs: the root holds WORLD_SIZE > 1; each rank group holds RANK and WORLD_SIZE.
WORLD_SIZE = "world_size"
RANK = "rank"

# Target bytes of one chunk (docs/storage.md §1: 1-2 MB chunks write fastest and read well;
# fewer files per snapshot also means less CPU taken from training).
CHUNK_BYTES = 2 << 20
METRICS_CHUNK = 4096
REQUIRED_ATTRS = ("schema", "schema_version", N_COMMITTED, "layers")


def layer_group(layer: str) -> str:
    """Return the group path of a layer (``layers/<dotted.name>``)."""
    return f"{LAYERS}/{layer}"


def stream_group(layer: str) -> str:
    """Return the stream group path of a layer (``stream/<dotted.name>``)."""
    return f"{STREAM}/{layer}"


def rank_group(rank: int) -> str:
    """Return the group path of one process's records in a multi-process run (``ranks/<r>``)."""
    return f"{RANKS}/{rank}"


def world_size(attrs: Mapping[str, Any]) -> int:
    """Return the number of recording processes of a run (1 when the attrs do not say)."""
    return int(attrs.get(WORLD_SIZE, 1))


def is_multi_rank_root(attrs: Mapping[str, Any]) -> bool:
    """Return whether ``attrs`` are the root attrs of a run recorded by several processes."""
    return world_size(attrs) > 1 and RANK not in attrs


def element_name(path: Sequence[str], kind: str = "acts") -> str:
    """Return the array name of one captured element of a module output (or input).

    A plain tensor output is ``acts``; tuple/list elements append their index and dict entries
    their key (``acts.0``, ``acts.hidden``); the k-th extra call of a module within one forward
    inserts ``call<k>`` first (``acts.call1``, ``acts.call1.0``). Inputs (``kind="inputs"``) are
    named the same way: ``inputs`` for a lone positional tensor, else ``inputs.<position>`` and
    ``inputs.<keyword>``.
    """
    return ".".join([kind, *path])


def array_dims(path: str, lead: Sequence[str], n_feature_dims: int) -> tuple[str, ...]:
    """Return an array's dimension names: ``lead`` then ``<path with dots>_f0, _f1, ...``.

    Feature dimensions are named per array because xarray needs one size per dimension name, e.g.
    ``layers/fc1/acts`` -> ``("snapshot", "sample", "layers.fc1.acts_f0")``. For weights ``_f0`` is
    the output and ``_f1`` the (flattened) input dimension.
    """
    owner = path.replace("/", ".")
    return (*lead, *(f"{owner}_f{i}" for i in range(n_feature_dims)))


def rows_per_chunk(
    row_shape: Sequence[int], itemsize: int, n_rows: int | None = None, multiple: int = 1
) -> int:
    """Return how many leading-axis rows make one ~2 MiB chunk.

    Parameters
    ----------
    row_shape : sequence of int
        Shape of one row (everything after the leading axis).
    itemsize : int
        Bytes per element.
    n_rows : int, optional
        Upper bound (the total number of rows), when known.
    multiple : int
        Round the result to a multiple of this (the batch size of a stream).
    """
    row_bytes = max(1, math.prod(row_shape) * itemsize)
    rows = max(1, CHUNK_BYTES // row_bytes)
    if multiple > 1:
        rows = max(multiple, (rows // multiple) * multiple)
    if n_rows is not None:
        rows = min(rows, max(1, n_rows))
    return int(rows)


def check_root_attrs(attrs: Mapping[str, Any]) -> str | None:
    """Return why ``attrs`` are not the root attrs of a v1 run, or None when they are."""
    if attrs.get("schema") != SCHEMA:
        return f"schema must be {SCHEMA!r}; got {attrs.get('schema')!r}"
    if attrs.get("schema_version") != SCHEMA_VERSION:
        return (
            f"schema_version must be {SCHEMA_VERSION}; got {attrs.get('schema_version')!r}"
            " (written by another version of the toolkit)"
        )
    missing = [k for k in REQUIRED_ATTRS if k not in attrs]
    if missing:
        return f"root attrs lack {missing}"
    n = attrs[N_COMMITTED]
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        return f"{N_COMMITTED} must be a non-negative int; got {n!r}"
    ws = attrs.get(WORLD_SIZE, 1)
    if not isinstance(ws, int) or isinstance(ws, bool) or ws < 1:
        return f"{WORLD_SIZE} must be a positive int; got {ws!r}"
    if not isinstance(attrs["layers"], list) or not all(
        isinstance(x, str) for x in attrs["layers"]
    ):
        return f"layers must be a list of str; got {attrs['layers']!r}"
    return None


def metadata_digest(meta: Mapping[str, Any]) -> str:
    """Return a digest of an array's zarr metadata that does not change when rows are appended.

    Parameters
    ----------
    meta : mapping
        ``zarr.Array.metadata.to_dict()``. Everything but the row count (``shape[0]``) and the
        user attributes enters the digest: dtype, byte order, codecs, chunk grid, fill value and
        dimension names.
    """
    doc = {k: v for k, v in meta.items() if k not in ("shape", "attributes")}
    doc["row_shape"] = list(meta.get("shape", ()))[1:]
    text = json.dumps(doc, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def commit_digest(attrs: Mapping[str, Any]) -> str:
    """Return the digest of a run group's commit state (`COMMIT_DIGEST`), from its root attrs."""
    state = {k: attrs.get(k, default) for k, default in _COMMIT_STATE.items()}
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]


def to_json(obj: Any) -> Any:
    """Return ``obj`` as plain JSON data (no pickle anywhere); unknown objects become their repr."""
    return json.loads(json.dumps(obj, default=repr))
