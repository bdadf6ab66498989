import numpy as np
import pytest
import torch
from torch import nn


class Branchy(nn.Module):
    """Outputs of every kind: tensor, tuple, dict with None, module called twice, in-place ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(8, 16)
        self.act = nn.ReLU(inplace=True)
        self.split = TupleOut()
        self.heads = DictOut()
        self.shared = nn.Linear(16, 16)
        self.out = nn.Linear(16, 4)

    def forward(self, x):
        h = self.enc(x)
        h = self.act(h)  # in place: would corrupt an un-cloned capture of enc
        a, b = self.split(h)
        d = self.heads(a + b)
        h = self.shared(self.shared(d["h"]))  # called twice per forward
        return self.out(h), d["h"].sum(1)


class TupleOut(nn.Module):
    def forward(self, h):
        return h * 2.0, h - 1.0


class DictOut(nn.Module):
    def forward(self, h):
        return {"h": torch.tanh(h), "none": None, "n": 3}


@pytest.fixture
def tiny_mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


@pytest.fixture
def branchy():
    torch.manual_seed(0)
    return Branchy()


@pytest.fixture
def probe_xy():
    g = torch.Generator().manual_seed(1)
    return torch.randn(40, 8, generator=g), torch.randint(0, 4, (40,), generator=g)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
