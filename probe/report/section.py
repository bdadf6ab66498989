"""What a report section is and the helpers sections draw with.

A section is a function ``(run, ctx) -> str | Absent`` registered with `register_section`;
`SECTIONS` holds them in report order. `new_figure`, `figure_html`, `table_html`, `paragraph`
and `step_axis` build the HTML fragments.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from probe.errors import ConfigError
from probe.store import Run

__all__ = [
    "SECTIONS",
    "Absent",
    "ReportContext",
    "Section",
    "SectionFn",
    "figure_html",
    "new_figure",
    "paragraph",
    "register_section",
    "step_axis",
    "table_html",
]


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
        Arrays to analyse, in run order: ``layer`` for a layer's ``acts``, ``layer:key`` for
        its other outputs and inputs (`probe.store.Run.acts` reads both).
    steps : ndarray of int64 of shape (n_chosen,)
        Snapshot steps chosen for per-step analyses (at most ``max_steps``, first and last
        included, evenly spaced in snapshot index, so log-spaced schedules stay log-spaced).
    frame_steps : ndarray of int64 of shape (n_frames,)
        At most 8 of ``steps`` for small multiples (embedding frames).
    method : str
        Embedding method (`probe.analysis.embed.METHODS`).
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


def paragraph(text: str) -> str:
    """Return ``text`` escaped, as an HTML paragraph."""
    return f"<p>{html.escape(text)}</p>"


def step_axis(ax: Axes, steps: Any) -> None:
    """Label the optimizer-step axis; symlog when snapshots span decades (log schedules).

    Call it after plotting: with symlog the axis starts at step 0 (steps are never negative).
    """
    if np.max(np.asarray(steps), initial=0) > 100:
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(left=0)
    ax.set_xlabel("optimizer step")
    ax.grid(alpha=0.3)
