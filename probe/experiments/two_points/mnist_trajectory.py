"""MNIST trajectories: one '0' and one '1' tracked during SGD, fitted by the two-point ODE.

The authors' ``experiments/mnist.ipynb`` (``mnist.txt`` row ``trajectories``; docs/dynamics.md
§1.7): an MLP 784 -> 4 x 200 leaky-ReLU -> 10 (xavier gain 0.5, zero biases) is trained on all of
MNIST with SGD (lr 0.003, batch 64, 200 epochs), one-hot targets and ``0.5*F.mse_loss``; a random
training '0' and '1' are recorded at hidden layer 2 and the output, and the two-point ODE is
fitted to their ``h, y, w`` (``dx2`` from the normalised pixels, ``dy2 = 2``).

Notes
-----
The notebook records at the start of every epoch (t in epochs); here ``every`` sets the snapshot
interval in SGD steps (None: one epoch) and the fitted rates are reported per step and per
epoch. The pair is drawn with ``numpy.random.default_rng(seed)`` instead of the global numpy
RNG. Minibatch SGD sees the pair only through the rest of the data, so the rates are empirical
(docs/dynamics.md §4).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from hooks import Recorder
from probe.errors import ConfigError
from probe.experiments.datasets import load_dataset
from probe.experiments.two_points._report import plot_fit
from probe.experiments.two_points.experiment import torch_threads
from probe.models.two_point import TwoPointMLP
from probe.store import open_run
from probe.theory.effective_fit import TwoPointFit, fit_two_point, two_point_traces
from probe.validation import check_int, check_positive

__all__ = ["MnistTrajectoryConfig", "MnistTrajectoryResult", "run_mnist_trajectory"]


@dataclass
class MnistTrajectoryConfig:
    """Settings of `run_mnist_trajectory` (defaults: the ``trajectories`` row of ``mnist.txt``).

    Attributes
    ----------
    dataset : {"mnist", "digits"}
        mnist (torchvision; data root $PROBE_DATA) or digits (bundled 8x8, offline).
    epochs : int
        Passes over the training set.
    lr : float
        SGD learning rate.
    batch_size : int
        Training samples per SGD step.
    width : int
        Width of every hidden layer.
    depth : int
        Hidden layers.
    gain : float
        Xavier-normal gain of every weight.
    hooked : int
        Hidden layer whose representation is tracked.
    max_train : int, optional
        Train on the first N training images only (None: all).
    every : int, optional
        Snapshot interval in SGD steps (None: one epoch, as the notebook).
    seed : int
        Seed of the pair, the init and the batch order.
    threads : int
        torch intra-op threads while training.
    """

    dataset: str = "mnist"
    epochs: int = 200
    lr: float = 0.003
    batch_size: int = 64
    width: int = 200
    depth: int = 4
    gain: float = 0.5
    hooked: int = 2
    max_train: int | None = None
    every: int | None = None
    seed: int = 0
    threads: int = 1

    def check(self) -> None:
        """Raise `ConfigError` for a setting out of range."""
        for name in ("epochs", "batch_size", "width", "depth", "threads"):
            check_int(getattr(self, name), name)
        check_positive(self.lr, "lr")
        check_positive(self.gain, "gain")
        for name in ("max_train", "every"):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), name)
        if not 0 <= self.hooked < self.depth:
            msg = f"hooked must be a hidden layer in 0 .. {self.depth - 1}; got {self.hooked}."
            raise ConfigError(msg)


@dataclass
class MnistTrajectoryResult:
    """What `run_mnist_trajectory` wrote: the fit, the pair, the summary and the figure."""

    fit: TwoPointFit
    pair: tuple[int, int]
    steps_per_epoch: int
    test_accuracy: float
    summary_json: Path
    figure: Path
    wall_s: float


def _pick_pair(y: torch.Tensor, seed: int) -> tuple[int, int]:
    """Return a seeded random training index of a '0' and of a '1'."""
    rng = np.random.default_rng(seed)
    labels = y.numpy()
    zeros, ones = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    if not (zeros.size and ones.size):
        msg = "the training set must hold at least one '0' and one '1'; raise max_train."
        raise ConfigError(msg)
    return int(rng.choice(zeros)), int(rng.choice(ones))


def run_mnist_trajectory(
    cfg: MnistTrajectoryConfig,
    out: str | Path = "artifacts/mnist-trajectory",
    *,
    progress: bool = True,
) -> MnistTrajectoryResult:
    """Train the MNIST MLP with a '0' and a '1' recorded, fit the two-point ODE to them.

    Writes the run store ``run.zarr``, ``summary.json`` (pair, rates per step and per epoch, fit
    SSE, errors, ``h_end`` vs the closed-form ``h_inf``, test accuracy) and ``fit.png``.

    Raises
    ------
    ConfigError
        A setting out of range, or no '0' or '1' among the training images.
    """
    t0 = time.perf_counter()
    cfg.check()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    x, y = load_dataset(cfg.dataset, True)
    if cfg.max_train is not None:
        x, y = x[: cfg.max_train], y[: cfg.max_train]
    x_te, y_te = load_dataset(cfg.dataset, False)
    onehot = F.one_hot(y, 10).float()
    pair = _pick_pair(y, cfg.seed)
    steps_per_epoch = math.ceil(len(x) / cfg.batch_size)
    torch.manual_seed(cfg.seed)
    model = TwoPointMLP(x.shape[1], 10, cfg.width, cfg.depth, "leaky_relu", cfg.gain)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    idx = list(pair)
    rec = Recorder(
        model,
        layers=[f"hidden.{cfg.hooked}"],
        store=out / "run.zarr",
        probe=(x[idx], onehot[idx], torch.tensor(idx)),
        every=cfg.every or steps_per_epoch,
        overwrite=True,
        config=asdict(cfg),
        seed=cfg.seed,
    )
    with torch_threads(cfg.threads), rec:
        for _ in tqdm(range(cfg.epochs), desc="epochs", disable=not progress):
            for b in torch.randperm(len(x), generator=gen).split(cfg.batch_size):
                opt.zero_grad(set_to_none=True)
                loss = 0.5 * F.mse_loss(model(x[b]), onehot[b])
                loss.backward()
                opt.step()
                rec.step(loss=loss.detach())
    with torch.no_grad():
        acc = float((model(x_te).argmax(1) == y_te).float().mean())
    run = open_run(out / "run.zarr")
    assert run.probe_inputs is not None
    assert run.targets is not None
    traces = two_point_traces(
        run.acts(f"hidden.{cfg.hooked}"), run.outputs(), run.probe_inputs, run.targets, run.steps
    )
    fit = fit_two_point(traces)
    summary = {
        "config": asdict(cfg),
        "pair_train_indices": {"0": pair[0], "1": pair[1]},
        "steps_per_epoch": steps_per_epoch,
        "dx2": traces.dx2,
        "dy2": traces.dy2,
        "eta_h_per_step": fit.eta_h,
        "eta_y_per_step": fit.eta_y,
        "eta_h_per_epoch": fit.eta_h * steps_per_epoch,
        "eta_y_per_epoch": fit.eta_y * steps_per_epoch,
        "rho (eta_h/eta_y)": fit.rho,
        "sse": fit.sse,
        "rel_err": fit.rel_error,
        "h0": float(traces.h[0]),
        "h_end": float(traces.h[-1]),
        "h_inf_theory": fit.h_inf,
        "test_accuracy": acc,
    }
    summary_json = out / "summary.json"
    summary_json.write_text(json.dumps(summary, indent=2))
    title = f"MNIST '0' vs '1' at hidden layer {cfg.hooked} (t in SGD steps)"
    figure = plot_fit(fit, out / "fit.png", title=title)
    return MnistTrajectoryResult(
        fit, pair, steps_per_epoch, acc, summary_json, figure, time.perf_counter() - t0
    )
