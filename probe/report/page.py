"""One self-contained HTML report per run: a header, a table of contents and registered sections.

A section is a function ``(run, ctx) -> str | Absent``: an HTML fragment, or `Absent` with the
reason the run cannot support it (no AGOP recorded, no class labels ...). Sections register
with `register_section` and appear in registration order; the built-in ones live in
`probe._report_sections`. Figures are drawn on Agg canvases and embedded as base64 PNG
(`figure_html`), so the file has no external assets. `build_report` returns the HTML,
`write_report` writes it.

Examples
--------
A later analysis adds its section with one function:

>>> @register_section("my-analysis", "My analysis")
... def _my_section(run, ctx):
...     if run.targets is None:
...         return Absent("the run stored no probe targets")
...     return "<p>...</p>"
>>> "my-analysis" in SECTIONS
True
>>> del SECTIONS["my-analysis"]
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from probe._format import format_info
from probe.embed import METHODS
from probe.errors import ConfigError, ProbeError
from probe.export import select_layers
from probe.store import Run, open_run

__all__ = [
    "SECTIONS",
    "Absent",
    "ReportContext",
    "Section",
    "build_report",
    "figure_html",
    "new_figure",
    "register_section",
    "run_name",
    "table_html",
    "write_report",
]

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Absent:
    """A section left out of a report, with the reason (shown in the report)."""

    reason: str


@dataclass
class ReportContext:
    """What every section of one report shares.

    Attributes
    ----------
    layers : list of str
        Layers to analyse, in run order.
    steps : ndarray of int64 of shape (n_chosen,)
        Snapshot steps chosen for per-step analyses (at most ``max_steps``, first and last
        included, evenly spaced in snapshot index, so log-spaced schedules stay log-spaced).
    frame_steps : ndarray of int64 of shape (n_frames,)
        At most 8 of ``steps`` for small multiples (embedding frames).
    method : str
        Embedding method (`probe.embed.METHODS`).
    seed : int
        Seed of every randomised analysis (subsamples, embeddings, cross-validation folds).
    progress : bool
        Whether sections may show their own tqdm bars.
    cache : dict
        Results one section computes and another reuses.
    """

    layers: list[str]
    steps: npt.NDArray[np.int64]
    frame_steps: npt.NDArray[np.int64]
    method: str = "pca"
    seed: int = 0
    progress: bool = False
    cache: dict[str, Any] = field(default_factory=dict)


SectionFn = Callable[[Run, ReportContext], "str | Absent"]


@dataclass(frozen=True)
class Section:
    """A registered report section: ``key`` (HTML id), ``title`` and its function."""

    key: str
    title: str
    fn: SectionFn


#: Registered sections by key, in report order.
SECTIONS: dict[str, Section] = {}


def register_section(
    key: str, title: str, *, replace: bool = False
) -> Callable[[SectionFn], SectionFn]:
    """Return a decorator that registers a section function under ``key``.

    Parameters
    ----------
    key : str
        Identifier of the section (its HTML anchor and the name `build_report` selects it by).
    title : str
        Heading shown in the report and its table of contents.
    replace : bool
        Replace a section already registered under ``key`` (keeping its place).

    Raises
    ------
    ConfigError
        ``key`` is already registered and ``replace`` is False.
    """
    if key in SECTIONS and not replace:
        msg = f"a report section {key!r} is already registered; pass replace=True to replace it."
        raise ConfigError(msg)

    def decorate(fn: SectionFn) -> SectionFn:
        SECTIONS[key] = Section(key, title, fn)
        return fn

    return decorate


# ---------------------------------------------------------------------- helpers for sections
def new_figure(
    width: float,
    height: float,
    *,
    left: float = 0.7,
    right: float = 0.25,
    bottom: float = 0.55,
    top: float = 0.4,
    wspace: float = 0.3,
    hspace: float = 0.55,
) -> Figure:
    """Return a matplotlib Figure on an Agg canvas (no pyplot state), size in inches.

    Margins ``left, right, bottom, top`` are in inches (room for tick labels and titles);
    ``wspace, hspace`` are fractions of the mean axes width and height, as in
    `matplotlib.figure.Figure.subplots_adjust`. A fixed layout: constrained layout draws
    the figure twice and is ~3x slower.
    """
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    fig.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        bottom=bottom / height,
        top=1 - top / height,
        wspace=wspace,
        hspace=hspace,
    )
    return fig


def figure_html(fig: Figure, alt: str, *, dpi: int = 100) -> str:
    """Return ``fig`` as an ``<img>`` tag holding a base64 PNG (a self-contained figure)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def table_html(df: pd.DataFrame, *, digits: int = 4) -> str:
    """Return ``df`` as an HTML table, floats to ``digits`` significant digits, index dropped."""
    return df.to_html(
        index=False, border=0, classes="data", float_format=lambda v: f"{v:.{digits}g}", na_rep="-"
    )


