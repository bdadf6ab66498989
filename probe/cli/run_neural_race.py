"""CLI verbs ``probe run neural-race`` and ``probe run neural-race-sweep`` (flags from configs)."""

from __future__ import annotations

import argparse
from typing import Any

from probe.cli._config_args import add_config_args, config_from_args

__all__ = ["add_run_parser"]

_HELP = {
    "init": "decoupled: every mode at strength scale, aligned to the SVD of Y^T (exact theory); "
    "orthogonal: torch orthogonal_ with gain scale (the authors' simulations)",
    "scale": "b0 of the decoupled init, or the gain of the orthogonal init",
    "theory_b0": "initial strength of the theory curves (default: scale if decoupled, "
    "scale/2.5 if orthogonal, as in the authors' figure)",
    "lr": "full-batch SGD learning rate (tau = 14/lr)",
    "epochs": "full-batch SGD steps",
    "seeds": "independently initialised runs (seeds seed0, seed0+1, ...)",
    "seed0": "first seed",
    "record_every": "snapshot (weights and path outputs) every N steps",
    "d_hidden": "width of the shared hidden layer",
    "gate": "trained paths: '{k}_plus_minus_mod', '{k}_plus_mod' or 'fully_connected'",
    "all_edges": "record all 15 modules, not only W_in[0], W_h, W_out[0]",
    "dtype": "parameter dtype",
}
_SWEEP_HELP = {
    "sigmas": "comma-separated orthogonal init gains sigma0",
    "lr0": "learning rate at sigma0 = 1; each run uses lr0 / sigma0^(1/3)",
    "epochs": "full-batch SGD steps per run",
    "seeds": "runs per sigma0",
    "seed0": "first seed",
    "record_every": "snapshot every N steps (path-error curves)",
    "d_hidden": "width of the shared hidden layer",
    "gate": "trained paths (see neural-race)",
}


def _cmd_run(args: argparse.Namespace) -> int:
    from probe.experiments.neural_race.experiment import NeuralRaceConfig, run_neural_race

    res = run_neural_race(config_from_args(NeuralRaceConfig, args), args.out)
    cols = ["layer", "mode", "sv_final", "sv_final_theory", "rel_err", "t_half", "t_half_theory"]
    mean = res.table.groupby(["layer", "mode"], sort=False)[cols[2:]].mean().reset_index()
    print("\n" + mean.to_string(index=False, float_format=lambda v: f"{v:.5g}"))
    print("\n" + res.losses.groupby("epoch")[["loss", "loss_theory"]].mean().to_string())
    print(
        f"\nwritten in {res.wall_s:.0f} s: {res.table_csv}, {res.summary_json}, {res.figure}; "
        f"run stores in {res.runs[0].parent}/"
    )
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from probe.experiments.neural_race.experiment import InitScaleSweepConfig, init_scale_sweep

    res = init_scale_sweep(config_from_args(InitScaleSweepConfig, args), args.out)
    print("\n" + res.means.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"\nwritten in {res.wall_s:.0f} s: {res.table_csv}, {res.summary_json}, {res.figure}")
    return 0


def add_run_parser(exp: Any) -> None:
    """Register ``probe run neural-race`` and ``probe run neural-race-sweep`` on ``exp``.

    Parameters
    ----------
    exp : argparse._SubParsersAction
        The subparsers of the ``probe run`` verb.
    """
    from probe.experiments.neural_race.experiment import InitScaleSweepConfig, NeuralRaceConfig

    q = exp.add_parser(
        "neural-race",
        help="gated routing network: singular values vs the exact neural-race solution",
        description="Train the 7-module routing network (Saxe, Sodhani & Lewallen 2022) full "
        "batch on the gated loss, record W_in[0], W_h, W_out[0] and every path's output, and "
        "compare singular values, W_h half-times and the loss with the exact reduced dynamics "
        "(modes.csv, losses.csv, summary.json, figure.png).",
    )
    add_config_args(
        q,
        NeuralRaceConfig,
        helps=_HELP,
        choices={"init": ["orthogonal", "decoupled"], "dtype": ["float64", "float32"]},
    )
    q.add_argument(
        "--out", default="artifacts/neural-race", help="output folder (default: %(default)s)"
    )
    q.set_defaults(func=_cmd_run)

    q = exp.add_parser(
        "neural-race-sweep",
        help="trained vs untrained path error against the init scale",
        description="Train the routing network from orthogonal inits of gain sigma0 "
        "(lr = lr0/sigma0^(1/3)) and report the error ||Y - O||_F^2/2 per path, averaged over "
        "trained and over untrained (gated-off) paths, against the error of predicting 0 "
        "(sweep.csv, summary.json, figure.png).",
    )
    add_config_args(q, InitScaleSweepConfig, helps=_SWEEP_HELP)
    q.add_argument(
        "--out", default="artifacts/neural-race/sweep", help="output folder (default: %(default)s)"
    )
    q.set_defaults(func=_cmd_sweep)
