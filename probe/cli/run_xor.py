"""CLI verb ``probe run xor`` (flags generated from `XorConfig`)."""

from __future__ import annotations

import argparse
from typing import Any

from probe.cli._config_args import add_config_args, config_from_args

__all__ = ["add_run_parser"]


def _cmd_run(args: argparse.Namespace) -> int:
    from probe.experiments.two_points.xor import XorConfig, run_xor

    res = run_xor(config_from_args(XorConfig, args), args.out)
    cols = ["setting", "i", "j", "dx2", "dy2", "h0", "d_pred", "d_meas", "rel_err"]
    print("\n" + res.table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"written in {res.wall_s:.0f} s: {res.table_csv}, {res.figure}")
    return 0


def add_run_parser(exp: Any) -> None:
    """Register ``probe run xor`` (one flag per `XorConfig` field, plus ``--out``) on ``exp``.

    Parameters
    ----------
    exp : argparse._SubParsersAction
        The subparsers of the ``probe run`` verb.
    """
    from probe.experiments.two_points.xor import XorConfig

    q = exp.add_parser(
        "xor",
        help="XOR: per-pair final distances predicted from two-point-fitted rates vs measured",
        description="Train the authors' XOR settings (rich, intermediate, lazy; 20 x 500 MLP, "
        "hooked layer 10) on the 4 XOR points, fit eta_h, eta_y on two points with the same "
        "network, and compare each pair's closed-form final distance with the measured one "
        "(xor.csv, xor_distances.png).",
    )
    add_config_args(q, XorConfig)
    q.add_argument("--out", default="artifacts/xor", help="output folder (default: %(default)s)")
    q.set_defaults(func=_cmd_run)
