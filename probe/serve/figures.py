"""Plotly figures and small HTML pieces of the live view, built from tables and arrays.

Every function takes what `probe.serve.cache` and `probe.serve.views` computed and returns a
`plotly.graph_objects.Figure` (or, for `sparkline`, an SVG data URI), nothing else.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

__all__ = [
    "curves_figure",
    "embedding_figure",
    "heatmap_figure",
    "lines_figure",
    "message_figure",
    "nfa_figure",
    "sparkline",
    "summaries_figure",
    "two_point_figure",
]

_MARGIN = {"l": 50, "r": 20, "t": 40, "b": 40}
_TITLES = {
    "cka_prev": "CKA to the previous snapshot",
    "effective_rank": "effective rank",
    "class_separation": "class separation",
}


def _layout(fig: go.Figure, title: str, height: int = 320) -> go.Figure:
    fig.update_layout(
        title={"text": title, "font": {"size": 14}},
        height=height,
        margin=_MARGIN,
        template="plotly_white",
        legend={"font": {"size": 10}},
        uirevision="keep",  # keep the user's zoom and hidden traces across live redraws
    )
    return fig


def message_figure(text: str, title: str = "") -> go.Figure:
    """Return an empty figure that says ``text`` (a view that does not apply, or no data yet)."""
    fig = go.Figure()
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title, height=200)


def curves_figure(metrics: pd.DataFrame) -> go.Figure:
    """Return the learning curves: one line per logged metric over the optimizer step."""
    names = [c for c in metrics.columns if c not in ("step", "epoch", "rank")]
    if not len(metrics) or not names:
        return message_figure("no metrics logged yet", "learning curves")
    fig = go.Figure()
    for name in names:
        ok = metrics[name].notna()
        fig.add_scatter(x=metrics["step"][ok], y=metrics[name][ok], name=name, mode="lines")
    fig.update_xaxes(title="step")
    return _layout(fig, "learning curves")


def summaries_figure(table: pd.DataFrame, columns: Sequence[str]) -> go.Figure:
    """Return one panel per summary column, one line per layer, over the snapshot step."""
    if not len(table):
        return message_figure("no snapshot summarised yet", "per-layer summaries")
    fig = make_subplots(rows=1, cols=len(columns), subplot_titles=[_TITLES[c] for c in columns])
    for k, layer in enumerate(dict.fromkeys(table["layer"])):
        rows = table[table["layer"] == layer]
        for i, col in enumerate(columns, start=1):
            fig.add_scatter(
                x=rows["step"], y=rows[col], name=layer, legendgroup=layer, showlegend=i == 1,
                mode="lines+markers", marker={"size": 4}, line={"color": _colour(k)},
                row=1, col=i,
            )
    fig.update_xaxes(title="step")
    return _layout(fig, "", height=320)  # the panels' titles say it all


def _colour(k: int) -> str:
    palette = qualitative.Plotly
    return palette[k % len(palette)]


def heatmap_figure(M: npt.NDArray[np.float64], labels: Sequence[Any], title: str) -> go.Figure:
    """Return a CKA heatmap with ``labels`` on both axes (values in [0, 1])."""
    text = [str(v) for v in labels]
    fig = go.Figure(
        go.Heatmap(z=M, x=text, y=text, zmin=0, zmax=1, colorscale="Viridis", colorbar={"len": 0.8})
    )
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category")
    return _layout(fig, title, height=380)


def embedding_figure(frame: pd.DataFrame, step: int, layer: str, span: float) -> go.Figure:
    """Return a scatter of one step's embedding coloured by label, on axes fixed to ``span``."""
    fig = go.Figure()
    labels = frame["label"]
    if labels.notna().any():
        for value in sorted(labels.dropna().unique()):
            part = frame[labels == value]
            fig.add_scatter(x=part["x"], y=part["y"], mode="markers", name=_label(value),
                            marker={"size": 5, "opacity": 0.75})
    else:
        fig.add_scatter(x=frame["x"], y=frame["y"], mode="markers", name="samples")
    lim = [-span, span]
    fig.update_xaxes(range=lim, title="PC 1 (reference step)")
    fig.update_yaxes(range=lim, title="PC 2", scaleanchor="x")
    return _layout(fig, f"{layer} at step {step}", height=460)


def _label(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def nfa_figure(table: pd.DataFrame, layer: str) -> go.Figure:
    """Return the NFM vs AGOP^p Pearson correlation over steps, with its value at init."""
    fig = go.Figure()
    rows = table[table["measure"] == "pearson"]
    for power, part in rows.groupby("power"):
        fig.add_scatter(x=part["step"], y=part["value"], name=f"ρ(NFM, AGOP^{power:g})",
                        mode="lines+markers")
        fig.add_scatter(x=part["step"], y=part["init"], name=f"at init, p={power:g}",
                        mode="lines", line={"dash": "dot"})
    fig.update_xaxes(title="step")
    fig.update_yaxes(title="Pearson correlation")
    return _layout(fig, f"NFM vs AGOP: {layer}")


def two_point_figure(traces: Any, fit: Any, layer: str) -> go.Figure:
    """Return measured h, y, w of the two probe samples and the fitted ODE (when it fitted)."""
    fig = go.Figure()
    for v in ("h", "y", "w"):
        fig.add_scatter(x=traces.t, y=getattr(traces, v), name=f"{v} measured", mode="lines")
        if not isinstance(fit, str):
            fig.add_scatter(x=fit.prediction.t, y=getattr(fit.prediction, v), name=f"{v} theory",
                            mode="lines", line={"dash": "dot"})
    note = fit if isinstance(fit, str) else f"η_h={fit.eta_h:.3g}, η_y={fit.eta_y:.3g}"
    fig.update_xaxes(title="step")
    return _layout(fig, f"two-point fit, {layer}: {note}")


def lines_figure(series: dict[str, tuple[Any, Any]], title: str, ylabel: str) -> go.Figure:
    """Return one line per named (x, y) series, for comparing runs."""
    if not series:
        return message_figure("choose runs to compare", title)
    fig = go.Figure()
    for name, (x, y) in series.items():
        fig.add_scatter(x=x, y=y, name=name, mode="lines")
    fig.update_xaxes(title="step")
    fig.update_yaxes(title=ylabel)
    return _layout(fig, title, height=420)


def sparkline(values: Sequence[float], width: int = 120, height: int = 24) -> str:
    """Return an SVG data URI of a line through ``values`` (empty when fewer than 2 finite)."""
    v = np.asarray([x for x in values if math.isfinite(x)], float)
    if v.size < 2:
        return ""
    if v.size > width:  # one point per pixel column is all a sparkline can show
        v = v[np.linspace(0, v.size - 1, width).astype(int)]
    lo, hi = float(v.min()), float(v.max())
    ys = (height - 2) - (v - lo) / ((hi - lo) or 1.0) * (height - 4)
    xs = np.linspace(1, width - 1, v.size)
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
        f'<polyline fill="none" stroke="#636efa" stroke-width="1.5" points="{points}"/></svg>'
    )
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
