"""MNIST clustering against the two-point effective theory (docs/dynamics.md §1.7, §6 V1-5).

`run_mnist_clustering` trains several independent 784 → 4×200 leaky-ReLU → 10 MLPs (xavier gain
0.5, zero biases, Adam, 0.5·MSE on one-hot targets), records hidden layer 2 on the first 100
training images sorted by label with a `hooks.Recorder` (one run store per net) and compares each
net's squared-distance matrix with the prediction of `probe.theory.cluster_theory` built from raw
pixels: Pearson r over all entries and over different-class entries, against the raw and the
class-size-normalised prediction, at every snapshot.

With the protocol's Adam rate some nets blow up (batch losses of 1e3 and more, test accuracy far
below the others). Each net is checked by the rule of `probe.analysis.stats.divergence`; diverged
nets are listed and, unless ``include_diverged``, left out of the averages: the mean r per
snapshot with its percentile-bootstrap CI across nets, and the net-averaged matrix (raw, and
after scaling each net's matrix to mean entry 1). `analyse_mnist_clustering` repeats the
analysis on the stores of an earlier run, e.g. with another divergence rule.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
from tqdm.auto import tqdm

from probe.analysis.similarity import pairwise_sq_distances
from probe.analysis.stats.divergence import RULE, check_divergence
from probe.errors import ConfigError
from probe.experiments.datasets import MNIST_MEAN, MNIST_STD, load_dataset
from probe.experiments.mnist_clustering._analysis import (
    VARIANTS,
    NetRecord,
    averaged_table,
    compare,
    per_net_table,
    read_net,
    trajectory_table,
)
from probe.experiments.mnist_clustering._config import (
    ANALYSIS_FIELDS,
    MnistClusteringConfig,
    demo_config,
    validate,
)
from probe.experiments.mnist_clustering._figures import plot_clustering, plot_trajectory
from probe.experiments.mnist_clustering._report import format_report, format_summary
from probe.experiments.mnist_clustering._train import train_net
from probe.store import open_run
from probe.theory.cluster_theory import class_pair_distance_sums, predicted_sq_distances

__all__ = [
    "ANALYSIS_FIELDS",
    "MnistClusteringConfig",
    "MnistClusteringResult",
    "analyse_mnist_clustering",
    "demo_config",
    "format_summary",
    "raw_pixels",
    "run_mnist_clustering",
]

F64 = npt.NDArray[np.float64]

CONVENTIONS = {
    "measured": "squared Euclidean distance of the hooked hidden layer's post-nonlinearity "
    "output (model.eval()) between probe images, per net",
    "predicted": "sqrt2 * sum over the prediction images of the two classes of the Euclidean "
    "distance of RAW pixels (MNIST 0-255, digits 0-16); 0 within a class",
    "predicted_normalised": "the same divided by n_c n_c' (mean over class pairs), which "
    "removes the raw prediction's dependence on class sizes",
    "r_all": "Pearson r between measured and predicted over all n_probe^2 entries (diagonal "
    "and same-class blocks included, as the authors)",
    "r_between": "Pearson r over the entries of different-class pairs only (both triangles): "
    "does the theory order the between-class distances",
    "*_normalised": "the same r against the class-size-normalised prediction",
    "per net": "r of each net's own matrix; NaN where undefined (non-finite activations)",
    "ci": "mean of the per-net r over the averaged nets with a percentile-bootstrap CI "
    "(resampling nets with replacement; ci_level, n_bootstrap, bootstrap_seed), per snapshot",
    "averaged nets": "the nets not flagged as diverged (all nets if include_diverged)",
    "until_divergence": "if set, the mean r and CI per snapshot also use each diverged net's "
    "snapshots taken before the weights that gave its first loss spike or non-finite loss "
    "(step < onset - 1); the averaged matrix still uses the averaged nets only",
    "input_pixels": "the same comparisons for the squared distances of the probe images' raw "
    "pixels: what a net that kept the input geometry would score",
    "within/between": "mean measured squared distance over same-class pairs i != j / over "
    "different-class pairs",
    "average": "raw: mean of the averaged nets' squared-distance matrices (the authors' "
    "protocol); scaled: mean after dividing each net's matrix by its mean entry",
}

@dataclass
class MnistClusteringResult:
    """What `run_mnist_clustering` (or `analyse_mnist_clustering`) wrote and measured."""

    out: Path
    stores: list[Path]
    summary: dict[str, Any]
    summary_json: Path
    steps_csv: Path
    nets_csv: Path
    per_net_csv: Path
    trajectory_csv: Path
    matrices: Path
    figure: Path
    trajectory_figure: Path
    report: Path
    wall_s: float


def raw_pixels(dataset: str, x_train: torch.Tensor) -> F64:
    """Return the raw pixel values of images from `datasets.load_dataset` (train split).

    Parameters
    ----------
    dataset : {"mnist", "digits"}
        Which loader produced ``x_train``.
    x_train : torch.Tensor of shape (n, d)
        Normalised training images, in the loader's order (a leading subset is fine).

    Returns
    -------
    ndarray of float64 of shape (n, d)
        MNIST: integers 0–255; digits: integers 0–16.

    Notes
    -----
    MNIST inverts ``(p/255 − 0.1307)/0.3081``. Digits are standardised per pixel with the
    training split's mean and std; both splits share that affine map, so it is recovered from
    the moments of all 1,797 bundled images, raw (scikit-learn) and standardised (both splits).
    Rounding removes the float32 error (< 1e-5).
    """
    x = x_train.detach().cpu().numpy().astype(np.float64)
    if dataset == "mnist":
        return np.rint((x * MNIST_STD + MNIST_MEAN) * 255.0)
    from sklearn.datasets import load_digits

    raw = np.asarray(load_digits().data, dtype=np.float64)
    both = np.concatenate([load_dataset(dataset, train=t)[0].numpy() for t in (True, False)])
    spread = both.astype(np.float64).std(axis=0)
    scale = np.where(spread > 0, raw.std(axis=0) / np.where(spread > 0, spread, 1.0), 1.0)
    shift = raw.mean(axis=0) - scale * both.mean(axis=0)
    return np.rint(x * scale + shift)


def _net_row(
    i: int, cfg: MnistClusteringConfig, net: NetRecord, final: dict[str, Any]
) -> dict[str, Any]:
    check = check_divergence(
        net.loss_steps,
        net.losses,
        net.test_accuracy,
        spike_factor=cfg.spike_factor,
        window=cfg.spike_window,
        accuracy_floor=cfg.accuracy_floor,
    )
    return {
        "net": i,
        "seed": cfg.seed + i,
        "test_accuracy": net.test_accuracy,
        "diverged": check.diverged,
        "reasons": "; ".join(check.reasons),
        "first_nonfinite_step": check.first_nonfinite_step,
        "first_spike_step": check.first_spike_step,
        "max_spike_ratio": check.max_spike_ratio,
        "max_loss": check.max_loss,
        **{k: float(final[k]) for k in VARIANTS},
    }


def _healthy_rows(
    per_net: pd.DataFrame, rows: list[dict[str, Any]], averaged: list[int], *, until: bool
) -> pd.Series:
    """Return the rows of `per_net_table` that enter the mean r over nets.

    Those of the averaged nets and, with ``until``, the snapshots of diverged nets taken before
    the weights that gave their first bad loss.
    """
    mask = per_net["net"].isin(averaged)
    for row in rows if until else []:
        firsts = (row["first_spike_step"], row["first_nonfinite_step"])
        events = [s for s in firsts if s is not None]
        if row["net"] not in averaged and events:
            # the loss logged at step s comes from the weights after s - 1 updates
            mask |= (per_net["net"] == row["net"]) & (per_net["step"] < min(events) - 1)
    return mask


def _analyse(
    cfg: MnistClusteringConfig,
    out: Path,
    stores: list[Path],
    train: tuple[torch.Tensor, torch.Tensor],
    t0: float,
) -> MnistClusteringResult:
    """Check every net, compare it with the prediction, average the kept nets and write it all."""
    nets = [read_net(s, f"hidden.{cfg.hidden_layer}") for s in stores]
    x_tr, y_tr = train
    labels, steps = nets[0].labels, nets[0].steps
    n_pred = min(cfg.n_pred_images, len(x_tr))
    pairs = class_pair_distance_sums(raw_pixels(cfg.dataset, x_tr[:n_pred]), y_tr[:n_pred])
    pred = predicted_sq_distances(pairs, labels)
    norm = predicted_sq_distances(pairs, labels, normalise=True)
    dists = np.stack([n.dists for n in nets])
    # reference: the probe images' own pixel geometry against the prediction
    probe_pixels = raw_pixels(cfg.dataset, x_tr[_probe_order(cfg, y_tr)])
    pixels = compare(pairwise_sq_distances(probe_pixels), pred, norm, labels)
    per_net = per_net_table(dists, steps, pred, norm, labels)
    finals = per_net[per_net["step"] == steps[-1]].to_dict("records")
    rows = [_net_row(i, cfg, n, f) for i, (n, f) in enumerate(zip(nets, finals, strict=True))]
    diverged = [r["net"] for r in rows if r["diverged"]]
    averaged = [r["net"] for r in rows if cfg.include_diverged or not r["diverged"]]
    healthy = _healthy_rows(per_net, rows, averaged, until=cfg.until_divergence)
    trajectory = trajectory_table(
        per_net,
        healthy,
        n_resamples=cfg.n_bootstrap,
        level=cfg.ci_level,
        seed=cfg.bootstrap_seed,
    )
    by_average, matrices = averaged_table(dists[averaged], steps, pred, norm, labels)
    matrices.update(predicted=pred, predicted_normalised=norm)

    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / k for k in ("steps.csv", "nets.csv", "per_net_steps.csv", "trajectory.csv")}
    by_average.to_csv(paths["steps.csv"], index=False)
    per_net.to_csv(paths["per_net_steps.csv"], index=False)
    trajectory.to_csv(paths["trajectory.csv"], index=False)
    pd.DataFrame(rows).to_csv(paths["nets.csv"], index=False)
    arrays: dict[str, Any] = {"labels": labels, **matrices}
    np.savez(out / "matrices.npz", **arrays)
    last = trajectory[trajectory["step"] == steps[-1]].set_index("variant")
    groups = dict(iter(by_average.groupby("average")))
    accs = [n.test_accuracy for n in nets]
    summary: dict[str, Any] = {
        "config": asdict(cfg),
        "conventions": CONVENTIONS,
        "divergence_rule": RULE,
        "n_train": len(x_tr),
        "n_pred_images_used": n_pred,
        "n_steps": cfg.epochs * -(-len(x_tr) // cfg.batch_size),
        "probe_class_counts": np.bincount(labels, minlength=10).tolist(),
        "nets": rows,
        "n_diverged": len(diverged),
        "diverged_nets": diverged,
        "averaged_nets": averaged,
        "test_accuracy": accs,
        "test_accuracy_mean": float(np.mean([accs[i] for i in averaged])) if averaged else None,
        "final_ci": {v: {k: _plain(last.loc[v, k]) for k in ("n_nets", "mean", "ci_low", "ci_high")}
                     for v in VARIANTS},
        "input_pixels": {k: _plain(v) for k, v in pixels.items()},
        "final": {a: _floats(df.iloc[-1]) for a, df in groups.items()},
        "initial": {a: _floats(df.iloc[0]) for a, df in groups.items()},
    }  # fmt: skip
    figure, trajectory_png = out / "figure.png", out / "trajectory.png"
    plot_clustering(matrices, labels, by_average, summary, figure)
    plot_trajectory(per_net, trajectory, nets, summary, trajectory_png)
    summary["wall_s"] = time.perf_counter() - t0
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    report = out / "report.md"
    report.write_text(format_report(summary, trajectory) + "\n")
    return MnistClusteringResult(
        out=out,
        stores=stores,
        summary=summary,
        summary_json=out / "summary.json",
        steps_csv=paths["steps.csv"],
        nets_csv=paths["nets.csv"],
        per_net_csv=paths["per_net_steps.csv"],
        trajectory_csv=paths["trajectory.csv"],
        matrices=out / "matrices.npz",
        figure=figure,
        trajectory_figure=trajectory_png,
        report=report,
        wall_s=summary["wall_s"],
    )


def _plain(value: Any) -> Any:
    # JSON: numpy scalars to Python, NaN to None
    v = value.item() if hasattr(value, "item") else value
    return None if isinstance(v, float) and v != v else v


def _floats(row: Any) -> dict[str, Any]:
    items = ((k, v) for k, v in row.items() if k != "average")
    return {k: int(v) if k == "step" else _plain(float(v)) for k, v in items}


def _probe_order(cfg: MnistClusteringConfig, y_tr: torch.Tensor) -> npt.NDArray[np.int64]:
    # the first n_probe training images, stable-sorted by label (as the authors)
    return np.argsort(y_tr[: cfg.n_probe].numpy(), kind="stable").astype(np.int64)


def _train_split(cfg: MnistClusteringConfig) -> tuple[torch.Tensor, torch.Tensor]:
    x_tr, y_tr = load_dataset(cfg.dataset, train=True)
    return x_tr[: cfg.max_train], y_tr[: cfg.max_train]


def run_mnist_clustering(
    cfg: MnistClusteringConfig, out: str | Path, *, progress: bool = True
) -> MnistClusteringResult:
    """Train ``cfg.n_nets`` nets, record their hidden geometry and compare it with the theory.

    Parameters
    ----------
    cfg : MnistClusteringConfig
        Data, model, optimisation, recording, divergence and bootstrap settings.
    out : str or path
        Output folder: ``nets/net-XX/run.zarr`` (one run store per net, replaced if present)
        and the files of `analyse_mnist_clustering`.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    MnistClusteringResult

    Raises
    ------
    ConfigError
        A setting out of range, or ``n_probe`` larger than the training set.
    probe.experiments.datasets.DatasetUnavailableError
        MNIST is neither on disk nor downloadable (use ``dataset="digits"`` offline).

    Notes
    -----
    Probe images: the first ``n_probe`` training images, sorted by label (stable), as the
    authors. Prediction images: the first ``min(n_pred_images, n_train)`` training images.
    Both lie inside the training set, which is the first ``max_train`` images (all if None).
    Torch's thread count is left alone; on a small shared machine ``OMP_NUM_THREADS=1`` can
    train an order of magnitude faster.
    """
    validate(cfg)
    t0 = time.perf_counter()
    out = Path(out)
    x_tr, y_tr = _train_split(cfg)
    x_te, y_te = load_dataset(cfg.dataset, train=False)
    if cfg.n_probe > len(x_tr):
        msg = f"n_probe must be at most the {len(x_tr)} training images; got {cfg.n_probe}."
        raise ConfigError(msg)
    order = _probe_order(cfg, y_tr)
    probe = (x_tr[order], y_tr[order], order)
    n_steps = cfg.epochs * -(-len(x_tr) // cfg.batch_size)
    stores = [out / "nets" / f"net-{i:02d}" / "run.zarr" for i in range(cfg.n_nets)]
    bar = tqdm(total=cfg.n_nets * n_steps, desc=cfg.dataset, disable=not progress, unit="step")
    data = (x_tr, y_tr, x_te, y_te)
    for i, store in enumerate(stores):
        train_net(cfg, i, data, probe, store, bar)
    bar.close()
    return _analyse(cfg, out, stores, (x_tr, y_tr), t0)


def analyse_mnist_clustering(
    out: str | Path, cfg: MnistClusteringConfig | None = None
) -> MnistClusteringResult:
    """Analyse the run stores an earlier `run_mnist_clustering` left in ``out`` again.

    Parameters
    ----------
    out : str or path
        The earlier run's output folder (with ``nets/net-XX/run.zarr``); its files are replaced.
    cfg : MnistClusteringConfig, optional
        Only its `ANALYSIS_FIELDS` are used (default: the defaults); the training settings are
        read from the stores, and ``n_nets`` is the number of stores found.

    Returns
    -------
    MnistClusteringResult
        ``summary.json``, ``nets.csv`` (one row per net: divergence verdict, reasons, final r),
        ``per_net_steps.csv`` (every net's r at every snapshot), ``trajectory.csv`` (mean r
        over the averaged nets with its bootstrap CI at every snapshot), ``steps.csv`` (r of
        the net-averaged matrix, ``raw`` and ``scaled``), ``matrices.npz``, ``figure.png``,
        ``trajectory.png`` and ``report.md``.

    Raises
    ------
    ConfigError
        No stores in ``out``, a store of an unfinished net (its last snapshot is not the final
        step, or its snapshots differ from the first store's), or an analysis setting out of
        range.
    """
    t0 = time.perf_counter()
    out = Path(out)
    stores = sorted((out / "nets").glob("net-*/run.zarr"))
    if not stores:
        msg = (
            f"out must hold the run stores of an earlier run (nets/net-XX/run.zarr); found none "
            f"under {out}. Run probe run mnist-clustering without --from-stores first."
        )
        raise ConfigError(msg)
    runs = [open_run(s) for s in stores]
    stored = dict(runs[0].attrs.get("config", {}))
    names = {f.name for f in fields(MnistClusteringConfig)} - set(ANALYSIS_FIELDS)
    training = {k: stored[k] for k in names if k in stored}
    cfg = replace(cfg or MnistClusteringConfig(), **{**training, "n_nets": len(stores)})
    validate(cfg)
    train = _train_split(cfg)
    n_steps = cfg.epochs * -(-len(train[0]) // cfg.batch_size)
    unfinished = [s.parent.name for s, r in zip(stores, runs, strict=True)
                  if not len(r.steps) or r.steps[-1] != n_steps
                  or not np.array_equal(r.steps, runs[0].steps)]  # fmt: skip
    if unfinished:
        msg = (
            f"every store in {out / 'nets'} must be a finished net (last snapshot at step "
            f"{n_steps}, the same snapshots as {stores[0].parent.name}); got unfinished "
            f"{unfinished}. Train again, or move them out to analyse the finished nets."
        )
        raise ConfigError(msg)
    return _analyse(cfg, out, stores, train, t0)
