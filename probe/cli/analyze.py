"""The ``probe analyze`` verb: `add_parser(sub)` registers it on the CLI's subparsers.

``probe analyze RUN [--out FILE] [--layers ...] [--max-steps N] [--method pca|umap]`` writes one
self-contained HTML report of a run with `probe.report.page.write_report`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "default_out"]

_DESCRIPTION = (
    "Write one self-contained HTML report of a run (figures embedded, no external files): "
    "learning curves, per-layer summaries, CKA between steps, cluster geometry, embeddings "
    "across steps, NFM vs AGOP and the two-point effective-theory fit. A section the run "
    "cannot support (no AGOP, no class labels, not a two-point run ...) says why it is absent."
)


def default_out(run: str | Path) -> Path:
    """Return the default report path, ``artifacts/<run name>/report.html``.

    The run name is the run folder's stem, or its parent's name for ``.../run.zarr`` (so
    ``artifacts/mnist/run.zarr`` gets ``artifacts/mnist/report.html``).
    """
    from probe.report.page import run_name

    return Path("artifacts") / run_name(run) / "report.html"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``analyze`` on ``sub`` (from ``parser.add_subparsers``); return its parser."""
    p = sub.add_parser("analyze", help="write an HTML report of a run", description=_DESCRIPTION)
    p.add_argument("run", help="path of a run store (folder written by hooks.Recorder)")
    p.add_argument(
        "--out",
        help="HTML file to write, replaced if it exists (default: "
        "artifacts/<run name>/report.html)",
    )
    p.add_argument(
        "--layers",
        nargs="+",
        metavar="LAYER[:KEY]",
        help="arrays to analyse: a layer (every output and input array it recorded: acts, "
        "acts.0, acts.hidden, inputs ...) or layer:key for one of them (default: every array of "
        "every layer; batch-less ones are listed in the report as not analysed)",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=10,
        help="most snapshots used by per-step analyses; first and last always included "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--method",
        choices=["pca", "umap"],
        default="pca",
        help="embedding of the frames across steps (default: %(default)s)",
    )
    p.add_argument("--sections", nargs="+", help="report sections to include (default: all)")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of subsamples and embeddings (default: %(default)s)",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="hide the progress bars (default: off, bars shown)",
    )
    p.set_defaults(func=_cmd_analyze)
    return p


def _cmd_analyze(args: argparse.Namespace) -> int:
    from probe.cli._paths import check_output
    from probe.report.page import write_report

    out = check_output(args.out or default_out(args.run), flag="--out", folder=False)
    path = write_report(
        args.run,
        out,
        layers=args.layers,
        max_steps=args.max_steps,
        method=args.method,
        sections=args.sections,
        seed=args.seed,
        progress=not args.no_progress,
    )
    print(f"report: {path}")
    return 0
