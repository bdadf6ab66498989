"""Forward the model on probe inputs without disturbing training: eval mode, no grad, forked RNG."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from hooks.errors import ProbeInputError


@contextlib.contextmanager
def probe_mode(root: nn.Module, device: torch.device) -> Iterator[None]:
    """Eval mode, no grad, forked RNG; restore every module's training flag afterwards."""
    flags = [(m, m.training) for m in root.modules()]
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        root.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            yield
    finally:
        for m, flag in flags:
            m.training = flag


def check_forward(root: nn.Module, x: torch.Tensor, device: torch.device) -> None:
    """Forward two probe samples now, so a shape error surfaces before training starts.

    Raises
    ------
    ProbeInputError
        The model's forward fails on them.
    """
    try:
        with probe_mode(root, device):
            root(x[:2].to(device))
    except Exception as err:
        msg = (
            f"the model's forward failed on probe inputs of shape {tuple(x.shape)} "
            f"and dtype {x.dtype}: {err}. probe inputs must be a batch the model "
            "accepts, of shape (n_samples, ...)."
        )
        raise ProbeInputError(msg) from err
