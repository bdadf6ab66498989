"""CLI verb ``probe run mnist-trajectory`` (flags generated from `MnistTrajectoryConfig`)."""

from __future__ import annotations

import argparse
from typing import Any

from probe.cli._config_args import add_config_args, config_from_args

__all__ = ["add_run_parser"]


def _cmd_run(args: argparse.Namespace) -> int:
    from probe.experiments.two_points.mnist_trajectory import (
        MnistTrajectoryConfig,
        run_mnist_trajectory,
    )

    res = run_mnist_trajectory(config_from_args(MnistTrajectoryConfig, args), args.out)
    f = res.fit
    print(
        f"pair (train indices) '0' {res.pair[0]}, '1' {res.pair[1]}; eta_h {f.eta_h:.4g}, "
        f"eta_y {f.eta_y:.4g} per step (x {res.steps_per_epoch} per epoch), rho {f.rho:.4g}, "
        f"SSE {f.sse:.4g}, rel. errors h {f.rel_error['h']:.3g}, y {f.rel_error['y']:.3g}, "
        f"w {f.rel_error['w']:.3g}; h_end {f.measured.h[-1]:.4g} vs h_inf {f.h_inf:.4g}; "
        f"test accuracy {res.test_accuracy:.4f}"
    )
    print(f"written in {res.wall_s:.0f} s: {res.summary_json}, {res.figure}")
    return 0


def add_run_parser(exp: Any) -> None:
    """Register ``probe run mnist-trajectory`` (one flag per config field, ``--out``) on ``exp``.

    Parameters
    ----------
    exp : argparse._SubParsersAction
        The subparsers of the ``probe run`` verb.
    """
    from probe.experiments.two_points.mnist_trajectory import MnistTrajectoryConfig

    q = exp.add_parser(
        "mnist-trajectory",
        help="one '0' and one '1' tracked during SGD on MNIST, fitted by the two-point ODE",
        description="Train the authors' MNIST MLP (4 x 200 leaky ReLU, gain 0.5, SGD lr 0.003, "
        "batch 64, 0.5*MSE on one-hot) with a random training '0' and '1' recorded at hidden "
        "layer 2, and fit the two-point ODE to their h, y, w (summary.json, fit.png).",
    )
    add_config_args(q, MnistTrajectoryConfig)
    q.add_argument(
        "--out", default="artifacts/mnist-trajectory", help="output folder (default: %(default)s)"
    )
    q.set_defaults(func=_cmd_run)
