"""The Dash app of `probe serve`: `build_app(root)` and `make_app_server(root, host, port)`.

Routing, the run list (`probe.serve.run_list`: paged, filtered by the sweep's grid columns and
by state) and the compare page live here;
the run page's callbacks are in `probe.serve.run_page`. Every run is reached through a
`probe.serve.registry.Registry`, so views are computed once per run and then incrementally.
"""

from __future__ import annotations

import os
import time
from typing import Any
from urllib.parse import parse_qs, unquote

from dash import ALL, Dash, Input, Output, State, ctx, no_update
from dash.exceptions import PreventUpdate
from threadpoolctl import threadpool_limits
from werkzeug.serving import BaseWSGIServer, make_server

from probe.errors import ProbeError
from probe.serve import catalog, figures, pages, run_page
from probe.serve.cache import SUMMARY_COLUMNS
from probe.serve.catalog import grid_columns, natural_key
from probe.serve.registry import Registry
from probe.serve.run_list import STATES, list_page

__all__ = ["COMPARE_BUDGET_S", "build_app", "limit_blas_threads", "make_app_server"]

#: Seconds of summary computation per compare redraw, shared by the chosen runs.
COMPARE_BUDGET_S = 1.0


def _route(registry: Registry, path: str | None, query: str | None = None) -> Any:
    """Return the page at URL ``path`` (``query``: its ``?...`` part, e.g. compare's runs)."""
    path = path or "/"
    if path == "/":
        grid = grid_columns(registry.catalog.runs(max_age_s=catalog.WALK_EVERY_S))
        values = {c: sorted(set(v.values()), key=natural_key) for c, v in grid.items()}
        return pages.runs_page(values, [*STATES])
    if path == "/compare":
        return _compare_page(registry, parse_qs((query or "").lstrip("?")).get("run", []))
    if path.startswith("/run/"):
        name = unquote(path[len("/run/") :])
        try:
            registry.get(name)
        except ProbeError as err:
            return pages.error_card("no such run", str(err))
        return pages.run_page(name)
    return pages.error_card("no such page", f"{path!r}; the run list is at /.")


def _compare_page(registry: Registry, chosen: list[str]) -> Any:
    """Return the compare page with the runs ``chosen`` (unknown names dropped; none: 4 runs)."""
    names = [e.name for e in registry.catalog.runs(max_age_s=catalog.WALK_EVERY_S)]
    known = set(names)
    chosen = [n for n in chosen if n in known] or names[:4]
    return pages.compare_page(names, chosen)


def _compare_options(registry: Registry, names: list[str]) -> list[str]:
    """Return the metrics and layer summaries (``summary:layer``) of the runs ``names``."""
    options: dict[str, None] = {}
    for name in names:
        try:
            cache = registry.get(name)
        except ProbeError:
            continue
        if cache.refresh() is not None:
            options.update(dict.fromkeys(c for c in cache.metrics() if c not in ("step", "epoch")))
            options.update(
                dict.fromkeys(f"{s}:{layer}" for s in SUMMARY_COLUMNS for layer in cache.layers())
            )
    return list(options)


def _names(value: Any) -> list[str]:
    """Return the run names a compare input holds (a list of str; anything else: none)."""
    return [n for n in value if isinstance(n, str)] if isinstance(value, list) else []


