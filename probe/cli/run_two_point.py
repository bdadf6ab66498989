"""CLI verbs ``probe run universality``, ``probe run xor``, ``probe run mnist-trajectory``.

The two-point experiments beyond ``probe run two-points`` (docs/dynamics.md §1.6–1.7); flags are
generated from each experiment's config dataclass.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from probe.cli._config_args import add_config_args, config_from_args

__all__ = ["add_run_parsers"]

_UNIVERSALITY_COLUMNS = [
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
_XOR_COLUMNS = ["setting", "i", "j", "dx2", "dy2", "h0", "d_pred", "d_meas", "rel_err"]


def _floats(v: float) -> str:
    return f"{v:.4g}"


def _cmd_universality(args: argparse.Namespace) -> int:
    from probe.experiments.two_points import universality as u

    res = u.run_universality(config_from_args(u.UniversalityConfig, args), args.out)
    print("\n" + res.table[_UNIVERSALITY_COLUMNS].to_string(index=False, float_format=_floats))
    print(f"\nrho = eta_h / eta_y. Verdict: {u.VERDICT_RULE}.")
    print(f"written in {res.wall_s:.0f} s: {res.table_csv}, {res.table_md}, {res.figures}")
    return 0


def _cmd_xor(args: argparse.Namespace) -> int:
    from probe.experiments.two_points.xor import XorConfig, run_xor

    res = run_xor(config_from_args(XorConfig, args), args.out)
    print("\n" + res.table[_XOR_COLUMNS].to_string(index=False, float_format=_floats))
    print(f"written in {res.wall_s:.0f} s: {res.table_csv}, {res.figure}")
    return 0


def _cmd_mnist_trajectory(args: argparse.Namespace) -> int:
    from probe.experiments.two_points import mnist_trajectory as m

    res = m.run_mnist_trajectory(config_from_args(m.MnistTrajectoryConfig, args), args.out)
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


def _add(
    exp: Any, name: str, cls: type, func: Callable[[argparse.Namespace], int], text: str
) -> None:
    """Register one verb: help is the first sentence of ``text``, flags from ``cls``."""
    q = exp.add_parser(name, help=text.split(". ")[0], description=text)
    add_config_args(q, cls)
    out = f"artifacts/{name}"
    q.add_argument("--out", default=out, help="output folder (default: %(default)s)")
    q.set_defaults(func=func)


def add_run_parsers(exp: Any) -> None:
    """Register ``universality``, ``xor`` and ``mnist-trajectory`` on ``probe run``'s ``exp``.

    Parameters
    ----------
    exp : argparse._SubParsersAction
        The subparsers of the ``probe run`` verb.
    """
    from probe.experiments.two_points.mnist_trajectory import MnistTrajectoryConfig
    from probe.experiments.two_points.universality import UniversalityConfig
    from probe.experiments.two_points.xor import XorConfig

    _add(
        exp,
        "universality",
        UniversalityConfig,
        _cmd_universality,
        "every row of the authors' two-point settings fitted by one effective theory. Trains "
        "every row of '2 points.txt' (MLPs of 5 nonlinearities, narrow, shallow, 6 gains, "
        "ResNet, CNN, dropout), fits the two-point ODE to the hooked layer of each seed, and "
        "writes one table (universality.csv/.md) with a verdict per row, the measured-vs-ODE "
        "figure (universality_fits.png) and the default row's fit by layer "
        "(default_by_layer.csv/.png).",
    )
    _add(
        exp,
        "xor",
        XorConfig,
        _cmd_xor,
        "XOR: per-pair final distances predicted from two-point-fitted rates vs measured. "
        "Trains the authors' XOR settings (rich, intermediate, lazy; 20 x 500 MLP, hooked "
        "layer 10) on the 4 XOR points, fits eta_h, eta_y on two points with the same network, "
        "and compares each pair's closed-form final distance with the measured one (xor.csv, "
        "xor_distances.png).",
    )
    _add(
        exp,
        "mnist-trajectory",
        MnistTrajectoryConfig,
        _cmd_mnist_trajectory,
        "one '0' and one '1' tracked during SGD on MNIST, fitted by the two-point ODE. Trains "
        "the authors' MNIST MLP (4 x 200 leaky ReLU, gain 0.5, SGD lr 0.003, batch 64, 0.5*MSE "
        "on one-hot) with a random training '0' and '1' recorded at hidden layer 2, and fits "
        "the two-point ODE to their h, y, w (summary.json, fit.png).",
    )
