"""Tests of probe.models: output shapes, submodule names, weight initialisation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from probe.errors import InputShapeError, ModelConfigError, ProbeError
from probe.models import CNN, MLP

# --------------------------------------------------------------------------- MLP


@pytest.mark.parametrize("shape", [(5, 784), (5, 1, 28, 28)])
def test_mlp_output_shape(shape):
    model = MLP()
    out = model(torch.randn(*shape))
    assert out.shape == (5, 10)


def test_mlp_both_layouts_agree():
    torch.manual_seed(0)
    model = MLP(hidden=32, depth=2)
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(model(x), model(x.reshape(3, 784)))


def test_mlp_named_modules():
    model = MLP(in_features=64, hidden=16, depth=3, n_classes=7)
    modules = dict(model.named_modules())
    for i in range(3):
        assert isinstance(modules[f"layers.{i}"], nn.Linear)
        assert isinstance(modules[f"acts.{i}"], nn.LeakyReLU)
    assert "layers.3" not in modules
    assert isinstance(modules["head"], nn.Linear)
    assert modules["layers.0"].in_features == 64
    assert modules["layers.2"].out_features == 16
    assert modules["head"].out_features == 7
    assert modules["acts.0"].negative_slope == 0.01


def test_mlp_forward_applies_layers_in_order():
    model = MLP(in_features=8, hidden=4, depth=2, n_classes=3)
    x = torch.randn(6, 8)
    h = model.acts[1](model.layers[1](model.acts[0](model.layers[0](x))))
    torch.testing.assert_close(model(x), model.head(h))


@pytest.mark.parametrize(("gain", "slope"), [(1.0, 0.01), (2.0, 0.2), (0.5, 0.0)])
def test_mlp_init_std_convention(gain, slope):
    torch.manual_seed(0)
    model = MLP(in_features=4096, hidden=512, depth=2, gain=gain, negative_slope=slope)
    for linear in (model.layers[0], model.layers[1]):
        fan_in = linear.in_features
        expected = gain * math.sqrt(2.0 / ((1.0 + slope**2) * fan_in))
        assert linear.weight.std().item() == pytest.approx(expected, rel=0.03)
        assert abs(linear.weight.mean().item()) < 0.05 * expected
        assert torch.count_nonzero(linear.bias) == 0
        assert model.init_std(fan_in) == pytest.approx(expected)
    assert torch.count_nonzero(model.head.bias) == 0


def test_mlp_init_matches_torch_kaiming_at_gain_one():
    torch.manual_seed(0)
    model = MLP(in_features=4096, hidden=256, depth=1, negative_slope=0.1)
    ref = torch.empty(256, 4096)
    nn.init.kaiming_normal_(ref, a=0.1, nonlinearity="leaky_relu")
    assert model.layers[0].weight.std().item() == pytest.approx(ref.std().item(), rel=0.03)


def test_mlp_rejects_wrong_input_size():
    with pytest.raises(InputShapeError, match=r"input must have shape \(n, 784\)"):
        MLP()(torch.randn(2, 64))
    assert issubclass(InputShapeError, ValueError)
    assert issubclass(InputShapeError, ProbeError)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"depth": 0}, "depth must be >= 1; got 0"),
        ({"hidden": -3}, "hidden must be >= 1; got -3"),
        ({"gain": 0.0}, "gain must be > 0; got 0.0"),
    ],
)
def test_mlp_rejects_bad_config(kwargs, pattern):
    with pytest.raises(ModelConfigError, match=pattern):
        MLP(**kwargs)


# --------------------------------------------------------------------------- CNN


@pytest.mark.parametrize("shape", [(4, 784), (4, 1, 28, 28)])
def test_cnn_mnist_output_shape(shape):
    model = CNN()
    assert model(torch.randn(*shape)).shape == (4, 10)


@pytest.mark.parametrize("shape", [(4, 64), (4, 1, 8, 8)])
def test_cnn_digits_output_shape(shape):
    model = CNN(image_size=8, channels=(8, 16), hidden=32, n_classes=10)
    assert model.fc1[0].in_features == 16 * 2 * 2
    assert model(torch.randn(*shape)).shape == (4, 10)


def test_cnn_both_layouts_agree():
    torch.manual_seed(0)
    model = CNN(channels=(4, 8), hidden=16)
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(model(x), model(x.reshape(2, 784)))


def test_cnn_named_modules_and_block_shapes():
    model = CNN(n_classes=5, channels=(6, 12), hidden=20)
    modules = dict(model.named_modules())
    for name in ("conv1", "conv2"):
        block = modules[name]
        assert [type(m) for m in block] == [nn.Conv2d, nn.ReLU, nn.MaxPool2d]
        assert block[0].kernel_size == (3, 3)
        assert block[0].padding == (1, 1)
    assert [type(m) for m in modules["fc1"]] == [nn.Linear, nn.ReLU]
    assert isinstance(modules["head"], nn.Linear)
    assert modules["head"].out_features == 5
    x = torch.randn(3, 1, 28, 28)
    h1 = model.conv1(x)
    h2 = model.conv2(h1)
    assert h1.shape == (3, 6, 14, 14)
    assert h2.shape == (3, 12, 7, 7)
    assert model.fc1(h2.flatten(1)).shape == (3, 20)


def test_cnn_rejects_wrong_input_shape():
    with pytest.raises(
        InputShapeError, match=r"input must have shape \(n, 784\) or \(n, 1, 28, 28\)"
    ):
        CNN()(torch.randn(2, 64))


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"channels": (8,)}, "channels must hold two sizes"),
        ({"channels": (8, 0)}, r"channels\[1\] must be >= 1; got 0"),
        ({"image_size": 3}, "image_size must be >= 4"),
    ],
)
def test_cnn_rejects_bad_config(kwargs, pattern):
    with pytest.raises(ModelConfigError, match=pattern):
        CNN(**kwargs)