def _pick(steps: npt.NDArray[np.int64], k: int) -> npt.NDArray[np.int64]:
    """Return at most ``k`` of ``steps``, first and last included, evenly spaced by index."""
    if steps.size <= k:
        return steps.copy()
    return steps[np.unique(np.round(np.linspace(0, steps.size - 1, k)).astype(int))]


# ---------------------------------------------------------------------- building the report
def build_report(
    run: Run | PathLike,
    *,
    layers: Sequence[str] | None = None,
    max_steps: int = 10,
    method: str = "pca",
    sections: Sequence[str] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> str:
    """Return the HTML report of a run: header, table of contents and every section.

    Parameters
    ----------
    run : Run or path
        An opened run (`probe.open_run`) or its folder.
    layers : sequence of str, optional
        Layers to analyse (default: every recorded layer).
    max_steps : int
        Most snapshots used by per-step analyses (cluster geometry, CKA between steps); at most
        8 of them are drawn as embedding frames. Curves over every snapshot use all of them.
    method : str
        Embedding method, one of `probe.embed.METHODS` (``"pca"`` or ``"umap"`` from the CLI).
    sections : sequence of str, optional
        Keys of `SECTIONS` to include, in report order (default: all).
    seed : int
        Seed of subsamples, embeddings and cross-validation folds.
    progress : bool
        Show a tqdm bar over the sections (and the sections' own bars).

    Returns
    -------
    str
        A complete HTML document with every figure embedded.

    Raises
    ------
    ConfigError
        Unknown section key or method, or ``max_steps`` is not an int >= 1.
    LayerNotInRunError
        A layer in ``layers`` was not recorded.

    Notes
    -----
    A section that raises a `probe.errors.ProbeError` (the run's data does not fit the analysis)
    is shown as absent with that error's message; other exceptions propagate. Warnings raised
    inside a section are listed under it.
    """
    run = run if isinstance(run, Run) else open_run(run)
    chosen = _check_sections(sections)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        msg = f"max_steps must be an int >= 1; got {max_steps!r}."
        raise ConfigError(msg)
    if method not in METHODS:
        msg = f"method must be one of {METHODS}; got {method!r}."
        raise ConfigError(msg)
    steps = _pick(np.asarray(run.steps, np.int64), max_steps)
    ctx = ReportContext(
        layers=select_layers(run, layers),
        steps=steps,
        frame_steps=_pick(steps, 8),
        method=method,
        seed=seed,
        progress=progress,
    )
    parts = []
    for sec in (bar := tqdm(chosen, desc="report", unit="section", disable=not progress)):
        bar.set_postfix_str(sec.key)
        parts.append((sec, *_run_section(sec, run, ctx)))
    return _document(run, ctx, parts)


def write_report(run: Run | PathLike, path: PathLike, **options: Any) -> Path:
    """Write `build_report` of ``run`` to ``path`` (parents created); return the path.

    ``options`` are the keyword arguments of `build_report`; it raises what that raises.
    """
    text = build_report(run, **options)
    out = Path(os.fspath(path))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out


def _check_sections(keys: Sequence[str] | None) -> list[Section]:
    if keys is None:
        return list(SECTIONS.values())
    unknown = [k for k in keys if k not in SECTIONS]
    if unknown:
        msg = f"unknown report sections {unknown}; registered: {list(SECTIONS)}."
        raise ConfigError(msg)
    return [SECTIONS[k] for k in dict.fromkeys(keys)]


def _run_section(sec: Section, run: Run, ctx: ReportContext) -> tuple[str | Absent, list[str]]:
    """Return the section's fragment (or `Absent`) and the distinct warnings it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = sec.fn(run, ctx)
        except ProbeError as err:  # the run's data does not fit this analysis
            out = Absent(f"{type(err).__name__}: {err}")
    notes = list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
    return out, notes


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;max-width:1200px;margin:0 auto;padding:1em 2em;
color:#222;background:#fff}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;
margin-top:1.8em}
img{max-width:100%;height:auto;display:block;margin:.5em 0}
table.data,table.meta{border-collapse:collapse;font-size:13px;margin:.5em 0}
table.data td,table.data th,table.meta td,table.meta th{border:1px solid #ddd;padding:2px 8px;
text-align:right}
table.meta th,table.meta td{text-align:left;vertical-align:top}
.absent{color:#8a5300;background:#fff6e5;padding:.4em .8em;border-left:3px solid #e0a030}
.notes{color:#666;font-size:12px}.toc li.absent-item{color:#999}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:12px}
"""


def run_name(path: PathLike) -> str:
    """Return a short name of a run folder: its stem, or its parent's name for ``.../run.zarr``."""
    p = Path(os.fspath(path)).expanduser().resolve()
    return p.parent.name if p.stem == "run" and p.parent.name else p.stem


def _steps_text(steps: Sequence[int]) -> str:
    s = [str(int(v)) for v in steps]
    return ", ".join(s) if len(s) <= 12 else ", ".join([*s[:6], "...", *s[-4:]])


def _header(run: Run, ctx: ReportContext) -> str:
    info = run.info()
    config = run.attrs.get("config") or {}
    rows = [
        ("run", info["path"]),
        ("model", f"{info['model_class']}, {info['n_samples']} probe samples ({info['dtype']})"),
        ("state", f"{info['state']}, created {info['created_utc']}"),
        ("snapshots", f"{info['n_snapshots']} at steps {_steps_text(info['steps'])}"),
        ("analysed steps", _steps_text(ctx.steps.tolist()) or "none"),
        ("layers", ", ".join(ctx.layers) + f" (recorded: {', '.join(info['layers'])})"),
        ("metrics", f"{info['n_metric_records']} records: {', '.join(info['metrics']) or 'none'}"),
        ("config", json.dumps(config, sort_keys=True) if config else "none"),
    ]
    body = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    )
    return (
        f'<table class="meta">{body}</table><details><summary>probe info</summary>'
        f"<pre>{html.escape(format_info(info))}</pre></details>"
    )


