import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from scipy.stats import ortho_group
from torch import nn

import probe
import probe.analysis.similarity as difference
from hooks import Recorder
from probe.analysis.similarity import (
    cka_matrix,
    layer_cka_over_steps,
    layer_step_change,
    linear_cka,
    pair_sq_distances,
    pairwise_sq_distances,
    procrustes_distance,
    step_change,
)
from probe.errors import InvalidArrayError, PairIndexError, ShapeMismatchError


def naive_cka(X, Y):
    n = X.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = H @ X @ X.T @ H, H @ Y @ Y.T @ H
    return np.trace(K @ L) / np.sqrt(np.trace(K @ K) * np.trace(L @ L))


def naive_hsic_u(K, L):
    n = K.shape[0]
    K, L = K.copy(), L.copy()
    np.fill_diagonal(K, 0)
    np.fill_diagonal(L, 0)
    o = np.ones(n)
    return (
        np.trace(K @ L)
        + (o @ K @ o) * (o @ L @ o) / ((n - 1) * (n - 2))
        - 2 / (n - 2) * o @ K @ L @ o
    ) / (n * (n - 3))


def naive_cka_u(X, Y):
    K, L = X @ X.T, Y @ Y.T  # uncentred: the estimator is translation invariant
    return naive_hsic_u(K, L) / np.sqrt(naive_hsic_u(K, K) * naive_hsic_u(L, L))


def naive_procrustes(X, Y):
    X = X - X.mean(0)
    Y = Y - Y.mean(0)
    X, Y = X / np.linalg.norm(X), Y / np.linalg.norm(Y)
    d = max(X.shape[1], Y.shape[1])
    X = np.pad(X, ((0, 0), (0, d - X.shape[1])))
    Y = np.pad(Y, ((0, 0), (0, d - Y.shape[1])))
    U, _, Vt = np.linalg.svd(Y.T @ X)
    return np.linalg.norm(X - Y @ U @ Vt)


def data(seed, n=60, d=10, d2=None):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    Y = X @ rng.standard_normal((d, d2 or d)) + 0.5 * rng.standard_normal((n, d2 or d))
    return rng, X, Y


