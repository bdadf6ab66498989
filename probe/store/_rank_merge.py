"""The merged view of a run recorded by several processes (DDP): one group ``ranks/<r>`` per rank.

`RankMerge` opens every rank's group as a run of its own and merges them: probe-set arrays are put
back in probe order, snapshots are those committed on every rank, stream rows are concatenated,
metrics are rank 0's (or every rank's with a ``rank`` column).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from hooks import schema
from probe.errors import CorruptRunError, LayerNotInRunError

Array = npt.NDArray[Any]


class RunReader(Protocol):
    """What the merge and the summaries read of a run (`probe.store.Run` is one)."""

    def __init__(self, path: Path) -> None: ...  # noqa: D107 - opens the run at path

    path: Path
    attrs: dict[str, Any]
    layers: list[str]
    world_size: int
    n_snapshots: int
    n_metric_records: int
    n_stream_rows: int
    steps: npt.NDArray[np.int64]
    epochs: npt.NDArray[np.int64]

    @property
    def sample_ids(self) -> npt.NDArray[np.int64]: ...  # noqa: D102

    @property
    def group(self) -> Any: ...  # noqa: D102

    @property
    def rank_merge(self) -> RankMerge | None: ...  # noqa: D102

    def open_array(self, key: str) -> Any: ...  # noqa: D102

    def read_array(self, key: str, n: int | None = None, index: Any = ...) -> Array: ...  # noqa: D102

    def snapshot_array(self, path: str, step: int | None = None) -> Array: ...  # noqa: D102

    def metrics(self, *, all_ranks: bool = False, start: int = 0) -> pd.DataFrame: ...  # noqa: D102


def _per_sample(run: RunReader, path: str) -> bool:
    """Return whether the snapshot array ``path`` of ``run`` has a ``sample`` dimension."""
    if not (run.path / path / "zarr.json").is_file():
        return True  # missing: let the reader say so
    return "sample" in (run.open_array(path).metadata.dimension_names or ())


class RankMerge:
    """Merge the rank groups of the multi-process run ``root`` (trimmed to their commits).

    Parameters
    ----------
    root : RunReader
        The run's root (its attrs say ``world_size`` > 1).

    Attributes
    ----------
    ranks : list of RunReader or None
        Each rank's group as a run; None for a rank that never created its group.
    index : list of ndarray of int64 or None
        Each rank's probe samples as positions in the full probe set, of shape (n_r,).
    steps : ndarray of int64 of shape (n_snapshots,)
        The steps committed on every rank, increasing.
    positions : list of ndarray of int64 of shape (n_snapshots,)
        Where each of `steps` sits in each rank's snapshots.

    Raises
    ------
    CorruptRunError
        The ranks' probe positions overlap, leave samples out, or disagree with the root's ids.

    Notes
    -----
    Rule for snapshots: a step is in the merged view only once *every* rank has committed its
    snapshot at that step (the intersection of the ranks' steps), since only then is its
    probe set complete. Ranks that committed more (a rank ahead, or one killed earlier) keep the
    extra snapshots in their own group, readable with ``Run.rank(r)``; a rank without a group
    leaves the merged view with no snapshots.
    """

    def __init__(self, root: RunReader) -> None:
        self.world_size = schema.world_size(root.attrs)
        self.n_samples = int(root.attrs.get("n_samples", 0))
        self.ranks: list[RunReader | None] = []
        for r in range(self.world_size):
            sub = root.path / schema.rank_group(r)
            self.ranks.append(type(root)(sub) if (sub / "zarr.json").is_file() else None)
        self.index = [None if run is None else self._shard_index(run) for run in self.ranks]
        self._check_index(root)
        present = [run for run in self.ranks if run is not None]
        if len(present) < self.world_size:
            self.steps = np.zeros(0, np.int64)
        else:
            self.steps = functools.reduce(np.intersect1d, [run.steps for run in present])
        self.positions = [
            np.zeros(0, np.int64) if run is None else np.searchsorted(run.steps, self.steps)
            for run in self.ranks
        ]
        first = self.ranks[0]
        self.epochs = first.epochs[self.positions[0]] if first else np.zeros(0, np.int64)

    @staticmethod
    def _shard_index(run: RunReader) -> npt.NDArray[np.int64]:
        """Return a rank's probe positions (empty for a run recorded without a probe set)."""
        if not (run.path / "probe/index").is_dir():
            return np.zeros(0, np.int64)
        return run.read_array("probe/index", None).astype(np.int64)

    def _check_index(self, root: RunReader) -> None:
        seen = np.zeros(self.n_samples, bool)
        ids = root.sample_ids if self.n_samples else np.zeros(0, np.int64)
        for r, (run, idx) in enumerate(zip(self.ranks, self.index, strict=True)):
            if run is None or idx is None or not idx.size:
                continue
            if idx.size and (idx.min() < 0 or idx.max() >= self.n_samples or seen[idx].any()):
                msg = (
                    f"rank {r}'s probe/index must be distinct positions in [0, {self.n_samples}) "
                    "not taken by another rank; the run's rank groups are corrupted."
                )
                raise CorruptRunError(msg)
            seen[idx] = True
            if not np.array_equal(run.sample_ids, ids[idx]):
                msg = (
                    f"rank {r}'s probe/sample_id must equal the run's sample ids at its "
                    "probe/index; the run's rank groups are corrupted."
                )
                raise CorruptRunError(msg)
        if all(run is not None for run in self.ranks) and not seen.all():
            msg = (
                f"the ranks' probe shards must cover all {self.n_samples} probe samples; "
                f"{int((~seen).sum())} are missing. The run's rank groups are corrupted."
            )
            raise CorruptRunError(msg)

    @property
    def first(self) -> RunReader | None:
        """Rank 0's group, or the first rank's that exists (None when no rank has started)."""
        return next((run for run in self.ranks if run is not None), None)

    def snapshot_array(self, path: str, i: int | None) -> Array:
        """Return the merged snapshot array ``path`` at merged position ``i`` (None: all).

        Per-sample arrays (``sample`` dim) are put back in probe order; ``weight`` comes from
        rank 0, which alone records it (replicated); an output with no batch dimension is
        every rank's value, which must agree; ``agop`` is the mean of the ranks' AGOPs
        weighted by their shard sizes, i.e. the AGOP over the full probe set (each rank's is a
        mean over its shard).

        Raises
        ------
        LayerNotInRunError
            The array is missing, or not per-sample so its shards cannot be merged.
        """
        name = path.rsplit("/", 1)[-1]
        first = self.first
        batchless = name not in ("weight", "agop") and first and not _per_sample(first, path)
        ranks = self.ranks[:1] if name == "weight" else self.ranks
        parts = []
        for r, run in enumerate(ranks):
            if run is None:
                continue
            pos = self.positions[r]
            a = run.read_array(path, run.n_snapshots, int(pos[i])) if i is not None else None
            parts.append(a if a is not None else run.read_array(path, run.n_snapshots)[pos])
        if not parts:
            msg = f"the run has no array {path!r} (no rank recorded it yet)."
            raise LayerNotInRunError(msg)
        if name == "weight":
            return parts[0]
        if batchless:
            if any(not np.array_equal(a, parts[0], equal_nan=True) for a in parts[1:]):
                msg = (
                    f"array {path!r} has no sample dimension and differs between ranks, so "
                    "it is neither per-sample nor the same on every rank; read each rank's "
                    "with Run.rank(r)."
                )
                raise LayerNotInRunError(msg)
            return parts[0]
        if name == "agop":
            w = [idx.size / self.n_samples for idx in self.index if idx is not None]
            total = sum(wr * a.astype(np.float64) for wr, a in zip(w, parts, strict=True))
            return np.asarray(total).astype(parts[0].dtype)
        return self._scatter(path, parts, axis=0 if i is not None else 1)

    def _scatter(self, path: str, parts: list[Array], axis: int) -> Array:
        idx = [x for x in self.index if x is not None]
        if any(a.shape[axis] != x.size for a, x in zip(parts, idx, strict=True)):
            msg = (
                f"array {path!r} is not one row per probe sample (rank shapes "
                f"{[a.shape for a in parts]}), so the ranks' shards cannot be merged; read each "
                "rank's with Run.rank(r)."
            )
            raise LayerNotInRunError(msg)
        shape = list(parts[0].shape)
        shape[axis] = self.n_samples
        out = np.empty(shape, parts[0].dtype)
        for a, x in zip(parts, idx, strict=True):
            out[(slice(None),) * axis + (x,)] = a
        return out

    def stream(self, path: str) -> tuple[Array, Array, Array, Array] | None:
        """Return (acts, step, sample_id, rank) of every rank's rows of ``path``, by step.

        Rows are ordered by step, and by rank within a step (stable); None if no rank has them.
        """
        parts = []
        for r, run in enumerate(self.ranks):
            if run is not None and (run.path / path).is_dir():
                n = run.n_stream_rows
                step = run.read_array(f"{schema.STREAM}/step", n)
                ids = run.read_array(f"{schema.STREAM}/sample_id", n)
                parts.append((run.read_array(path, n), step, ids, np.full(n, r, np.int64)))
        if not parts:
            return None
        cols = [np.concatenate(c) for c in zip(*parts, strict=True)]
        order = np.argsort(cols[1], kind="stable")
        return cols[0][order], cols[1][order], cols[2][order], cols[3][order]

    def metrics(self, all_ranks: bool, start: int = 0) -> pd.DataFrame | None:
        """Return rank 0's metrics from record ``start``, or all ranks' (None: none)."""
        if not all_ranks:
            return None if self.ranks[0] is None else self.ranks[0].metrics(start=start)
        tables = [run.metrics(all_ranks=True) for run in self.ranks if run is not None]
        if not tables:
            return None
        table = pd.concat(tables, ignore_index=True)
        return table.sort_values("step", kind="stable", ignore_index=True)

    @property
    def n_stream_rows(self) -> int:
        """Stream rows committed over all ranks."""
        return sum(run.n_stream_rows for run in self.ranks if run is not None)

    def per_rank(self) -> list[dict[str, Any]]:
        """Return each rank's counts: snapshots, last step, metric records, stream rows, state."""
        out = []
        for r, run in enumerate(self.ranks):
            if run is None:
                out.append({"rank": r, "state": "not started"})
                continue
            out.append(
                {
                    "rank": r,
                    "n_snapshots": run.n_snapshots,
                    "last_step": int(run.steps[-1]) if run.n_snapshots else None,
                    "n_metric_records": run.n_metric_records,
                    "n_stream_rows": run.n_stream_rows,
                    "state": "closed" if run.attrs.get("closed_utc") else "live or interrupted",
                }
            )
        return out
