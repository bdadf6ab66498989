"""The callbacks of one run's page: poll for commits, then redraw what the commit changed.

`register(app, registry)` adds them to the app. A page polls every `probe.serve.pages.TICK_MS`;
the poll updates the run's cache (new snapshots only) and passes on a version only when
something changed, so an idle page costs one read of the run's root attrs per tick. The step
slider follows the newest snapshot while it sits on the last one.
"""

from __future__ import annotations

from typing import Any

from dash import Dash, Input, Output, State, html
from dash.exceptions import PreventUpdate

from probe.errors import ProbeError
from probe.serve import figures, pages, views
from probe.serve.cache import SUMMARY_COLUMNS, RunCache
from probe.serve.registry import Registry
from probe.store import Run

__all__ = ["register"]

#: Seconds of summary computation per poll: a long run's page appears at once and fills in.
BUDGET_S = 0.5


def _info(cache: RunCache) -> Any:
    run = cache.run
    if run is None:
        return pages.error_card("this run cannot be read", cache.error or "")
    last = int(run.steps[-1]) if run.n_snapshots else "none yet"
    parts: list[Any] = [
        html.Span(f"state: {cache.state}", id="run-state"),
        " · layers: ",
        html.Span(", ".join(run.layers), id="run-layers"),
        f" · snapshots: {run.n_snapshots} · last step: ",
        html.Span(str(last), id="last-step"),
        f" · summarised: {cache.n_done}/{run.n_snapshots}",
    ]
    out: list[Any] = [html.Div(parts)]
    if cache.damage:
        out.append(pages.error_card("part of this run cannot be read", cache.damage))
    return out


def _step_at(run: Run, index: Any) -> int:
    """Return the step of the snapshot at slider position ``index`` (clamped to the last)."""
    return int(run.steps[min(int(index or 0), run.n_snapshots - 1)])