# ------------------------------------------------------------------ distances
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pairwise_sq_distances_match_cdist(seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((50, 4, 3)) + 5.0
    D = pairwise_sq_distances(X)
    ref = cdist(X.reshape(50, -1), X.reshape(50, -1)) ** 2
    np.testing.assert_allclose(D, ref, atol=1e-10)
    assert np.all(np.diag(D) == 0) and np.array_equal(D, D.T) and D.dtype == np.float64
    D32 = pairwise_sq_distances(X.astype(np.float32))
    np.testing.assert_allclose(D32, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pair_sq_distances(seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((30, 7))
    pairs = rng.integers(0, 30, size=(40, 2))
    ref = np.array([np.sum((X[j] - X[i]) ** 2) for i, j in pairs])
    np.testing.assert_allclose(pair_sq_distances(X, pairs), ref, rtol=1e-12)
    np.testing.assert_allclose(
        pair_sq_distances(X, pairs), pairwise_sq_distances(X)[pairs[:, 0], pairs[:, 1]], atol=1e-10
    )


def test_distance_errors():
    X = np.zeros((5, 2))
    with pytest.raises(
        InvalidArrayError, match=r"X must have at least 2 dimensions; got shape \(5,\)"
    ):
        pairwise_sq_distances(np.zeros(5))
    with pytest.raises(InvalidArrayError, match=r"X must have at least 1 sample \(row\)"):
        pairwise_sq_distances(np.zeros((0, 3)))
    with pytest.raises(
        InvalidArrayError, match="X must be a real numeric array; got dtype complex"
    ):
        pairwise_sq_distances(np.zeros((3, 2), complex))
    with pytest.raises(InvalidArrayError, match="X must be finite; got 1 NaN or Inf values"):
        pairwise_sq_distances(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(
        InvalidArrayError, match="pairs must be an integer array; got dtype float64"
    ):
        pair_sq_distances(X, [[0.0, 1.0]])
    with pytest.raises(
        ShapeMismatchError, match=r"pairs must have shape \(n_pairs, 2\); got shape \(3,\)"
    ):
        pair_sq_distances(X, [0, 1, 2])
    with pytest.raises(
        PairIndexError, match=r"pairs must index samples in \[0, 5\); got pair \[1, 5\]"
    ):
        pair_sq_distances(X, [[0, 1], [1, 5]])
    with pytest.raises(IndexError):
        pair_sq_distances(X, [[-1, 0]])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_step_change(seed):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((5, 20, 3, 2)).astype(np.float32)
    ref = [
        np.mean([np.sum((A[t + 1, i].astype(float) - A[t, i]) ** 2) for i in range(20)])
        for t in range(4)
    ]
    np.testing.assert_allclose(step_change(A), ref, rtol=1e-10)
    assert step_change(A[:, :, 0, 0]).shape == (4,)


def test_step_change_errors():
    with pytest.raises(
        InvalidArrayError,
        match=r"A must have at least 2 steps \(first axis\); got shape \(1, 4, 3\)",
    ):
        step_change(np.zeros((1, 4, 3)))
    with pytest.raises(InvalidArrayError, match="A must have at least 2 dimensions"):
        step_change(np.zeros(4))


# ------------------------------------------------------------------ CKA
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_linear_cka_matches_reference(seed):
    _, X, Y = data(seed, d2=6)
    assert linear_cka(X, Y) == pytest.approx(naive_cka(X, Y), abs=1e-12)
    assert linear_cka(X, Y, unbiased=True) == pytest.approx(naive_cka_u(X, Y), abs=1e-10)
    for unbiased in (False, True):
        c = linear_cka(X, Y, unbiased=unbiased)
        assert -1 <= c <= 1
        assert c == pytest.approx(linear_cka(Y, X, unbiased=unbiased), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("unbiased", [False, True])
def test_linear_cka_invariances(seed, unbiased):
    rng, X, Y = data(seed)
    Q = ortho_group.rvs(10, random_state=seed)
    for Z in (X @ Q, X[:, rng.permutation(10)], 3.7 * X, X + 2.0):
        assert linear_cka(X, Z, unbiased=unbiased) == pytest.approx(1.0, abs=1e-10)
    # extra feature axes are flattened
    assert linear_cka(X.reshape(60, 5, 2), Y, unbiased=unbiased) == pytest.approx(
        linear_cka(X, Y, unbiased=unbiased), abs=1e-12
    )


def test_unbiased_close_to_biased_for_large_n():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2000, 5))
    Y = X @ rng.standard_normal((5, 5)) + rng.standard_normal((2000, 5))
    assert linear_cka(X, Y, unbiased=True) == pytest.approx(linear_cka(X, Y), abs=0.02)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("unbiased", [False, True])
def test_cka_matrix(seed, unbiased):
    rng = np.random.default_rng(seed)
    As = [rng.standard_normal((40, d)) for d in (3, 8, 5)]
    M = cka_matrix(As, unbiased=unbiased)
    assert M.shape == (3, 3) and np.array_equal(M, M.T) and np.all(np.diag(M) == 1.0)
    for i in range(3):
        for j in range(3):
            if i != j:
                assert M[i, j] == pytest.approx(
                    linear_cka(As[i], As[j], unbiased=unbiased), abs=1e-12
                )


def test_cka_errors():
    X = np.random.default_rng(0).standard_normal((10, 3))
    with pytest.raises(
        ShapeMismatchError,
        match=r"X and Y must have the same number of samples \(rows\); "
        r"got X.shape=\(10, 3\), Y.shape=\(9, 3\)",
    ):
        linear_cka(X, X[:9])
    with pytest.raises(ValueError, match="Y must vary across samples; got 10 identical rows"):
        linear_cka(X, np.ones((10, 2)))
    with pytest.raises(
        InvalidArrayError,
        match=r"X must have at least 4 samples \(rows\) for the unbiased HSIC estimator .*; got 3",
    ):
        linear_cka(X[:3], X[:3], unbiased=True)
    x = np.array([[1.0], [0.0], [0.0], [0.0]])
    with pytest.raises(
        InvalidArrayError, match="the unbiased HSIC of X with itself must be positive; got"
    ):
        linear_cka(x, X[:4], unbiased=True)
    assert linear_cka(x, X[:4]) > 0  # the biased estimator is fine there
    with pytest.raises(
        InvalidArrayError, match="As must hold at least 1 representation; got an empty sequence"
    ):
        cka_matrix([])
    with pytest.raises(
        ShapeMismatchError, match=r"As\[0\] and As\[2\] must have the same number of samples"
    ):
        cka_matrix([X, X, X[:5]])
    with pytest.raises(InvalidArrayError, match=r"As\[1\] must vary across samples"):
        cka_matrix([X, np.zeros((10, 3))])
    with pytest.raises(InvalidArrayError, match=r"As\[0\] must have at least 4 samples"):
        cka_matrix([X[:3], X[:3]], unbiased=True)


# ------------------------------------------------------------------ Procrustes
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_procrustes_reference_and_invariances(seed):
    rng, X, Y = data(seed, d2=6)
    assert procrustes_distance(X, Y) == pytest.approx(naive_procrustes(X, Y), abs=1e-10)
    assert procrustes_distance(X, Y) == pytest.approx(procrustes_distance(Y, X), abs=1e-12)
    assert 0 < procrustes_distance(X, Y) <= 2
    Q = ortho_group.rvs(10, random_state=seed)
    for Z in (X @ Q, X[:, rng.permutation(10)], 0.2 * X, X - 4.0, np.pad(X, ((0, 0), (0, 3)))):
        assert procrustes_distance(X, Z) == pytest.approx(0.0, abs=1e-6)
    assert procrustes_distance(X.astype(np.float32), X) == pytest.approx(0.0, abs=1e-3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_procrustes_triangle_inequality(seed):
    rng = np.random.default_rng(seed)
    for _ in range(10):
        A, B, C = (rng.standard_normal((30, d)) for d in rng.integers(2, 8, size=3))
        assert (
            procrustes_distance(A, C)
            <= procrustes_distance(A, B) + procrustes_distance(B, C) + 1e-10
        )


def test_procrustes_errors():
    X = np.random.default_rng(0).standard_normal((10, 3))
    with pytest.raises(ShapeMismatchError, match="X and Y must have the same number of samples"):
        procrustes_distance(X, X[:4])
    with pytest.raises(InvalidArrayError, match="X must vary across samples"):
        procrustes_distance(np.full((10, 3), 2.0), X)


# ------------------------------------------------------------------ run helpers
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3))
    x, y = torch.randn(30, 6), torch.randint(0, 3, (30,))
    path = tmp_path_factory.mktemp("diff") / "run.zarr"
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with Recorder(net, layers=["0", "2"], store=path, probe=(x, y), every=3) as rec:
        for _ in range(7):
            loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.step(loss=loss)
    return probe.open_run(path)


def test_layer_helpers_match_direct(run):
    acts = run.acts("0")
    assert acts.shape[0] >= 3
    steps, change = layer_step_change(run, "0")
    np.testing.assert_array_equal(steps, run.steps[1:])
    np.testing.assert_allclose(change, step_change(acts), rtol=1e-12)
    M = layer_cka_over_steps(run, "2")
    outs = run.acts("2")
    assert M.shape == (len(run.steps),) * 2
    assert M[0, -1] == pytest.approx(linear_cka(outs[0], outs[-1]), abs=1e-12)
    Mu = layer_cka_over_steps(run, "2", unbiased=True)
    assert Mu[0, 1] == pytest.approx(linear_cka(outs[0], outs[1], unbiased=True), abs=1e-12)


def test_layer_step_change_needs_two_snapshots():
    class OneSnapshot:
        steps = np.array([0])

        def acts(self, layer, step=None, *, key="acts"):
            return np.zeros((1, 4, 2))

    with pytest.raises(InvalidArrayError, match="run must have at least 2 snapshots; got 1"):
        layer_step_change(OneSnapshot(), "0")


def test_biased_cka_feature_space_form_equals_gram_form():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((400, 7))  # n > dx + dy: the O(d^2) path
    Y = X @ rng.standard_normal((7, 5)) + 0.5 * rng.standard_normal((400, 5))
    Kx, hx = difference._self_hsic(X, "X", False)
    Ky, hy = difference._self_hsic(Y, "Y", False)
    gram = difference._cka(Kx, hx, Ky, hy, False)
    assert linear_cka(X, Y) == pytest.approx(gram, rel=1e-12)
    assert linear_cka(X[:10], Y[:10]) == pytest.approx(
        difference._cka(
            *difference._self_hsic(X[:10], "X", False),
            *difference._self_hsic(Y[:10], "Y", False),
            False,
        ),
        rel=1e-12,
    )
