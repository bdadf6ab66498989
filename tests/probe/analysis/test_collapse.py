import numpy as np
import pytest
import scipy.linalg
from scipy.stats import ortho_group
from sklearn.metrics import calinski_harabasz_score

from probe.analysis.collapse import (
    cdnv,
    class_statistics,
    etf_measures,
    nc1,
    nc1_quotient,
    ncc_disagreement,
    ncc_margins,
    self_duality,
)
from probe.errors import InvalidArrayError, ShapeMismatchError


def simplex_etf(C, D, r=1.0, seed=0):
    """Rows: C vectors in R^D of norm r with pairwise cosine -1/(C-1)."""
    M = np.sqrt(C / (C - 1)) * (np.eye(C) - 1.0 / C)  # columns of norm 1
    return r * (ortho_group.rvs(D, random_state=seed)[:C].T @ M).T


def etf_data(n_per_class, C=10, D=64, sigma=0.1, seed=0):
    rng = np.random.default_rng(seed)
    means = simplex_etf(C, D, seed=seed)
    y = np.repeat(np.arange(C), n_per_class)
    return means[y] + sigma * rng.standard_normal((y.size, D)), y


def labelled(seed, n=90, d=6, C=3, balanced=True):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % C if balanced else rng.choice(C, size=n, p=[0.6, 0.3, 0.1][:C])
    H = rng.standard_normal((C, d))[y] * 2.0 + rng.standard_normal((n, d))
    return H, y


def naive_nc1(H, y):
    classes = np.unique(y)
    means = np.stack([H[y == c].mean(0) for c in classes])
    mu_G = means.mean(0)  # unweighted
    R = H - means[np.searchsorted(classes, y)]
    Sw = R.T @ R / len(H)
    Mc = means - mu_G
    Sb = Mc.T @ Mc / len(classes)
    return np.trace(Sw @ scipy.linalg.pinv(Sb)) / len(classes)


# ------------------------------------------------------------------ NC1
def test_simplex_etf_nc1_closed_form():
    # docs/features.md §5: C = 10, D = 64, 2000 per class, r = 1, sigma = 0.1:
    # NC1 = σ²(C-1)²/(C r²) = 0.0810.
    H, y = etf_data(2000)
    assert abs(nc1(H, y) - 0.0810) <= 0.02 * 0.0810


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("balanced", [True, False])
def test_nc1_matches_pinv_formula(seed, balanced):
    H, y = labelled(seed, balanced=balanced)
    ref = naive_nc1(H, y)
    assert abs(nc1(H, y) - ref) < 1e-10 * ref


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nc1_invariances(seed):
    H, y = labelled(seed)
    Q = ortho_group.rvs(6, random_state=seed)
    shift = np.random.default_rng(seed).standard_normal(6) * 100
    for fn in (nc1, nc1_quotient):
        ref = fn(H, y)
        assert abs(fn(H @ Q + shift, y) - ref) < 1e-9 * ref
        assert abs(fn(5.0 * H, y) - ref) < 1e-10 * ref
    perm = np.random.default_rng(seed).permutation(len(y))
    assert abs(nc1(H[perm], y[perm]) - nc1(H, y)) < 1e-10 * nc1(H, y)


def test_nc1_zero_without_within_class_spread():
    means = simplex_etf(4, 8)
    y = np.repeat(np.arange(4), 5)
    assert nc1(means[y], y) < 1e-25
    assert nc1_quotient(means[y], y) < 1e-25


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quotient_calinski_harabasz_identity_balanced(seed):
    # docs/features.md §4.2: CH = (N - C) / ((C - 1) · tr Σ_W / tr Σ_B) for balanced classes.
    H, y = labelled(seed)
    N, C = len(y), 3
    ch = calinski_harabasz_score(H, y)
    assert abs(ch - (N - C) / ((C - 1) * nc1_quotient(H, y))) < 1e-10 * ch


def test_quotient_known_value():
    H = np.array([[-1.2], [-0.8], [0.8], [1.2]])
    # Σ_W = 0.04, Σ_B = 1
    assert abs(nc1_quotient(H, [0, 0, 1, 1]) - 0.04) < 1e-12


