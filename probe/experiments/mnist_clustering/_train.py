"""Training of one net of `probe.experiments.mnist_clustering.experiment`, recorded to its store."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from hooks import Recorder, log_schedule
from probe.experiments.mnist_clustering._config import MnistClusteringConfig
from probe.models.two_point import TwoPointMLP

__all__ = ["train_net"]


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


def train_net(
    cfg: MnistClusteringConfig,
    net: int,
    data: tuple[torch.Tensor, ...],
    probe: tuple[torch.Tensor, torch.Tensor, npt.NDArray[np.int64]],
    store: Path,
    bar: Any,
) -> float:
    """Train net number ``net`` (seed ``cfg.seed + net``) with a Recorder; return its test accuracy.

    The store logs every batch loss (``loss``, NaN included) and the test accuracy at every
    epoch end (``test_accuracy``, a row of its own), and snapshots hidden layer
    ``cfg.hidden_layer`` on the log-spaced schedule plus every epoch end. Training goes on
    after a blow-up, as in the authors' protocol; the analysis flags such nets.
    """
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
