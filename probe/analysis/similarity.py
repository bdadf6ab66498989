"""Distances and similarities between representations.

Squared distances (`pairwise_sq_distances`, `pair_sq_distances`), change between snapshots
(`step_change`), linear CKA (`linear_cka`, `cka_matrix`), `procrustes_distance`, and the run
helpers `layer_step_change` and `layer_cka_over_steps`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from probe.errors import InvalidArrayError
from probe.validation import (
    as_float_array,
    as_pairs,
    as_samples_features,
    check_min_samples,
    check_not_constant,
    check_same_n_samples,
)

if TYPE_CHECKING:
    from probe.store import Run

__all__ = [
    "cka_matrix",
    "layer_cka_over_steps",
    "layer_step_change",
    "linear_cka",
    "pair_sq_distances",
    "pairwise_sq_distances",
    "procrustes_distance",
    "step_change",
]

F64 = npt.NDArray[np.float64]


def pairwise_sq_distances(X: npt.ArrayLike) -> F64:
    """Return the squared Euclidean distances between all samples, from the Gram matrix.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features, ...)
        Representations; extra feature axes are flattened.

    Returns
    -------
    ndarray of float64 of shape (n_samples, n_samples)
        ``D[i, j] = ||X[i] - X[j]||²``, symmetric with an exact zero diagonal.

    Raises
    ------
    InvalidArrayError
        ``X`` has fewer than 2 dimensions, no rows, a non-numeric dtype or NaN/Inf.

    Notes
    -----
    ``h_ij = K_ii + K_jj - 2 K_ij`` with ``K = X Xᵀ`` (docs/dynamics.md §4). ``X`` is centred first
    (distances do not change) so that a large common offset does not cancel catastrophically;
    round-off negatives are clipped to 0.

    Examples
    --------
    >>> pairwise_sq_distances([[0.0, 0.0], [3.0, 4.0]])
    array([[ 0., 25.],
           [25.,  0.]])
    """
    Xf = as_samples_features(X, "X")
    Xc = Xf - Xf.mean(axis=0)
    K = Xc @ Xc.T
    sq = np.diag(K)
    D = sq[:, None] + sq[None, :] - 2.0 * K
    D = np.maximum(0.5 * (D + D.T), 0.0)
    np.fill_diagonal(D, 0.0)
    return D


def pair_sq_distances(X: npt.ArrayLike, pairs: npt.ArrayLike) -> F64:
    """Return the squared Euclidean distance of each listed pair of samples.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features, ...)
        Representations; extra feature axes are flattened.
    pairs : array_like of int of shape (n_pairs, 2)
        Row indices ``(i, j)`` into ``X``.

    Returns
    -------
    ndarray of float64 of shape (n_pairs,)
        ``||X[j] - X[i]||²`` for each pair (the symbol h of docs/dynamics.md §1.1).

    Raises
    ------
    InvalidArrayError
        ``X`` is not a finite numeric array of at least 2 dimensions, or ``pairs`` is not integer.
    ShapeMismatchError
        ``pairs`` is not of shape (n_pairs, 2).
    PairIndexError
        A pair index is outside [0, n_samples).

    Examples
    --------
    >>> pair_sq_distances([[0.0], [1.0], [3.0]], [[0, 1], [0, 2]])
    array([1., 9.])
    """
    Xf = as_samples_features(X, "X")
    P = as_pairs(pairs, Xf.shape[0])
    diff = Xf[P[:, 1]] - Xf[P[:, 0]]
    return np.einsum("pd,pd->p", diff, diff)


def step_change(A: npt.ArrayLike) -> F64:
    """Return the mean squared change of each sample's representation between consecutive steps.

    Parameters
    ----------
    A : array_like of shape (n_steps, n_samples, ...)
        Representations stacked over snapshots (``Run.acts(layer)``); trailing axes are features.

    Returns
    -------
    ndarray of float64 of shape (n_steps - 1,)
        ``change[t] = mean_i ||A[t+1, i] - A[t, i]||²``.

    Raises
    ------
    InvalidArrayError
        ``A`` has fewer than 2 dimensions or fewer than 2 steps, or is not finite numeric.

    Notes
    -----
    Convention: squared Euclidean norm summed over features, averaged over samples, per pair of
    consecutive snapshots. It is not divided by the number of optimizer steps between
    snapshots; divide by ``np.diff(run.steps)`` for a rate.

    Examples
    --------
    >>> step_change([[[0.0, 0.0]], [[3.0, 4.0]], [[3.0, 5.0]]])
    array([25.,  1.])
    """
    Af = as_float_array(A, "A", min_ndim=2)
    if Af.shape[0] < 2:
        msg = f"A must have at least 2 steps (first axis); got shape {Af.shape}."
        raise InvalidArrayError(msg)
    Af = Af.reshape(Af.shape[0], Af.shape[1], -1)
    diff = np.diff(Af, axis=0)
    return np.einsum("tnd,tnd->t", diff, diff) / Af.shape[1]


def _centred_gram(X: F64) -> F64:
    """Centred linear Gram matrix ``H X Xᵀ H``."""
    Xc = X - X.mean(axis=0)
    return Xc @ Xc.T


def _unbiased_hsic(K: F64, L: F64) -> float:
    """Unbiased HSIC of Song et al. (2012) for Gram matrices with zeroed diagonals."""
    n = K.shape[0]
    ones_K, ones_L = K.sum(axis=0), L.sum(axis=0)
    term = np.sum(K * L) + ones_K.sum() * ones_L.sum() / ((n - 1) * (n - 2))
    term -= 2.0 / (n - 2) * float(ones_K @ ones_L)
    return float(term / (n * (n - 3)))


def _zero_diag_gram(X: F64) -> F64:
    """Linear Gram matrix of the centred ``X`` with its diagonal set to 0."""
    K = _centred_gram(X)
    np.fill_diagonal(K, 0.0)
    return K


def _self_hsic(X: F64, name: str, unbiased: bool) -> tuple[F64, float]:
    """Return the Gram matrix used for HSIC and HSIC(X, X); raise if the unbiased one is <= 0."""
    if not unbiased:
        K = _centred_gram(X)
        return K, float(np.sum(K * K))  # > 0 once X is not constant
    K = _zero_diag_gram(X)
    hsic = _unbiased_hsic(K, K)
    # The U-statistic can be 0 or negative for non-constant X at small n (e.g. [1, 0, 0, 0]).
    if hsic <= 1e-12 * float(np.sum(K * K)) / (K.shape[0] * (K.shape[0] - 3)):
        msg = (
            f"the unbiased HSIC of {name} with itself must be positive; got {hsic:.3g}. "
            "Use unbiased=False or pass more samples."
        )
        raise InvalidArrayError(msg)
    return K, hsic


def _cka(Kx: F64, hx: float, Ky: F64, hy: float, unbiased: bool) -> float:
    """CKA from prepared Gram matrices and self-HSIC values."""
    hxy = _unbiased_hsic(Kx, Ky) if unbiased else float(np.sum(Kx * Ky))
    return float(hxy / np.sqrt(hx * hy))


def linear_cka(X: npt.ArrayLike, Y: npt.ArrayLike, *, unbiased: bool = False) -> float:
    """Return the linear centred kernel alignment (CKA) of two representations.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features_x, ...)
        First representation; extra feature axes are flattened.
    Y : array_like of shape (n_samples, n_features_y, ...)
        Second representation of the same samples.
    unbiased : bool
        Use the unbiased HSIC estimator (needs n_samples >= 4) instead of the biased one.

    Returns
    -------
    float
        1 for identical representations (up to rotation and isotropic scaling), 0 for
        unrelated ones. In [0, 1] when biased; the unbiased value can be slightly negative.

    Raises
    ------
    InvalidArrayError
        An input is not finite numeric of at least 2 dimensions, is constant across samples,
        has fewer than 4 samples with ``unbiased=True``, or has a non-positive unbiased self-HSIC.
    ShapeMismatchError
        ``X`` and ``Y`` have different numbers of samples.

    Notes
    -----
    ``CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` with linear Gram matrices
    ``K = X Xᵀ``, ``L = Y Yᵀ``.

    * Biased (Kornblith et al. 2019, eq. 3 with the centred Gram ``K̃ = H K H``):
      ``HSIC(K, L) = tr(K̃ L̃) / (n - 1)²``; the ``(n - 1)²`` cancels in the ratio.
    * Unbiased (Song et al. 2012, eq. 5, as used for CKA by Nguyen et al. 2021): with ``K``
      and ``L`` having zeroed diagonals,
      ``HSIC₁ = [tr(K L) + 1ᵀK1 1ᵀL1 / ((n-1)(n-2)) - 2/(n-2) 1ᵀK L1] / (n(n-3))``.
      Both inputs are centred first, which leaves this estimator unchanged.

    Examples
    --------
    >>> X = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0], [2.0, 1.0]]
    >>> round(linear_cka(X, X), 6)
    1.0
    """
    Xf = as_samples_features(X, "X")
    Yf = as_samples_features(Y, "Y")
    check_same_n_samples(Xf, Yf)
    check_not_constant(Xf, "X")
    check_not_constant(Yf, "Y")
    if unbiased:
        check_min_samples(Xf, 4, "X", "for the unbiased HSIC estimator (or use unbiased=False)")
    elif Xf.shape[0] > Xf.shape[1] + Yf.shape[1]:
        # Same value from the feature-space form, in O(d²) memory instead of O(n²):
        # <X̃X̃ᵀ, ỸỸᵀ>_F = ||X̃ᵀỸ||²_F and ||X̃X̃ᵀ||_F = ||X̃ᵀX̃||_F.
        Xc, Yc = Xf - Xf.mean(axis=0), Yf - Yf.mean(axis=0)
        hxy = float(np.sum((Xc.T @ Yc) ** 2))
        return hxy / float(np.linalg.norm(Xc.T @ Xc) * np.linalg.norm(Yc.T @ Yc))
    Kx, hx = _self_hsic(Xf, "X", unbiased)
    Ky, hy = _self_hsic(Yf, "Y", unbiased)
    return _cka(Kx, hx, Ky, hy, unbiased)


def cka_matrix(As: Sequence[npt.ArrayLike], *, unbiased: bool = False) -> F64:
    """Return the linear CKA between every pair of representations of the same samples.

    Parameters
    ----------
    As : sequence of array_like, each of shape (n_samples, n_features_i, ...)
        Representations, for example one layer over snapshots (``list(run.acts(layer))``) or
        several layers at one step. Feature widths may differ.
    unbiased : bool
        Use the unbiased HSIC estimator (see `linear_cka`).

    Returns
    -------
    ndarray of float64 of shape (k, k)
        ``M[i, j] = linear_cka(As[i], As[j])``; symmetric with ones on the diagonal.

    Raises
    ------
    InvalidArrayError
        ``As`` is empty, or an element fails the checks of `linear_cka`.
    ShapeMismatchError
        The elements have different numbers of samples.

    Examples
    --------
    >>> X = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0], [2.0, 1.0]]
    >>> cka_matrix([X, X]).round(6)
    array([[1., 1.],
           [1., 1.]])
    """
    if len(As) == 0:
        msg = "As must hold at least 1 representation; got an empty sequence."
        raise InvalidArrayError(msg)
    arrays = [as_samples_features(A, f"As[{i}]") for i, A in enumerate(As)]
    for i, A in enumerate(arrays[1:], start=1):
        check_same_n_samples(arrays[0], A, f"As[0], As[{i}]")
    for i, A in enumerate(arrays):
        check_not_constant(A, f"As[{i}]")
        if unbiased:
            check_min_samples(A, 4, f"As[{i}]", "for the unbiased HSIC estimator")
    prepared = [_self_hsic(A, f"As[{i}]", unbiased) for i, A in enumerate(arrays)]
    k = len(arrays)
    M = np.eye(k)
    for i in range(k):
        for j in range(i + 1, k):
            M[i, j] = M[j, i] = _cka(*prepared[i], *prepared[j], unbiased)
    return M


def procrustes_distance(X: npt.ArrayLike, Y: npt.ArrayLike) -> float:
    """Return the orthogonal Procrustes distance between two normalised representations.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features_x, ...)
        First representation; extra feature axes are flattened.
    Y : array_like of shape (n_samples, n_features_y, ...)
        Second representation of the same samples; the width may differ from ``X``.

    Returns
    -------
    float
        In [0, 2]; 0 when ``Y`` is ``X`` up to translation, rotation/reflection and isotropic
        scaling. A metric: symmetric and satisfying the triangle inequality.

    Raises
    ------
    InvalidArrayError
        An input is not finite numeric of at least 2 dimensions, or is constant across samples.
    ShapeMismatchError
        ``X`` and ``Y`` have different numbers of samples.

    Notes
    -----
    Normalisation: each input is centred (column means removed) and divided by its Frobenius
    norm, so ``||X||_F = ||Y||_F = 1``. The narrower one is zero-padded to the wider width
    (this does not change the singular values of ``XᵀY``). Then
    ``min_Q ||X - Y Q||_F = sqrt(max(0, 2 - 2 ||XᵀY||_*))`` over orthogonal ``Q``
    (Schönemann 1966), where ``||·||_*`` is the nuclear norm. Unlike `scipy.spatial.procrustes`
    (which returns the squared disparity), this is the distance itself.

    Examples
    --------
    >>> X = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]
    >>> Y = [[0.0, 2.0], [-2.0, 0.0], [-2.0, 2.0], [0.0, 0.0]]  # X rotated by 90° and scaled
    >>> round(procrustes_distance(X, Y), 6)
    0.0
    """
    Xf = as_samples_features(X, "X")
    Yf = as_samples_features(Y, "Y")
    check_same_n_samples(Xf, Yf)
    check_not_constant(Xf, "X")
    check_not_constant(Yf, "Y")
    Xc = Xf - Xf.mean(axis=0)
    Yc = Yf - Yf.mean(axis=0)
    Xc /= np.linalg.norm(Xc)
    Yc /= np.linalg.norm(Yc)
    nuclear = float(np.linalg.svd(Xc.T @ Yc, compute_uv=False).sum())
    return float(np.sqrt(max(0.0, 2.0 - 2.0 * nuclear)))


def layer_step_change(run: Run, layer: str, *, key: str = "acts") -> tuple[Any, F64]:
    """Return `step_change` of a layer's probe-set activations over a run's snapshots.

    Parameters
    ----------
    run : Run
        An opened run (`probe.open_run`).
    layer : str
        A recorded layer.
    key : str
        Which recorded array of the layer (see `Run.keys`).

    Returns
    -------
    steps : ndarray of int64 of shape (n_snapshots - 1,)
        The later step of each pair of consecutive snapshots (``run.steps[1:]``).
    change : ndarray of float64 of shape (n_snapshots - 1,)
        Mean over probe samples of ``||h(t+1) - h(t)||²`` between consecutive snapshots.

    Raises
    ------
    InvalidArrayError
        The run has fewer than 2 snapshots.
    LayerNotInRunError
        Unknown layer or key.
    """
    acts = run.acts(layer, key=key)
    if acts.shape[0] < 2:
        msg = f"run must have at least 2 snapshots; got {acts.shape[0]}."
        raise InvalidArrayError(msg)
    return run.steps[1:], step_change(acts)


def layer_cka_over_steps(run: Run, layer: str, *, unbiased: bool = False, key: str = "acts") -> F64:
    """Return the linear CKA between a layer's probe-set activations at every pair of snapshots.

    Parameters
    ----------
    run : Run
        An opened run (`probe.open_run`).
    layer : str
        A recorded layer.
    unbiased : bool
        Use the unbiased HSIC estimator (see `linear_cka`).
    key : str
        Which recorded array of the layer (see `Run.keys`).

    Returns
    -------
    ndarray of float64 of shape (n_snapshots, n_snapshots)
        ``M[s, t]`` is the CKA between snapshots ``s`` and ``t`` (ordered as ``run.steps``).

    Raises
    ------
    InvalidArrayError
        The run has no snapshots, or a snapshot fails the checks of `linear_cka`.
    LayerNotInRunError
        Unknown layer or key.
    """
    return cka_matrix(list(run.acts(layer, key=key)), unbiased=unbiased)
