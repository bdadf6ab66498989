"""One self-contained HTML report per run: a header, a table of contents and the sections.

`build_report` returns the HTML, `write_report` writes it. Sections come from `SECTIONS`
(`probe.report.section`), in registration order; the built-in ones are registered by importing
`probe.report.sections` and `probe.report.alignment_section` below. Figures are embedded as
base64 PNG, so the file has no external assets.
"""

from __future__ import annotations

import html
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm.auto import tqdm

# isort: off
# The built-in sections register themselves on import, in this order (the report's order).
import probe.report.sections  # noqa: F401
import probe.report.alignment_section  # noqa: F401

# isort: on
from probe.analysis.embed import METHODS
from probe.errors import ConfigError, ProbeError
from probe.export.frames import select_arrays
from probe.report.section import SECTIONS, Absent, ReportContext, Section
from probe.store import Run, open_run
from probe.store.format import format_info
from probe.validation import check_int

__all__ = ["build_report", "run_name", "write_report"]

PathLike = str | os.PathLike[str]


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
        Entries ``layer`` or ``layer:key`` to analyse (default: every per-sample array of every
        layer, keyed outputs and inputs included, named as in
        `probe.export.frames.select_arrays`). Arrays that cannot be analysed (batch-less) are
        listed in the header as not analysed.
    max_steps : int
        Most snapshots used by per-step analyses (cluster geometry, CKA between steps); at most
        8 of them are drawn as embedding frames. Curves over every snapshot use all of them.
    method : str
        Embedding method, one of `probe.analysis.embed.METHODS` (``"pca"`` or ``"umap"`` from the
        CLI).
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
    check_int(max_steps, "max_steps")
    if method not in METHODS:
        msg = f"method must be one of {METHODS}; got {method!r}."
        raise ConfigError(msg)
    steps = _pick(np.asarray(run.steps, np.int64), max_steps)
    with warnings.catch_warnings(record=True) as skipped:
        warnings.simplefilter("always")
        names = select_arrays(run, layers)
    ctx = ReportContext(
        layers=names,
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
    return _document(run, ctx, parts, [str(w.message) for w in skipped])


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


def _header(run: Run, ctx: ReportContext, skipped: Sequence[str]) -> str:
    info = run.info()
    config = run.attrs.get("config") or {}
    rows = [
        ("run", info["path"]),
        ("model", f"{info['model_class']}, {info['n_samples']} probe samples ({info['dtype']})"),
        ("state", f"{info['state']}, created {info['created_utc']}"),
        ("snapshots", f"{info['n_snapshots']} at steps {_steps_text(info['steps'])}"),
        ("analysed steps", _steps_text(ctx.steps.tolist()) or "none"),
        ("layers", ", ".join(ctx.layers) + f" (recorded: {', '.join(info['layers'])})"),
        ("not analysed", " ".join(skipped) or "none"),
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
    run: Run,
    ctx: ReportContext,
    parts: list[tuple[Section, str | Absent, list[str]]],
    skipped: Sequence[str],
) -> str:
    name = html.escape(run_name(run.path))
    toc, body = [], []
    for sec, out, notes in parts:
        key, title = html.escape(sec.key), html.escape(sec.title)
        absent = isinstance(out, Absent)
        if isinstance(out, Absent):
            inner = f'<p class="absent">Not included: {html.escape(out.reason)}</p>'
        else:
            inner = out
        toc.append(
            f'<li class="{"absent-item" if absent else ""}"><a href="#{key}">{title}</a>'
            + (" (absent)" if absent else "")
            + "</li>"
        )
        if notes:
            items = "".join(f"<li>{html.escape(n)}</li>" for n in notes[:8])
            inner += f'<ul class="notes">{items}</ul>'
        body.append(f'<section id="{key}"><h2>{title}</h2>{inner}</section>')
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>probe report: {name}</title><style>{_CSS}</style></head><body>"
        f"<h1>probe report: {name}</h1>{_header(run, ctx, skipped)}"
        f'<h2>Contents</h2><ol class="toc">{"".join(toc)}</ol>{"".join(body)}</body></html>\n'
    )
