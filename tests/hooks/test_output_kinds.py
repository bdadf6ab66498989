"""Module outputs that are not plain tensors: dataclasses, strings, generators, custom objects."""

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import probe
from hooks import Recorder, UnrecordedOutputWarning


@dataclasses.dataclass
class Out:
    hidden: torch.Tensor
    extra: dict


class Odd:
    pass


class Kinds(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 4)

    def forward(self, x):
        h = self.lin(x)
        return Out(h, {"name": "label", "gen": (i for i in range(2)), "obj": Odd(), "n": 3})


_DROPPED = (
    "the model outputs objects that are not tensors, not recorded: acts.extra.name \\(str\\), "
    "acts.extra.gen \\(generator\\), acts.extra.obj \\(Odd\\)"
)


def test_dataclass_fields_are_recorded_and_other_objects_warned_once(tmp_path):
    torch.manual_seed(0)
    model, x = Kinds(), torch.randn(10, 3)
    with (
        pytest.warns(UnrecordedOutputWarning, match=_DROPPED),
        Recorder(
            model, layers="lin", store=tmp_path / "r.zarr", probe=x, batch_size=4, every=1
        ) as rec,
    ):
        rec.step()
    run = probe.open_run(tmp_path / "r.zarr")
    with torch.no_grad():
        np.testing.assert_allclose(run.outputs(0, key="acts.hidden"), model.lin(x).numpy())
    assert run.n_snapshots == 2


class Named(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tag = Tagged()

    def forward(self, x):
        return self.tag(x)[0]


class Tagged(nn.Module):
    def forward(self, x):
        return x * 2, "tag"


def test_a_layer_with_a_string_output_warns_naming_the_element(tmp_path):
    x = torch.randn(10, 3)
    with (
        pytest.warns(UnrecordedOutputWarning, match="layer 'tag' .*: acts.1 \\(str\\)") as got,
        Recorder(Named(), layers="tag", store=tmp_path / "r.zarr", probe=x, every=1) as rec,
    ):
        rec.step()
    assert len([w for w in got if w.category is UnrecordedOutputWarning]) == 1
    acts = probe.open_run(tmp_path / "r.zarr").acts("tag", 1, key="acts.0")
    np.testing.assert_allclose(acts, 2 * x.numpy())
