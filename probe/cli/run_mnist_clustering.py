"""CLI verb ``probe run mnist-clustering`` (flags generated from `MnistClusteringConfig`)."""

from __future__ import annotations

import argparse
from typing import Any

from probe.cli._config_args import add_config_args, config_from_args

__all__ = ["add_run_parser"]

_HELP = {
    "dataset": "mnist (torchvision; data root $PROBE_DATA) or digits (bundled 8x8, offline)",
    "n_nets": "independently trained nets (seeds seed, seed+1, ...); the authors use 10",
    "epochs": "passes over the training images (the authors: 200)",
    "lr": "Adam learning rate",
    "batch_size": "training images per Adam step",
    "width": "width of every hidden layer",
    "depth": "hidden layers",
    "gain": "xavier_normal gain of every weight (biases start at 0)",
    "hidden_layer": "0-based hidden layer whose post-nonlinearity output is recorded",
    "n_probe": "first training images, sorted by label, recorded at every snapshot",
    "n_pred_images": "first training images (raw pixels) the predicted matrix is built from",
    "max_train": "train on the first N images only (None: all)",
    "n_log_snapshots": "log-spaced snapshots per net (plus one per epoch end)",
    "seed": "seed of the first net (init and batch order)",
    "spike_factor": "divergence: a batch loss above this multiple of its running baseline",
    "spike_window": "divergence: the baseline is the median of this many previous batch losses",
    "accuracy_floor": "divergence: a final test accuracy below this (0 disables the test)",
    "include_diverged": "average diverged nets too (they are always listed)",
    "until_divergence": "the mean r per snapshot also uses diverged nets' snapshots before "
    "their first loss spike or non-finite loss",
    "n_bootstrap": "bootstrap resamples of nets for the CI of the mean r",
    "ci_level": "confidence level of the percentile-bootstrap CI",
    "bootstrap_seed": "seed of the bootstrap",
}


def _cmd_run(args: argparse.Namespace) -> int:
    from probe.experiments.mnist_clustering.experiment import (
        MnistClusteringConfig,
        analyse_mnist_clustering,
        format_summary,
        run_mnist_clustering,
    )

    cfg = config_from_args(MnistClusteringConfig, args)
    if args.from_stores:
        res = analyse_mnist_clustering(args.out, cfg)
    else:
        res = run_mnist_clustering(cfg, args.out)
    print("\n" + format_summary(res.summary))
    written = (res.report, res.summary_json, res.nets_csv, res.trajectory_csv, res.per_net_csv,
               res.steps_csv, res.matrices, res.figure, res.trajectory_figure)  # fmt: skip
    print(
        f"written in {res.wall_s:.0f} s: {', '.join(map(str, written))}; run stores in "
        f"{res.out / 'nets'}/"
    )
    return 0


def add_run_parser(exp: Any) -> None:
    """Register ``probe run mnist-clustering`` (one flag per config field) on ``exp``.

    Parameters
    ----------
    exp : argparse._SubParsersAction
        The subparsers of the ``probe run`` verb.
    """
    from probe.experiments.mnist_clustering.experiment import MnistClusteringConfig

    q = exp.add_parser(
        "mnist-clustering",
        help="hidden-layer class geometry of MNIST MLPs vs the two-point effective theory",
        description="Train several 784-4x200-10 leaky-ReLU MLPs (gain 0.5, Adam, 0.5*MSE on "
        "one-hot targets), record hidden layer 2 on the first 100 training images, and compare "
        "each net's squared-distance matrix with the theory's prediction from raw pixels: "
        "Pearson r over all entries and between classes, raw and class-size normalised, per "
        "net and snapshot. Nets that diverged (non-finite or spiking batch loss, final test "
        "accuracy below a floor) are listed and left out of the mean r, its bootstrap CI "
        "across nets and the averaged matrix (report.md, summary.json, nets.csv, "
        "trajectory.csv, per_net_steps.csv, steps.csv, matrices.npz, figure.png, "
        "trajectory.png).",
    )
    add_config_args(q, MnistClusteringConfig, helps=_HELP, choices={"dataset": ["mnist", "digits"]})
    q.add_argument(
        "--out", default="artifacts/mnist-clustering", help="output folder (default: %(default)s)"
    )
    q.add_argument(
        "--from-stores",
        action="store_true",
        help="do not train: analyse the run stores already in --out again (training settings "
        "are read from the stores; only the divergence and bootstrap flags apply; default: off)",
    )
    q.set_defaults(func=_cmd_run)
