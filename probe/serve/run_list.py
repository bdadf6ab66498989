"""The run list of `probe serve`: `list_page` returns one page of runs, filtered, with states.

A sweep's folder holds hundreds of runs, and the page polls every few seconds. Each poll:

* re-reads the commit counters of every run opened before (a closed run whose metadata did not
  change costs one ``stat``: `probe.serve.cache.RunCache.refresh`), so states and counts are
  current;
* opens runs not opened yet for about `LIST_BUDGET_S` (at least one; the shown page's first),
  so the list appears at once and fills in; until then a run's state is `OPENING`;
* keeps the runs that match the grid-column and state filters and returns one page of
  `PAGE_SIZE` rows. Only the page's rows are drawn (their loss sparklines are kept until the
  run's `probe.serve.cache.RunCache.version` changes), and `ListPage.digest` lets the page
  skip a redraw when nothing on it changed: a 750-run list sent every row with its sparkline at
  every poll (1.8 MB), and the browser never caught up.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from probe.serve import catalog, figures
from probe.serve.cache import RunCache
from probe.serve.catalog import RunEntry, grid_columns, natural_key
from probe.serve.registry import Registry
from probe.serve.state import CLOSED, RECORDING, STOPPED

__all__ = [
    "LIST_BUDGET_S",
    "OPENING",
    "PAGE_SIZE",
    "STATES",
    "UNREADABLE",
    "ListPage",
    "list_page",
]

#: Runs per page of the list.
PAGE_SIZE = 50
#: Seconds of each poll spent opening runs not opened before.
LIST_BUDGET_S = 1.0
#: The state of a run the list has not opened yet (a later poll opens it).
OPENING = "opening"
#: The state of a run that cannot be read (its row shows the error).
UNREADABLE = "cannot be read"
#: Every state a row can have, in the order the state filter lists them.
STATES = (RECORDING, STOPPED, CLOSED, OPENING, UNREADABLE)


@dataclass(frozen=True)
class ListPage:
    """One page of the run list.

    Attributes
    ----------
    rows : list of dict
        The page's runs: ``name``, ``state``, ``grid`` (column -> value text) and, for a run
        that was read, ``model``, ``n_snapshots``, ``last_step``, ``spark`` (an SVG data URI);
        for one that cannot be read, ``error``.
    page : int
        The page shown (0-based; clamped to the pages there are).
    start : int
        The position of its first row among the runs that match the filters (0-based).
    n_pages : int
        Pages of runs that match the filters (at least 1).
    n_matching : int
        Runs that match the filters.
    counts : dict of str to int
        How many runs that match the grid filters are in each state (`STATES`).
    grid_values : dict of str to list of str
        The sweep's grid columns (settings that differ between runs) and the values of each:
        the options of the grid filters, which grow as new runs appear.
    """

    rows: list[dict[str, Any]]
    page: int
    start: int
    n_pages: int
    n_matching: int
    counts: dict[str, int]
    grid_values: dict[str, list[str]]

    @property
    def digest(self) -> str:
        """Return a hash of everything the page shows (equal digests: nothing to redraw)."""
        shown = [self.rows, self.start, self.n_pages, self.n_matching, self.counts,
                 self.grid_values]
        return hashlib.sha256(json.dumps(shown, default=str).encode()).hexdigest()


def _state(cache: RunCache) -> str:
    if cache.error is not None:
        return UNREADABLE
    return cache.state if cache.run is not None else OPENING


def _row(cache: RunCache, grid: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Return the list row of one run from what its cache read last."""
    with cache.lock:  # a run page may be refreshing the same run
        return _row_locked(cache, grid)


def _row_locked(cache: RunCache, grid: dict[str, dict[str, str]]) -> dict[str, Any]:
    name = cache.entry.name
    row: dict[str, Any] = {
        "name": name,
        "state": _state(cache),
        "grid": {c: v.get(name, "") for c, v in grid.items()},
    }
    run = cache.run
    if cache.error is not None or run is None:
        return row | ({"error": cache.error} if cache.error is not None else {})
    if cache.damage is not None:
        row["damage"] = cache.damage
    version = cache.version()
    kept = cache.memo.get(("list-row",))
    if kept is None or kept[0] != version:
        metrics = cache.metrics()
        loss = next((c for c in ("loss", "train_loss") if c in metrics), None)
        kept = version, {
            "model": run.attrs.get("model_class"),
            "n_snapshots": run.n_snapshots,
            "last_step": int(run.steps[-1]) if run.n_snapshots else "",
            "spark": figures.sparkline(metrics[loss].dropna().tolist()) if loss else "",
        }
        cache.memo[("list-row",)] = kept
    return row | kept[1]


def _refresh(caches: list[RunCache], first: range, budget_s: float) -> None:
    """Re-read every opened run; open others for ``budget_s`` (at least one), ``first`` first."""
    order = [caches[i] for i in first] + [c for i, c in enumerate(caches) if i not in first]
    start, opened = time.perf_counter(), 0
    for cache in order:
        if not cache.opened:
            if opened and time.perf_counter() - start >= budget_s:
                continue
            opened += 1
        cache.refresh()


def list_page(
    registry: Registry,
    grid_filter: dict[str, set[str]] | None = None,
    states: set[str] | None = None,
    page: int = 0,
    budget_s: float | None = None,
) -> ListPage:
    """Return one page of the runs under the registry's folder.

    Parameters
    ----------
    registry : Registry
        The served runs.
    grid_filter : dict of str to set of str, optional
        Keep runs whose grid column has one of these value texts (a column not in the grid is
        ignored); None or empty: every run.
    states : set of str, optional
        Keep runs in one of these `STATES`; None or empty: every state.
    page : int
        The page to return (0-based; clamped to the pages there are).
    budget_s : float, optional
        Seconds spent opening runs not opened before; default `LIST_BUDGET_S`.
    """
    entries: list[RunEntry] = registry.catalog.runs(max_age_s=catalog.WALK_EVERY_S)
    grid = grid_columns(entries)
    wanted = {c: v for c, v in (grid_filter or {}).items() if v and c in grid}
    matching = [e for e in entries if all(grid[c].get(e.name) in v for c, v in wanted.items())]
    caches = [registry.get(e.name) for e in matching]
    n_pages = max(1, -(-len(caches) // PAGE_SIZE))
    # Open the page that would be shown unfiltered by state first: with no state filter, the
    # one shown.
    likely = min(max(page, 0), n_pages - 1)
    first = range(likely * PAGE_SIZE, min((likely + 1) * PAGE_SIZE, len(caches)))
    _refresh(caches, first, LIST_BUDGET_S if budget_s is None else budget_s)
    counts = dict.fromkeys(STATES, 0)
    for cache in caches:
        counts[_state(cache)] += 1
    if states:
        caches = [c for c in caches if _state(c) in states]
    n_pages = max(1, -(-len(caches) // PAGE_SIZE))
    page = min(max(page, 0), n_pages - 1)
    start = page * PAGE_SIZE
    rows = [_row(c, grid) for c in caches[start : start + PAGE_SIZE]]
    values = {c: sorted(set(v.values()), key=natural_key) for c, v in grid.items()}
    return ListPage(rows, page, start, n_pages, len(caches), counts, values)
