"""What the live view knows of one run: `RunCache` keeps it up to date incrementally.

`RunCache.update` re-reads the commit counters (`probe.store.Run.refresh`, committed rows only)
and computes the per-layer summaries of the snapshots committed since the last call: CKA to the
previous snapshot (`probe.analysis.similarity.linear_cka`), effective rank
(`probe.analysis.dimension.effective_rank`) and class separation
(`probe.analysis.margins.centroid_separation`): `probe.analysis.summaries.snapshot_summary`.
Work is bounded per call by a time budget, so a long run's first view appears at once and fills
in over the next polls. A run that cannot be opened keeps its message in `error`; a part that
cannot be read (a damaged chunk, the metrics) its message in `damage`, and the rest is shown.
A run rewritten under the same name (a new ``run_id``) is recomputed from scratch.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from hooks import schema
from probe.analysis.summaries import SUMMARY_NAMES, snapshot_summary
from probe.errors import LayerNotInRunError
from probe.serve.catalog import RunEntry
from probe.serve.state import CLOSED, STOPPED, run_state
from probe.store import Run, open_run

__all__ = ["SUMMARY_COLUMNS", "RunCache"]

SUMMARY_COLUMNS = ("cka_prev", "effective_rank", "class_separation")

Stamp = tuple[tuple[str, int, int], ...]


class RunCache:
    """The incrementally computed state of one run for the live view.

    Parameters
    ----------
    entry : RunEntry
        The run (from `probe.serve.catalog.Catalog`).

    Attributes
    ----------
    run : Run or None
        The opened run (None until opened, or when it cannot be read).
    error : str or None
        Why the run cannot be opened (a malformed or partly written store), else None.
    damage : str or None
        What part of an opened run cannot be read (a damaged chunk of a snapshot, the metrics),
        else None: the rest of the run is shown.
    rows : list of dict
        One summary row per (snapshot, layer) computed so far: ``step``, ``layer`` and
        `SUMMARY_COLUMNS` (NaN where the snapshot's layer cannot be read).
    n_done : int
        Snapshots whose summaries are in ``rows``.
    generation : int
        How many times the run was found rewritten (``overwrite=True``): everything computed
        for it was dropped then.
    """

    def __init__(self, entry: RunEntry) -> None:
        self.entry = entry
        self.run: Run | None = None
        self.error: str | None = None
        self._damage: dict[str, str] = {}  # what cannot be read: "acts" (the first), "metrics"
        self.rows: list[dict[str, Any]] = []
        self.n_done = 0
        self.state = ""
        self.generation = 0
        self.lock = threading.RLock()
        self._prev: dict[str, npt.NDArray[Any]] = {}
        self._metrics: tuple[int, pd.DataFrame] | None = None
        self.memo: dict[tuple[Any, ...], Any] = {}  # views computed on demand (probe.serve.views)
        self.pending: set[tuple[str, ...]] = set()  # views that computed part of their work
        self.n_updates = 0
        self._identity: Any = None  # the run_id of the run these results belong to
        self._still: Stamp | None = None  # the metadata stamp when last seen closed or stopped

    @property
    def damage(self) -> str | None:
        """What part of the opened run cannot be read (see the class doc), else None."""
        return "; ".join(self._damage.values()) or None

    @property
    def opened(self) -> bool:
        """Whether the run was opened at least once (successfully or into `error`)."""
        return self.run is not None or self.error is not None

    def _stamp(self) -> Stamp:
        """Return (name, mtime, size) of the run's root metadata and every rank group's.

        Every commit rewrites one of these files (a multi-process run commits to its rank
        groups), as do a resume and an overwrite.
        """
        root = self.entry.path
        files = [root / "zarr.json", *sorted((root / schema.RANKS).glob("*/zarr.json"))]
        out = []
        for f in files:
            try:
                st = f.stat()
            except OSError:
                continue
            out.append((str(f.relative_to(root)), st.st_mtime_ns, st.st_size))
        return tuple(out)

    def _reset(self) -> None:
        """Forget everything computed for the run (it was rewritten with overwrite=True)."""
        self.rows, self.n_done, self._prev, self.memo = [], 0, {}, {}
        self.pending, self._metrics, self._damage = set(), None, {}
        self.generation += 1

    # ------------------------------------------------------------------ reading
    def refresh(self) -> Run | None:
        """Re-read the commit counters and the writer's state; return the run (None: `error`).

        A closed or stopped run whose metadata (`_stamp`) is unchanged is not re-read: nothing
        can commit to it, resume it or rewrite it without rewriting one of those files, and a
        sweep's list polls hundreds of such runs.
        """
        with self.lock:
            stamp = self._stamp()
            if self.run is not None and stamp == self._still:
                return self.run
            try:
                run = open_run(self.entry.path) if self.run is None else self.run.refresh()
                identity = run.attrs.get("run_id") or run.attrs.get("created_utc")
                if self._identity is not None and identity != self._identity:
                    self._reset()  # a new run under the same name: open it afresh
                    run = open_run(self.entry.path)
                self._identity = identity
                merge = run.rank_merge
                ranks = [] if merge is None else [r if r is None else r.attrs for r in merge.ranks]
                self.run, self.error = run, None
                self.state = run_state(run.attrs, run.path, ranks)
                self._still = stamp if self.state in (CLOSED, STOPPED) else None
            except Exception as err:  # noqa: BLE001 - any damage becomes the run's error card
                self.run, self.error, self._still = None, f"{type(err).__name__}: {err}", None
            return self.run

    def update(self, budget_s: float = 1.0) -> Run | None:
        """Refresh, then summarise new snapshots for about ``budget_s`` seconds (at least one)."""
        with self.lock:
            run = self.refresh()
            self.n_updates += 1
            if run is None:
                return None
            if run.n_snapshots < self.n_done:  # rewritten by a store without a run_id
                self._reset()
            start = time.perf_counter()
            # At least one snapshot per call, so any budget makes progress.
            while self.n_done < run.n_snapshots:
                self._summarise(run, self.n_done)
                self.n_done += 1
                if time.perf_counter() - start >= budget_s:
                    break
            return run

    def layers(self) -> list[str]:
        """Return the run's layers that have per-sample activations (``acts``)."""
        run = self.run
        if run is None:
            return []
        return [name for name in run.layers if _per_sample(run, name)]

    def _summarise(self, run: Run, i: int) -> None:
        """Append snapshot ``i``'s rows; a layer that cannot be read gets NaNs and a `damage`."""
        step = int(run.steps[i])
        y = run.targets
        labels = y if y is not None and y.ndim == 1 and y.dtype.kind in "biu" else None
        for layer in self.layers():
            try:
                acts = run.acts(layer, step)
            except Exception as err:  # noqa: BLE001 - a damaged chunk: show it, keep summarising
                what = f"step {step}, layer {layer}: {type(err).__name__}: {err}"
                self._damage.setdefault("acts", what)
                self._prev.pop(layer, None)  # the next snapshot has nothing to compare with
                row = dict.fromkeys(SUMMARY_NAMES, math.nan)
            else:
                row = snapshot_summary(acts, self._prev.get(layer), labels)
                self._prev[layer] = acts
            self.rows.append(
                {"step": step, "layer": layer}
                | {col: row[name] for col, name in zip(SUMMARY_COLUMNS, SUMMARY_NAMES, strict=True)}
            )

    # ------------------------------------------------------------------ tables
    def summaries(self) -> pd.DataFrame:
        """Return the summaries computed so far: columns ``step, layer`` and `SUMMARY_COLUMNS`."""
        with self.lock:
            return pd.DataFrame(self.rows, columns=["step", "layer", *SUMMARY_COLUMNS])

    def metrics(self) -> pd.DataFrame:
        """Return the run's logged metrics (reading only records committed since the last call).

        Metrics that cannot be read give an empty table and a `damage` message.
        """
        with self.lock:
            run = self.run
            if run is None:
                return _no_metrics()
            n, table = self._metrics or (0, None)
            if table is None or n != run.n_metric_records:
                try:
                    table = _grown(run, table) if table is not None else run.metrics()
                    self._damage.pop("metrics", None)
                except Exception as err:  # noqa: BLE001 - damaged metrics: say so, show the rest
                    self._damage["metrics"] = f"metrics: {type(err).__name__}: {err}"
                    table = _no_metrics()
                self._metrics = (run.n_metric_records, table)
            return table

    def version(self) -> list[Any]:
        """Return what changes when the view must redraw: counts, state, errors, pending work.

        While a view has work left (`pending`), every update gives a new version, so the page
        redraws and the view continues.
        """
        run = self.run
        counts = [0, 0] if run is None else [run.n_snapshots, run.n_metric_records]
        busy = self.n_updates if self.pending else 0
        return [*counts, self.n_done, self.state, self.error, busy, self.damage, self.generation]


def _grown(run: Run, kept: pd.DataFrame) -> pd.DataFrame:
    """Return ``kept`` (the run's first metric records) with the records committed since.

    Committed records never change, so only the new ones are read: a run logging every step
    has 100k records after 100k steps. A metric logged for the first time changes the columns
    (earlier records are NaN in it): then, or when the run has fewer records, all are re-read.
    """
    if run.n_metric_records < len(kept) or not len(kept):
        return run.metrics()
    new = run.metrics(start=len(kept))
    if list(new.columns) != list(kept.columns):
        return run.metrics()
    return pd.concat([kept, new], ignore_index=True)


def _no_metrics() -> pd.DataFrame:
    return pd.DataFrame({"step": np.zeros(0, np.int64)})


def _per_sample(run: Run, layer: str) -> bool:
    """Return whether ``layer`` recorded ``acts`` with a sample dimension."""
    try:
        return run.dims(layer)[1:2] == ("sample",)
    except (LayerNotInRunError, OSError, ValueError):
        return False
