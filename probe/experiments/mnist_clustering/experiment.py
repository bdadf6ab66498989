"""MNIST clustering against the two-point effective theory (docs/dynamics.md §1.7, §6 V1-5).

`run_mnist_clustering` trains several independent 784 → 4×200 leaky-ReLU → 10 MLPs (xavier gain
0.5, zero biases, Adam, 0.5·MSE on one-hot targets), records hidden layer 2 on the first 100
training images sorted by label with a `hooks.Recorder` (one run store per net), averages their
squared-distance matrices over nets and compares them with the prediction of
`probe.theory.cluster_theory` built from raw pixels: Pearson r over all entries and over
different-class entries, against the raw and the class-size-normalised prediction, at every
snapshot. The nets' matrices are averaged as they are (the authors' protocol) and after scaling each
to mean entry 1, so that one net whose representations grew by orders of magnitude does not dominate
the mean.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from hooks import Recorder, log_schedule
from probe.analysis.similarity import pairwise_sq_distances
from probe.errors import ConfigError
from probe.experiments.datasets import MNIST_MEAN, MNIST_STD, load_dataset
from probe.experiments.mnist_clustering._report import format_summary, plot_clustering
from probe.models.two_point import TwoPointMLP
from probe.store import open_run
from probe.theory.cluster_theory import (
    ClassPairDistances,
    between_class_correlation,
    class_pair_distance_sums,
    matrix_correlation,
    predicted_sq_distances,
    within_between_sq_distance,
)
from probe.validation import check_int, check_positive

__all__ = [
    "MnistClusteringConfig",
    "MnistClusteringResult",
    "demo_config",
    "format_summary",
    "raw_pixels",
    "run_mnist_clustering",
]

F64 = npt.NDArray[np.float64]

CONVENTIONS = {
    "measured": "squared Euclidean distance of the hooked hidden layer's post-nonlinearity "
    "output (model.eval()) between probe images, averaged over the nets",
    "predicted": "sqrt2 * sum over the prediction images of the two classes of the Euclidean "
    "distance of RAW pixels (MNIST 0-255, digits 0-16); 0 within a class",
    "predicted_normalised": "the same divided by n_c n_c' (mean over class pairs)",
    "r_all": "Pearson r over all n_probe^2 entries (diagonal and same-class blocks included)",
    "r_between": "Pearson r over the entries of different-class pairs only",
    "within/between": "mean measured squared distance over same-class pairs i != j / over "
    "different-class pairs",
    "average": "raw: mean of the nets' squared-distance matrices (the authors' protocol); "
    "scaled: mean after dividing each net's matrix by its mean entry",
}


@dataclass
class MnistClusteringConfig:
    """Settings of the experiment (the authors' ``structure`` row of ``mnist.txt`` by default).

    The authors train 10 nets for 200 epochs on all 60,000 images; the defaults here are that
    architecture and optimiser with fewer epochs. ``max_train`` keeps the first images only.
    """

    dataset: str = "mnist"
    n_nets: int = 10
    epochs: int = 5
    lr: float = 0.005
    batch_size: int = 64
    width: int = 200
    depth: int = 4
    gain: float = 0.5
    hidden_layer: int = 2
    n_probe: int = 100
    n_pred_images: int = 10000
    max_train: int | None = None
    n_log_snapshots: int = 20
    seed: int = 0


@dataclass
class MnistClusteringResult:
    """What `run_mnist_clustering` wrote and measured."""

    out: Path
    stores: list[Path]
    summary: dict[str, Any]
    summary_json: Path
    steps_csv: Path
    matrices: Path
    figure: Path
    wall_s: float


def demo_config(dataset: str = "mnist") -> MnistClusteringConfig:
    """Return the small configuration of ``probe demo`` (a few minutes on 2 CPU cores).

    Parameters
    ----------
    dataset : {"mnist", "digits"}
        MNIST: 3 nets, 2 epochs on the first 10,000 images; digits: 3 nets, 20 epochs.

    Returns
    -------
    MnistClusteringConfig
    """
    if dataset == "digits":
        return MnistClusteringConfig(dataset="digits", n_nets=3, epochs=20)
    return MnistClusteringConfig(dataset=dataset, n_nets=3, epochs=2, max_train=10000)


def _validate(cfg: MnistClusteringConfig) -> None:
    names = ("n_nets", "epochs", "batch_size", "width", "depth", "n_probe", "n_pred_images")
    for name in (*names, "n_log_snapshots"):
        check_int(getattr(cfg, name), name)
    if cfg.max_train is not None:
        check_int(cfg.max_train, "max_train", hint="Or pass None for all images.")
    if not isinstance(cfg.hidden_layer, int) or not 0 <= cfg.hidden_layer < cfg.depth:
        msg = (
            f"hidden_layer must be an int in [0, depth) = [0, {cfg.depth}); got "
            f"{cfg.hidden_layer!r}. The authors hook index 2 of 4 hidden layers."
        )
        raise ConfigError(msg)
    for name in ("lr", "gain"):
        check_positive(getattr(cfg, name), name)


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


def _half_mse(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # The authors' criterion: 0.5 * F.mse_loss, a mean over batch and the 10 outputs.
    onehot = nn.functional.one_hot(y, logits.shape[1]).to(logits.dtype)
    return 0.5 * nn.functional.mse_loss(logits, onehot)


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    hits = sum(
        int((model(x[i : i + 4096]).argmax(1) == y[i : i + 4096]).sum())
        for i in range(0, len(x), 4096)
    )
    model.train()
    return hits / len(x)


def _train_net(
    cfg: MnistClusteringConfig,
    net: int,
    data: tuple[torch.Tensor, ...],
    probe: tuple[torch.Tensor, torch.Tensor, npt.NDArray[np.int64]],
    store: Path,
    bar: Any,
) -> float:
    """Train net number ``net`` with the Recorder attached; return its test accuracy."""
    x_tr, y_tr, x_te, y_te = data
    torch.manual_seed(cfg.seed + net)
    model = TwoPointMLP(x_tr.shape[1], 10, cfg.width, cfg.depth, "leaky_relu", cfg.gain)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed + net)
    n_steps = cfg.epochs * -(-len(x_tr) // cfg.batch_size)
    acc = float("nan")
    with Recorder(
        model,
        layers=[f"hidden.{cfg.hidden_layer}"],
        store=store,
        probe=probe,
        every=log_schedule(n_steps, cfg.n_log_snapshots),
        overwrite=True,
        config={**asdict(cfg), "net": net},
        seed=cfg.seed + net,
    ) as rec:
        for epoch in range(cfg.epochs):
            perm = torch.randperm(len(x_tr), generator=gen)
            for i in range(0, len(x_tr), cfg.batch_size):
                idx = perm[i : i + cfg.batch_size]
                loss = _half_mse(model(x_tr[idx]), y_tr[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                rec.step(epoch=epoch, loss=loss.detach())
                bar.update()
            acc = _accuracy(model, x_te, y_te)
            rec.log(test_accuracy=acc)
            rec.snapshot()  # one per epoch end, on top of the log-spaced schedule
            bar.set_postfix(net=net, test_acc=f"{acc:.4f}")
    return acc


def _compare(measured: F64, pred: F64, norm: F64, labels: npt.NDArray[Any]) -> dict[str, float]:
    within, between = within_between_sq_distance(measured, labels)
    return {
        "r_all": matrix_correlation(measured, pred),
        "r_between": between_class_correlation(measured, pred, labels),
        "r_all_normalised": matrix_correlation(measured, norm),
        "r_between_normalised": between_class_correlation(measured, norm, labels),
        "within_sq_distance": within,
        "between_sq_distance": between,
        "between_over_within": between / within,
    }


def _analyse(
    stores: list[Path], layer: str, labels: npt.NDArray[Any], pairs: ClassPairDistances
) -> tuple[pd.DataFrame, dict[str, F64], list[dict[str, float]]]:
    """Per-step comparison of both net averages, final matrices, and final per-net values."""
    runs = [open_run(s) for s in stores]
    steps = runs[0].steps
    # (nets, snapshots, n, n): every net runs the same schedule, so snapshots align
    dists = np.stack([[pairwise_sq_distances(a) for a in run.acts(layer)] for run in runs])
    # r ignores each net's overall scale but the raw mean does not: one net whose
    # representations grew 100x (an Adam spike) would dominate it, hence also the scaled mean
    averages = {
        "raw": dists.mean(axis=0),
        "scaled": (dists / dists.mean(axis=(2, 3), keepdims=True)).mean(axis=0),
    }
    pred = predicted_sq_distances(pairs, labels)
    norm = predicted_sq_distances(pairs, labels, normalise=True)
    rows = [
        {"average": name, "step": int(s), **_compare(m, pred, norm, labels)}
        for name, mean in averages.items()
        for s, m in zip(steps, mean, strict=True)
    ]
    per_net = [_compare(d[-1], pred, norm, labels) for d in dists]
    matrices = {
        "measured": averages["raw"][-1],
        "measured_scaled": averages["scaled"][-1],
        "predicted": pred,
        "predicted_normalised": norm,
    }
    return pd.DataFrame(rows), matrices, per_net


def _floats(row: pd.Series) -> dict[str, float]:
    return {k: (int(v) if k == "step" else float(v)) for k, v in row.items() if k != "average"}


def run_mnist_clustering(
    cfg: MnistClusteringConfig, out: str | Path, *, progress: bool = True
) -> MnistClusteringResult:
    """Train ``cfg.n_nets`` nets, record their hidden geometry and compare it with the theory.

    Parameters
    ----------
    cfg : MnistClusteringConfig
        Data, model, optimisation and recording settings.
    out : str or path
        Output folder: ``nets/net-XX/run.zarr`` (one run store per net, replaced if present),
        ``summary.json``, ``steps.csv`` (comparison at every snapshot, one row per average
        ``raw``/``scaled`` and step), ``matrices.npz`` (final ``measured`` and
        ``measured_scaled`` means, ``predicted``, ``predicted_normalised``, probe ``labels``)
        and ``figure.png``.
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
    _validate(cfg)
    t0 = time.perf_counter()
    out = Path(out)
    x_tr, y_tr = load_dataset(cfg.dataset, train=True)
    x_te, y_te = load_dataset(cfg.dataset, train=False)
    x_tr, y_tr = x_tr[: cfg.max_train], y_tr[: cfg.max_train]
    if cfg.n_probe > len(x_tr):
        msg = f"n_probe must be at most the {len(x_tr)} training images; got {cfg.n_probe}."
        raise ConfigError(msg)
    order = np.argsort(y_tr[: cfg.n_probe].numpy(), kind="stable").astype(np.int64)
    labels = y_tr[order].numpy()
    probe = (x_tr[order], y_tr[order], order)
    n_pred = min(cfg.n_pred_images, len(x_tr))
    pairs = class_pair_distance_sums(raw_pixels(cfg.dataset, x_tr[:n_pred]), y_tr[:n_pred])

    n_steps = cfg.epochs * -(-len(x_tr) // cfg.batch_size)
    stores = [out / "nets" / f"net-{i:02d}" / "run.zarr" for i in range(cfg.n_nets)]
    bar = tqdm(total=cfg.n_nets * n_steps, desc=cfg.dataset, disable=not progress, unit="step")
    data = (x_tr, y_tr, x_te, y_te)
    accs = [_train_net(cfg, i, data, probe, s, bar) for i, s in enumerate(stores)]
    bar.close()

    layer = f"hidden.{cfg.hidden_layer}"
    steps, matrices, per_net = _analyse(stores, layer, labels, pairs)
    steps.to_csv(out / "steps.csv", index=False)
    arrays: dict[str, Any] = {"labels": labels, **matrices}
    np.savez(out / "matrices.npz", **arrays)
    by_average = dict(iter(steps.groupby("average")))
    summary: dict[str, Any] = {
        "config": asdict(cfg),
        "conventions": CONVENTIONS,
        "n_train": len(x_tr),
        "n_pred_images_used": n_pred,
        "n_steps": n_steps,
        "probe_class_counts": np.bincount(labels, minlength=10).tolist(),
        "test_accuracy": accs,
        "test_accuracy_mean": float(np.mean(accs)),
        "final": {a: _floats(df.iloc[-1]) for a, df in by_average.items()},
        "initial": {a: _floats(df.iloc[0]) for a, df in by_average.items()},
        "per_net_final": {k: [float(d[k]) for d in per_net] for k in per_net[0]},
    }
    figure = out / "figure.png"
    plot_clustering(matrices, labels, steps, summary, figure)
    summary["wall_s"] = time.perf_counter() - t0
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return MnistClusteringResult(
        out=out,
        stores=stores,
        summary=summary,
        summary_json=out / "summary.json",
        steps_csv=out / "steps.csv",
        matrices=out / "matrices.npz",
        figure=figure,
        wall_s=summary["wall_s"],
    )
