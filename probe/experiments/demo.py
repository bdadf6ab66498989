"""`probe demo`: a small but real version of every reference experiment, under one folder.

Finetune-speed with 6 seeds (the fewest for which a two-sided Wilcoxon test can reach p < 0.05),
an MNIST MLP for one epoch (scikit-learn's digits when MNIST is unavailable offline), the
two-point effective-theory fit on the authors' ``two_layer`` setting (one seed) and the deep
linear network against Saxe et al.'s exact solution, the MNIST clustering comparison and the
gated routing network's neural race.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from probe.errors import DatasetUnavailableError
from probe.experiments.deep_linear import DeepLinearConfig, run_deep_linear
from probe.experiments.finetune_speed.experiment import (
    FinetuneConfig,
    format_summary,
    run_finetune_speed,
)
from probe.experiments.mnist import ClassifierConfig, train_classifier
from probe.experiments.mnist_clustering.experiment import demo_config, run_mnist_clustering
from probe.experiments.mnist_clustering.experiment import format_summary as format_clustering
from probe.experiments.neural_race.experiment import NeuralRaceConfig, run_neural_race
from probe.experiments.nfa.experiment import demo_config as nfa_demo_config
from probe.experiments.nfa.experiment import run_nfa
from probe.experiments.sweep import run_sweep
from probe.experiments.two_points.experiment import TwoPointsConfig, run_two_points
from probe.report.curve_report import analyse_sweep
from probe.report.page import write_report
from probe.store import open_run
from probe.store.format import format_info

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
    # The demo's nets are small: one intra-op thread is faster than several, and a machine that
    # is busy with other work otherwise slows it by an order of magnitude (oversubscription).
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    fs = run_finetune_speed(FinetuneConfig(seeds=seeds), out / "finetune-speed")
    # 1 epoch of MNIST is ~940 steps; the 1,347 digits training images need 20 epochs
    cfg = ClassifierConfig(dataset=dataset, model="mlp", epochs=1 if dataset == "mnist" else 20)
    try:
        clf = train_classifier(cfg, out / f"{dataset}-mlp")
    except DatasetUnavailableError as err:
        if dataset != "mnist":
            raise
        print(f"{err}\nfalling back to --dataset digits", file=sys.stderr)
        cfg = ClassifierConfig(dataset="digits", model="mlp", epochs=20)
        clf = train_classifier(cfg, out / "digits-mlp")
    report = write_report(clf.store, out / "report.html", max_steps=6, progress=False)
    nfa_m = run_nfa(nfa_demo_config("mnist", cfg.dataset), out / "nfa-mnist", progress=False)
    nfa_p = run_nfa(nfa_demo_config("poly"), out / "nfa-poly", progress=False)
    mc = run_mnist_clustering(demo_config(cfg.dataset), out / "mnist-clustering")
    tp = run_two_points(TwoPointsConfig(setting="two_layer", seeds=1), out / "two-points")
    fit = tp.table.iloc[0]
    dl = run_deep_linear(DeepLinearConfig(), out / "deep-linear")
    # Learning curves of many runs: a small sequential-digits sweep (GRU reading 8x8 rows).
    sw = run_sweep(
        {
            "experiment": "seq-mnist",
            "grid": {"pair": [[0, 1], [3, 8]], "seed": [0, 1]},
            "base": {"dataset": "digits", "epochs": 4, "hidden": 16, "probe_size": 100},
        },
        out / "seq-sweep",
        workers=2,
    )
    cr = analyse_sweep(sw.table, out / "seq-sweep" / "curves")
    nr = run_neural_race(
        NeuralRaceConfig(init="decoupled", scale=0.08, seeds=1), out / "neural-race"
    )
    lines = [
        "",
        format_summary(fs.summary),
        "",
        format_info(open_run(clf.store).info()),
        "",
        format_clustering(mc.summary),
        "",
        f"demo finished in {time.perf_counter() - t0:.0f} s; written under {out}/",
        f"  finetune-speed ({seeds} seeds, {fs.wall_s:.0f} s): {fs.metrics_csv}, {fs.summary_json},"
        f" {fs.figure}, run stores in {fs.runs}/",
        f"  {cfg.dataset} MLP: test accuracy {clf.test_accuracy:.4f} after {clf.n_steps} steps "
        f"({clf.wall_s:.0f} s); run store {clf.store}",
        f"  report of the {cfg.dataset} MLP run: {report}",
        f"  nfa ({nfa_m.wall_s:.0f} s + {nfa_p.wall_s:.0f} s): {nfa_m.table_csv}, "
        f"{nfa_p.table_csv}, figures in {nfa_m.out}/ and {nfa_p.out}/",
        f"  mnist-clustering: {mc.figure}, {mc.summary_json}",
        f"  two-points (two_layer, {tp.wall_s:.0f} s): fitted eta_h {fit.eta_h:.3g}, eta_y "
        f"{fit.eta_y:.3g} (lr/2 = 0.0025), SSE {fit.sse:.3g}; {tp.table_csv}, {tp.figures[0]}",
        f"  deep-linear ({dl.wall_s:.0f} s): half-times "
        + ", ".join(
            f"{r.t_half_weights:.0f} (theory {r.t_half_theory:.0f})" for r in dl.table.itertuples()
        )
        + f" steps; {dl.figure}",
        f"  seq-mnist sweep (4 runs, {sw.wall_s:.0f} s): {sw.table}; curve metrics, "
        f"trajectories and statistics in {cr.out}/",
        f"  neural-race (decoupled b0 = 0.08, {nr.wall_s:.0f} s): {nr.table_csv}, {nr.figure}",
        f"look at every run in the browser (live while one records): probe serve {out}",
    ]
    return "\n".join(lines)
