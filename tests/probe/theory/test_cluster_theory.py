import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import pearsonr

from probe.errors import InvalidArrayError, ShapeMismatchError, UnknownClassError
from probe.theory.cluster_theory import (
    ONE_HOT_DISTANCE,
    between_class_correlation,
    class_pair_distance_sums,
    matrix_correlation,
    predicted_sq_distances,
    same_class_mask,
    within_between_sq_distance,
)

SQRT2 = np.sqrt(2.0)


def labelled(seed, n=40, d=12, k=4):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    y[:k] = np.arange(k)  # every class present
    X = rng.integers(0, 256, size=(n, d)).astype(np.float64)
    return X, y


def eae_reference(X, y):
    """The authors' construction (mnist_structure.ipynb): E A E with A = D_x * D_y, E = exp(-A)."""
    onehot = np.eye(y.max() + 1)[y]
    A = cdist(X, X) * cdist(onehot, onehot)
    E = np.exp(-A)
    return E @ A @ E


def test_hand_made_two_classes_three_points():
    # class 0: (0,0), (3,4); class 1: (6,8). Distances d01 = 5, d02 = 10, d12 = 5.
    X = [[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]]
    pairs = class_pair_distance_sums(X, [0, 0, 1])
    np.testing.assert_array_equal(pairs.classes, [0, 1])
    np.testing.assert_array_equal(pairs.counts, [2, 1])
    # ordered pairs: S00 = d01 + d10 = 10, S01 = d02 + d12 = 15, S11 = 0
    np.testing.assert_allclose(pairs.sums, [[10.0, 15.0], [15.0, 0.0]], atol=1e-12)
    pred = predicted_sq_distances(pairs, [0, 0, 1])
    expected = SQRT2 * np.array([[0, 0, 15], [0, 0, 15], [15, 15, 0.0]])
    np.testing.assert_allclose(pred, expected, atol=1e-12)
    norm = predicted_sq_distances(pairs, [0, 0, 1], normalise=True)
    np.testing.assert_allclose(norm, expected / 2.0, atol=1e-12)  # n_0 n_1 = 2
    assert ONE_HOT_DISTANCE == pytest.approx(SQRT2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_the_authors_eae_construction(seed):
    X, y = labelled(seed)
    X = X * 100.0  # between-class A >> 745 so exp(-A) underflows to 0, as for raw MNIST
    pred = predicted_sq_distances(class_pair_distance_sums(X, y), y)
    np.testing.assert_allclose(pred, eae_reference(X, y), rtol=1e-10, atol=1e-6)
    # the probe set as a leading subset of the prediction images, as the authors
    sub = predicted_sq_distances(class_pair_distance_sums(X, y), y[:10])
    np.testing.assert_allclose(sub, eae_reference(X, y)[:10, :10], rtol=1e-10, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sums_match_brute_force_for_any_batch_size(seed):
    X, y = labelled(seed)
    D = cdist(X, X)
    brute = np.array([[D[np.ix_(y == a, y == b)].sum() for b in range(4)] for a in range(4)])
    for batch_size in (1, 7, 1000):
        pairs = class_pair_distance_sums(X, y, batch_size=batch_size)
        np.testing.assert_allclose(pairs.sums, brute, rtol=1e-10)
        np.testing.assert_allclose(pairs.means, brute / np.outer(pairs.counts, pairs.counts))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_permutation_invariance(seed):
    X, y = labelled(seed)
    perm = np.random.default_rng(seed + 10).permutation(len(y))
    a, b = class_pair_distance_sums(X, y), class_pair_distance_sums(X[perm], y[perm])
    np.testing.assert_allclose(a.sums, b.sums, rtol=1e-10)
    np.testing.assert_array_equal(a.counts, b.counts)
    # permuting the probe samples permutes rows and columns of the prediction
    pred = predicted_sq_distances(a, y)
    np.testing.assert_allclose(predicted_sq_distances(a, y[perm]), pred[np.ix_(perm, perm)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_normalised_is_raw_over_class_sizes(seed):
    X, y = labelled(seed)
    pairs = class_pair_distance_sums(X, y)
    raw = predicted_sq_distances(pairs, y)
    norm = predicted_sq_distances(pairs, y, normalise=True)
    n = pairs.counts[y]
    np.testing.assert_allclose(norm, raw / np.outer(n, n), rtol=1e-12)
    assert np.all(raw[same_class_mask(y)] == 0) and np.all(raw[~same_class_mask(y)] > 0)
    np.testing.assert_array_equal(raw, raw.T)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_correlations_match_scipy(seed):
    rng = np.random.default_rng(seed)
    y = np.sort(rng.integers(0, 5, size=30))
    M = rng.random((30, 30))
    M = M + M.T
    P = M + rng.normal(scale=0.5, size=M.shape)
    assert matrix_correlation(M, P) == pytest.approx(pearsonr(M.ravel(), P.ravel())[0], abs=1e-12)
    between = y[:, None] != y[None, :]
    expected = pearsonr(M[between], P[between])[0]
    assert between_class_correlation(M, P, y) == pytest.approx(expected, abs=1e-12)
    assert matrix_correlation(M, 3.0 * M + 1.0) == pytest.approx(1.0)


def test_within_between_means_match_loops():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=12)
    M = rng.random((12, 12))
    within = [M[i, j] for i in range(12) for j in range(12) if i != j and y[i] == y[j]]
    between = [M[i, j] for i in range(12) for j in range(12) if y[i] != y[j]]
    assert within_between_sq_distance(M, y) == pytest.approx((np.mean(within), np.mean(between)))


def test_errors():
    X, y = labelled(0, n=8)
    pairs = class_pair_distance_sums(X, y)
    M = np.ones((3, 3)) - np.eye(3)
    with pytest.raises(InvalidArrayError, match="y must be 1-D"):
        class_pair_distance_sums(X, y[:, None])
    with pytest.raises(InvalidArrayError, match="batch_size must be an int >= 1; got 0"):
        class_pair_distance_sums(X, y, batch_size=0)
    with pytest.raises(ShapeMismatchError, match="X and y must have the same number of samples"):
        class_pair_distance_sums(X, y[:-1])
    with pytest.raises(UnknownClassError, match=r"labels must be classes .* got \[7, 9\]"):
        predicted_sq_distances(pairs, [0, 9, 7])
    with pytest.raises(InvalidArrayError, match="labels must be 1-D"):
        same_class_mask([[0, 1]])
    with pytest.raises(ShapeMismatchError, match="measured must be a square"):
        matrix_correlation(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ShapeMismatchError, match="measured and predicted must have the same shape"):
        matrix_correlation(M, np.ones((2, 2)))
    with pytest.raises(InvalidArrayError, match="measured must vary over all entries"):
        matrix_correlation(np.zeros((3, 3)), M)
    with pytest.raises(InvalidArrayError, match="predicted must vary over the different-class"):
        between_class_correlation([[0, 1, 2], [1, 0, 3], [2, 3, 0]], M, [0, 1, 1])
    with pytest.raises(InvalidArrayError, match="at least 2 classes for a between-class r"):
        between_class_correlation(M, M, [1, 1, 1])
    with pytest.raises(ShapeMismatchError, match=r"one entry per row \(n = 3\); got 2 labels"):
        between_class_correlation(M, M, [0, 1])
    with pytest.raises(InvalidArrayError, match="at least 2 classes and a class with 2 samples"):
        within_between_sq_distance(M, [0, 1, 2])
    with pytest.raises(InvalidArrayError, match="at least 2 classes and a class with 2 samples"):
        within_between_sq_distance(M, [0, 0, 0])
