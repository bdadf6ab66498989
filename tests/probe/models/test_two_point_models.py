"""The two-point architectures reproduce the authors' ``source/models.py`` forward passes."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from probe.errors import ModelConfigError
from probe.models.two_point import (
    TwoPointCNN,
    TwoPointDropout,
    TwoPointResNet,
    activation_count,
    two_point_model,
)

X = torch.tensor([[-1.0], [0.0], [0.5]])


def hooked_outputs(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Forward ``x`` in eval mode; return the output and every ``hidden.<i>`` output."""
    outs: dict[int, torch.Tensor] = {}
    handles = [
        m.register_forward_hook(lambda _m, _i, o, k=int(name): outs.__setitem__(k, o))
        for name, m in model.hidden.named_children()
    ]
    model.eval()
    with torch.no_grad():
        y = model(x)
    for h in handles:
        h.remove()
    return y, [outs[k].reshape(len(x), -1) for k in sorted(outs)]


def authors_forward(layers: list[nn.Module], x: torch.Tensor, skip: bool = False):
    """The authors' ``MLP.forward`` / ``ResNet.forward`` loop over their module list."""
    a, acts = x, []
    for n, layer in enumerate(layers):
        a = layer(a)
        if n != len(layers) - 1:
            a = F.leaky_relu(a)
        if skip and 1 < n < len(layers) - 1:
            a = a + acts[-2]
        acts.append(a)
    return acts.pop(), acts


def test_resnet_adds_the_activation_two_layers_back():
    torch.manual_seed(0)
    m = TwoPointResNet(1, 1, 16, 5, "leaky_relu", 0.5)
    y, acts = hooked_outputs(m, X)
    ref_y, ref = authors_forward([b.linear for b in m.hidden] + [m.out], X, skip=True)
    torch.testing.assert_close(y, ref_y)
    assert len(acts) == len(ref) == 5
    for a, r in zip(acts, ref, strict=True):
        torch.testing.assert_close(a, r)
    # block 2 is phi(W a1 + b) + a0, not phi(W a1 + b)
    assert not torch.allclose(acts[2], m.hidden[2].phi(m.hidden[2].linear(acts[1])))


def test_cnn_matches_the_authors_convolutions():
    torch.manual_seed(0)
    m = TwoPointCNN(1, 1, 500, 10, "leaky_relu", 0.95)
    y, acts = hooked_outputs(m, X)
    layers = [m.hidden[0].linear] + [b.conv for b in m.hidden[1:]] + [m.out]
    a, ref = X.unsqueeze(1), []
    for n, layer in enumerate(layers):
        a = layer(a)
        if n != len(layers) - 1:
            a = F.leaky_relu(a)
        ref.append(a.reshape(len(X), -1))
    torch.testing.assert_close(y, ref.pop())
    assert len(acts) == activation_count("CNN", 10) == 12
    for a, r in zip(acts, ref, strict=True):
        torch.testing.assert_close(a, r)
    # the authors' readout size 500 - 11 * 10 = 390 = the remaining length at depth 10
    assert m.out.in_features == 390 and acts[5].shape == (3, 20 * 450)
    assert TwoPointCNN(1, 1, 100, 3).out.in_features == 60


def test_dropout_activation_list_and_eval_mode():
    torch.manual_seed(0)
    m = TwoPointDropout(1, 1, 16, 3, "tanh", 1.0)
    assert [type(h).__name__ for h in m.hidden] == ["Dropout", "HiddenBlock"] * 3 + ["Dropout"]
    assert all(d.p == 0.1 for d in m.hidden if isinstance(d, nn.Dropout))
    y, acts = hooked_outputs(m, X)
    blocks = [m.hidden[i] for i in (1, 3, 5)]
    a, ref = X, [X]
    for b in blocks:
        a = b(a)
        ref += [a, a]  # block output, then its (identity in eval) dropout
    torch.testing.assert_close(y, m.out(a))
    assert len(acts) == activation_count("Dropout", 3) == 7
    for got, want in zip(acts, ref, strict=True):
        torch.testing.assert_close(got, want)
    m.train()
    torch.manual_seed(1)
    assert not torch.equal(m(X.repeat(50, 1)), y.repeat(50, 1))  # dropout acts in training


@pytest.mark.parametrize("arch", ["MLP", "ResNet", "CNN", "Dropout"])
def test_xavier_init_and_zero_biases(arch):
    torch.manual_seed(0)
    m = two_point_model(arch, 1, 1, 200, 3, "relu", 1.3)
    for mod in m.modules():
        if isinstance(mod, nn.Linear | nn.Conv1d):
            assert torch.count_nonzero(mod.bias) == 0
    assert isinstance(m, nn.Module) and m(X).shape == (3, 1)


def test_model_errors():
    with pytest.raises(ModelConfigError, match="architecture must be one of"):
        two_point_model("Transformer", 1, 1, 10, 2, "relu", 1.0)
    with pytest.raises(ModelConfigError, match="architecture must be one of"):
        activation_count("RNN", 3)
    with pytest.raises(ModelConfigError, match=r"width must exceed 10 \* \(depth \+ 1\) = 110"):
        TwoPointCNN(1, 1, 100, 10)
    with pytest.raises(ModelConfigError, match="nonlinearity must be one of"):
        TwoPointDropout(1, 1, 10, 2, "gelu")
    with pytest.raises(ModelConfigError, match="depth"):
        TwoPointResNet(1, 1, 10, 0)
    with pytest.raises(ModelConfigError, match="gain must be > 0"):
        TwoPointCNN(1, 1, 100, 2, "relu", 0.0)
    with pytest.raises(ModelConfigError, match="width must be >= 1"):
        TwoPointDropout(1, 1, 0, 2)
