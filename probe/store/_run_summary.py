"""Whole-run views of a `Run`: the `Run.info` summary and the `Run.to_xarray` dataset.

Both cover single-process runs (every array read lazily, trimmed to its commit counter) and
multi-process runs (the merged arrays of `probe.store._rank_merge`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import zarr

from hooks import schema
from probe.errors import CorruptRunError, LayerNotInRunError
from probe.store._rank_merge import RunReader


def _members(run: RunReader) -> Iterator[tuple[str, zarr.Array[Any]]]:
    """Yield (path, array) of one run group: those its writer listed, or (older runs) all."""
    manifest = run.attrs.get(schema.MANIFEST)
    if manifest is not None:  # the committed arrays; a damaged group folder cannot hide one
        for path in sorted(manifest):
            yield path, run.open_array(path)
        return
    try:
        members = list(run.group.members(max_depth=None))
    except Exception as err:
        msg = f"the groups of the run at {str(run.path)!r} cannot be listed ({err}); it is damaged."
        raise CorruptRunError(msg) from err
    for path, node in members:
        if isinstance(node, zarr.Array):
            yield path, node


def _arrays(run: RunReader) -> Iterator[tuple[str, zarr.Array[Any]]]:
    """Yield the run's (path, array); merged runs: the root's probe set, rank 0's other arrays."""
    merge = run.rank_merge
    if merge is None:
        yield from _members(run)
        return
    for path, node in _members(run):
        if path.startswith(f"{schema.PROBE}/"):
            yield path, node
    first = merge.first
    if first is not None:
        for path, node in _members(first):
            if not path.startswith(f"{schema.PROBE}/"):
                yield path, node


def _rows(run: RunReader, path: str, node: zarr.Array[Any]) -> tuple[int, ...]:
    """Return the committed shape of ``path`` in the run's (merged) view."""
    if not node.shape:
        return ()
    top = path.split("/", 1)[0]
    n = {
        schema.METRICS: run.n_metric_records,
        schema.STREAM: run.n_stream_rows,
        schema.PROBE: node.shape[0],
    }.get(top, run.n_snapshots)
    rest = list(node.shape[1:])
    dims = getattr(node.metadata, "dimension_names", None) or ()
    if (
        run.rank_merge is not None
        and top in (schema.LAYERS, schema.OUTPUTS)
        and dims[1:2] == ("sample",)
    ):
        rest[0] = run.rank_merge.n_samples  # a rank's shard, merged to the full probe set
    return (n, *rest)


def run_info(run: RunReader) -> dict[str, Any]:
    """Return `Run.info`'s summary of ``run``."""
    a = run.attrs
    info = {
        "path": str(run.path),
        "schema_version": a["schema_version"],
        "toolkit_version": a.get("toolkit_version"),
        "created_utc": a.get("created_utc"),
        "state": "closed" if a.get("closed_utc") else "live or interrupted",
        "model_class": a.get("model_class"),
        "layers": run.layers,
        "n_samples": a.get("n_samples"),
        "dtype": a.get("dtype"),
        "n_snapshots": run.n_snapshots,
        "steps": [int(s) for s in run.steps],
        "n_metric_records": run.n_metric_records,
        "metrics": [c for c in run.metrics().columns if c not in ("step", "epoch")],
        "n_stream_rows": run.n_stream_rows,
        "nonfinite": a.get("nonfinite", {}),
        "absent_rows": a.get(schema.ABSENT, {}),
        "arrays": dict(sorted((p, _rows(run, p, node)) for p, node in _arrays(run))),
        "config": a.get("config", {}),
        "seed": a.get("seed"),
        "world_size": run.world_size,
    }
    if run.rank_merge is not None:
        ranks = run.rank_merge.per_rank()
        info["ranks"] = ranks
        info["state"] = "closed" if all(r["state"] == "closed" for r in ranks) else info["state"]
        info["nonfinite"] = {
            f"{schema.rank_group(r)}/{k}": v
            for r, sub in enumerate(run.rank_merge.ranks)
            if sub is not None
            for k, v in sub.attrs.get("nonfinite", {}).items()
        }
    return info


def _merged_data(run: RunReader, path: str) -> Any:
    """Return the merged values of ``path`` of a multi-process run, or None to leave it out."""
    merge = run.rank_merge
    assert merge is not None
    top = path.split("/", 1)[0]
    if top in (schema.LAYERS, schema.OUTPUTS):
        try:
            return run.snapshot_array(path, None)
        except LayerNotInRunError:  # not per-sample: no merged form
            return None
    if top == schema.SNAPSHOTS:
        if path == f"{schema.SNAPSHOTS}/epoch":
            return run.epochs
        first = merge.ranks[0]
        return None if first is None else first.read_array(path, None)[merge.positions[0]]
    if top == schema.STREAM:
        with_rows = [r for r, sub in enumerate(merge.ranks) if sub and sub.n_stream_rows]
        cols = merge.stream(path)
        return None if cols is None or sorted(set(cols[3])) != with_rows else cols[0]
    table = run.metrics()
    name = path.split("/", 1)[1]
    return table[name].to_numpy() if name in table else None


def run_to_xarray(run: RunReader) -> Any:
    """Return `Run.to_xarray`'s dataset of ``run``.

    Raises
    ------
    ImportError
        xarray is not installed.
    """
    try:
        import xarray as xr
    except ImportError as err:
        msg = (
            "Run.to_xarray() needs xarray: pip install xarray dask, or install the toolkit "
            "with its extra: pip install 'repgeom-probe[xarray]'."
        )
        raise ImportError(msg) from err
    try:
        import dask.array

        da: Any = dask.array
    except ImportError:
        da = None
    counts = {"snapshot": run.n_snapshots, "record": run.n_metric_records, "row": run.n_stream_rows}
    data_vars = {}
    for path, node in _arrays(run):
        if path == f"{schema.SNAPSHOTS}/step":
            continue
        dims = tuple(getattr(node.metadata, "dimension_names", None) or ())
        if run.rank_merge is not None and not path.startswith(f"{schema.PROBE}/"):
            data = _merged_data(run, path)
            if data is None:
                continue
        else:
            arr = run.open_array(path)
            data = da.from_zarr(arr) if da is not None else np.asarray(arr[...])
            if dims and dims[0] in counts:
                data = data[: counts[dims[0]]]
        data_vars[path] = (dims, data)
    rows = run.rank_merge.stream("stream/step") if run.rank_merge is not None else None
    if rows is not None and run.n_stream_rows:
        data_vars[f"{schema.STREAM}/rank"] = (("row",), rows[3])
    coords = (
        {"snapshot": run.steps, "sample": run.sample_ids}
        if (run.path / "probe/sample_id").is_dir()
        else {"snapshot": run.steps}
    )
    return xr.Dataset(data_vars, coords=coords, attrs={"path": str(run.path)})
