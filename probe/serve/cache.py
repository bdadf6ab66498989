"""What the live view knows of one run: `RunCache` keeps it up to date incrementally.

`RunCache.update` re-reads the commit counters (`probe.store.Run.refresh`, committed rows only)
and computes the per-layer summaries of the snapshots committed since the last call: CKA to the
previous snapshot (`probe.analysis.similarity.linear_cka`), effective rank
(`probe.analysis.dimension.effective_rank`) and class separation
(`probe.analysis.margins.centroid_separation`): `probe.analysis.summaries.snapshot_summary`.
Work is bounded per call by a time budget, so a long run's first view appears at once and fills
in over the next polls. A run that cannot be read keeps its message in `error`.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from probe.analysis.summaries import SUMMARY_NAMES, snapshot_summary
from probe.errors import LayerNotInRunError
from probe.serve.catalog import RunEntry
from probe.serve.state import CLOSED, run_state
from probe.store import Run, open_run

__all__ = ["SUMMARY_COLUMNS", "RunCache"]

SUMMARY_COLUMNS = ("cka_prev", "effective_rank", "class_separation")


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
        Why the run cannot be shown (a malformed or partly written store), else None.
    rows : list of dict
        One summary row per (snapshot, layer) computed so far: ``step``, ``layer`` and
        `SUMMARY_COLUMNS`.
    n_done : int
        Snapshots whose summaries are in ``rows``.
    """

    def __init__(self, entry: RunEntry) -> None:
        self.entry = entry
        self.run: Run | None = None
        self.error: str | None = None
        self.rows: list[dict[str, Any]] = []
        self.n_done = 0
        self.state = ""
        self.lock = threading.RLock()
        self._prev: dict[str, npt.NDArray[Any]] = {}
        self._metrics: tuple[int, pd.DataFrame] | None = None
        self.memo: dict[tuple[Any, ...], Any] = {}  # views computed on demand (probe.serve.views)
        self.pending: set[tuple[str, ...]] = set()  # views that computed part of their work
        self.n_updates = 0
        self._closed_stamp: tuple[int, int] | None = None  # root zarr.json when seen closed

    @property
    def opened(self) -> bool:
        """Whether the run was opened at least once (successfully or into `error`)."""
        return self.run is not None or self.error is not None

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = (self.entry.path / "zarr.json").stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    # ------------------------------------------------------------------ reading
    def refresh(self) -> Run | None:
        """Re-read the commit counters and the writer's state; return the run (None: `error`).

        A closed run whose root metadata is unchanged is not re-read: nothing can commit to it
        without first rewriting those attrs (a resumed writer clears ``closed_utc``, an
        overwrite replaces the store), and a sweep's list polls hundreds of closed runs.
        """
        with self.lock:
            unchanged = self._stamp() == self._closed_stamp
            if self.run is not None and self.state == CLOSED and unchanged:
                return self.run
            try:
                stamp = self._stamp()
                self.run = open_run(self.entry.path) if self.run is None else self.run.refresh()
                merge = self.run.rank_merge
                ranks = [] if merge is None else [r if r is None else r.attrs for r in merge.ranks]
                self.state = run_state(self.run.attrs, self.run.path, ranks)
                self._closed_stamp = stamp if self.state == CLOSED else None
                self.error = None
            except Exception as err:  # noqa: BLE001 - any damage becomes the run's error card
                self.run, self.error = None, f"{type(err).__name__}: {err}"
            return self.run

    def update(self, budget_s: float = 1.0) -> Run | None:
        """Refresh, then summarise new snapshots for about ``budget_s`` seconds (at least one)."""
        with self.lock:
            run = self.refresh()
            self.n_updates += 1
            if run is None:
                return None
            if run.n_snapshots < self.n_done:  # rewritten from scratch (overwrite=True)
                self.rows, self.n_done, self._prev, self.memo = [], 0, {}, {}
                self.pending = set()
            start = time.perf_counter()
            try:
                # At least one snapshot per call, so any budget makes progress.
                while self.n_done < run.n_snapshots:
                    self._summarise(run, self.n_done)
                    self.n_done += 1
                    if time.perf_counter() - start >= budget_s:
                        break
            except Exception as err:  # noqa: BLE001 - a damaged chunk: show it, keep serving
                self.error = f"{type(err).__name__}: {err}"
            return run

    def layers(self) -> list[str]:
        """Return the run's layers that have per-sample activations (``acts``)."""
        run = self.run
        if run is None:
            return []
        return [name for name in run.layers if _per_sample(run, name)]

    def _summarise(self, run: Run, i: int) -> None:
        step = int(run.steps[i])
        y = run.targets
        labels = y if y is not None and y.ndim == 1 and y.dtype.kind in "biu" else None
        for layer in self.layers():
            acts = run.acts(layer, step)
            row = snapshot_summary(acts, self._prev.get(layer), labels)
            self.rows.append(
                {"step": step, "layer": layer}
                | {col: row[name] for col, name in zip(SUMMARY_COLUMNS, SUMMARY_NAMES, strict=True)}
            )
            self._prev[layer] = acts

    # ------------------------------------------------------------------ tables
    def summaries(self) -> pd.DataFrame:
        """Return the summaries computed so far: columns ``step, layer`` and `SUMMARY_COLUMNS`."""
        with self.lock:
            return pd.DataFrame(self.rows, columns=["step", "layer", *SUMMARY_COLUMNS])

    def metrics(self) -> pd.DataFrame:
        """Return the run's logged metrics (re-read only when new records were committed)."""
        with self.lock:
            run = self.run
            if run is None:
                return pd.DataFrame({"step": np.zeros(0, np.int64)})
            if self._metrics is None or self._metrics[0] != run.n_metric_records:
                self._metrics = (run.n_metric_records, run.metrics())
            return self._metrics[1]

    def version(self) -> list[Any]:
        """Return what changes when the view must redraw: counts, state, error, pending work.

        While a view has work left (`pending`), every update gives a new version, so the page
        redraws and the view continues.
        """
        run = self.run
        counts = [0, 0] if run is None else [run.n_snapshots, run.n_metric_records]
        busy = self.n_updates if self.pending else 0
        return [*counts, self.n_done, self.state, self.error, busy]


def _per_sample(run: Run, layer: str) -> bool:
    """Return whether ``layer`` recorded ``acts`` with a sample dimension."""
    try:
        return run.dims(layer)[1:2] == ("sample",)
    except (LayerNotInRunError, OSError, ValueError):
        return False
