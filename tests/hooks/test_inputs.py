"""Recording what layers receive (``inputs=``): positional and keyword tensors, batch first."""

import numpy as np
import pytest
import torch
from torch import nn

import probe
from hooks import Recorder, RecorderConfigError


class Masked(nn.Module):
    def forward(self, x, *, mask):
        return x * mask[..., None]


class Net(nn.Module):
    """A time-major LSTM given its initial state, then a module taking a keyword mask."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 5)
        self.masked = Masked()
        self.head = nn.Linear(5, 2)

    def forward(self, x):
        h0 = torch.zeros(1, x.shape[0], 5) + x[:, :1, :1].transpose(0, 1)  # per-sample state
        out = self.lstm(x.transpose(0, 1), (h0, torch.zeros_like(h0)))[0].transpose(0, 1)
        mask = (x[..., 0] > 0).float()
        return self.head(self.masked(out, mask=mask))


def test_inputs_are_recorded_batch_first_with_their_keys(tmp_path):
    torch.manual_seed(0)
    model, x = Net(), torch.randn(10, 6, 3)
    with Recorder(
        model, ["lstm", "masked", "head"], tmp_path / "r.zarr", x, batch_size=4, inputs=True
    ) as rec:
        rec.snapshot()
    run = probe.open_run(tmp_path / "r.zarr")
    assert run.keys("lstm") == [
        "acts.0",
        "acts.1.0",
        "acts.1.1",
        "inputs.0",
        "inputs.1.0",
        "inputs.1.1",
    ]
    np.testing.assert_array_equal(run.acts("lstm", 0, key="inputs.0"), x.numpy())
    np.testing.assert_array_equal(
        run.acts("lstm", 0, key="inputs.1.0")[:, 0, 0], x[:, 0, 0].numpy()
    )
    assert run.keys("masked") == ["acts", "inputs.0", "inputs.mask"]
    np.testing.assert_array_equal(
        run.acts("masked", 0, key="inputs.0"), run.acts("lstm", 0, key="acts.0")
    )
    np.testing.assert_array_equal(
        run.acts("masked", 0, key="inputs.mask"), (x[..., 0] > 0).float().numpy()
    )
    np.testing.assert_array_equal(run.acts("head", 0, key="inputs"), run.acts("masked", 0))


def test_inputs_of_selected_layers_only(tmp_path):
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(9, 3)
    with Recorder(net, ["0", "2"], tmp_path / "r.zarr", x, inputs="2") as rec:
        rec.snapshot()
    run = probe.open_run(tmp_path / "r.zarr")
    assert run.keys("0") == ["acts"] and run.keys("2") == ["acts", "inputs"]
    with torch.no_grad():
        np.testing.assert_allclose(run.acts("2", 0, key="inputs"), net[1](net[0](x)).numpy())
    with pytest.raises(RecorderConfigError, match="'inputs' selects no recorded layer"):
        Recorder(net, ["0"], tmp_path / "bad.zarr", x, inputs="1")
