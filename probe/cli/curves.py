"""The ``probe curves RUN...`` verb: learning-curve metrics of a logged scalar, printed and saved.

The lead wires `add_parser` into `probe.cli.app.build_parser`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["add_parser"]


def _cmd_curves(args: argparse.Namespace) -> int:
    from probe.analysis.curves import METRICS, curves_from_run

    rows = []
    for run in args.run:
        m = curves_from_run(run, args.metric, smooth=args.smooth)
        rows.append(
            {"run": run, "metric": args.metric, "smoothing": m.smoothing}
            | {k: getattr(m, k) for k in METRICS}
        )
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / f"curves_{args.metric}.csv"
    table.to_csv(csv, index=False)
    print(f"written: {csv}")
    return 0


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``curves`` on the ``probe`` subparsers object ``sub``; return its parser."""
    p = sub.add_parser(
        "curves",
        help="learning-curve metrics of a logged scalar",
        description="Print start, end - start, max and tmax (first argmax / T) of a scalar each "
        "run logged (curve smoothed with R's smooth(), Tukey 3RS3R), and write them to a CSV.",
    )
    p.add_argument("run", nargs="+", help="path(s) of run stores (folders written by Recorder)")
    p.add_argument("--metric", default="loss", help="logged scalar (default: %(default)s)")
    p.add_argument(
        "--smooth",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="smooth with Tukey 3RS3R first (--no-smooth: raw values; default: on)",
    )
    p.add_argument(
        "--out",
        default="artifacts/curves",
        help="folder of curves_<metric>.csv (default: %(default)s)",
    )
    p.set_defaults(func=_cmd_curves)
    return p
