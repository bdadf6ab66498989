"""CLI verb ``probe run universality`` (flags generated from `UniversalityConfig`)."""

from __future__ import annotations

import argparse
from typing import Any

from probe.cli._config_args import add_config_args, config_from_args

__all__ = ["add_run_parser"]

_COLUMNS = [
    "setting",
    "architecture",
    "eta_h",
    "eta_y",
    "rho",
    "sse",
    "rel_err_h",
    "rel_err_y",
    "rel_err_w",
    "t_half_y_data",
    "t_half_y_ode",
    "h_end",
    "h_inf",
    "y_end/dy2",
    "verdict",
]


def _cmd_run(args: argparse.Namespace) -> int:
    from probe.experiments.two_points.universality import (
        VERDICT_RULE,
        UniversalityConfig,
        run_universality,
    )

    res = run_universality(config_from_args(UniversalityConfig, args), args.out)
    print("\n" + res.table[_COLUMNS].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"\nrho = eta_h / eta_y. Verdict: {VERDICT_RULE}.")
    print(
        f"written in {res.wall_s:.0f} s: {res.table_csv}, {res.table_md}, "
        + ", ".join(map(str, res.figures))
    )
    return 0


def add_run_parser(exp: Any) -> None:
    """Register ``probe run universality`` (one flag per `UniversalityConfig` field, ``--out``).

    Parameters
    ----------
    exp : argparse._SubParsersAction
        The subparsers of the ``probe run`` verb.
    """
    from probe.experiments.two_points.universality import UniversalityConfig

    q = exp.add_parser(
        "universality",
        help="every row of the authors' two-point settings fitted by one effective theory",
        description="Train every row of the authors' '2 points.txt' (MLPs of 5 nonlinearities, "
        "narrow, shallow, 6 gains, ResNet, CNN, dropout), fit the two-point ODE to the hooked "
        "layer of each seed, and write one table (universality.csv/.md) with a verdict per row, "
        "the measured-vs-ODE figure (universality_fits.png) and the default row's fit by layer "
        "(default_by_layer.csv/.png).",
    )
    add_config_args(q, UniversalityConfig)
    q.add_argument(
        "--out", default="artifacts/universality", help="output folder (default: %(default)s)"
    )
    q.set_defaults(func=_cmd_run)
