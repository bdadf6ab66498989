"""The ``probe`` command line: info, verify, run, analyze, curves, export, sweep, demo and more.

Experiments: ``mnist``, ``finetune-speed``, ``seq-mnist``, ``two-points``, ``deep-linear``.

Every verb has ``--help``; outputs go under ``artifacts/`` unless ``--out`` says otherwise.
Experiment flags are generated from the experiments' config dataclasses.

An error is reported in one line on stderr, ``probe VERB: error: MESSAGE``; ``--debug``
(anywhere on the command line) adds the full traceback. Exit status: see `EXIT_STATUS`.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Sequence

from hooks.errors import HooksError
from probe.cli import sweep as sweep_cli
from probe.cli._config_args import add_config_args, config_from_args
from probe.errors import ProbeError
from probe.store.format import format_info

__all__ = ["EXIT_STATUS", "build_parser", "main"]

#: What ``probe`` exits with, also shown by ``probe --help``.
EXIT_STATUS = {
    0: "done",
    1: "`probe verify` found the run damaged (every problem is printed)",
    2: "an error in the input (arguments, run store, config file, data or output path), "
    "reported in one line; also argparse's usage errors",
    3: "an unexpected error, a bug in probe: one line, rerun with --debug for the traceback",
    130: "interrupted (Ctrl-C)",
}
_EPILOG = (
    "--debug, anywhere on the command line, prints the full traceback of an error. Exit status: "
    + "; ".join(f"{code} {text}" for code, text in EXIT_STATUS.items())
    + "."
)

_CLASSIFIER_HELP = {
    "dataset": "mnist (torchvision; data root $PROBE_DATA) or digits (bundled 8x8, offline)",
    "loss": "ce: cross-entropy; mse: 0.5*MSE on one-hot targets",
    "lr_schedule": "cosine decay to 0 over the run, or constant",
    "gain": "init gain of the MLP",
    "probe_size": "stratified test images recorded at every snapshot",
    "n_log_snapshots": "log-spaced snapshots (plus one per epoch end)",
    "max_steps": "stop after this many optimizer steps",
    "weights": "record the weights of every Linear/Conv layer",
    "agop": "record the AGOP of every Linear/Conv layer at each snapshot (for the NFA)",
    "writer": "who writes the run: a thread, or a process (Linux; less overhead on CPU training)",
}
_CLASSIFIER_CHOICES = {
    "dataset": ["mnist", "digits"],
    "model": ["mlp", "cnn"],
    "optimizer": ["adam", "sgd"],
    "loss": ["ce", "mse"],
    "lr_schedule": ["cosine", "constant"],
    "writer": ["thread", "process"],
}
_FINETUNE_HELP = {
    "seeds": "paired seeds (>= 6 for a Wilcoxon p below 0.05)",
    "seed0": "first seed",
    "width": "hidden width of every branch MLP",
    "depth": "hidden layers of every branch MLP",
    "pretrain_steps": "full-batch Adam steps on (x+1)^2",
    "finetune_steps": "full-batch Adam steps on each task A, B",
    "threshold": "loss threshold of steps_to_threshold",
    "n_grid": "points of the x-grid on [-2, 2] (training set and probe set)",
    "supervise_branches": "also supervise the branches with their factors/terms in pretraining",
    "n_snapshots": "log-spaced snapshots of each finetune run",
    "alpha": "significance level of the verdicts",
    "n_bootstrap": "bootstrap resamples of the CI",
}

_TWO_POINTS_HELP = {
    "setting": "row of the authors' '2 points.txt' settings",
    "seeds": "independent seeds",
    "halve_lr": "halve the row's lr and double its epochs (as the authors' notebook)",
    "seed0": "first seed",
    "nonlinearity": "override the row's nonlinearity (None: the row's)",
    "gain": "init gain (None: the row's)",
    "lr": "learning rate (None: the row's)",
    "width": "hidden width (None: the row's)",
    "depth": "hidden layers (None: the row's)",
    "epochs": "full-batch SGD steps (None: the row's)",
    "hooked": "hidden layer of the figure, an index into the authors' activation list "
    "(None: the row's)",
    "architecture": "override the row's model: MLP, ResNet, CNN or Dropout (None: the row's)",
    "speedup": "multiply the lr by this and divide the epochs by it (1: the protocol)",
    "layers": "hidden layers to record and fit: 'all' or comma-separated indices "
    "(None: the hooked layer only)",
    "every": "snapshot interval in optimizer steps",
    "threads": "torch intra-op threads while training (one is fastest for two samples)",
    "fit_starts": "start grid of the fit: authors (1-D, rich-limit rho) or wide (x rho 1e-3..1e3)",
    "dx2": "squared distance of the two inputs",
    "dy2": "squared distance of the two targets",
    "fit": "fit the effective theory per layer",
    "dtype": "floating-point type of the model and data",
}
_DEEP_LINEAR_HELP = {
    "data": "routing: the 4 items of the GDLN task; hierarchy: binary-tree features",
    "init": "decoupled: balanced, SVD-aligned at u0; random: Gaussian of std sigma",
    "u0": "initial mode strength (decoupled init)",
    "sigma": "weight std (random init)",
    "steps": "full-batch SGD steps on 0.5*SSE (tau = 1/lr)",
}


def _cmd_info(args: argparse.Namespace) -> int:
    from probe.store import open_run

    info = open_run(args.run).info()
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from probe.store.verify import verify_run

    report = verify_run(args.run, progress=not args.quiet)
    print(report)
    return 0 if report.ok else 1


def _cmd_run_mnist(args: argparse.Namespace) -> int:
    from probe.experiments.mnist import ClassifierConfig, train_classifier

    cfg = config_from_args(ClassifierConfig, args)
    res = train_classifier(cfg, args.out)
    print(
        f"\n{cfg.dataset} {cfg.model}: test accuracy {res.test_accuracy:.4f}, "
        f"test loss {res.test_loss:.4f}, {res.n_steps} steps in {res.wall_s:.1f} s"
    )
    print(f"run store: {res.store}   (inspect: probe info {res.store})")
    return 0


def _cmd_run_finetune(args: argparse.Namespace) -> int:
    from probe.experiments.finetune_speed.experiment import (
        FinetuneConfig,
        format_summary,
        run_finetune_speed,
    )

    res = run_finetune_speed(config_from_args(FinetuneConfig, args), args.out)
    print("\n" + format_summary(res.summary))
    print(
        f"written: {res.metrics_csv}, {res.summary_json}, {res.figure}; run stores in {res.runs}/"
    )
    return 0


def _cmd_run_two_points(args: argparse.Namespace) -> int:
    from probe.experiments.two_points.experiment import TwoPointsConfig, run_two_points

    res = run_two_points(config_from_args(TwoPointsConfig, args), args.out)
    if len(res.table):
        cols = ["seed", "layer", "eta_h", "eta_y", "sse", "rel_err_h", "rel_err_y", "rel_err_w"]
        print("\n" + res.table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"written: {res.table_csv}, {res.summary_json}, figures {[str(p) for p in res.figures]}")
    return 0


def _cmd_run_deep_linear(args: argparse.Namespace) -> int:
    from probe.experiments.deep_linear import DeepLinearConfig, run_deep_linear

    res = run_deep_linear(config_from_args(DeepLinearConfig, args), args.out)
    print("\n" + res.table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"written: {res.summary_json}, {res.figure}; run stores in {res.runs[0].parent}/")
    return 0


def _cmd_finetune_curves(args: argparse.Namespace) -> int:
    from probe.experiments.finetune_speed.curves import analyse_finetune_curves

    res = analyse_finetune_curves(args.out, args.dest, curves=args.curves, smooth=args.smooth)
    print(res.stats.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"written: {res.metrics_csv} and {res.stats_csv}")
    return 0


def _cmd_curve_report(args: argparse.Namespace) -> int:
    from probe.report.curve_report import analyse_sweep

    rep = analyse_sweep(
        args.table, args.out, value=args.value, group=args.group, scheduler=args.scheduler
    )
    print(rep.stats.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"written under {rep.out}: {[str(p) for p in rep.figures.values()]}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from probe.experiments.demo import run_demo

    print(run_demo(args.out, dataset=args.dataset, seeds=args.seeds))
    return 0


def _add_experiments(exp: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add every ``probe run`` experiment (imports the experiments, hence torch: seconds)."""
    from probe.experiments.finetune_speed.experiment import FinetuneConfig
    from probe.experiments.mnist import ClassifierConfig

    q = exp.add_parser(
        "mnist",
        help="MNIST/digits classifier with recorded representations",
        description="Train an MNIST (or digits) classifier with a Recorder attached.",
    )
    add_config_args(
        q,
        ClassifierConfig,
        helps=_CLASSIFIER_HELP,
        choices=_CLASSIFIER_CHOICES,
        defaults={"epochs": 3},
    )
    q.add_argument("--out", default="artifacts/mnist", help="output folder (default: %(default)s)")
    q.set_defaults(func=_cmd_run_mnist)

    q = exp.add_parser(
        "finetune-speed",
        help="ProductNet vs SumNet finetuned to related polynomials",
        description="Pretrain ProductNet and SumNet on (x+1)^2, finetune on A=(x+1)(x+2) and "
        "B=x^2+2.5x+1, compare learning speed paired across seeds.",
    )
    add_config_args(q, FinetuneConfig, helps=_FINETUNE_HELP)
    q.add_argument(
        "--out", default="artifacts/finetune-speed", help="output folder (default: %(default)s)"
    )
    q.set_defaults(func=_cmd_run_finetune)

    from probe.experiments.deep_linear import DeepLinearConfig
    from probe.experiments.two_points.experiment import SETTINGS, TwoPointsConfig

    sweep_cli.add_run_parser(exp)
    from probe.cli import run_mnist_clustering

    run_mnist_clustering.add_run_parser(exp)
    from probe.cli import run_neural_race

    run_neural_race.add_run_parser(exp)
    from probe.cli import run_nfa

    run_nfa.add_run_parser(exp)
    from probe.cli import run_two_point

    run_two_point.add_run_parsers(exp)

    q = exp.add_parser(
        "two-points",
        help="two-point representation dynamics vs the effective theory (van Rossem & Saxe)",
        description="Train the authors' two-point MLP settings with every hidden layer recorded "
        "each step, and fit the effective theory's rates (eta_h, eta_y) per layer.",
    )
    add_config_args(
        q,
        TwoPointsConfig,
        helps=_TWO_POINTS_HELP,
        choices={"setting": sorted(SETTINGS), "dtype": ["float32", "float64"]}
        | {"fit_starts": ["authors", "wide"]},
    )
    q.add_argument(
        "--out", default="artifacts/two-points", help="output folder (default: %(default)s)"
    )
    q.set_defaults(func=_cmd_run_two_points)

    q = exp.add_parser(
        "deep-linear",
        help="deep linear net mode strengths vs Saxe et al. 2014",
        description="Train a bias-free linear net on one-hot items; compare mode strengths "
        "(from weights and from the hidden Gram) with the exact solution.",
    )
    add_config_args(
        q,
        DeepLinearConfig,
        helps=_DEEP_LINEAR_HELP,
        choices={"data": ["routing", "hierarchy"], "init": ["decoupled", "random"]},
    )
    q.add_argument(
        "--out", default="artifacts/deep-linear", help="output folder (default: %(default)s)"
    )
    q.set_defaults(func=_cmd_run_deep_linear)


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """Return the ``probe`` argument parser.

    With ``verb`` (the command line's first word), the experiments of ``probe run`` are added
    only when it is ``run``: they import torch, which `probe info` and ``--help`` never need.
    """
    parser = argparse.ArgumentParser(
        prog="probe", description=__doc__.splitlines()[0], epilog=_EPILOG
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error (default: off)"
    )
    sub = parser.add_subparsers(dest="verb", required=True)

    p = sub.add_parser("info", help="summarise a run store", description="Summarise a run store.")
    p.add_argument("run", help="path of a run store (folder written by hooks.Recorder)")
    p.add_argument(
        "--json",
        action="store_true",
        help="print the summary as JSON (default: off, a text summary)",
    )
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser(
        "verify",
        help="read and check every committed chunk of a run",
        description="Read every committed chunk of a run store and check it: present, matching "
        "its crc32c checksum, metadata as written, counters consistent. Prints every problem; "
        "exits 0 when the run is intact, 1 when it is damaged, 2 when PATH is not a run.",
    )
    p.add_argument("run", help="path of a run store (folder written by hooks.Recorder)")
    p.add_argument(
        "--quiet", action="store_true", help="no progress bar (default: off, the bar is shown)"
    )
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser(
        "run", help="run a reference experiment", description="Run a reference experiment."
    )
    exp = p.add_subparsers(dest="experiment", required=True)
    if verb is None or verb == "run":
        _add_experiments(exp)

    p = sub.add_parser(
        "demo",
        help="the main job on embedded defaults",
        description="Run a small real version of every reference experiment (artifacts/demo/).",
    )
    p.add_argument("--out", default="artifacts/demo", help="output folder (default: %(default)s)")
    p.add_argument(
        "--dataset",
        choices=["mnist", "digits"],
        default="mnist",
        help="dataset of the MNIST experiments (default: %(default)s)",
    )
    p.add_argument(
        "--seeds", type=int, default=6, help="finetune-speed seeds (default: %(default)s)"
    )
    p.set_defaults(func=_cmd_demo)

    from probe.cli.curves import add_parser as add_curves_parser

    add_curves_parser(sub)
    q = sub.add_parser(
        "finetune-curves",
        help="learning-curve metrics of a finetune-speed folder",
        description="start, end-start, max, tmax of every finetune run's loss and log10 "
        "loss-reduction curves; ProductNet vs SumNet per task, paired by seed.",
    )
    q.add_argument("out", help="folder written by `probe run finetune-speed`")
    q.add_argument("--dest", default=None, help="folder of the CSVs (default: OUT)")
    q.add_argument(
        "--curves",
        nargs="+",
        default=["loss", "log10_reduction"],
        choices=["loss", "log10_reduction", "fraction_reduced"],
        help="curves to measure (default: %(default)s)",
    )
    q.add_argument(
        "--smooth",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Tukey 3RS3R smoothing first (default: on)",
    )
    q.set_defaults(func=_cmd_finetune_curves)

    q = sub.add_parser(
        "curve-report",
        help="trajectories and group statistics of a sweep table",
        description="Four curve metrics per (run, epoch), developmental and information-"
        "processing trajectories per group, nested F and Kruskal-Wallis tests, figures.",
    )
    q.add_argument("table", help="table.csv or table.parquet written by `probe sweep`")
    q.add_argument(
        "--out", default="artifacts/curve-report", help="output folder (default: %(default)s)"
    )
    q.add_argument(
        "--value", default="accuracy", help="column of the curve values (default: %(default)s)"
    )
    q.add_argument(
        "--group", default="pair", help="column of the compared groups (default: %(default)s)"
    )
    q.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="address of a running dask scheduler (tcp://host:8786): compute the metrics, "
        "trajectories and tests as its tasks (default: in this process)",
    )
    q.set_defaults(func=_cmd_curve_report)

    from probe.cli.export import add_parser as add_export_parser

    add_export_parser(sub)
    from probe.cli.analyze import add_parser as add_analyze_parser

    add_analyze_parser(sub)
    sweep_cli.add_parser(sub)
    from probe.cli.cka import add_parser as add_cka_parser

    add_cka_parser(sub)
    from probe.cli.serve import add_parser as add_serve_parser

    add_serve_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (`EXIT_STATUS`).

    A toolkit error (`probe.errors.ProbeError`, `hooks.errors.HooksError`) or an `OSError`
    (a path that cannot be read or written) is printed as one line and exits 2; any other
    exception is a bug: one line that says so, exit 3. ``--debug`` adds the traceback.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    verb = next((a for a in argv if not a.startswith("-")), "")
    args = build_parser(verb).parse_args(argv)
    where = " ".join(filter(None, ["probe", args.verb, getattr(args, "experiment", None)]))
    try:
        return int(args.func(args))
    except (ProbeError, HooksError) as err:
        return _report(where, f"error: {err}", 2, debug=debug)
    except OSError as err:
        return _report(where, f"error: {_os_error(err)}", 2, debug=debug)
    except KeyboardInterrupt:
        return _report(where, "interrupted", 130, debug=debug)
    except Exception as err:  # noqa: BLE001 - a bug: one line, and the traceback on request
        hint = "" if debug else "; rerun with --debug for the traceback"
        text = f"unexpected error (a bug in probe{hint}): {type(err).__name__}: {err}"
        return _report(where, text, 3, debug=debug)


def _os_error(err: OSError) -> str:
    """Return an `OSError` as one sentence naming its path(s)."""
    paths = [repr(str(p)) for p in (err.filename, err.filename2) if p is not None]
    what = err.strerror or str(err)
    where = f" ({' -> '.join(paths)})" if paths else ""
    return f"{what}{where}. Check the path, its permissions and the free disk space."


def _report(where: str, text: str, code: int, *, debug: bool) -> int:
    """Print ``text`` as one line on stderr (after the traceback with ``debug``); return code."""
    if debug:
        traceback.print_exc()
    line = " ".join(part.strip() for part in text.splitlines() if part.strip())
    print(f"{where}: {line}", file=sys.stderr)
    return code