def _compare_series(registry: Registry, names: list[str], metric: str) -> dict[str, Any]:
    """Return ``{run: (steps, values)}`` of ``metric`` (a metric, or ``summary:layer``).

    Summaries are computed as the run page does, for `COMPARE_BUDGET_S` per redraw in all (at
    least one snapshot), the least summarised runs first, so fifty runs draw at once and fill in.
    """
    caches = {}
    for name in names:
        try:
            caches[name] = registry.get(name)
        except ProbeError:
            continue
    summary, _, layer = metric.partition(":")
    summarise = bool(layer) and summary in SUMMARY_COLUMNS
    if summarise:
        def done(c: Any) -> float:
            return c.n_done / c.run.n_snapshots if c.run is not None and c.run.n_snapshots else 0

        start = time.perf_counter()
        for k, cache in enumerate(sorted(caches.values(), key=done)):
            left = COMPARE_BUDGET_S - (time.perf_counter() - start)
            if left <= 0 and k:  # at least one snapshot per redraw, so any budget progresses
                break
            cache.update(max(left, 0.0))
    series = {}
    for name, cache in caches.items():
        if cache.refresh() is None:
            continue
        if summarise:
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

    @app.callback(Output("page", "children"), Input("url", "pathname"), Input("url", "search"))
    def route(path: str | None, query: str | None) -> Any:
        return _route(registry, path, query)

    @app.callback(
        Output("runs-table", "children"),
        Output("runs-count", "children"),
        Output("runs-page", "data"),
        Output("runs-digest", "data"),
        Output("runs-compare", "href"),
        Output("runs-filters", "children"),
        Output({"filter": ALL}, "options"),
        Input("runs-tick", "n_intervals"),
        Input({"filter": ALL}, "value"),
        Input("runs-state", "value"),
        Input("runs-prev", "n_clicks"),
        Input("runs-next", "n_clicks"),
        State({"filter": ALL}, "id"),
        State("runs-page", "data"),
        State("runs-digest", "data"),
    )
    def runs_table(
        _: Any, chosen: list[Any], states: Any, _p: Any, _n: Any,
        ids: list[dict[str, str]], page_data: Any, digest: Any,
    ) -> tuple[Any, ...]:
        columns = [i["filter"] for i in ids]
        if not registry.catalog.runs(max_age_s=catalog.WALK_EVERY_S):
            card = pages.error_card("no runs", f"no run store under {registry.catalog.root}.")
            return card, "", None, None, "/compare", no_update, [no_update] * len(ids)
        grid_filter = {c: sorted(v) for c, v in zip(columns, chosen, strict=True) if v}
        states = sorted(states or ())
        # The page number is kept with the filters it was for: other filters, first page.
        filters = [grid_filter, states]
        page = page_data[0] if isinstance(page_data, list) and page_data[1:] == [filters] else 0
        if ctx.triggered_id in ("runs-prev", "runs-next"):
            page += 1 if ctx.triggered_id == "runs-next" else -1
        shown = list_page(registry, {c: set(v) for c, v in grid_filter.items()}, set(states), page)
        if shown.digest == digest:
            raise PreventUpdate  # nothing on the page changed: send nothing
        count = pages.runs_count(
            shown.start + 1, shown.start + len(shown.rows), shown.n_matching, shown.counts
        )
        table = pages.runs_table(shown.rows, list(shown.grid_values))
        href = pages.compare_href([r["name"] for r in shown.rows])
        new_filters: Any = no_update
        options: list[Any] = [no_update] * len(ids)
        if list(shown.grid_values) != columns:  # runs that appeared differ in new settings
            new_filters = pages.grid_filters(shown.grid_values, grid_filter)
        else:  # the same columns; a new run may bring a new value
            options = [shown.grid_values[c] for c in columns]
        page_data = [shown.page, filters]
        return table, count, page_data, shown.digest, href, new_filters, options

    @app.callback(
        Output("compare-runs", "options"),
        Output("compare-metric", "options"),
        Output("compare-metric", "value"),
        Input("compare-runs", "value"),
        Input("compare-tick", "n_intervals"),
        State("compare-runs", "options"),
        State("compare-metric", "options"),
        State("compare-metric", "value"),
    )
    def compare_options(
        names: list[str] | None, _: Any, old_runs: Any, old_metrics: Any, metric: str | None
    ) -> tuple[Any, ...]:
        runs = [e.name for e in registry.catalog.runs(max_age_s=catalog.WALK_EVERY_S)]
        metrics = _compare_options(registry, _names(names))
        chosen = metric if metric in metrics else next(
            (m for m in ("loss", *metrics) if m in metrics), None
        )
        return (
            no_update if runs == old_runs else runs,
            no_update if metrics == old_metrics else metrics,
            no_update if chosen == metric else chosen,
        )

    @app.callback(
        Output("compare-graph", "figure"),
        Input("compare-runs", "value"),
        Input("compare-metric", "value"),
        Input("compare-tick", "n_intervals"),
        Input("compare-log", "value"),
    )
    def compare(names: Any, metric: Any, _: Any, log: Any) -> Any:
        metric = metric if isinstance(metric, str) else ""
        series = _compare_series(registry, _names(names), metric) if metric else {}
        return figures.lines_figure(series, metric, metric, log_y=bool(log))

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
