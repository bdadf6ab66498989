"""Forward the model on probe inputs without disturbing training: eval mode, no grad, forked RNG."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


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