def test_global_mean_is_unweighted():
    H = np.array([[0.0], [0.0], [0.0], [4.0]])
    s = class_statistics(H, [0, 0, 0, 1])
    np.testing.assert_allclose(s.global_mean, [2.0])  # not the sample mean 1.0
    np.testing.assert_allclose(s.centred_means.sum(axis=0), [0.0])
    np.testing.assert_array_equal(s.counts, [3, 1])


def test_class_statistics_arbitrary_labels():
    H = np.arange(12.0).reshape(6, 2)
    s = class_statistics(H, np.array(["b", "a", "b", "a", "c", "c"]))
    assert s.classes.tolist() == ["a", "b", "c"]
    np.testing.assert_allclose(s.means, [[4.0, 5.0], [2.0, 3.0], [9.0, 10.0]])
    np.testing.assert_allclose(s.residuals + s.means[s.index], H)


# ------------------------------------------------------------------ NC2
def test_etf_measures_exact_simplex():
    for C, D in [(2, 3), (5, 5), (10, 64)]:
        m = etf_measures(simplex_etf(C, D))
        assert all(abs(v) < 1e-10 for v in m.values()), m


def test_etf_measures_known_values():
    m = etf_measures([[1.0, 0.0], [0.0, 3.0]])
    # norms 1 and 3: std 1, mean 2; cos = 0 for both ordered pairs; |0 + 1/(C-1)| = 1
    assert abs(m["equinorm"] - 0.5) < 1e-12
    assert m["equiangular"] == 0.0
    assert abs(m["max_angle"] - 1.0) < 1e-12
    G = np.diag([1.0, 9.0]) / np.sqrt(82.0)
    ideal = (np.eye(2) - 0.5) / 1.0
    assert abs(m["etf_error"] - np.linalg.norm(G - ideal)) < 1e-12


def test_nc2_of_noisy_etf_is_small_and_shrinks_with_n():
    stats = [class_statistics(*etf_data(n)).centred_means for n in (20, 2000)]
    small, large = etf_measures(stats[0]), etf_measures(stats[1])
    assert all(v < 0.03 for v in large.values()), large
    for key in large:
        assert large[key] < small[key]


# ------------------------------------------------------------------ NC3, NC4
def test_self_duality_known_values():
    H, y = labelled(0)
    M = class_statistics(H, y).centred_means
    assert self_duality(H, y, 3.0 * M) < 1e-25
    assert abs(self_duality(H, y, -M) - 4.0) < 1e-12
    # rows of W beyond the classes present are ignored
    W = np.vstack([M, np.ones((2, 6))])
    assert self_duality(H, y, W) < 1e-25


def test_ncc_disagreement_known_values():
    H = np.array([[-1.0], [-0.5], [0.5], [1.0]])
    y = np.array([0, 0, 1, 1])
    assert ncc_disagreement(H, y, [[1.0], [-1.0]]) == 1.0
    assert ncc_disagreement(H, y, [[-1.0], [1.0]]) == 0.0
    assert ncc_disagreement(H, y, [[-1.0], [1.0]], b=[10.0, 0.0]) == 0.5  # h·w + b flips 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ncc_disagreement_zero_for_the_ncc_linear_rule(seed):
    H, y = labelled(seed, balanced=False)
    means = class_statistics(H, y).means
    # argmax_c (μ_c·h - ‖μ_c‖²/2) = argmin_c ‖h - μ_c‖
    assert ncc_disagreement(H, y, means, -0.5 * np.sum(means**2, axis=1)) == 0.0


