"""The ``probe cka RUN_A RUN_B --layer L`` verb: CKA of a layer of two runs at matched snapshots."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_parser"]


def _cmd_cka(args: argparse.Namespace) -> int:
    from probe.analysis.cross_run import cross_run_cka

    table = cross_run_cka(
        args.run_a,
        args.run_b,
        args.layer,
        layer_b=args.layer_b,
        match=args.match,
        key=args.key,
        unbiased=args.unbiased,
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / f"cka_{args.layer}.csv"
    table.assign(run_a=args.run_a, run_b=args.run_b).to_csv(csv, index=False)
    print(f"written: {csv}")
    return 0


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``cka`` on the ``probe`` subparsers object ``sub``; return its parser."""
    p = sub.add_parser(
        "cka",
        help="CKA between a layer of two runs at matched snapshots",
        description="Linear CKA between the same layer of two runs (seeds of one net, or two "
        "nets) at each matched snapshot, on the probe samples both runs recorded; printed "
        "and written to cka_<layer>.csv.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run_a", help="first run store")
    p.add_argument("run_b", help="second run store")
    p.add_argument("--layer", required=True, help="layer recorded by both runs")
    p.add_argument("--layer-b", default=None, help="layer of RUN_B when named differently")
    p.add_argument(
        "--match",
        choices=["epoch", "step"],
        default="epoch",
        help="pair the last snapshot of each shared epoch, or snapshots at equal steps",
    )
    p.add_argument("--key", default="acts", help="recorded array of the layer")
    p.add_argument("--unbiased", action="store_true", help="unbiased HSIC estimator")
    p.add_argument("--out", default="artifacts/cka", help="folder of cka_<layer>.csv")
    p.set_defaults(func=_cmd_cka)
    return p
