"""Read a run store: `open_run(path)` returns a read-only `Run`.

A `Run` sees only committed data: every array is trimmed to the commit counters read from the
root attrs when the run was opened (or last `refresh`ed), so it is safe to read while training
still writes.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import zarr

from hooks import schema
from probe.errors import (
    CorruptRunError,
    LayerNotInRunError,
    NotARunError,
    RunNotFoundError,
    SchemaVersionError,
    StepNotFoundError,
)

__all__ = ["Run", "StreamRows", "open_run"]

Array = npt.NDArray[Any]


@dataclass
class StreamRows:
    """Watched training-batch activations of one layer: ``acts`` of shape (n_rows, ...)."""

    acts: Array
    step: npt.NDArray[np.int64]
    sample_id: npt.NDArray[np.int64]


def open_run(path: str | os.PathLike[str]) -> Run:
    """Open the run store at ``path`` read-only.

    Parameters
    ----------
    path : str or path
        Folder written by `hooks.Recorder`.

    Returns
    -------
    Run

    Raises
    ------
    RunNotFoundError
        Nothing exists at ``path``.
    NotARunError
        ``path`` exists but is not a probe run.
    SchemaVersionError
        The run was written with another schema version.
    CorruptRunError
        Its metadata cannot be parsed or contradicts itself.
    """
    return Run(path)


class Run:
    """A read-only view of a run store, trimmed to what was committed.

    Parameters
    ----------
    path : str or path
        The run's folder.

    Attributes
    ----------
    layers : list of str
        Recorded layers (``named_modules()`` paths), in model order.
    steps : ndarray of int64 of shape (n_snapshots,)
        The optimizer step of each committed snapshot.
    epochs : ndarray of int64 of shape (n_snapshots,)
        The epoch of each committed snapshot.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(os.fspath(path)).expanduser()
        self.refresh()

    # ------------------------------------------------------------------ opening
    def refresh(self) -> Run:
        """Re-read the commit counters to see snapshots committed since opening; return self."""
        self.attrs = self._read_attrs()
        self.n_snapshots: int = self.attrs[schema.N_COMMITTED]
        self.n_metric_records: int = int(self.attrs.get(schema.N_METRIC_RECORDS, 0))
        self.n_stream_rows: int = int(self.attrs.get(schema.N_STREAM_ROWS, 0))
        self.layers: list[str] = list(self.attrs["layers"])
        self._group = zarr.open_group(str(self.path), mode="r", zarr_format=3)
        if self.n_snapshots:
            self.steps = self._read("snapshots/step", self.n_snapshots).astype(np.int64)
            self.epochs = self._read("snapshots/epoch", self.n_snapshots).astype(np.int64)
        else:
            self.steps = np.zeros(0, np.int64)
            self.epochs = np.zeros(0, np.int64)
        return self

    def _read_attrs(self) -> dict[str, Any]:
        meta = self.path / "zarr.json"
        if not self.path.exists():
            msg = f"no run at {str(self.path)!r}: the path does not exist."
            raise RunNotFoundError(msg)
        if not meta.is_file():
            msg = (
                f"{str(self.path)!r} is not a probe run (no zarr.json); "
                "pass the folder a Recorder wrote."
            )
            raise NotARunError(msg)
        try:
            doc = json.loads(meta.read_text())
        except (OSError, ValueError) as err:
            msg = f"{meta} cannot be parsed ({err}); the run's metadata is corrupted."
            raise CorruptRunError(msg) from err
        attrs = doc.get("attributes") if isinstance(doc, dict) else None
        if not isinstance(attrs, dict) or attrs.get("schema") != schema.SCHEMA:
            msg = (
                f"{str(self.path)!r} is a zarr store but not a probe run "
                f"(attrs schema={None if attrs is None else attrs.get('schema')!r})."
            )
            raise NotARunError(msg)
        if attrs.get("schema_version") != schema.SCHEMA_VERSION:
            msg = (
                f"run schema_version must be {schema.SCHEMA_VERSION}; got "
                f"{attrs.get('schema_version')!r}. Open it with the toolkit version that wrote it "
                f"({attrs.get('toolkit_version', 'unknown')})."
            )
            raise SchemaVersionError(msg)
        problem = schema.check_root_attrs(attrs)
        if problem:
            msg = f"{meta}: {problem}; the run's metadata is corrupted."
            raise CorruptRunError(msg)
        return attrs

    def _array(self, key: str) -> zarr.Array:
        try:
            # A fresh handle each time: an opened zarr.Array never sees later appends.
            arr = zarr.open_array(str(self.path / key), mode="r", zarr_format=3)
        except Exception as err:
            msg = (
                f"array {key!r} of {str(self.path)!r} cannot be opened ({err}); "
                "the run is corrupted."
            )
            raise CorruptRunError(msg) from err
        return arr

    def _read(self, key: str, n: int | None, index: Any = slice(None)) -> Array:
        if not (self.path / key / "zarr.json").is_file():
            msg = f"the run has no array {key!r}."
            raise LayerNotInRunError(msg)
        arr = self._array(key)
        if n is not None and arr.shape[0] < n:
            msg = (
                f"array {key!r} has {arr.shape[0]} rows but {n} are committed; "
                "the run's metadata is corrupted."
            )
            raise CorruptRunError(msg)
        if isinstance(index, slice):
            start, stop, _ = index.indices(n if n is not None else arr.shape[0])
            return np.asarray(arr[start:stop])
        return np.asarray(arr[index])

    # ------------------------------------------------------------------ probe set
    @property
    def sample_ids(self) -> npt.NDArray[np.int64]:
        """Dataset indices of the probe samples, of shape (n_samples,)."""
        return self._read("probe/sample_id", None)

    @property
    def targets(self) -> Array | None:
        """Probe targets of shape (n_samples, ...), or None when none were given."""
        key = "probe/targets"
        return self._read(key, None) if (self.path / key).is_dir() else None

    @property
    def probe_inputs(self) -> Array | None:
        """Probe inputs of shape (n_samples, ...), or None when too large to have been stored."""
        key = "probe/inputs"
        return self._read(key, None) if (self.path / key).is_dir() else None

    # ------------------------------------------------------------------ snapshots
    def keys(self, layer: str) -> list[str]:
        """Return the array names recorded for ``layer`` (``acts``, ``acts.0``, ``weight`` ...).

        Raises
        ------
        LayerNotInRunError
            The run did not record ``layer``.
        """
        group = self.path / self._layer_path(layer)
        if not group.is_dir():  # no snapshot written yet
            return []
        return sorted(p.name for p in group.iterdir() if (p / "zarr.json").is_file())

    def snapshot_index(self, step: int) -> int:
        """Return the snapshot position of ``step``; negative values count from the end.

        Raises
        ------
        StepNotFoundError
            No committed snapshot at that step.
        """
        if not isinstance(step, (int, np.integer)) or isinstance(step, bool):
            msg = f"step must be an int; got {step!r}."
            raise StepNotFoundError(msg)
        if step < 0:
            if -step > self.n_snapshots:
                msg = f"step {step} counts back past the first of {self.n_snapshots} snapshots."
                raise StepNotFoundError(msg)
            return int(self.n_snapshots + step)
        hits = np.flatnonzero(self.steps == step)
        if not hits.size:
            before, after = self.steps[self.steps < step], self.steps[self.steps > step]
            near = [str(int(before.max()))] if before.size else []
            near += [str(int(after.min()))] if after.size else []
            msg = (
                f"no snapshot at step {step}; "
                f"nearest recorded steps: {' and '.join(near) or 'none'} "
                f"({self.n_snapshots} snapshots). See Run.steps."
            )
            raise StepNotFoundError(msg)
        return int(hits[0])

    def acts(self, layer: str, step: int | None = None, *, key: str = "acts") -> Array:
        """Return a layer's probe-set activations.

        Parameters
        ----------
        layer : str
            A recorded layer (see `layers`).
        step : int, optional
            An optimizer step with a snapshot (negative: from the end, -1 = last). None: all.
        key : str
            Which element of the output (``acts``, ``acts.0``, ``acts.call1`` ...; see `keys`).

        Returns
        -------
        ndarray of shape (n_samples, ...) for one step, (n_snapshots, n_samples, ...) for all.

        Raises
        ------
        LayerNotInRunError
            Unknown layer or key.
        StepNotFoundError
            No snapshot at ``step``.
        """
        return self._snapshot_array(f"{self._layer_path(layer)}/{self._key(layer, key)}", step)

    def outputs(self, step: int | None = None, *, key: str = "acts") -> Array:
        """Return the model output on the probe set: (n_samples, ...) or (n_snapshots, ...)."""
        return self._snapshot_array(f"{schema.OUTPUTS}/{key}", step)

    def weights(self, layer: str, step: int | None = None) -> Array:
        """Return a layer's weight as (out, in[*kh*kw]) at ``step``, or stacked over all snapshots.

        Raises
        ------
        LayerNotInRunError
            The run recorded no weights for ``layer`` (create the Recorder with ``weights=True``).
        """
        path = f"{self._layer_path(layer)}/weight"
        if not (self.path / path).is_dir():
            msg = (
                f"the run recorded no weights for layer {layer!r}; "
                "record with Recorder(..., weights=True)."
            )
            raise LayerNotInRunError(msg)
        return self._snapshot_array(path, step)

    def agop(self, layer: str, step: int | None = None) -> Array:
        """Return a layer's AGOP w.r.t. its input: (in, in) at ``step``, or (n_snapshots, in, in).

        Raises
        ------
        LayerNotInRunError
            The run recorded no AGOP for ``layer`` (create the Recorder with ``agop=True``).
        """
        path = f"{self._layer_path(layer)}/agop"
        if not (self.path / path).is_dir():
            msg = (
                f"the run recorded no AGOP for layer {layer!r}; "
                "record with Recorder(..., agop=True)."
            )
            raise LayerNotInRunError(msg)
        return self._snapshot_array(path, step)

    def _snapshot_array(self, path: str, step: int | None) -> Array:
        if step is None:
            return self._read(path, self.n_snapshots)
        i = self.snapshot_index(step)
        return self._read(path, self.n_snapshots, i)

    def _layer_path(self, layer: str) -> str:
        if layer not in self.layers:
            close = difflib.get_close_matches(layer, self.layers, n=3, cutoff=0.4)
            msg = (
                f"No layer {layer!r} in this run; "
                f"closest: {', '.join(map(repr, close)) or 'none'}. "
                f"Recorded layers: {self.layers}."
            )
            raise LayerNotInRunError(msg)
        return schema.layer_group(layer)

    def _key(self, layer: str, key: str) -> str:
        if not (self.path / schema.layer_group(layer) / key).is_dir():
            msg = f"layer {layer!r} has no array {key!r}; recorded: {self.keys(layer)}."
            raise LayerNotInRunError(msg)
        return key

    # ------------------------------------------------------------------ metrics and stream
    def metrics(self) -> pd.DataFrame:
        """Return the logged scalars as a table: columns ``step``, ``epoch`` and one per metric.

        Metrics not logged at a step are NaN there.
        """
        n = self.n_metric_records
        group = self.path / schema.METRICS
        if not n or not group.is_dir():
            return pd.DataFrame({"step": np.zeros(0, np.int64), "epoch": np.zeros(0, np.int64)})
        names = sorted(p.name for p in group.iterdir() if (p / "zarr.json").is_file())
        cols = {name: self._read(f"{schema.METRICS}/{name}", n) for name in names}
        first = ["step", "epoch"]
        return pd.DataFrame({k: cols[k] for k in first + [c for c in names if c not in first]})

    def stream(self, layer: str, *, key: str = "acts") -> StreamRows:
        """Return the watched training-batch activations of ``layer`` with steps and sample ids.

        Raises
        ------
        LayerNotInRunError
            ``layer`` was never watched.
        """
        path = f"{schema.stream_group(layer)}/{key}"
        if not (self.path / path).is_dir():
            msg = f"layer {layer!r} has no stream {key!r}; record it inside Recorder.watch()."
            raise LayerNotInRunError(msg)
        n = self.n_stream_rows
        return StreamRows(
            self._read(path, n), self._read("stream/step", n), self._read("stream/sample_id", n)
        )

    # ------------------------------------------------------------------ summaries
    def info(self) -> dict[str, Any]:
        """Return a summary: counts, steps, arrays with shapes, metrics, NaN/Inf flags, state."""
        arrays = {}
        for path, node in self._group.members(max_depth=None):
            if isinstance(node, zarr.Array):
                top = path.split("/", 1)[0]
                n = {
                    schema.METRICS: self.n_metric_records,
                    schema.STREAM: self.n_stream_rows,
                    schema.PROBE: node.shape[0] if node.shape else 0,
                }.get(top, self.n_snapshots)
                arrays[path] = (n, *node.shape[1:]) if node.shape else ()
        a = self.attrs
        return {
            "path": str(self.path),
            "schema_version": a["schema_version"],
            "toolkit_version": a.get("toolkit_version"),
            "created_utc": a.get("created_utc"),
            "state": "closed" if a.get("closed_utc") else "live or interrupted",
            "model_class": a.get("model_class"),
            "layers": self.layers,
            "n_samples": a.get("n_samples"),
            "dtype": a.get("dtype"),
            "n_snapshots": self.n_snapshots,
            "steps": [int(s) for s in self.steps],
            "n_metric_records": self.n_metric_records,
            "metrics": [c for c in self.metrics().columns if c not in ("step", "epoch")],
            "n_stream_rows": self.n_stream_rows,
            "nonfinite": a.get("nonfinite", {}),
            "arrays": dict(sorted(arrays.items())),
            "config": a.get("config", {}),
            "seed": a.get("seed"),
        }

    def to_xarray(self) -> Any:
        """Return every committed array as one `xarray.Dataset` (lazy dask arrays when dask exists).

        Variables are named by their store path (``layers/fc1/acts``); dims are the stored
        ``dimension_names``, with coordinates ``snapshot`` (the steps) and ``sample`` (sample ids).

        Raises
        ------
        ImportError
            xarray is not installed.
        """
        try:
            import xarray as xr
        except ImportError as err:
            msg = "Run.to_xarray() needs xarray: pip install xarray dask (or the 'dev' extra)."
            raise ImportError(msg) from err
        try:
            import dask.array as da
        except ImportError:
            da = None
        counts = {
            "snapshot": self.n_snapshots,
            "record": self.n_metric_records,
            "row": self.n_stream_rows,
        }
        data_vars = {}
        for path, node in self._group.members(max_depth=None):
            if not isinstance(node, zarr.Array) or path == "snapshots/step":
                continue
            arr = self._array(path)
            dims = tuple(arr.metadata.dimension_names or ())
            lazy = da.from_zarr(arr) if da is not None else np.asarray(arr[...])
            if dims and dims[0] in counts:
                lazy = lazy[: counts[dims[0]]]
            data_vars[path] = (dims, lazy)
        coords = (
            {"snapshot": self.steps, "sample": self.sample_ids}
            if (self.path / "probe/sample_id").is_dir()
            else {"snapshot": self.steps}
        )
        return xr.Dataset(data_vars, coords=coords, attrs={"path": str(self.path)})

    def __repr__(self) -> str:
        return (
            f"Run({str(self.path)!r}, layers={self.layers}, n_snapshots={self.n_snapshots}, "
            f"steps={self.steps[:1].tolist()}..{self.steps[-1:].tolist()})"
        )
