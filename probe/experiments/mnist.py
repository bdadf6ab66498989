"""MNIST (or offline digits) classifiers trained in a plain loop with a `hooks.Recorder` attached.

`train_classifier` is the reference MNIST experiment: a fixed stratified probe set from the test
split, log-spaced snapshots plus one per epoch, train loss every step, test loss/accuracy per epoch.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from hooks import Recorder, log_schedule
from probe.errors import ConfigError
from probe.experiments.datasets import load_dataset, stratified_probe
from probe.models import CNN, MLP
from probe.validation import check_int, check_positive

__all__ = ["ClassifierConfig", "ClassifierResult", "train_classifier"]


@dataclass
class ClassifierConfig:
    """Settings of one classifier run (saved as JSON in the run store's ``config``)."""

    dataset: str = "mnist"
    model: str = "mlp"
    epochs: int = 1
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    loss: str = "ce"
    gain: float = 1.0
    probe_size: int = 2000
    n_log_snapshots: int = 30
    max_steps: int | None = None
    seed: int = 0
    weights: bool = True
    agop: bool = False
    writer: str = "thread"


@dataclass
class ClassifierResult:
    """What a classifier run produced."""

    store: Path
    test_accuracy: float
    test_loss: float
    n_steps: int
    wall_s: float
    history: list[dict[str, float]] = field(default_factory=list)


def _weighted_layers(name: str, module: nn.Module) -> bool:
    """Select every Linear and Conv2d layer (the layers whose weights the NFM analyses use)."""
    return isinstance(module, (nn.Linear, nn.Conv2d))


_CHOICES = {
    "model": ("mlp", "cnn"),
    "optimizer": ("sgd", "adam"),
    "loss": ("ce", "mse"),
    "lr_schedule": ("cosine", "constant"),
    "writer": ("thread", "process"),
}


def _validate(cfg: ClassifierConfig) -> None:
    for name, allowed in _CHOICES.items():
        if getattr(cfg, name) not in allowed:
            msg = f"{name} must be one of {allowed}; got {getattr(cfg, name)!r}."
            raise ConfigError(msg)
    for name in ("epochs", "batch_size", "probe_size", "n_log_snapshots"):
        check_int(getattr(cfg, name), name)
    if cfg.max_steps is not None:
        check_int(cfg.max_steps, "max_steps", hint="Or None: every step.")
    check_int(cfg.seed, "seed", minimum=0)
    for name in ("lr", "gain"):
        check_positive(getattr(cfg, name), name)


def _model(cfg: ClassifierConfig, in_features: int) -> nn.Module:
    if cfg.model == "mlp":
        return MLP(in_features=in_features, gain=cfg.gain)
    return CNN(image_size=int(round(in_features**0.5)))


def _loss_fn(cfg: ClassifierConfig) -> Any:
    if cfg.loss == "mse":

        def half_mse(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            onehot = nn.functional.one_hot(y, logits.shape[1]).to(logits.dtype)
            return 0.5 * ((logits - onehot) ** 2).sum(1).mean()

        return half_mse
    return nn.functional.cross_entropy


@torch.no_grad()
def _evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Any
) -> tuple[float, float]:
    was = model.training
    model.eval()
    logits = torch.cat([model(x[i : i + 4096]) for i in range(0, len(x), 4096)])
    model.train(was)
    return float(loss_fn(logits, y)), float((logits.argmax(1) == y).float().mean())


def train_classifier(
    cfg: ClassifierConfig, out: str | Path, *, progress: bool = True
) -> ClassifierResult:
    """Train one classifier and record it into ``out/run.zarr``.

    Parameters
    ----------
    cfg : ClassifierConfig
        Dataset, model, optimisation and recording settings.
    out : str or path
        Output folder; the run store is ``out/run.zarr`` (replaced if present).
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    ClassifierResult
    """
    _validate(cfg)
    torch.manual_seed(cfg.seed)
    x_tr, y_tr = load_dataset(cfg.dataset, train=True)
    x_te, y_te = load_dataset(cfg.dataset, train=False)
    probe_idx = stratified_probe(y_te, min(cfg.probe_size, len(y_te)), seed=cfg.seed)
    model = _model(cfg, x_tr.shape[1])
    loss_fn = _loss_fn(cfg)
    opt: torch.optim.Optimizer = (
        torch.optim.Adam(model.parameters(), lr=cfg.lr)
        if cfg.optimizer == "adam"
        else torch.optim.SGD(model.parameters(), lr=cfg.lr)
    )
    steps_per_epoch = -(-len(x_tr) // cfg.batch_size)
    n_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        n_steps = min(n_steps, cfg.max_steps)
    schedule = log_schedule(n_steps, cfg.n_log_snapshots)
    decay = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=n_steps)
        if cfg.lr_schedule == "cosine"
        else None
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    store = Path(out) / "run.zarr"
    t0 = time.perf_counter()
    history: list[dict[str, float]] = []
    with Recorder(
        model,
        layers=_weighted_layers,
        store=store,
        probe=(x_te[probe_idx], y_te[probe_idx], probe_idx),
        every=schedule,
        weights=cfg.weights,
        agop=cfg.agop,
        writer=cfg.writer,
        overwrite=True,
        config=asdict(cfg),
        seed=cfg.seed,
    ) as rec:
        bar = tqdm(
            total=n_steps, desc=f"{cfg.dataset} {cfg.model}", disable=not progress, unit="step"
        )
        step = 0
        for epoch in range(cfg.epochs):
            perm = torch.randperm(len(x_tr), generator=gen)
            for i in range(0, len(x_tr), cfg.batch_size):
                if step >= n_steps:
                    break
                idx = perm[i : i + cfg.batch_size]
                logits = model(x_tr[idx])
                loss = loss_fn(logits, y_tr[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if decay is not None:
                    decay.step()
                step += 1
                rec.step(
                    epoch=epoch,
                    loss=loss.detach(),
                    accuracy=(logits.argmax(1) == y_tr[idx]).float().mean(),
                )
                bar.update()
            test_loss, test_acc = _evaluate(model, x_te, y_te, loss_fn)
            rec.log(test_loss=test_loss, test_accuracy=test_acc)
            rec.snapshot()  # one per epoch end, on top of the log-spaced schedule
            history.append(
                {"epoch": epoch, "step": step, "test_loss": test_loss, "test_accuracy": test_acc}
            )
            bar.set_postfix(test_acc=f"{test_acc:.4f}")
            if step >= n_steps:
                break
        bar.close()
    return ClassifierResult(
        store=store,
        test_accuracy=history[-1]["test_accuracy"],
        test_loss=history[-1]["test_loss"],
        n_steps=step,
        wall_s=time.perf_counter() - t0,
        history=history,
    )
