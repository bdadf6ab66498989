"""The Dash app of `probe serve`: `build_app(root)` and `serve(root, host, port)`.

Routing, the run list (filtered by the sweep's grid columns) and the compare page live here;
the run page's callbacks are in `probe.serve.run_page`. Every run is reached through a
`probe.serve.registry.Registry`, so views are computed once per run and then incrementally.
"""

from __future__ import annotations

import os
import time
from typing import Any
from urllib.parse import unquote

from dash import ALL, Dash, Input, Output, State
from threadpoolctl import threadpool_limits
from werkzeug.serving import BaseWSGIServer, make_server

from probe.errors import ProbeError
from probe.serve import figures, pages, run_page
from probe.serve.cache import SUMMARY_COLUMNS, RunCache
from probe.serve.catalog import grid_columns
from probe.serve.registry import Registry

__all__ = ["LIST_BUDGET_S", "OPENING", "build_app", "limit_blas_threads", "make_app_server"]

#: Seconds of each run-list poll spent opening runs not opened before.
LIST_BUDGET_S = 1.0
#: The state shown for a run the list has not opened yet.
OPENING = "opening"


def _list_row(cache: RunCache, grid: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Return the run list's row of one run (re-reading only its commit counters).

    The row is kept until the run's `RunCache.version` changes: a sweep's list polls hundreds
    of runs, most of them closed, and redrawing their sparklines cost most of each poll.
    """
    run = cache.refresh()
    name = cache.entry.name
    row: dict[str, Any] = {"name": name, "grid": {c: v.get(name, "") for c, v in grid.items()}}
    if run is None:
        return row | {"error": cache.error}
    version = cache.version()
    kept = cache.memo.get(("list-row",))
    if kept is None or kept[0] != version:
        metrics = cache.metrics()
        loss = next((c for c in ("loss", "train_loss") if c in metrics), None)
        kept = version, {
            "model": run.attrs.get("model_class"),
            "state": cache.state,
            "n_snapshots": run.n_snapshots,
            "last_step": int(run.steps[-1]) if run.n_snapshots else "",
            "spark": figures.sparkline(metrics[loss].dropna().tolist()) if loss else "",
        }
        cache.memo[("list-row",)] = kept
    return row | kept[1]


def _opening_row(name: str, grid: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Return the row of a run not opened yet (the next polls open it)."""
    return {"name": name, "grid": {c: v.get(name, "") for c, v in grid.items()}, "state": OPENING}


def _route(registry: Registry, path: str | None) -> Any:
    """Return the page at URL ``path``."""
    path = path or "/"
    if path == "/":
        grid = grid_columns(registry.catalog.runs())
        return pages.runs_page({c: sorted(set(v.values())) for c, v in grid.items()})
    if path == "/compare":
        return _compare_page(registry)
    if path.startswith("/run/"):
        name = unquote(path[len("/run/") :])
        try:
            registry.get(name)
        except ProbeError as err:
            return pages.error_card("no such run", str(err))
        return pages.run_page(name)
    return pages.error_card("no such page", f"{path!r}; the run list is at /.")


def _compare_page(registry: Registry) -> Any:
    names = [e.name for e in registry.catalog.runs()]
    options: dict[str, None] = {}
    for name in names:
        cache = registry.get(name)
        if cache.refresh() is not None:
            options.update(dict.fromkeys(c for c in cache.metrics() if c not in ("step", "epoch")))
            options.update(
                dict.fromkeys(f"{s}:{layer}" for s in SUMMARY_COLUMNS for layer in cache.layers())
            )
    return pages.compare_page(names, list(options))


def _compare_series(registry: Registry, names: list[str], metric: str) -> dict[str, Any]:
    series = {}
    for name in names:
        try:
            cache = registry.get(name)
        except ProbeError:
            continue
        if cache.update(budget_s=0.5) is None:
            continue
        summary, _, layer = metric.partition(":")
        if layer and summary in SUMMARY_COLUMNS:
            table = cache.summaries()
            table = table[table["layer"] == layer]
            series[name] = (table["step"], table[summary])
        elif metric in (metrics := cache.metrics()):
            ok = metrics[metric].notna()
            series[name] = (metrics["step"][ok], metrics[metric][ok])
    return series


def build_app(root: str | os.PathLike[str]) -> Dash:
    """Return the Dash app that shows the runs under ``root`` (served by `make_app_server`).

    Raises
    ------
    RunNotFoundError
        ``root`` is not a folder.
    """
    registry = Registry(root)
    app = Dash(
        __name__,
        title="probe serve",
        suppress_callback_exceptions=True,  # the pages' components come and go with the route
        assets_folder=os.devnull,  # no static files of our own: nothing to read from disk
        update_title="",  # no 'Updating...' flicker in the tab title at every poll
    )
    app.layout = pages.shell(str(registry.catalog.root))

    @app.callback(Output("page", "children"), Input("url", "pathname"))
    def route(path: str | None) -> Any:
        return _route(registry, path)

    @app.callback(
        Output("runs-table", "children"),
        Input("runs-tick", "n_intervals"),
        Input({"filter": ALL}, "value"),
        State({"filter": ALL}, "id"),
    )
    def runs_table(_: Any, chosen: list[Any], ids: list[dict[str, str]]) -> Any:
        entries = registry.catalog.runs()
        if not entries:
            return pages.error_card("no runs", f"no run store under {registry.catalog.root}.")
        grid = grid_columns(entries)
        wanted = {i["filter"]: set(v) for i, v in zip(ids, chosen, strict=True) if v}
        shown = [
            e
            for e in entries
            if all(grid[c].get(e.name) in vals for c, vals in wanted.items() if c in grid)
        ]
        # Opening a run costs ~25 ms: a sweep's hundreds of runs are opened a budget per poll
        # (at least one; listed by name meanwhile), so the list appears at once and fills in.
        start, rows, opened = time.perf_counter(), [], 0
        for e in shown:
            cache = registry.get(e.name)
            if cache.opened:
                rows.append(_list_row(cache, grid))
            elif not opened or time.perf_counter() - start < LIST_BUDGET_S:
                rows.append(_list_row(cache, grid))
                opened += 1
            else:
                rows.append(_opening_row(e.name, grid))
        return pages.runs_table(rows, list(grid))

    @app.callback(
        Output("compare-graph", "figure"),
        Input("compare-runs", "value"),
        Input("compare-metric", "value"),
        Input("compare-tick", "n_intervals"),
    )
    def compare(names: list[str] | None, metric: str | None, _: Any) -> Any:
        series = _compare_series(registry, names or [], metric) if metric else {}
        return figures.lines_figure(series, metric or "", metric or "")

    run_page.register(app, registry)
    return app


def limit_blas_threads() -> None:
    """Give every BLAS/OpenMP pool of this process one thread, now and for libraries loaded later.

    The views are many small products and SVDs (e.g. (2000, 64)): one thread is fastest for
    them, and several spin against the training process on the same cores (an SVD measured
    0.6 s instead of 0.4 ms on a loaded 2-core machine).
    """
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"  # read by a BLAS when it loads (scipy's, on first use)
    threadpool_limits(limits=1)  # those loaded already (numpy's)


def make_app_server(
    root: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 8050
) -> BaseWSGIServer:
    """Return a threaded WSGI server of `build_app` bound to ``host:port`` (0: a free port).

    Call ``serve_forever()`` to serve and ``shutdown()`` (from another thread) to stop.
    Limits this process's BLAS pools to one thread (`limit_blas_threads`).
    """
    limit_blas_threads()
    app = build_app(root)
    return make_server(host, port, app.server, threaded=True)
