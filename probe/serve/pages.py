"""The pages of the live view as Dash layouts: the run list, one run, compare, error cards.

Layouts only; what fills them is computed by the callbacks of `probe.serve.app` and
`probe.serve.run_page`. Runs are addressed as ``/run/<name>`` with ``name`` URL-quoted.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from dash import dcc, html

__all__ = [
    "TICK_MS",
    "compare_href",
    "compare_page",
    "error_card",
    "grid_filters",
    "run_href",
    "run_page",
    "runs_count",
    "runs_page",
    "runs_table",
    "shell",
]

#: How often an open page asks for new commits (a new snapshot shows within about 2 ticks).
TICK_MS = 1000

_CARD = {"border": "1px solid #c0392b", "background": "#fdecea", "padding": "8px 12px",
         "margin": "8px 0", "borderRadius": "4px"}
_FILTER = {"width": "220px", "display": "inline-block", "marginRight": "12px"}
_CELL = {"padding": "4px 10px", "borderBottom": "1px solid #ddd", "textAlign": "left"}
_STATE_COLOUR = {"recording": "#1e8449", "closed": "#555", "stopped without close": "#c0392b"}


def run_href(name: str) -> str:
    """Return the URL path of run ``name``."""
    return "/run/" + quote(name, safe="")


def shell(root: str) -> html.Div:
    """Return the page frame: the URL, a navigation bar and the routed page."""
    nav = html.Div(
        [
            html.B("probe serve", style={"marginRight": "16px"}),
            dcc.Link("runs", href="/", style={"marginRight": "12px"}),
            dcc.Link("compare", href="/compare"),
            html.Span(root, style={"marginLeft": "16px", "color": "#777"}),
        ],
        style={"padding": "8px 0", "borderBottom": "1px solid #ddd"},
    )
    return html.Div(
        [dcc.Location(id="url"), nav, html.Div(id="page")],
        style={"fontFamily": "sans-serif", "margin": "0 16px"},
    )


def error_card(title: str, text: str) -> html.Div:
    """Return a red card that says what could not be shown and why."""
    return html.Div([html.B(title), html.Div(text)], className="error-card", style=_CARD)


def runs_page(grid: dict[str, list[str]], states: list[str]) -> html.Div:
    """Return the run list page: a multi-select filter per grid column and one of states.

    The table shows one page of runs; the pager moves between pages and ``runs-count`` says
    which runs are shown and how many are in each state.
    """
    state = dcc.Dropdown(states, multi=True, id="runs-state")
    filters = [
        html.Div(grid_filters(grid, {}), id="runs-filters", style={"display": "inline-block"}),
        html.Div([html.Label("state"), state], style=_FILTER),
    ]
    pager = html.Div(
        [
            html.Button("‹ previous", id="runs-prev"),
            html.Span(id="runs-count", style={"margin": "0 12px"}),
            html.Button("next ›", id="runs-next"),
            dcc.Link("compare these runs", id="runs-compare", href="/compare",
                     style={"marginLeft": "16px"}),
        ],
        style={"margin": "8px 0"},
    )
    return html.Div(
        [
            html.H3("runs"),
            html.Div(filters),
            pager,
            html.Div(id="runs-table"),
            dcc.Store(id="runs-page"),
            dcc.Store(id="runs-digest"),
            dcc.Interval(id="runs-tick", interval=2 * TICK_MS),
        ]
    )


def grid_filters(grid: dict[str, list[str]], chosen: dict[str, list[str]]) -> list[html.Div]:
    """Return one multi-select filter per grid column (its values), ``chosen`` selected."""
    return [
        html.Div(
            [
                html.Label(col),
                dcc.Dropdown(values, chosen.get(col, []), multi=True, id={"filter": col}),
            ],
            style=_FILTER,
        )
        for col, values in grid.items()
    ]


def runs_count(first: int, last: int, n: int, counts: dict[str, int]) -> str:
    """Return the pager's text: which runs are shown, and how many are in each state.

    Examples
    --------
    >>> runs_count(51, 100, 750, {"recording": 3, "closed": 747, "opening": 0})
    'runs 51-100 of 750 · 3 recording · 747 closed'
    """
    shown = f"runs {first}-{last} of {n}" if n else "no run matches the filters"
    return " · ".join([shown, *(f"{k} {s}" for s, k in counts.items() if k)])


def runs_table(rows: list[dict[str, Any]], grid_cols: list[str]) -> html.Table:
    """Return the run list: one row per run with its state, counts and loss sparkline."""
    head = ["run", "model class", "state", "snapshots", "last step", "loss", *grid_cols]
    body = []
    for r in rows:
        if r.get("error"):
            state: Any = error_card("cannot be read", r["error"])
        else:
            colour = _STATE_COLOUR.get(r["state"], "#555")
            state = html.Span(r["state"], className="state", style={"color": colour})
            if r.get("damage"):  # shown, but part of it cannot be read
                state = [state, html.Div("part cannot be read", className="damage",
                                         title=r["damage"], style={"color": "#c0392b"})]
        spark = html.Img(src=r["spark"]) if r.get("spark") else ""
        cells = [
            dcc.Link(r["name"], href=run_href(r["name"]), className="run-link"),
            r.get("model") or "",
            state,
            r.get("n_snapshots", ""),
            r.get("last_step", ""),
            spark,
            *[r["grid"].get(c, "") for c in grid_cols],
        ]
        body.append(html.Tr([html.Td(c, style=_CELL) for c in cells], className="run-row"))
    return html.Table(
        [html.Thead(html.Tr([html.Th(h, style=_CELL) for h in head])), html.Tbody(body)],
        style={"borderCollapse": "collapse"},
    )


def run_page(name: str) -> html.Div:
    """Return the page of run ``name``; its callbacks fill it and keep it live."""
    return html.Div(
        [
            dcc.Store(id="run-name", data=name),
            dcc.Store(id="version"),
            dcc.Interval(id="tick", interval=TICK_MS),
            html.H3(name),
            html.Div(id="run-info"),
            # Tabs mount only the chosen tab's graphs: a browser draws 2-4 graphs when the page
            # opens instead of 8 (the first drawing, not the server, delayed the first updates).
            dcc.Tabs(
                [
                    dcc.Tab(
                        [dcc.Graph(id="curves"), dcc.Graph(id="summaries")],
                        label="learning", value="learning",
                    ),
                    dcc.Tab(_geometry_tab(), label="geometry", value="geometry", id="tab-geometry"),
                    dcc.Tab(
                        [
                            html.Div(
                                [
                                    html.Label("layer"),
                                    dcc.Dropdown(id="theory-layer", clearable=False),
                                ],
                                style={"width": "320px"},
                            ),
                            dcc.Graph(id="nfa"),
                            dcc.Graph(id="two-point"),
                        ],
                        label="NFM vs AGOP, two-point fit", value="theory", id="tab-theory",
                    ),
                ],
                value="learning",
            ),
        ]
    )


def _geometry_tab() -> list[Any]:
    """Return the layer picker, step slider, embedding, CKA heatmaps and geometry table."""
    half = {"width": "49%", "display": "inline-block", "verticalAlign": "top"}
    return [
        html.Div(
            [html.Label("layer"), dcc.Dropdown(id="layer", clearable=False)],
            style={"width": "320px"},
        ),
        html.Div(
            [
                html.Label("step"),
                # the slider moves over snapshot positions; its marks show their steps
                dcc.Slider(id="step", min=0, max=0, step=1, value=0, allow_direct_input=False),
            ],
            id="step-box",
        ),
        html.Div(dcc.Graph(id="embedding"), style=half),
        html.Div(dcc.Graph(id="cka-steps"), style=half),
        html.Div(dcc.Graph(id="cka-layers"), style=half),
        html.Div(
            [
                html.H4("cluster geometry"),
                html.Button("compute at this step", id="geometry-go"),
                dcc.Loading(html.Div(id="geometry")),
            ],
            style=half,
        ),
    ]


def compare_href(names: list[str]) -> str:
    """Return the URL of the compare page with the runs ``names`` chosen.

    Examples
    --------
    >>> compare_href(["runs/a b/run.zarr", "c.zarr"])
    '/compare?run=runs%2Fa+b%2Frun.zarr&run=c.zarr'
    """
    return "/compare?" + urlencode([("run", n) for n in names])


def compare_page(names: list[str], chosen: list[str]) -> html.Div:
    """Return the compare page: choose runs (``chosen`` at first) and one metric or summary.

    The metric list is that of the chosen runs, kept current (with the run list) by a callback.
    """
    return html.Div(
        [
            html.H3("compare runs"),
            html.Label("runs"),
            dcc.Dropdown(names, chosen, multi=True, id="compare-runs"),
            html.Label("metric, or a layer's summary (summary:layer)"),
            dcc.Dropdown([], None, id="compare-metric"),
            dcc.Checklist(["log y"], [], id="compare-log", inline=True),
            dcc.Graph(id="compare-graph"),
            dcc.Interval(id="compare-tick", interval=2 * TICK_MS),
        ]
    )
