"""CLI verbs of the temporal model and the many-runs machinery.

`add_parser` registers ``probe sweep CONFIG`` on the top-level subparsers; `add_run_parser`
registers ``probe run seq-mnist`` (flags generated from `SeqMnistConfig`) on the ``run`` ones.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from probe.cli._config_args import add_config_args, config_from_args
from probe.errors import ConfigError

__all__ = ["add_parser", "add_run_parser", "parse_pair"]

_SEQ_HELP = {
    "dataset": "mnist (28 rows of 28 pixels; data root $PROBE_DATA) or digits (8 rows of 8, "
    "bundled, offline)",
    "pair": "the two classes a,b of the binary task (a is label 0), e.g. 3,8",
    "model": "recurrent cell",
    "hidden": "hidden size of the recurrent cell",
    "lr": "Adam learning rate",
    "n_train": "training images per class (None: all of the pair's)",
    "epochs": "passes over the training images (one snapshot after each)",
    "batch_size": "training images per Adam step",
    "seed": "seed of the init, the batches, the training subset and the probe set",
    "probe_size": "test images recorded at every snapshot (at most; stratified)",
    "shuffle_labels": "permute the training labels (label-reshuffled null model)",
}
_SEQ_CHOICES = {"dataset": ["mnist", "digits"], "model": ["gru", "lstm"]}


def parse_pair(text: str | tuple[int, int]) -> tuple[int, int]:
    """Return the class pair of a flag value such as ``"3,8"`` or ``"3-8"``.

    Raises
    ------
    ConfigError
        ``text`` is not two integers separated by ',' or '-'.

    Examples
    --------
    >>> parse_pair("3,8"), parse_pair("0-1")
    ((3, 8), (0, 1))
    """
    if isinstance(text, tuple):
        return text
    match = re.fullmatch(r"\s*(\d+)\s*[,-]\s*(\d+)\s*", text)
    if match is None:
        msg = f"pair must be two classes separated by ',' (e.g. 3,8); got {text!r}."
        raise ConfigError(msg)
    return int(match[1]), int(match[2])


def _cmd_sweep(args: argparse.Namespace) -> int:
    from probe.experiments.sweep import run_sweep

    out = args.out or f"artifacts/sweep-{Path(args.config).stem}"
    res = run_sweep(
        args.config,
        out,
        workers=args.workers,
        scheduler=args.scheduler,
        retries=args.retries,
        progress=args.progress,
    )
    print(f"{len(res.ran)} runs ran and {len(res.skipped)} were already done in {res.wall_s:.1f} s")
    print(f"table: {res.table}" + (f" and {res.parquet}" if res.parquet else ""))
    return 0


def _cmd_run_seq(args: argparse.Namespace) -> int:
    from probe.experiments.seq_mnist import SeqMnistConfig, readout_table, train_seq_mnist

    args.pair = parse_pair(args.pair)
    cfg = config_from_args(SeqMnistConfig, args)
    res = train_seq_mnist(cfg, args.out)
    table = readout_table(res.store, seed=cfg.seed)
    path = Path(args.out) / "readout.csv"
    table.to_csv(path, index=False)
    last = table[table["epoch"] == table["epoch"].max()]
    best = last.groupby("readout")["accuracy"].max()
    print(
        f"\n{cfg.dataset} {cfg.model} {cfg.pair[0]} vs {cfg.pair[1]}: test accuracy "
        f"{res.test_accuracy:.4f} after {res.n_steps} steps in {res.wall_s:.1f} s; best "
        "read-out over time steps: " + ", ".join(f"{k} {v:.3f}" for k, v in best.items())
    )
    print(f"run store: {res.store}   read-out table: {path}")
    return 0


def add_parser(sub: Any) -> None:
    """Register ``probe sweep CONFIG [--out] [--workers] [--scheduler] [--retries]`` on ``sub``.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The top-level subparsers of the ``probe`` parser.
    """
    p = sub.add_parser(
        "sweep",
        help="run an experiment over a grid of settings in parallel",
        description="Run every combination of a sweep config's grid as dask.distributed tasks, "
        "on worker processes of this machine or on a running cluster (--scheduler), "
        "resumable (finished runs are skipped), and write one tidy table "
        "(table.csv, table.parquet). Config: JSON or TOML with keys experiment "
        '(e.g. "seq-mnist"), grid (field -> list of values) and base (field -> value).',
    )
    p.add_argument("config", help="sweep config file (.json or .toml)")
    p.add_argument(
        "--out", default=None, help="output folder (default: artifacts/sweep-<config name>)"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=2,
        help="worker processes of the embedded dask LocalCluster, one run and one torch "
        "thread each; 0 runs in this process without dask (default: %(default)s)",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="address of a running dask scheduler, e.g. tcp://10.0.0.5:8786; the runs are "
        "tasks on its workers, --out must be on a file system they share "
        "(default: an embedded LocalCluster of --workers processes)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=2,
        help="times the embedded cluster reschedules a run whose worker died before "
        "reporting it failed (a running scheduler uses its allowed-failures) "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="show a progress bar over runs (default: on)",
    )
    p.set_defaults(func=_cmd_sweep)


def add_run_parser(exp: Any) -> None:
    """Register ``probe run seq-mnist`` (one flag per `SeqMnistConfig` field) on ``exp``.

    Parameters
    ----------
    exp : argparse._SubParsersAction
        The subparsers of the ``probe run`` verb.
    """
    from probe.experiments.seq_mnist import SeqMnistConfig

    q = exp.add_parser(
        "seq-mnist",
        help="GRU/LSTM reading images row by row, on one pair of classes",
        description="Train a GRU/LSTM on a binary task (one pair of classes) with image rows "
        "as time steps, record its hidden state at every step, and write the per-epoch, "
        "per-time-step read-out accuracies (readout.csv).",
    )
    add_config_args(
        q, SeqMnistConfig, helps=_SEQ_HELP, choices=_SEQ_CHOICES, defaults={"pair": "0,1"}
    )
    q.add_argument(
        "--out", default="artifacts/seq-mnist", help="output folder (default: %(default)s)"
    )
    q.set_defaults(func=_cmd_run_seq)