def _slider(n: int, steps: list[int], value: int | None, old_max: int | None) -> tuple[Any, ...]:
    """Return the slider's max, marks and value (following the last snapshot when on it)."""
    top = max(n - 1, 0)
    if value is None or old_max is None or value >= old_max or value > top:
        value = top
    every = max(1, -(-n // 8))
    marks = {i: str(steps[i]) for i in range(0, n, every)} | ({top: str(steps[top])} if n else {})
    return top, marks, value


def register(app: Dash, registry: Registry) -> None:
    """Add the run page's callbacks to ``app``."""

    def cache_of(name: str) -> RunCache:
        try:
            return registry.get(name)
        except ProbeError:
            raise PreventUpdate from None  # the route shows the error card

    @app.callback(
        Output("version", "data"),
        Input("tick", "n_intervals"),
        State("run-name", "data"),
        State("version", "data"),
    )
    def poll(_: Any, name: str, old: Any) -> Any:
        cache = cache_of(name)
        cache.update(BUDGET_S)
        version = cache.version()
        if version == old:
            raise PreventUpdate
        return version

    @app.callback(
        Output("run-info", "children"),
        Output("curves", "figure"),
        Output("summaries", "figure"),
        Output("layer", "options"),
        Output("layer", "value"),
        Output("step", "max"),
        Output("step", "marks"),
        Output("step", "value"),
        Output("theory-layer", "options"),
        Output("theory-layer", "value"),
        Input("version", "data"),
        State("run-name", "data"),
        State("layer", "value"),
        State("step", "value"),
        State("step", "max"),
        State("theory-layer", "value"),
    )
    def overview(
        _: Any, name: str, layer: Any, value: Any, old_max: Any, theory_layer: Any
    ) -> tuple[Any, ...]:
        cache = cache_of(name)
        with cache.lock:
            run = cache.run
            if run is None:
                empty = figures.message_figure("")
                return _info(cache), empty, empty, [], None, 0, {}, 0, [], None
            layers = cache.layers()
            layer = layer if layer in layers else (layers[-1] if layers else None)
            steps = [int(s) for s in run.steps]
            theory = _theory_layers(cache)
            if theory_layer not in theory:
                theory_layer = theory[0] if theory else None
            return (
                _info(cache),
                figures.curves_figure(cache.metrics()),
                figures.summaries_figure(cache.summaries(), SUMMARY_COLUMNS),
                layers,
                layer,
                *_slider(len(steps), steps, value, old_max),
                theory,
                theory_layer,
            )

    @app.callback(
        Output("embedding", "figure"),
        Input("step", "value"),
        Input("layer", "value"),
        State("run-name", "data"),
    )
    def embedding(index: Any, layer: Any, name: str) -> Any:
        cache = cache_of(name)
        with cache.lock:
            run = cache.run
            if run is None or layer is None or not run.n_snapshots:
                return figures.message_figure("no snapshot yet", "embedding")
            step = _step_at(run, index)
            try:
                frame = views.embedding_frame(cache, layer, step)
                ref = views.embedding_frame(cache, layer, cache.memo[("embed-ref", layer)])
            except ProbeError as err:
                return figures.message_figure(str(err), "embedding")
            span = 1.15 * float(max(ref[["x", "y"]].abs().max().max(), 1e-12))
            span = max(span, 1.05 * float(frame[["x", "y"]].abs().max().max()))
            return figures.embedding_figure(frame, step, layer, span)

    @app.callback(
        Output("cka-steps", "figure"),
        Input("version", "data"),
        Input("layer", "value"),
        State("run-name", "data"),
    )
    def cka_steps(_: Any, layer: Any, name: str) -> Any:
        cache = cache_of(name)
        with cache.lock:
            if cache.run is None or layer is None or not cache.run.n_snapshots:
                return figures.message_figure("no snapshot yet", "CKA step x step")
            try:
                steps, M = views.cka_steps(cache, layer)
            except ProbeError as err:  # a damaged chunk: say so, as the embedding does
                return figures.message_figure(str(err), "CKA step x step")
            return figures.heatmap_figure(M, steps, f"CKA between steps: {layer}")

    @app.callback(
        Output("cka-layers", "figure"),
        Input("step", "value"),
        Input("version", "data"),
        State("run-name", "data"),
    )
    def cka_layers(index: Any, _: Any, name: str) -> Any:
        cache = cache_of(name)
        with cache.lock:
            run = cache.run
            if run is None or not run.n_snapshots:
                return figures.message_figure("no snapshot yet", "CKA layer x layer")
            step = _step_at(run, index)
            layers = cache.layers()
            try:
                M = views.cka_layers(cache, layers, step)
            except ProbeError as err:
                return figures.message_figure(str(err), "CKA layer x layer")
            return figures.heatmap_figure(M, layers, f"CKA between layers at step {step}")

    @app.callback(
        Output("geometry", "children"),
        Input("geometry-go", "n_clicks"),
        State("step", "value"),
        State("run-name", "data"),
        prevent_initial_call=True,
    )
    def geometry(_: Any, index: Any, name: str) -> Any:
        cache = cache_of(name)
        with cache.lock:
            run = cache.run
            if run is None or not run.n_snapshots:
                return "no snapshot yet"
            step = _step_at(run, index)
            layers = cache.layers()
        try:
            table = views.geometry_table(cache, layers, step)
        except ProbeError as err:
            return f"geometry at step {step} cannot be computed: {err}"
        return [html.Div(f"at step {step}"), _table(table)]

    @app.callback(
        Output("nfa", "figure"),
        Output("two-point", "figure"),
        Input("version", "data"),
        Input("theory-layer", "value"),
        State("run-name", "data"),
    )
    def theory(_: Any, layer: Any, name: str) -> Any:
        cache = cache_of(name)
        with cache.lock:
            run = cache.run
            if run is None or not run.n_snapshots or layer is None:
                empty = figures.message_figure("no snapshot yet")
                return empty, empty
            nfa_layers = views.nfa_layers(cache)
            if layer in nfa_layers:
                try:
                    nfa = figures.nfa_figure(views.nfa_table(cache, layer), layer)
                except ProbeError as err:
                    nfa = figures.message_figure(str(err), "NFM vs AGOP")
            elif nfa_layers:
                text = f"no AGOP of {layer}; recorded for {', '.join(nfa_layers)}"
                nfa = figures.message_figure(text, "NFM vs AGOP")
            else:
                nfa = figures.message_figure("the run recorded no AGOP", "NFM vs AGOP")
            why = views.two_point_why(run)
            if not why and layer not in cache.layers():
                why = f"needs per-sample activations of {layer}, which the run did not record"
            if why:
                two = figures.message_figure(f"two-point fit: {why}", "two-point effective theory")
            else:
                try:
                    two = figures.two_point_figure(*views.two_point(cache, layer), layer)
                except ProbeError as err:
                    two = figures.message_figure(str(err), "two-point effective theory")
            return nfa, two


def _theory_layers(cache: RunCache) -> list[str]:
    """Return the layers the theory tab can show: those with AGOPs first, then the others."""
    nfa = views.nfa_layers(cache)
    return nfa + [name for name in cache.layers() if name not in nfa]


def _table(table: Any) -> Any:
    """Return a small HTML table of a DataFrame (its index as the first column)."""

    def cell(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    style = {"padding": "2px 8px", "borderBottom": "1px solid #eee", "fontSize": "12px"}
    head = html.Tr([html.Th(c, style=style) for c in ["", *table.columns]])
    rows = [html.Tr([html.Td(cell(v), style=style) for v in r]) for r in table.itertuples()]
    return html.Table([html.Thead(head), html.Tbody(rows)], style={"borderCollapse": "collapse"})
