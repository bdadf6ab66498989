import copy

import numpy as np
import pytest
import torch
import zarr
from torch import nn
from torch.func import jacrev, vmap
from torch.nn import functional as F  # noqa: N812

from hooks import Recorder, RecorderConfigError
from hooks.agop import agop, agop_layers, gradient_grams
from hooks.errors import AgopError, AgopLayerError

TOL = 1e-10


def _assert_close(got, want, tol=TOL):
    """Relative error in the max norm, as in docs/features.md §5 (float64, 1e-10)."""
    got, want = torch.as_tensor(got, dtype=torch.float64), torch.as_tensor(want).double()
    assert got.shape == want.shape
    scale = want.abs().max().clamp_min(1e-300)
    assert (got - want).abs().max() / scale < tol


def _mlp(seed=0, inplace=True):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(5, 7), nn.ReLU(inplace), nn.Linear(7, 6), nn.ReLU(inplace), nn.Linear(6, 3)
    ).double()


class SmallCNN(nn.Module):
    """Two convs with padding/stride (one non-square kernel) and a Linear head; c = 3."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1, stride=2)
        self.conv2 = nn.Conv2d(4, 5, (3, 2), padding=(1, 2), stride=(2, 1))
        self.head = nn.Linear(5 * 2 * 7, 3)

    def tail(self, name, z):
        """The network from layer ``name``'s output z to the logits."""
        if name == "conv1":
            z, name = self.conv2(torch.relu(z)), "conv2"
        if name == "conv2":
            z = self.head(torch.tanh(z).flatten(1))
        return z

    def forward(self, x):
        return self.tail("conv1", self.conv1(x))


def _jac_agop(fn, h, center=False):
    """Reference AGOP: vmap(jacrev) of a per-sample fn; Jacobians (n, c, *in) summed over extras."""
    jac = vmap(jacrev(fn))(h)
    jac = jac.reshape(jac.shape[0], -1, jac.shape[-1])  # (n, c * positions, d)
    if center:
        jac = jac - jac.mean(0)
    return torch.einsum("npd,npe->de", jac, jac) / h.shape[0]


def _mlp_reference(model, x, idx, center=False):
    ref = copy.deepcopy(model)  # functorch reference without in-place ReLU
    for m in ref.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    with torch.no_grad():
        h = ref[:idx](x)
    agop_ref = _jac_agop(lambda v: ref[idx:](v[None])[0], h, center)
    z = ref[idx](h).detach()
    k_ref = _jac_agop(lambda v: ref[idx + 1 :](v[None])[0], z, center)
    return agop_ref, k_ref


def _conv_reference(cnn, x, name, center=False):
    """Patch AGOP (docs/features.md §1.7): f of the unfolded patches P_uv of layer ``name``."""
    conv = getattr(cnn, name)
    with torch.no_grad():
        a = x if name == "conv1" else torch.relu(cnn.conv1(x))
        z = conv(a)
    patches = F.unfold(a, conv.kernel_size, conv.dilation, conv.padding, conv.stride)
    w = conv.weight.reshape(conv.out_channels, -1)

    def f(p):  # p: (positions, C_in * kh * kw) of one sample
        zz = (p @ w.T + conv.bias).T.reshape(1, *z.shape[1:])
        return cnn.tail(name, zz)[0]

    return _jac_agop(f, patches.transpose(1, 2), center)


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_mlp_agop_and_k_equal_vmap_jacrev(seed, center):
    model = _mlp(seed)
    x = torch.randn(30, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    got = agop(model, x, nn.Linear, batch_size=7, center=center)
    grams = gradient_grams(model, x, ["0", "2", "4"], batch_size=7, center=center)
    assert list(got) == ["0", "2", "4"]
    for idx in (0, 2, 4):
        agop_ref, k_ref = _mlp_reference(model, x, idx, center)
        _assert_close(got[str(idx)], agop_ref)  # E2
        assert (
            got[str(idx)].dtype == torch.float64
            and got[str(idx)].shape == (model[idx].in_features,) * 2
        )
        if idx < 4:
            _assert_close(grams[str(idx)], k_ref)  # E4 (the head's ∂f/∂z is I)
    _assert_close(grams["4"], (0 if center else 1) * torch.eye(3, dtype=torch.float64), 1e-15)


@pytest.mark.parametrize("center", [False, True])
def test_cnn_patch_agop_equals_vmap_jacrev_of_patches(center):
    torch.manual_seed(0)
    cnn = SmallCNN().double()
    x = torch.randn(12, 2, 8, 8, dtype=torch.float64)
    got = agop(cnn, x, ["conv1", "conv2", "head"], batch_size=5, center=center)
    assert got["conv1"].shape == (2 * 3 * 3,) * 2 and got["conv2"].shape == (4 * 3 * 2,) * 2
    for name in ("conv1", "conv2"):
        _assert_close(got[name], _conv_reference(cnn, x, name, center))
    with torch.no_grad():
        h = torch.tanh(cnn.conv2(torch.relu(cnn.conv1(x)))).flatten(1)
    _assert_close(got["head"], _jac_agop(lambda v: cnn.head(v), h, center))


def test_closed_form_relu_jacobian():
    """E3: ∂f/∂z_l = W_{L+1} D_L ... W_{l+1} D_l, J_l = (∂f/∂z_l) W_l, against hooks and jacrev."""
    model = _mlp(2)
    x = torch.randn(25, 5, dtype=torch.float64)
    w0, w2, w4 = (model[i].weight.detach() for i in (0, 2, 4))
    with torch.no_grad():
        z0 = model[0](x)
        z2 = model[2](torch.relu(z0))
    d0, d2 = (z0 > 0).double(), (z2 > 0).double()
    g2 = w4[None] * d2[:, None, :]  # (n, c, m): W4 D2
    g0 = (g2 @ w2) * d0[:, None, :]  # W4 D2 W2 D0
    grams = gradient_grams(model, x, ["0", "2"])
    _assert_close(grams["0"], torch.einsum("nom,nop->mp", g0, g0) / 25)
    _assert_close(grams["2"], torch.einsum("nom,nop->mp", g2, g2) / 25)
    jac = vmap(jacrev(lambda v: _f(model, v)))(x)  # the model has in-place ReLUs; _f has none
    _assert_close(g0 @ w0, jac)
    _assert_close(agop(model, x, "0")["0"], torch.einsum("nod,noe->de", jac, jac) / 25)


def _f(model, v):
    return model[4](torch.relu(model[2](torch.relu(model[0](v)))))


def test_scalar_output_model():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 1), nn.Flatten(0)).double()
    x = torch.randn(20, 4, dtype=torch.float64)
    assert model(x).shape == (20,)
    got = agop(model, x, ["0", "2"], batch_size=8)
    _assert_close(got["0"], _jac_agop(lambda v: model(v[None])[0], x))
    with torch.no_grad():
        h = torch.tanh(model[0](x))
    _assert_close(got["2"], _jac_agop(lambda v: model[2:](v[None])[0], h))