def _document(
    run: Run, ctx: ReportContext, parts: list[tuple[Section, str | Absent, list[str]]]
) -> str:
    name = html.escape(run_name(run.path))
    toc, body = [], []
    for sec, out, notes in parts:
        key, title = html.escape(sec.key), html.escape(sec.title)
        absent = isinstance(out, Absent)
        toc.append(
            f'<li class="{"absent-item" if absent else ""}"><a href="#{key}">{title}</a>'
            + (" (absent)" if absent else "")
            + "</li>"
        )
        inner = f'<p class="absent">Not included: {html.escape(out.reason)}</p>' if absent else out
        if notes:
            items = "".join(f"<li>{html.escape(n)}</li>" for n in notes[:8])
            inner += f'<ul class="notes">{items}</ul>'
        body.append(f'<section id="{key}"><h2>{title}</h2>{inner}</section>')
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>probe report: {name}</title><style>{_CSS}</style></head><body>"
        f"<h1>probe report: {name}</h1>{_header(run, ctx)}"
        f'<h2>Contents</h2><ol class="toc">{"".join(toc)}</ol>{"".join(body)}</body></html>\n'
    )


# The built-in sections register themselves; imported last as they use the helpers above.
from probe import _report_alignment, _report_sections  # noqa: E402, F401
