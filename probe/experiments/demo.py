"""`probe demo`: a small but real version of every reference experiment, under one folder.

Finetune-speed with 6 seeds (the fewest for which a two-sided Wilcoxon test can reach p < 0.05)
and an MNIST MLP for one epoch (scikit-learn's digits when MNIST is unavailable offline).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from probe._format import format_info
from probe.data import DatasetUnavailableError
from probe.experiments.finetune_speed import FinetuneConfig, format_summary, run_finetune_speed
from probe.experiments.mnist import ClassifierConfig, train_classifier
from probe.store import open_run

__all__ = ["run_demo"]


def run_demo(out: str | Path, *, dataset: str = "mnist", seeds: int = 6) -> str:
    """Run every reference experiment on embedded defaults; return the one-screen summary.

    Parameters
    ----------
    out : str or path
        Output folder (``artifacts/demo`` from the CLI).
    dataset : {"mnist", "digits"}
        Dataset of the classifier; MNIST falls back to digits when it cannot be loaded.
    seeds : int
        Seeds of the finetune-speed experiment.

    Returns
    -------
    str
    """
    out = Path(out)
    t0 = time.perf_counter()
    fs = run_finetune_speed(FinetuneConfig(seeds=seeds), out / "finetune-speed")
    cfg = ClassifierConfig(dataset=dataset, model="mlp", epochs=1)
    try:
        clf = train_classifier(cfg, out / f"{dataset}-mlp")
    except DatasetUnavailableError as err:
        if dataset != "mnist":
            raise
        print(f"{err}\nfalling back to --dataset digits", file=sys.stderr)
        cfg = ClassifierConfig(dataset="digits", model="mlp", epochs=20)
        clf = train_classifier(cfg, out / "digits-mlp")
    lines = [
        "",
        format_summary(fs.summary),
        "",
        format_info(open_run(clf.store).info()),
        "",
        f"demo finished in {time.perf_counter() - t0:.0f} s; written under {out}/",
        f"  finetune-speed ({seeds} seeds, {fs.wall_s:.0f} s): {fs.metrics_csv}, {fs.summary_json},"
        f" {fs.figure}, run stores in {fs.runs}/",
        f"  {cfg.dataset} MLP: test accuracy {clf.test_accuracy:.4f} after {clf.n_steps} steps "
        f"({clf.wall_s:.0f} s); run store {clf.store}",
    ]
    return "\n".join(lines)