class Shared(nn.Module):
    """One Linear called twice, on (n, T, d) inputs: calls and positions add up."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.head = nn.Linear(3 * 4, 2)

    def after_first(self, u):
        return self.head(torch.tanh(self.lin(u)).flatten(1))

    def forward(self, x):
        return self.after_first(torch.tanh(self.lin(x)))


def test_shared_layer_on_sequences_sums_calls_and_positions():
    torch.manual_seed(4)
    model = Shared().double()
    x = torch.randn(9, 3, 4, dtype=torch.float64)
    with torch.no_grad():
        u2 = torch.tanh(model.lin(x))
    want = _jac_agop(lambda v: model(v[None])[0], x) + _jac_agop(
        lambda v: model.after_first(v[None])[0], u2
    )
    _assert_close(agop(model, x, "lin", batch_size=4)["lin"], want)


def test_training_flags_grads_and_hooks_untouched():
    torch.manual_seed(5)
    model = nn.Sequential(
        nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.5), nn.Linear(6, 2)
    ).double()
    x = torch.randn(16, 4, dtype=torch.float64)
    model(x).sum().backward()  # running stats move, .grad is set
    model[0].weight.grad = None
    model.train()
    model[3].eval()
    grads = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}
    stats = model[1].running_mean.clone()
    got = agop(model, x, [nn.Linear], batch_size=5)
    assert [m.training for m in model.modules()] == [True, True, True, True, False, True]
    for n, p in model.named_parameters():
        assert (p.grad is None) if grads[n] is None else torch.equal(p.grad, grads[n])
    assert torch.equal(model[1].running_mean, stats)
    assert all(not m._forward_hooks for m in model.modules())
    model.eval()  # the reference: the same function in eval mode (no dropout, running stats)
    _assert_close(got["0"], _jac_agop(lambda v: model(v[None])[0], x))


def test_float32_model_matches_float64_and_frozen_parameters():
    model = _mlp(6, inplace=False)
    x = torch.randn(20, 5, dtype=torch.float64)
    want = agop(model, x, "2")["2"]
    low = model.float().requires_grad_(False)  # z needs grad through the input alone
    got = agop(low, x.float(), "2")["2"]
    assert got.dtype == torch.float64
    _assert_close(got, want, 1e-5)


class NoGradLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.head = nn.Linear(3, 2)
        self.unused = nn.Linear(3, 3)
        self.bias = nn.Linear(2, 3)

    def forward(self, x):
        with torch.no_grad():
            z = self.lin(x)
        return self.head(z)


class Returns(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.kind = kind

    def forward(self, x):
        z = self.lin(x)
        if self.kind == "tuple":
            return z, z
        if self.kind == "detached":
            return z.detach()
        if self.kind == "unbatched":
            return z + self.lin(torch.ones(3))[:1]
        return z.sum()


def test_errors():
    model = _mlp(0)
    x = torch.randn(6, 5, dtype=torch.float64)
    with pytest.raises(
        AgopLayerError, match="must be nn.Linear or nn.Conv2d; got '1' of type ReLU"
    ):
        agop(model, x, ["0", "1"])
    grouped = nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Flatten())
    with pytest.raises(AgopLayerError, match="needs a Conv2d with groups=1; got groups=2"):
        agop(grouped, torch.randn(2, 2, 5, 5), "0")
    with pytest.raises(AgopError, match="inputs must be a torch.Tensor of shape"):
        agop(model, x.numpy(), "0")
    with pytest.raises(AgopError, match=r"inputs must be .* n_samples >= 1; got \(0, 5\)"):
        agop(model, x[:0], "0")
    with pytest.raises(AgopError, match="'batch_size' must be a positive int; got 0"):
        agop(model, x, "0", batch_size=0)
    x3 = torch.randn(4, 3)
    with pytest.raises(AgopError, match="model output to be a tensor of shape .* got tuple"):
        agop(Returns("tuple"), x3, "lin")
    with pytest.raises(AgopError, match=r"shape \(n,\) or \(n, c\) with n=4; got \(\)"):
        agop(Returns("sum"), x3, "lin")
    with pytest.raises(AgopError, match="does not depend on anything that requires grad"):
        agop(Returns("detached"), x3, "lin")
    with pytest.raises(AgopError, match=r"layer 'lin' must output \(batch, ...\) with batch=4"):
        agop(Returns("unbatched"), x3, "lin")
    with pytest.raises(AgopError, match="layer 'unused' did not run in the forward"):
        agop(NoGradLayer(), x3, ["head", "unused"])
    no_grad = NoGradLayer().train()
    with pytest.raises(AgopError, match="layer 'lin' has an output that needs no grad"):
        agop(no_grad, x3, ["lin", "head"])
    assert no_grad.training and all(not m._forward_hooks for m in no_grad.modules())


def test_agop_layers_option_errors():
    model = _mlp(0)
    recorded = {"1": model[1]}
    with pytest.raises(AgopLayerError, match="agop=True needs at least one recorded nn.Linear"):
        agop_layers(model, recorded, True)
    with pytest.raises(RecorderConfigError, match="agop layer '0' must also be a recorded layer"):
        agop_layers(model, recorded, "0")
    with pytest.raises(RecorderConfigError, match="'agop' is computed on the probe set"):
        agop_layers(model, {"0": model[0]}, True, has_probe=False)
    with pytest.raises(AgopLayerError, match="got '1' of type ReLU"):
        agop_layers(model, recorded, "1")
    assert agop_layers(model, recorded, False) == {}


def _train(tmp_path, agop_option, n_steps=6):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 5, generator=g), torch.randint(0, 3, (32,), generator=g)
    losses, expected = [], {}
    with Recorder(
        model,
        layers=["0", "1", "3"],
        store=tmp_path / f"{agop_option}.zarr",
        probe=(x[:12], y[:12]),
        every=2,
        agop=agop_option,
        batch_size=5,
    ) as rec:
        expected[0] = agop(model, x[:12], ["0", "3"], batch_size=5)
        for step in range(1, n_steps + 1):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            rec.step(loss=loss)
            if step % 2 == 0:
                expected[step] = agop(model, x[:12], ["0", "3"], batch_size=5)
    return losses, list(model.parameters()), expected


def test_recorder_agop_roundtrip_and_training_unchanged(tmp_path):
    plain_losses, plain_params, _ = _train(tmp_path, False)
    losses, params, expected = _train(tmp_path, True)
    assert losses == plain_losses  # bit-identical, dropout included
    for a, b in zip(plain_params, params, strict=True):
        assert torch.equal(a, b)
    root = zarr.open_group(str(tmp_path / "True.zarr"), mode="r")
    assert root.attrs["agop"] == ["0", "3"]
    assert "agop" not in zarr.open_group(str(tmp_path / "False.zarr"), mode="r")["layers/0"]
    for name, d in (("0", 5), ("3", 8)):
        arr = root[f"layers/{name}/agop"]
        assert arr.shape == (4, d, d) and arr.dtype == np.float32
        assert arr.metadata.dimension_names == (
            "snapshot",
            f"layers.{name}.agop_f0",
            f"layers.{name}.agop_f1",
        )
        for i, step in enumerate((0, 2, 4, 6)):
            np.testing.assert_array_equal(arr[i], expected[step][name].float().numpy())


def test_recorder_agop_of_selected_conv_layer(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(27, 4))
    x = torch.randn(10, 2, 2, 2)
    with Recorder(net, layers=["0", "3"], store=tmp_path / "c.zarr", probe=x, agop=["0"]) as rec:
        rec.snapshot()
    root = zarr.open_group(str(tmp_path / "c.zarr"), mode="r")
    np.testing.assert_array_equal(
        root["layers/0/agop"][0], agop(net, x, "0", batch_size=1024)["0"].float().numpy()
    )
    assert "agop" not in root["layers/3"]
