"""Read a run store: `open_run(path)` returns a read-only `Run`.

A `Run` sees only committed data: every array is trimmed to the commit counters read from the
root attrs when the run was opened (or last `refresh`ed), so it is safe to read while training
still writes. A run recorded by several processes (one group ``ranks/<r>`` each) is presented
merged (`probe.store._rank_merge`).
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import zarr

from hooks import schema
from probe.errors import (
    InvalidArgumentError,
    LayerNotInRunError,
    RunNotFoundError,
    StepNotFoundError,
)
from probe.store._rank_merge import RankMerge
from probe.store._run_attrs import read_run_attrs
from probe.store._run_records import StreamRows, read_metrics, read_stream
from probe.store._run_summary import run_info, run_to_xarray
from probe.store.arrays import CheckedGroup
from probe.store.names import split_array_name

__all__ = ["Run", "StreamRows", "open_run"]

Array = npt.NDArray[Any]


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
    InvalidArgumentError
        ``path`` is not a str or path-like (e.g. None).
    """
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        msg = (
            "open_run needs the path of a run store (a str or pathlib.Path, e.g. "
            f"'artifacts/mnist/run.zarr'); got {path!r}."
        )
        raise InvalidArgumentError(msg)
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
    world_size : int
        Number of processes that recorded the run (1 unless under DDP).

    Notes
    -----
    A run recorded by several processes is presented merged: probe-set arrays in the order of
    `sample_ids` (each rank recorded a shard), the snapshots committed on *every* rank (a rank
    ahead keeps its extra ones, see `rank`), stream rows of all ranks, rank 0's metrics.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(os.fspath(path)).expanduser()
        self.refresh()

    # ------------------------------------------------------------------ opening
    def refresh(self) -> Run:
        """Re-read the commit counters to see snapshots committed since opening; return self."""
        self.attrs = read_run_attrs(self.path)
        self.n_snapshots: int = self.attrs[schema.N_COMMITTED]
        self.n_metric_records: int = int(self.attrs.get(schema.N_METRIC_RECORDS, 0))
        self.n_stream_rows: int = int(self.attrs.get(schema.N_STREAM_ROWS, 0))
        self.layers: list[str] = list(self.attrs["layers"])
        self.world_size = schema.world_size(self.attrs)
        self._arrays = CheckedGroup(self.path, self.attrs)
        self._merge = RankMerge(self) if schema.is_multi_rank_root(self.attrs) else None
        if self._merge is not None:
            self.steps, self.epochs = self._merge.steps, self._merge.epochs
            self.n_snapshots = int(self.steps.size)
            first = self._merge.ranks[0]
            self.n_metric_records = first.n_metric_records if first is not None else 0
            self.n_stream_rows = self._merge.n_stream_rows
        elif self.n_snapshots:
            self.steps = self._arrays.read("snapshots/step", self.n_snapshots).astype(np.int64)
            self.epochs = self._arrays.read("snapshots/epoch", self.n_snapshots).astype(np.int64)
        else:
            self.steps = np.zeros(0, np.int64)
            self.epochs = np.zeros(0, np.int64)
        if self._merge is None:
            self._arrays.check_last_step(self.attrs.get("last_step"), self.steps)
        return self

    def rank(self, rank: int) -> Run:
        """Return one recording process's group as a run of its own (its shard of the probe set).

        Raises
        ------
        RunNotFoundError
            The run has no such rank, or that rank never started recording.
        """
        if self._merge is None:
            own = self.attrs.get(schema.RANK, 0)
            if rank == own:
                return self
            msg = (
                f"this run holds only rank {own}'s records; got rank {rank!r}. Open the root "
                "folder of a multi-process run to reach its other ranks."
            )
            raise RunNotFoundError(msg)
        if not isinstance(rank, (int, np.integer)) or not 0 <= rank < self.world_size:
            msg = f"rank must be an int in [0, {self.world_size}); got {rank!r}."
            raise RunNotFoundError(msg)
        return Run(self.path / schema.rank_group(int(rank)))

    @property
    def _data_path(self) -> Path:
        """Where the snapshot groups are: the run, or rank 0's group of a multi-process run."""
        first = self._merge.first if self._merge is not None else self
        return first.path if first is not None else self.path

    # ------------------------------------------------------------------ probe set
    @property
    def sample_ids(self) -> npt.NDArray[np.int64]:
        """Dataset indices of the probe samples, of shape (n_samples,)."""
        return self._arrays.read("probe/sample_id", None)

    @property
    def targets(self) -> Array | None:
        """Probe targets of shape (n_samples, ...), or None when none were given."""
        key = "probe/targets"
        return self._arrays.read(key, None) if (self.path / key).is_dir() else None

    @property
    def probe_inputs(self) -> Array | None:
        """Probe inputs of shape (n_samples, ...), or None when too large to have been stored."""
        key = "probe/inputs"
        return self._arrays.read(key, None) if (self.path / key).is_dir() else None

    # ------------------------------------------------------------------ snapshots
    def keys(self, layer: str) -> list[str]:
        """Return the array names recorded for ``layer`` (``acts``, ``acts.0``, ``weight`` ...).

        Raises
        ------
        LayerNotInRunError
            The run did not record ``layer``.
        """
        group = self._data_path / self._layer_path(layer)
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

    def split_name(self, name: str) -> tuple[str, str | None]:
        """Return the layer and key of an array name ``layer`` or ``layer:key`` (key None: bare).

        See `probe.store.names.split_array_name`.

        Raises
        ------
        LayerNotInRunError
            No recorded layer matches (the message lists the closest names).
        """
        found = split_array_name(self.layers, name)
        if found is None:
            raise self._no_layer(name)
        return found

    def dims(self, layer: str, key: str = "acts") -> tuple[str, ...]:
        """Return the dimension names of a layer's snapshot array (``layer:key`` names allowed).

        A per-sample array has ``("snapshot", "sample", ...)``; a batch-less one (the same for
        every sample, e.g. a position table) has no ``"sample"``.

        Raises
        ------
        LayerNotInRunError
            Unknown layer or key.
        """
        layer, named = self.split_name(layer)
        key = self._key(layer, named or key)
        meta = self._data_path / self._layer_path(layer) / key / "zarr.json"
        return tuple(json.loads(meta.read_text()).get("dimension_names") or ())

    def acts(self, layer: str, step: int | None = None, *, key: str = "acts") -> Array:
        """Return a layer's probe-set activations.

        Parameters
        ----------
        layer : str
            A recorded layer (see `layers`), or an array name ``layer:key`` (see `split_name`),
            whose key takes the place of ``key``.
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
        layer, named = self.split_name(layer)
        key = self._key(layer, named or key)
        return self.snapshot_array(f"{self._layer_path(layer)}/{key}", step)

    def outputs(self, step: int | None = None, *, key: str = "acts") -> Array:
        """Return the model output on the probe set: (n_samples, ...) or (n_snapshots, ...)."""
        return self.snapshot_array(f"{schema.OUTPUTS}/{key}", step)

    def weights(self, layer: str, step: int | None = None) -> Array:
        """Return a layer's weight as (out, in[*kh*kw]) at ``step``, or stacked over all snapshots.

        Raises
        ------
        LayerNotInRunError
            The run recorded no weights for ``layer`` (create the Recorder with ``weights=True``).
        """
        path = f"{self._layer_path(layer)}/weight"
        if not (self._data_path / path).is_dir():
            msg = (
                f"the run recorded no weights for layer {layer!r}; "
                "record with Recorder(..., weights=True)."
            )
            raise LayerNotInRunError(msg)
        return self.snapshot_array(path, step)

    def agop(self, layer: str, step: int | None = None) -> Array:
        """Return a layer's AGOP w.r.t. its input: (in, in) at ``step``, or (n_snapshots, in, in).

        Raises
        ------
        LayerNotInRunError
            The run recorded no AGOP for ``layer`` (create the Recorder with ``agop=True``).
        """
        path = f"{self._layer_path(layer)}/agop"
        if not (self._data_path / path).is_dir():
            msg = (
                f"the run recorded no AGOP for layer {layer!r}; "
                "record with Recorder(..., agop=True)."
            )
            raise LayerNotInRunError(msg)
        return self.snapshot_array(path, step)

    def _layer_path(self, layer: str) -> str:
        if layer not in self.layers:
            raise self._no_layer(layer)
        return schema.layer_group(layer)

    def _no_layer(self, layer: str) -> LayerNotInRunError:
        close = difflib.get_close_matches(layer, self.layers, n=3, cutoff=0.4)
        msg = (
            f"No layer {layer!r} in this run; "
            f"closest: {', '.join(map(repr, close)) or 'none'}. "
            f"Recorded layers: {self.layers}."
        )
        return LayerNotInRunError(msg)

    def _key(self, layer: str, key: str) -> str:
        if not (self._data_path / schema.layer_group(layer) / key).is_dir():
            msg = f"layer {layer!r} has no array {key!r}; recorded: {self.keys(layer)}."
            raise LayerNotInRunError(msg)
        return key

    # ------------------------------------------------------------------ metrics and stream
    def metrics(self, *, all_ranks: bool = False, start: int = 0) -> pd.DataFrame:
        """Return the logged scalars as a table: columns ``step``, ``epoch`` and one per metric.

        Metrics not logged at a step are NaN there.

        Parameters
        ----------
        all_ranks : bool
            Add a ``rank`` column and, for a multi-process run, the rows of every rank that
            logged metrics (ordered by step, then rank); by default only rank 0's rows.
        start : int
            Return only the records from this one on (0: all): what a live reader holding the
            first ``start`` records lacks. Committed records never change, so
            ``pd.concat([run.metrics().iloc[:start], run.metrics(start=start)])`` is the
            whole table while the metric names stay the same.

        Raises
        ------
        ConfigError
            ``start`` is negative, or given with ``all_ranks`` (whose rows interleave ranks).
        """
        return read_metrics(self, all_ranks, start)

    def stream(self, layer: str, *, key: str = "acts") -> StreamRows:
        """Return the watched training-batch activations of ``layer`` with steps and sample ids.

        A multi-process run returns the rows of every rank, ordered by step (then rank).

        Raises
        ------
        LayerNotInRunError
            ``layer`` was never watched.
        """
        return read_stream(self, layer, key)

    # ------------------------------------------------------------------ summaries
    def info(self) -> dict[str, Any]:
        """Return a summary: counts, steps, arrays with shapes, metrics, NaN/Inf flags, state.

        A multi-process run also lists each rank's counts under ``ranks``.
        """
        return run_info(self)

    def to_xarray(self) -> Any:
        """Return every committed array as one `xarray.Dataset`.

        Variables are named by their store path (``layers/fc1/acts``); dims are the stored
        ``dimension_names``, with coordinates ``snapshot`` (the steps) and ``sample`` (sample ids).
        Arrays are lazy dask arrays when dask is installed; a multi-process run's are the merged
        numpy arrays (arrays that are not per-sample are left out: see `rank`).

        Raises
        ------
        ImportError
            xarray is not installed.
        """
        return run_to_xarray(self)

    # ------------------------------------------------------------------ raw arrays
    @property
    def group(self) -> zarr.Group:
        """The run's root zarr group, opened read-only (arrays are not trimmed to the commits)."""
        return self._arrays.group

    @property
    def rank_merge(self) -> RankMerge | None:
        """The merge of a multi-process run's rank groups, or None for a single-process run."""
        return self._merge

    def open_array(self, key: str) -> zarr.Array[Any]:
        """Return a fresh read-only handle of the array at store path ``key`` (untrimmed).

        Raises
        ------
        CorruptRunError
            The array cannot be opened.
        """
        return self._arrays.open(key)

    def read_array(self, key: str, n: int | None = None, index: Any = slice(None)) -> Array:
        """Return rows ``index`` of the array ``key`` of its first ``n`` rows (None: all).

        ``key`` is a store path (``"probe/index"``, ``"layers/fc1/acts"``), ``n`` the committed
        rows; see `probe.store.arrays.CheckedGroup.read`.

        Raises
        ------
        LayerNotInRunError
            The run has no array at ``key``.
        CorruptRunError
            The array has fewer than ``n`` rows or cannot be opened.
        """
        return self._arrays.read(key, n, index)

    def snapshot_array(self, path: str, step: int | None = None) -> Array:
        """Return the snapshot array at store path ``path`` at ``step`` (None: all snapshots).

        A multi-process run's arrays are merged (`rank_merge`).

        Raises
        ------
        LayerNotInRunError
            The run has no array at ``path``.
        StepNotFoundError
            No snapshot at ``step``.
        """
        if self._merge is not None:
            return self._merge.snapshot_array(
                path, None if step is None else self.snapshot_index(step)
            )
        if step is None:
            return self._arrays.read(path, self.n_snapshots)
        i = self.snapshot_index(step)
        for start, stop in self.attrs.get(schema.ABSENT, {}).get(path, ()):
            if start <= i < stop:
                msg = (
                    f"{path!r} was not recorded at step {int(self.steps[i])} (the module did not "
                    "run in that snapshot's forward, or was first recorded later); its row there "
                    "holds fill values. Run.info()['absent_rows'] lists such rows."
                )
                raise LayerNotInRunError(msg)
        return self._arrays.read(path, self.n_snapshots, i)

    def __repr__(self) -> str:
        return (
            f"Run({str(self.path)!r}, layers={self.layers}, n_snapshots={self.n_snapshots}, "
            f"steps={self.steps[:1].tolist()}..{self.steps[-1:].tolist()})"
        )
