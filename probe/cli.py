"""The ``probe`` command line: ``probe info RUN``, ``probe run mnist``, ``probe demo``.

Every verb has ``--help``; outputs go under ``artifacts/`` unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from probe._format import format_info
from probe.errors import ProbeError

__all__ = ["main"]


def _cmd_info(args: argparse.Namespace) -> int:
    from probe.store import open_run

    info = open_run(args.run).info()
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def _classifier_config(args: argparse.Namespace) -> object:
    from probe.experiments.mnist import ClassifierConfig

    return ClassifierConfig(
        dataset=args.dataset,
        model=args.model,
        epochs=args.epochs,
        optimizer=args.optimizer,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        loss=args.loss,
        gain=args.gain,
        probe_size=args.probe_size,
        max_steps=args.max_steps,
        seed=args.seed,
    )


def _cmd_run_mnist(args: argparse.Namespace) -> int:
    from probe.experiments.mnist import train_classifier

    cfg = _classifier_config(args)
    res = train_classifier(cfg, args.out)  # type: ignore[arg-type]
    print(
        f"\n{args.dataset} {args.model}: test accuracy {res.test_accuracy:.4f}, "
        f"test loss {res.test_loss:.4f}, {res.n_steps} steps in {res.wall_s:.1f} s"
    )
    print(f"run store: {res.store}   (inspect: probe info {res.store})")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from probe.data import DatasetUnavailableError
    from probe.experiments.mnist import ClassifierConfig, train_classifier
    from probe.store import open_run

    out = Path(args.out)
    t0 = time.perf_counter()
    cfg = ClassifierConfig(dataset=args.dataset, model="mlp", epochs=1, seed=0)
    try:
        res = train_classifier(cfg, out / "mnist-mlp")
    except DatasetUnavailableError as err:
        if args.dataset != "mnist":
            raise
        print(f"{err}\nfalling back to --dataset digits", file=sys.stderr)
        cfg = ClassifierConfig(dataset="digits", model="mlp", epochs=20, seed=0)
        res = train_classifier(cfg, out / "digits-mlp")
    print()
    print(format_info(open_run(res.store).info()))
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s")
    print(
        f"  {cfg.dataset} MLP: test accuracy {res.test_accuracy:.4f} after {res.n_steps} steps "
        f"({res.wall_s:.0f} s)"
    )
    print(f"  run store: {res.store}")
    return 0


def _add_classifier_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        choices=["mnist", "digits"],
        default="mnist",
        help="mnist (torchvision; data root $PROBE_DATA) or digits (bundled 8x8, offline)",
    )
    p.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="adam")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-schedule", choices=["cosine", "constant"], default="cosine",
                   help="cosine decay to 0 over the run, or a constant learning rate")
    p.add_argument(
        "--loss",
        choices=["ce", "mse"],
        default="ce",
        help="cross-entropy, or 0.5*MSE on one-hot targets",
    )
    p.add_argument("--gain", type=float, default=1.0, help="MLP init gain")
    p.add_argument("--probe-size", type=int, default=2000, help="stratified test images recorded")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    p.add_argument("--seed", type=int, default=0)


def build_parser() -> argparse.ArgumentParser:
    """Return the ``probe`` argument parser."""
    parser = argparse.ArgumentParser(prog="probe", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)

    p = sub.add_parser("info", help="summarise a run store", description="Summarise a run store.")
    p.add_argument("run", help="path of a run store (folder written by hooks.Recorder)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser(
        "run", help="run a reference experiment", description="Run a reference experiment."
    )
    exp = p.add_subparsers(dest="experiment", required=True)
    q = exp.add_parser(
        "mnist",
        help="MNIST/digits classifier with recorded representations",
        description="Train an MNIST (or digits) classifier with a Recorder attached.",
    )
    _add_classifier_args(q)
    q.add_argument("--out", default="artifacts/mnist", help="output folder")
    q.set_defaults(func=_cmd_run_mnist)

    p = sub.add_parser(
        "demo",
        help="the main job on embedded defaults",
        description="Run a small real version of every reference experiment.",
    )
    p.add_argument("--out", default="artifacts/demo", help="output folder")
    p.add_argument("--dataset", choices=["mnist", "digits"], default="mnist")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ProbeError as err:
        print(f"probe {args.verb}: error: {err}", file=sys.stderr)
        return 2
