"""Plotly figures and small pictures of the live view, built from tables and arrays.

Every function takes what `probe.serve.cache` and `probe.serve.views` computed and returns a
plotly figure as a plain dict (``{"data": [...], "layout": {...}}``, what `dcc.Graph` takes),
or, for `sparkline`, an SVG data URI. Plain dicts rather than `plotly.graph_objects.Figure`:
the graph objects validate every property on construction, which cost a page redraw about
0.5 s of CPU per new snapshot, more than every analysis of the snapshot together.
"""

from __future__ import annotations

import base64
import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import plotly.io as pio
from plotly.colors import qualitative

__all__ = [
    "MAX_CLASS_TRACES",
    "MAX_CURVE_POINTS",
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

Figure = dict[str, Any]
#: Classes drawn as one trace (and legend entry) each; more are coloured on a continuous scale.
MAX_CLASS_TRACES = 50
#: Points per learning curve sent to the page: a longer curve is thinned (`_thin`).
MAX_CURVE_POINTS = 2000
#: A curve with at most this many points is drawn with markers too.
SPARSE_POINTS = 50
_MARGIN = {"l": 50, "r": 20, "t": 40, "b": 40}
_TITLES = {
    "cka_prev": "CKA to the previous snapshot",
    "effective_rank": "effective rank",
    "class_separation": "class separation",
}


@functools.cache
def _template() -> dict[str, Any]:
    """Return the ``plotly_white`` template as JSON (plotly.js knows no template names)."""
    return dict(pio.templates["plotly_white"].to_plotly_json())


def _figure(data: list[dict[str, Any]], title: str, height: int = 320, **layout: Any) -> Figure:
    return {
        "data": data,
        "layout": {
            "title": {"text": title, "font": {"size": 14}},
            "height": height,
            "margin": _MARGIN,
            "template": _template(),
            "legend": {"font": {"size": 10}},
            "uirevision": "keep",  # keep the user's zoom and hidden traces across live redraws
            **layout,
        },
    }


def _line(x: Any, y: Any, name: str, **kw: Any) -> dict[str, Any]:
    return {"type": "scatter", "mode": "lines", "x": np.asarray(x), "y": np.asarray(y),
            "name": name, **kw}


def message_figure(text: str, title: str = "") -> Figure:
    """Return an empty figure that says ``text`` (a view that does not apply, or no data yet)."""
    note = {"text": text, "showarrow": False, "x": 0.5, "y": 0.5, "xref": "paper",
            "yref": "paper"}
    hidden = {"visible": False}
    return _figure([], title, 200, annotations=[note], xaxis=hidden, yaxis=hidden)


def curves_figure(metrics: pd.DataFrame) -> Figure:
    """Return the learning curves: one line per logged metric over the optimizer step.

    Each curve has at most `MAX_CURVE_POINTS` points (`_thin`), so the figure the page receives
    at every new commit stays the same size however long the run. Curves of at most
    `SPARSE_POINTS` points (e.g. a test metric logged per epoch) are drawn with markers.
    """
    names = [c for c in metrics.columns if c not in ("step", "epoch", "rank")]
    if not len(metrics) or not names:
        return message_figure("no metrics logged yet", "learning curves")
    data = []
    for name in names:
        ok = metrics[name].notna().to_numpy()
        x, y = metrics["step"].to_numpy()[ok], metrics[name].to_numpy()[ok]
        keep = _thin(y, MAX_CURVE_POINTS)
        # a metric logged rarely (per epoch, at the end) is a few points: mark them, or a
        # single point would not be drawn at all
        mode = "lines+markers" if keep.size <= SPARSE_POINTS else "lines"
        data.append(_line(x[keep], y[keep], name, mode=mode))
    return _figure(data, "learning curves", xaxis={"title": {"text": "step"}})


def _thin(y: npt.NDArray[Any], max_points: int) -> npt.NDArray[np.int64]:
    """Return the indices of at most ``max_points`` points of ``y`` that keep its shape.

    Min/max decimation: ``y`` is cut into ``(max_points - 2) // 2`` runs of equal length and
    each run keeps its smallest and largest value, in order, plus the first and last point, so
    spikes (a loss blowing up) survive, which a stride would skip. Shorter curves keep all.

    Examples
    --------
    >>> _thin(np.array([0.0, 5.0, 1.0, 2.0, -3.0, 0.0, 1.0]), 6).tolist()
    [0, 1, 4, 6]
    """
    n = len(y)
    if n <= max_points:
        return np.arange(n)
    size = -(-n // max(1, (max_points - 2) // 2))  # points per run
    rows = -(-n // size)
    padded = np.full(rows * size, np.nan)
    padded[:n] = y
    runs = padded.reshape(rows, size)  # every run holds at least one real value
    offset = np.arange(rows) * size
    lo, hi = offset + np.nanargmin(runs, axis=1), offset + np.nanargmax(runs, axis=1)
    return np.unique(np.concatenate([[0, n - 1], lo, hi]))


def summaries_figure(table: pd.DataFrame, columns: Sequence[str]) -> Figure:
    """Return one panel per summary column, one line per layer, over the snapshot step."""
    if not len(table):
        return message_figure("no snapshot summarised yet", "per-layer summaries")
    k, gap = len(columns), 0.08
    width = (1 - gap * (k - 1)) / k
    axes: dict[str, Any] = {}
    notes = []
    for i, col in enumerate(columns):
        lo = i * (width + gap)
        suffix = "" if i == 0 else str(i + 1)
        axes[f"xaxis{suffix}"] = {"domain": [lo, lo + width], "anchor": f"y{suffix}",
                                  "title": {"text": "step"}}
        axes[f"yaxis{suffix}"] = {"anchor": f"x{suffix}"}
        notes.append({"text": _TITLES[col], "x": lo + width / 2, "y": 1.0, "xref": "paper",
                      "yref": "paper", "yanchor": "bottom", "showarrow": False})
    data = []
    for j, layer in enumerate(dict.fromkeys(table["layer"])):
        rows = table[table["layer"] == layer]
        for i, col in enumerate(columns):
            suffix = "" if i == 0 else str(i + 1)
            data.append(_line(
                rows["step"], rows[col], str(layer), mode="lines+markers", marker={"size": 4},
                line={"color": _colour(j)}, legendgroup=str(layer), showlegend=i == 0,
                xaxis=f"x{suffix}", yaxis=f"y{suffix}",
            ))
    return _figure(data, "", 320, annotations=notes, **axes)  # the panels' titles say it all


def _colour(k: int) -> str:
    palette = qualitative.Plotly
    return palette[k % len(palette)]


def heatmap_figure(M: npt.NDArray[np.float64], labels: Sequence[Any], title: str) -> Figure:
    """Return a CKA heatmap with ``labels`` on both axes (values in [0, 1])."""
    text = [str(v) for v in labels]
    trace = {"type": "heatmap", "z": M, "x": text, "y": text, "zmin": 0, "zmax": 1,
             "colorscale": "Viridis", "colorbar": {"len": 0.8}}
    return _figure([trace], title, 380, xaxis={"type": "category"},
                   yaxis={"type": "category", "autorange": "reversed"})


def embedding_figure(frame: pd.DataFrame, step: int, layer: str, span: float) -> Figure:
    """Return a scatter of one step's embedding on axes fixed to ``span``.

    ``frame`` is `probe.serve.views.embedding_frame`'s. Integer class labels draw one trace per
    class (at most `MAX_CLASS_TRACES` classes); more classes, or float targets (a regression
    probe), draw one trace coloured on a continuous scale with a colour bar; no label or target
    draws one plain trace.
    """
    marker = {"size": 5, "opacity": 0.75}
    labels = frame["label"]
    classes = sorted(labels.dropna().unique())
    data = []
    if 0 < len(classes) <= MAX_CLASS_TRACES:
        for value in classes:
            part = frame[labels == value]
            data.append(_line(part["x"], part["y"], _label(value), mode="markers", marker=marker))
    elif classes or frame["target"].notna().any():
        name, values = ("class", labels) if classes else ("target", frame["target"])
        scale = marker | {"color": np.asarray(values), "colorscale": "Viridis",
                          "colorbar": {"title": {"text": name}, "len": 0.8}}
        data.append(_line(frame["x"], frame["y"], name, mode="markers", marker=scale))
    else:
        data.append(_line(frame["x"], frame["y"], "samples", mode="markers", marker=marker))
    lim = [-span, span]
    return _figure(
        data, f"{layer} at step {step}", 460,
        xaxis={"range": lim, "title": {"text": "PC 1 (reference step)"}},
        yaxis={"range": lim, "title": {"text": "PC 2"}, "scaleanchor": "x"},
    )


def _label(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def nfa_figure(table: pd.DataFrame, layer: str) -> Figure:
    """Return the NFM vs AGOP^p Pearson correlation over steps, with its value at init."""
    data = []
    rows = table[table["measure"] == "pearson"]
    for power, part in rows.groupby("power"):
        data.append(_line(part["step"], part["value"], f"ρ(NFM, AGOP^{power:g})",
                          mode="lines+markers"))
        data.append(_line(part["step"], part["init"], f"at init, p={power:g}",
                          line={"dash": "dot"}))
    return _figure(data, f"NFM vs AGOP: {layer}", xaxis={"title": {"text": "step"}},
                   yaxis={"title": {"text": "Pearson correlation"}})


def two_point_figure(traces: Any, fit: Any, layer: str) -> Figure:
    """Return measured h, y, w of the two probe samples and the fitted ODE (when it fitted)."""
    data = []
    for v in ("h", "y", "w"):
        data.append(_line(traces.t, getattr(traces, v), f"{v} measured"))
        if not isinstance(fit, str):
            data.append(_line(fit.prediction.t, getattr(fit.prediction, v), f"{v} theory",
                              line={"dash": "dot"}))
    note = fit if isinstance(fit, str) else f"η_h={fit.eta_h:.3g}, η_y={fit.eta_y:.3g}"
    return _figure(data, f"two-point fit, {layer}: {note}", xaxis={"title": {"text": "step"}})


def lines_figure(
    series: dict[str, tuple[Any, Any]], title: str, ylabel: str, log_y: bool = False
) -> Figure:
    """Return one line per named (x, y) series, for comparing runs (``log_y``: a log y axis)."""
    if not series:
        return message_figure("choose runs to compare", title)
    data = [_line(x, y, name) for name, (x, y) in series.items()]
    yaxis = {"title": {"text": ylabel}} | ({"type": "log"} if log_y else {})
    return _figure(data, title, 420, xaxis={"title": {"text": "step"}}, yaxis=yaxis)


def sparkline(values: Sequence[float], width: int = 120, height: int = 24) -> str:
    """Return an SVG data URI of a line through ``values`` (empty when fewer than 2 finite).

    Examples
    --------
    >>> sparkline([3.0, 2.0, 1.0])[:26], sparkline([1.0])
    ('data:image/svg+xml;base64,', '')
    """
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
