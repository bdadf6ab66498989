import numpy as np
import pytest
import torch
from torch import nn

from probe.analysis.features import matrix_power_psd, nfm, rho_pearson
from probe.analysis.local_metric import (
    StaticVsLocal,
    agop_from_jacobians,
    class_agop,
    layer_pullback,
    local_sq_distances,
    output_pullback,
    per_sample_jacobians,
    static_vs_local,
)
from probe.errors import ConfigError, InvalidArrayError, ShapeMismatchError
from probe.plots.local_metric import plot_static_vs_local

F64 = torch.float64


def relu_mlp(seed, d=6, m=9, c=2):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, m), nn.ReLU(), nn.Linear(m, c)).to(F64).eval()


# ------------------------------------------------------------------ layer pullback
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_layer_pullback_matches_naive_and_is_below_nfm_for_relu(seed):
    rng = np.random.default_rng(seed)
    W, z = rng.standard_normal((7, 4)), rng.standard_normal((10, 7))
    g = layer_pullback(W, z, "relu")
    for i in range(10):
        D = np.diag((z[i] > 0).astype(float))
        np.testing.assert_allclose(g[i], W.T @ D @ D @ W, atol=1e-12)
        # ReLU: W^T D(x) W ⪯ W^T W (Loewner).
        assert np.linalg.eigvalsh(nfm(W) - g[i]).min() > -1e-12
    np.testing.assert_allclose(layer_pullback(W, z, "relu", average=True), g.mean(0), atol=1e-12)
    np.testing.assert_allclose(layer_pullback(W, z, "identity"), np.broadcast_to(nfm(W), g.shape))
    tanh = layer_pullback(W, z, "tanh")
    custom = layer_pullback(W, z, lambda u: 1 / np.cosh(u) ** 2)
    np.testing.assert_allclose(tanh, custom, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_e5_relu_average_pullback_is_half_the_nfm(seed):
    """E5: bias-free ReLU, x ~ N(0, I) symmetric about 0: E_x g_h = WᵀW / 2 (d=20, m=64)."""
    rng = np.random.default_rng(seed)
    d, m, n = 20, 64, 200_000
    W = rng.standard_normal((m, d)) / np.sqrt(d)
    X = rng.standard_normal((n, d))
    avg = layer_pullback(W, X @ W.T, "relu", average=True)
    rel = np.linalg.norm(avg - nfm(W) / 2) / np.linalg.norm(nfm(W) / 2)
    # Monte-Carlo error ∝ n^{-1/2}: measured 0.40-0.52 / sqrt(n) over 6 seeds (1.1e-3 at n=2e5,
    # the reference value); tolerance 3x the largest.
    assert rel < 1.5 / np.sqrt(n)
    # Antithetic sample {x, -x}: exactly one of z_i(x), z_i(-x) is positive, so p_i = 1/2 exactly.
    Xs = np.concatenate([X[:1000], -X[:1000]])
    sym = layer_pullback(W, Xs @ W.T, "relu", average=True)
    np.testing.assert_allclose(sym, nfm(W) / 2, atol=1e-12 * np.abs(nfm(W)).max())


def test_layer_pullback_errors():
    W, z = np.ones((3, 2)), np.ones((4, 3))
    with pytest.raises(
        ShapeMismatchError, match=r"z must have one column per output unit of W \(3\)"
    ):
        layer_pullback(W, np.ones((4, 2)), "relu")
    with pytest.raises(
        ConfigError, match=r"phi_prime must be one of \['identity', 'relu', 'tanh'\]"
    ):
        layer_pullback(W, z, "gelu")
    with pytest.raises(ShapeMismatchError, match=r"phi_prime\(z\) must have the shape of z"):
        layer_pullback(W, z, lambda u: u[:, 0])
    with pytest.raises(InvalidArrayError, match="W must have at least 2 dimensions"):
        layer_pullback(np.ones(3), z, "relu")


# ------------------------------------------------------------------ Jacobians and AGOP
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_sample_jacobians_match_closed_form_relu(seed):
    # E3: ∂f/∂x = W2 D(x) W1 for a ReLU MLP, D = diag(1[z > 0]).
    net = relu_mlp(seed)
    x = torch.randn(25, 6, dtype=F64)
    J = per_sample_jacobians(net, x, batch_size=7)  # chunked
    W1, b1, W2 = (p.detach().numpy() for p in (net[0].weight, net[0].bias, net[2].weight))
    for i in range(25):
        D = np.diag((W1 @ x[i].numpy() + b1 > 0).astype(float))
        np.testing.assert_allclose(J[i], W2 @ D @ W1, atol=1e-14)
    assert J.shape == (25, 2, 6) and J.dtype == np.float64
    np.testing.assert_array_equal(per_sample_jacobians(net, x.numpy()), J)  # numpy input, 1 batch
    # AGOP_l = W_lᵀ K_l W_l (E2), K_l from the pre-activation Jacobians ∂f/∂z_1 = W2 D.
    K = np.mean([(W2 @ np.diag(W1 @ xi + b1 > 0)).T @ (W2 @ np.diag(W1 @ xi + b1 > 0))
                 for xi in x.numpy()], axis=0)  # fmt: skip
    np.testing.assert_allclose(agop_from_jacobians(J), W1.T @ K @ W1, atol=1e-12)


def test_per_sample_jacobians_shapes_and_grad_state():
    net = relu_mlp(0)
    x = torch.randn(5, 2, 3, dtype=F64)  # feature axes are flattened to d = 6

    def scalar(v):
        return net(v.reshape(6))[0]

    J = per_sample_jacobians(scalar, x)
    assert J.shape == (5, 1, 6)
    np.testing.assert_allclose(J[:, 0], per_sample_jacobians(net, x.reshape(5, 6))[:, 0], atol=0)
    assert all(p.grad is None for p in net.parameters())


def test_per_sample_jacobians_errors():
    net = relu_mlp(0)
    with pytest.raises(
        InvalidArrayError, match=r"h must be floating of shape \(n_samples, \.\.\.\)"
    ):
        per_sample_jacobians(net, torch.randn(6, dtype=F64))
    with pytest.raises(InvalidArrayError, match="h must be floating"):
        per_sample_jacobians(net, np.ones((3, 6), dtype=int))
    with pytest.raises(ConfigError, match="batch_size must be an int >= 1; got 0"):
        per_sample_jacobians(net, torch.randn(3, 6, dtype=F64), batch_size=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_output_pullback_rank_and_agop(seed):
    rng = np.random.default_rng(seed)
    J = rng.standard_normal((30, 2, 7))  # c = 2 outputs, d = 7
    g = output_pullback(J)
    assert np.all(np.linalg.matrix_rank(g, hermitian=True) <= 2)
    np.testing.assert_allclose(g[3], J[3].T @ J[3], atol=1e-14)
    np.testing.assert_allclose(g.mean(0), agop_from_jacobians(J), atol=1e-12)
    Jbar = J.mean(0)
    centred = agop_from_jacobians(J, centered=True)
    np.testing.assert_allclose(centred, agop_from_jacobians(J) - Jbar.T @ Jbar, atol=1e-12)


def test_class_agop():
    rng = np.random.default_rng(0)
    J, y = rng.standard_normal((40, 3, 5)), rng.integers(0, 3, 40)
    classes, G = class_agop(J, y)
    np.testing.assert_array_equal(classes, [0, 1, 2])
    assert G.shape == (3, 5, 5)
    np.testing.assert_allclose(G[1], agop_from_jacobians(J[y == 1]), atol=1e-14)
    shares = np.array([(y == c).mean() for c in classes])
    np.testing.assert_allclose(
        np.einsum("c,cde->de", shares, G), agop_from_jacobians(J), atol=1e-12
    )
    _, Gc = class_agop(J, y, centered=True)
    np.testing.assert_allclose(Gc[2], agop_from_jacobians(J[y == 2], centered=True), atol=1e-14)
    with pytest.raises(ShapeMismatchError, match=r"labels must have shape \(40,\)"):
        class_agop(J, y[:-1])


def test_jacobian_shape_errors():
    with pytest.raises(
        InvalidArrayError, match=r"J must have shape \(n_samples, n_outputs, d\).*J\[:, None, :\]"
    ):
        output_pullback(np.ones((4, 3, 2, 2)))
    with pytest.raises(InvalidArrayError, match="J must have at least 3 dimensions"):
        agop_from_jacobians(np.ones((4, 3)))


# ------------------------------------------------------------------ distances and summary
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_local_sq_distances_match_naive(seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((12, 4)) + 10.0
    A = rng.standard_normal((12, 4, 4))
    G = A @ np.swapaxes(A, 1, 2)  # symmetric PSD metrics
    D = local_sq_distances(X, G)
    for i in range(12):
        for j in range(12):
            delta = X[j] - X[i]
            ref = 0.5 * (delta @ G[i] @ delta + delta @ G[j] @ delta)
            assert D[i, j] == pytest.approx(ref, rel=1e-9, abs=1e-9)
    assert np.all(np.diag(D) == 0) and np.array_equal(D, D.T)
    M = G[0]  # a constant metric gives the static distance (x_i - x_j)ᵀ M (x_i - x_j)
    Dm = local_sq_distances(X, np.broadcast_to(M, G.shape))
    diff = X[:, None] - X[None]
    np.testing.assert_allclose(Dm, np.einsum("ijd,de,ije->ij", diff, M, diff), atol=1e-9)
    with pytest.raises(
        ShapeMismatchError, match=r"metrics must have shape \(n_samples, d, d\) = \(12, 4, 4\)"
    ):
        local_sq_distances(X, G[:5])


def test_static_vs_local_known_answers():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 5))
    W = rng.standard_normal((8, 5))
    M = nfm(W)
    same = static_vs_local(M, np.broadcast_to(M, (40, 5, 5)), X, k=5)
    assert isinstance(same, StaticVsLocal)
    np.testing.assert_allclose(same.corr, 1.0, atol=1e-12)
    np.testing.assert_allclose(same.cos, 1.0, atol=1e-12)
    assert same.mean_corr == pytest.approx(1.0, abs=1e-12)
    assert same.knn["nfm~local"] == 1.0
    assert np.all(same.rank == 5) and same.rank_static == 5
    assert same.chance == pytest.approx(5 / 39)
    iso = static_vs_local(np.eye(5), np.broadcast_to(M, (40, 5, 5)), X, k=5)
    assert iso.knn["euclidean~nfm"] == 1.0
    assert iso.knn["euclidean~local"] == iso.knn["nfm~local"] < 1.0


def test_static_vs_local_output_pullback_is_low_rank_and_averages_to_the_agop():
    net = relu_mlp(1, d=6, m=16, c=2)
    X = torch.randn(60, 6, dtype=F64)
    J = per_sample_jacobians(net, X)
    M = nfm(net[0].weight.detach().numpy())
    s = static_vs_local(M, output_pullback(J), X.numpy(), k=6, power=0.5)
    assert np.all(s.rank <= 2) and s.rank_static == 6  # one local metric: rank <= c
    nfa = rho_pearson(M, matrix_power_psd(agop_from_jacobians(J), 0.5))
    assert s.mean_corr == pytest.approx(nfa, abs=1e-12)  # the NFA correlation
    assert s.power == 0.5 and s.corr.shape == (60,) and np.all(np.abs(s.corr) <= 1)
    dead = output_pullback(J)
    dead[0] = 0.0  # a zero metric (all units off): correlation undefined
    assert np.isnan(static_vs_local(M, dead, X.numpy(), k=6).corr[0])


def test_static_vs_local_errors():
    X, M = np.random.default_rng(0).standard_normal((10, 3)), np.eye(3)
    G = np.broadcast_to(M, (10, 3, 3))
    with pytest.raises(ShapeMismatchError, match=r"M must be \(3, 3\) for X of 3 features"):
        static_vs_local(np.eye(4), G, X)
    for k in (0, 10, True, 2.0):
        with pytest.raises(ConfigError, match=r"k must be an int in \[1, n_samples - 1 = 9\]"):
            static_vs_local(M, G, X, k=k)
    with pytest.raises(ConfigError, match="power p must be a finite number > 0"):
        static_vs_local(M, G, X, k=3, power=0)
    with pytest.raises(InvalidArrayError, match="M must not be constant"):
        static_vs_local(np.ones((3, 3)), G, X, k=3)
    with pytest.raises(ShapeMismatchError, match="metrics must have shape"):
        static_vs_local(M, G[:, :2, :2], X, k=3)


def test_plot_static_vs_local(tmp_path):
    net = relu_mlp(2, d=4, m=8, c=3)
    X = torch.randn(30, 4, dtype=F64)
    g = output_pullback(per_sample_jacobians(net, X))
    s = static_vs_local(nfm(net[0].weight.detach().numpy()), g, X.numpy(), k=4, power=0.5)
    path = plot_static_vs_local(s, tmp_path / "svl.png")
    assert path == tmp_path / "svl.png" and path.stat().st_size > 10_000