# ------------------------------------------------------------------ CDNV, margins
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cdnv_matches_loop(seed):
    H, y = labelled(seed, balanced=False)
    vals = []
    for c in range(3):
        for k in range(c + 1, 3):
            mc, mk = H[y == c].mean(0), H[y == k].mean(0)
            vc = np.mean(np.sum((H[y == c] - mc) ** 2, axis=1))
            vk = np.mean(np.sum((H[y == k] - mk) ** 2, axis=1))
            vals.append((vc + vk) / (2 * np.sum((mc - mk) ** 2)))
    assert abs(cdnv(H, y) - np.mean(vals)) < 1e-12 * np.mean(vals)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ncc_margins_match_loop(seed):
    H, y = labelled(seed)
    means = np.stack([H[y == c].mean(0) for c in range(3)])
    ref = []
    for h, c in zip(H, y, strict=True):
        d = np.linalg.norm(h - means, axis=1)
        ref.append(min(d[k] for k in range(3) if k != c) - d[c])
    np.testing.assert_allclose(ncc_margins(H, y), ref, atol=1e-12)


# ------------------------------------------------------------------ errors
def test_class_statistics_errors():
    H = np.zeros((4, 2))
    with pytest.raises(
        InvalidArrayError, match=r"y must be 1-D class labels .* got shape \(4, 1\)"
    ):
        class_statistics(H, np.zeros((4, 1)))
    with pytest.raises(ShapeMismatchError, match=r"H and y must have the same number of samples"):
        class_statistics(H, [0, 1, 0])
    with pytest.raises(InvalidArrayError, match=r"at least 2 classes; got 1 \(\[7\]\)"):
        class_statistics(H, [7, 7, 7, 7])


def test_equal_class_means_rejected():
    H = np.array([[1.0], [-1.0], [1.0], [-1.0]])
    y = [0, 0, 1, 1]
    for fn in (nc1, nc1_quotient):
        with pytest.raises(InvalidArrayError, match=r"class means must differ; got 2 identical"):
            fn(H, y)
    with pytest.raises(InvalidArrayError, match="class means must differ"):
        self_duality(H, y, [[1.0], [2.0]])
    H3 = np.array([[1.0], [-1.0], [1.0], [-1.0], [5.0], [6.0]])
    with pytest.raises(InvalidArrayError, match="distinct for CDNV; got two classes with the same"):
        cdnv(H3, [0, 0, 1, 1, 2, 2])


def test_etf_measures_errors():
    with pytest.raises(
        InvalidArrayError, match=r"shape \(C, d\) with C >= 2 rows; got shape \(1, 3\)"
    ):
        etf_measures(np.ones((1, 3)))
    with pytest.raises(InvalidArrayError, match=r"shape \(C, d\) .* got shape \(2, 2, 2\)"):
        etf_measures(np.ones((2, 2, 2)))
    with pytest.raises(InvalidArrayError, match=r"non-zero rows; got zero rows at \[1\]"):
        etf_measures([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])


def test_classifier_errors():
    H, y = labelled(0)
    M = class_statistics(H, y).centred_means
    with pytest.raises(
        ShapeMismatchError, match=r"W must have shape \(n_classes, 6\) .* got \(3, 5\)"
    ):
        self_duality(H, y, np.ones((3, 5)))
    with pytest.raises(
        ShapeMismatchError, match=r"b must have shape \(3,\) to match W; got \(2,\)"
    ):
        ncc_disagreement(H, y, M, b=[0.0, 0.0])
    with pytest.raises(InvalidArrayError, match=r"integer labels in \[0, 2\) so that row c of W"):
        ncc_disagreement(H, y, M[:2])
    with pytest.raises(InvalidArrayError, match=r"integer labels in \[0, 3\)"):
        ncc_disagreement(H, y.astype(float), M)
    with pytest.raises(InvalidArrayError, match="W must have a non-zero row for a class in y"):
        self_duality(H, y, np.zeros((3, 6)))


def test_moved_names_are_reexported():
    from probe.analysis import _class_stats, _collapse_classifier, collapse, margins

    assert collapse.class_statistics is _class_stats.class_statistics
    assert collapse.ClassStatistics is _class_stats.ClassStatistics
    assert collapse.self_duality is _collapse_classifier.self_duality
    assert collapse.ncc_disagreement is _collapse_classifier.ncc_disagreement
    assert collapse.ncc_margins is margins.ncc_margins
