"""CLI verb ``probe run nfa`` (flags generated from `NfaConfig`)."""

from __future__ import annotations

import argparse
from typing import Any

from probe.cli._config_args import add_config_args, config_from_args

__all__ = ["add_run_parser"]

_HELP = {
    "task": "mnist: MLP on MNIST/digits; poly: y = x0 x1 with x ~ N(0, I_dim) (features §1.9)",
    "dataset": "mnist task: mnist (torchvision; data root $PROBE_DATA) or digits (offline)",
    "init": "rich: every weight but the readout's ~ N(0, 0.01/fan_in); default: the model's own",
    "seeds": "independent runs (seeds seed, seed+1, ...); use 3 on the poly task",
    "seed": "first seed (data draw, init, batch order)",
    "epochs": "passes over the training set (None: 3 for mnist, 300 for poly)",
    "lr": "plain SGD learning rate",
    "batch_size": "training samples per SGD step",
    "width": "width of every hidden layer (None: 200 for mnist, 256 for poly)",
    "depth": "hidden layers (None: 4 for mnist, 2 for poly)",
    "n_probe": "mnist: stratified training images the AGOP averages over (poly: all train)",
    "max_train": "mnist: train on the first N images only (None: all)",
    "dim": "poly: input dimension",
    "n_train": "poly: training draws (the AGOP averages over all of them)",
    "n_test": "poly: test draws",
    "n_log_snapshots": "log-spaced snapshots (weights and AGOP of every Linear layer)",
    "local_layer": "Linear layer (0 = input layer) of the static-vs-local figure",
    "n_local": "first probe points of the static-vs-local comparison",
    "k": "neighbours of the static-vs-local neighbourhood comparison",
}


def _cmd_run(args: argparse.Namespace) -> int:
    from probe.experiments.nfa.experiment import NfaConfig, format_summary, run_nfa

    cfg = config_from_args(NfaConfig, args)
    res = run_nfa(cfg, args.out or f"artifacts/nfa-{cfg.task}")
    print("\n" + format_summary(res))
    svl = res.static_vs_local
    print(
        f"\nstatic vs local ({svl['layer']}, {svl['n_samples']} points): median per-sample "
        f"Pearson(g(x)^1/2, WᵀW) {svl['median_corr']:.3f}, of the averaged metric "
        f"{svl['mean_corr']:.3f}; rank of g(x) <= {max(map(int, svl['rank_counts']))}, "
        f"of WᵀW {svl['rank_static']}"
    )
    print(
        f"written in {res.wall_s:.0f} s: {res.table_csv}, {res.table_json}, {res.steps_csv}, "
        + ", ".join(map(str, res.figures))
    )
    return 0


def add_run_parser(exp: Any) -> None:
    """Register ``probe run nfa`` (one flag per `NfaConfig` field, plus ``--out``) on ``exp``.

    Parameters
    ----------
    exp : argparse._SubParsersAction
        The subparsers of the ``probe run`` verb.
    """
    from probe.experiments.nfa.experiment import NfaConfig

    q = exp.add_parser(
        "nfa",
        help="Neural Feature Ansatz: NFM (WᵀW) vs AGOP of every layer over training",
        description="Train an MNIST MLP or the polynomial task y = x0 x1 with the weights and "
        "AGOP of every Linear layer recorded on training inputs; write each layer's NFA "
        "measures (Pearson, cosine, off-diagonal Pearson of WᵀW and (W-W0)ᵀ(W-W0) vs AGOP^1/2 "
        "and AGOP) over steps with their init and NFM-change baselines (nfa_steps.csv), the "
        "final per-layer table (nfa_table.csv/.json), and the figures nfa_M.png, nfa_dM.png, "
        "static_vs_local.png (and ground_truth.png for poly).",
    )
    add_config_args(
        q,
        NfaConfig,
        helps=_HELP,
        choices={"task": ["mnist", "poly"], "dataset": ["mnist", "digits"]}
        | {"init": ["default", "rich"]},
    )
    q.add_argument("--out", default=None, help="output folder (default: artifacts/nfa-<task>)")
    q.set_defaults(func=_cmd_run)
