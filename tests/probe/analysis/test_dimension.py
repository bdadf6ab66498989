import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import ortho_group

from probe.analysis.dimension import (
    effective_rank,
    effective_rank_from_spectrum,
    participation_ratio,
    participation_ratio_from_spectrum,
    twonn,
)
from probe.errors import ConfigError, InvalidArrayError

SPECTRUM = [4.0, 1.0, 1.0, 1.0, 1.0] + [0.0] * 5


# ------------------------------------------------------------------ participation ratio
def test_participation_ratio_of_spectrum_is_exact():
    # docs/features.md §5: (4 + 4·1)² / (16 + 4) = 64 / 20 = 3.2
    assert abs(participation_ratio_from_spectrum(SPECTRUM) - 3.2) < 1e-10
    assert abs(participation_ratio_from_spectrum(np.array(SPECTRUM) * 1e300) - 3.2) < 1e-10
    assert participation_ratio_from_spectrum([2.0, -1e-16, 0.0]) == 1.0  # round-off clipped


def test_participation_ratio_gaussian_estimate():
    # docs/features.md §5: 20000 samples with covariance spectrum (4,1,1,1,1,0,...) give about 3.18.
    rng = np.random.default_rng(0)
    Q = ortho_group.rvs(10, random_state=0)
    X = rng.standard_normal((20000, 10)) * np.sqrt(SPECTRUM) @ Q + 3.0
    pr = participation_ratio(X)
    # The estimate's sampling spread is about 1% at n = 20000; 0.1 is 3%.
    assert abs(pr - 3.2) < 0.1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_participation_ratio_matches_covariance_and_invariances(seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((80, 12)) @ rng.standard_normal((12, 12))
    lam = np.linalg.eigvalsh(np.cov(X.T))
    ref = lam.sum() ** 2 / np.sum(lam**2)
    assert abs(participation_ratio(X) - ref) < 1e-10 * ref
    Q = ortho_group.rvs(12, random_state=seed)
    assert abs(participation_ratio(3.0 * X @ Q + 7.0) - ref) < 1e-10 * ref
    assert 1.0 <= ref <= 12.0
    # extra feature axes are flattened
    assert abs(participation_ratio(X.reshape(80, 3, 4)) - ref) < 1e-10 * ref


def test_participation_ratio_of_wide_features_uses_rank():
    X = np.random.default_rng(0).standard_normal((5, 40))
    lam = np.linalg.svd(X - X.mean(0), compute_uv=False) ** 2
    assert abs(participation_ratio(X) - lam.sum() ** 2 / np.sum(lam**2)) < 1e-10
    assert participation_ratio(X) <= 4.0 + 1e-12  # rank of 5 centred samples


# ------------------------------------------------------------------ effective rank
def test_effective_rank_known_values():
    assert abs(effective_rank_from_spectrum([3.0, 3.0, 3.0, 0.0]) - 3.0) < 1e-12
    assert abs(effective_rank_from_spectrum([5.0, 0.0]) - 1.0) < 1e-12
    p = np.array([2.0, 1.0, 1.0]) / 4.0
    assert (
        abs(effective_rank_from_spectrum([2.0, 1.0, 1.0]) - np.exp(-np.sum(p * np.log(p)))) < 1e-12
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_effective_rank_of_features_uses_singular_values(seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((60, 8)) * np.array([5, 4, 3, 2, 1, 1, 0.5, 0.1])
    s = np.linalg.svd(X - X.mean(0), compute_uv=False)
    p = s / s.sum()
    ref = np.exp(-np.sum(p * np.log(p)))
    assert abs(effective_rank(X) - ref) < 1e-10
    Q = ortho_group.rvs(8, random_state=seed)
    assert abs(effective_rank(2.0 * X @ Q - 1.0) - ref) < 1e-10
    # the covariance spectrum (s²) is more concentrated: smaller effective rank
    assert effective_rank_from_spectrum(s**2) < ref


# ------------------------------------------------------------------ TwoNN
def gaussian_in_r50(d, seed=0, n=5000):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) @ ortho_group.rvs(50, random_state=seed)[:d]


@pytest.mark.parametrize("d", [2, 5])
@pytest.mark.parametrize("method", ["fit", "mle"])
def test_twonn_gaussians_within_five_percent(d, method):
    # docs/features.md §5: N = 5000, fit 2.01 / 4.90, MLE 2.01 / 4.90; accept ±5% for d <= 5.
    est = twonn(gaussian_in_r50(d), method=method)
    assert abs(est - d) <= 0.05 * d


@pytest.mark.parametrize("method", ["fit", "mle"])
def test_twonn_d10_is_biased_low_within_range(method):
    # docs/features.md §5: 9.61 (fit) / 9.67 (MLE); the estimator is biased downward as d grows.
    assert 9.0 <= twonn(gaussian_in_r50(10), method=method) <= 10.5


def naive_mu(X):
    D = cdist(X, X)
    np.fill_diagonal(D, np.inf)
    r = np.sort(D, axis=1)
    return np.sort(r[:, 1] / r[:, 0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_twonn_matches_naive_formulas(seed):
    X = np.random.default_rng(seed).standard_normal((200, 3))
    mu = naive_mu(X)
    n = mu.size
    assert abs(twonn(X, method="mle") - (n - 1) / np.log(mu).sum()) < 1e-10
    k = int(np.floor(0.9 * n))
    x, y = np.log(mu[:k]), -np.log(1 - np.arange(1, k + 1) / n)  # F_emp = i / n, i = 1..n
    slope = np.linalg.lstsq(x[:, None], y, rcond=None)[0][0]
    assert abs(twonn(X) - slope) < 1e-10
    k = int(np.floor(0.5 * n))
    x, y = np.log(mu[:k]), -np.log(1 - np.arange(1, k + 1) / n)
    assert abs(twonn(X, discard_fraction=0.5) - x @ y / (x @ x)) < 1e-10


def test_twonn_removes_duplicates():
    X = np.random.default_rng(0).standard_normal((300, 4))
    with_dups = np.vstack([X, X[:50], X[:10]])
    assert twonn(with_dups) == twonn(X)
    assert twonn(with_dups, method="mle") == twonn(X, method="mle")
    assert twonn(X, discard_fraction=0.0) > 0  # all but the F_emp = 1 point


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("fn", [participation_ratio_from_spectrum, effective_rank_from_spectrum])
def test_spectrum_errors(fn):
    with pytest.raises(InvalidArrayError, match=r"non-empty 1-D array; got shape \(2, 2\)"):
        fn(np.eye(2))
    with pytest.raises(InvalidArrayError, match=r"non-empty 1-D array; got shape \(0,\)"):
        fn([])
    with pytest.raises(InvalidArrayError, match="must be non-negative .* got minimum -1"):
        fn([2.0, -1.0])
    with pytest.raises(InvalidArrayError, match="must have a positive entry; got all zeros"):
        fn([0.0, 0.0])


def test_constant_features_rejected():
    with pytest.raises(InvalidArrayError, match="positive entry; got all zeros"):
        participation_ratio(np.ones((5, 3)))
    with pytest.raises(InvalidArrayError, match="positive entry; got all zeros"):
        effective_rank(np.ones((5, 3)))


def test_twonn_errors():
    X = np.random.default_rng(0).standard_normal((20, 2))
    with pytest.raises(ConfigError, match="method must be 'fit' or 'mle'; got 'ml'"):
        twonn(X, method="ml")
    with pytest.raises(ConfigError, match=r"discard_fraction must be a float in \[0, 1\); got 1.0"):
        twonn(X, discard_fraction=1.0)
    with pytest.raises(ValueError, match="at least 3 distinct points for TwoNN; got 2"):
        twonn([[0.0, 1.0], [0.0, 1.0], [2.0, 0.0]])
    # on an evenly spaced line the inner points have r1 = r2 and are dropped
    with pytest.raises(InvalidArrayError, match="at least 3 points whose two nearest .* got 2"):
        twonn([[0.0], [1.0], [2.0], [3.0]])
