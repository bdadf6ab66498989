"""Data, model and probe set of one seed of the NFA experiment (docs/features.md §1.9).

`poly_data` (x ~ N(0, I), y = x0 x1), `poly_mlp` (bias-free ReLU MLP), `chain` (a model as
[Linear, activation, ..., readout]), `Setup` and `make_setup`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import torch
from torch import nn

from probe.experiments.datasets import load_dataset, stratified_probe
from probe.models import MLP

__all__ = ["Setup", "SetupConfig", "chain", "make_setup", "poly_data", "poly_mlp"]


class SetupConfig(Protocol):
    """The settings `make_setup` reads (fields of `probe.experiments.nfa.NfaConfig`)."""

    task: str
    dataset: str
    init: str
    n_probe: int
    max_train: int | None
    dim: int
    n_train: int
    n_test: int


def poly_data(
    n_train: int, n_test: int, dim: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return the task of docs/features.md §1.9: x ~ N(0, I_dim), y = x0 x1, split train/test.

    Returns ``x_train`` (n_train, dim), ``y_train`` (n_train, 1), ``x_test``, ``y_test``:
    float32, the first ``n_train`` of ``n_train + n_test`` seeded draws train.

    Examples
    --------
    >>> x, y, _, _ = poly_data(4, 2, 3, seed=0)
    >>> bool(torch.equal(y[:, 0], x[:, 0] * x[:, 1]))
    True
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_test, dim, generator=g)
    y = (x[:, 0] * x[:, 1])[:, None]
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def poly_mlp(dim: int, width: int, depth: int) -> nn.Sequential:
    """Return the bias-free ReLU MLP dim -> width (x depth) -> 1 of docs/features.md §1.9.

    Layers are named ``fc0 ... fc{depth-1}`` (Linear), ``relu0 ...`` and ``readout``; PyTorch's
    default Linear init from the global RNG (seed it first).
    """
    mods: OrderedDict[str, nn.Module] = OrderedDict()
    for i in range(depth):
        mods[f"fc{i}"] = nn.Linear(dim if i == 0 else width, width, bias=False)
        mods[f"relu{i}"] = nn.ReLU()
    mods["readout"] = nn.Linear(width, 1, bias=False)
    return nn.Sequential(mods)


def chain(model: nn.Module) -> list[nn.Module]:
    """Return the model as its alternating [Linear, activation, ..., readout Linear] modules."""
    if isinstance(model, MLP):
        return [m for pair in zip(model.layers, model.acts, strict=True) for m in pair] + [
            model.head
        ]
    return list(cast(nn.Sequential, model))


@dataclass
class Setup:
    """One seed's data, probe set and model, with its loss and test metrics."""

    x_tr: torch.Tensor
    y_tr: torch.Tensor
    probe: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    model: nn.Module
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    evaluate: Callable[[], dict[str, float]]


def make_setup(cfg: SetupConfig, seed: int, width: int, depth: int) -> Setup:
    """Return seed ``seed``'s data, probe set (training inputs) and model (init applied)."""
    torch.manual_seed(seed)
    if cfg.task == "poly":
        x_tr, y_tr, x_te, y_te = poly_data(cfg.n_train, cfg.n_test, cfg.dim, seed)
        model: nn.Module = poly_mlp(cfg.dim, width, depth)
        idx = torch.arange(len(x_tr))  # the AGOP averages over every training point
        loss: Any = nn.functional.mse_loss  # mean (f - y)², as the authors' trainer
    else:
        x_tr, y_tr = load_dataset(cfg.dataset, train=True)
        x_te, y_te = load_dataset(cfg.dataset, train=False)
        if cfg.max_train is not None:
            x_tr, y_tr = x_tr[: cfg.max_train], y_tr[: cfg.max_train]
        model = MLP(in_features=x_tr.shape[1], hidden=width, depth=depth)
        idx = torch.from_numpy(stratified_probe(y_tr, min(cfg.n_probe, len(y_tr)), seed=seed))
        loss = nn.functional.cross_entropy
    if cfg.init == "rich":
        with torch.no_grad():
            for lin in chain(model)[:-1:2]:
                assert isinstance(lin, nn.Linear)  # chain alternates Linear, activation
                lin.weight.normal_(0.0, (0.01 / lin.in_features) ** 0.5)

    @torch.no_grad()
    def evaluate() -> dict[str, float]:
        model.eval()
        out = model(x_te)
        model.train()
        if cfg.task == "poly":
            return {"test_mse": float(loss(out, y_te))}
        acc = float((out.argmax(1) == y_te).float().mean())
        return {"test_loss": float(loss(out, y_te)), "test_accuracy": acc}

    return Setup(x_tr, y_tr, (x_tr[idx], y_tr[idx], idx), model, loss, evaluate)
