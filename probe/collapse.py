"""Neural collapse of class representations (Papyan, Han & Donoho 2020) and class-mean margins.

`class_statistics`; NC1 `nc1`, `nc1_quotient`; NC2 `etf_measures` (of centred means or
classifier rows); NC3 `self_duality`; NC4 `ncc_disagreement`; `cdnv`; `ncc_margins` (features
spec §4.4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.linalg import helmert
from scipy.spatial.distance import cdist, pdist

from probe._validation import (
    InvalidArrayError,
    ShapeMismatchError,
    as_float_array,
    as_samples_features,
    check_same_n_samples,
)

__all__ = [
    "ClassStatistics",
    "cdnv",
    "class_statistics",
    "etf_measures",
    "nc1",
    "nc1_quotient",
    "ncc_disagreement",
    "ncc_margins",
    "self_duality",
]

F64 = npt.NDArray[np.float64]


@dataclass
class ClassStatistics:
    """Per-class summaries of features ``H`` of shape (n_samples, d) with ``C`` classes.

    Attributes
    ----------
    classes, counts : ndarray of shape (C,)
        The sorted distinct labels and the number of samples of each.
    index : ndarray of int of shape (n_samples,)
        Position of each sample's label in ``classes``.
    means, global_mean : ndarray of float64 of shape (C, d) and (d,)
        Class means ``μ_c`` and ``μ_G``, the unweighted mean of the class means.
    residuals : ndarray of float64 of shape (n_samples, d)
        ``h_i - μ_{y_i}``.
    """

    classes: npt.NDArray[Any]
    index: npt.NDArray[np.intp]
    counts: npt.NDArray[np.intp]
    means: F64
    global_mean: F64
    residuals: F64

    @property
    def centred_means(self) -> F64:
        """``M`` transposed: rows ``μ_c - μ_G``, of shape (C, d)."""
        return self.means - self.global_mean

    @property
    def within_trace(self) -> float:
        """``tr Σ_W`` with ``Σ_W`` divided by the total number of samples."""
        return float(np.sum(self.residuals**2) / self.residuals.shape[0])

    @property
    def between_trace(self) -> float:
        """``tr Σ_B`` with ``Σ_B = (1/C) Σ_c (μ_c - μ_G)(μ_c - μ_G)ᵀ``."""
        return float(np.sum(self.centred_means**2) / self.means.shape[0])


def class_statistics(H: npt.ArrayLike, y: npt.ArrayLike) -> ClassStatistics:
    """Return class means, the global mean and within-class residuals of features ``H``.

    Parameters
    ----------
    H : array_like of shape (n_samples, n_features, ...)
        Features; extra feature axes are flattened.
    y : array_like of shape (n_samples,)
        Class labels (any sortable values).

    Returns
    -------
    ClassStatistics

    Raises
    ------
    InvalidArrayError, ShapeMismatchError
        ``H`` is not finite numeric of at least 2 dimensions, ``y`` is not 1-D, they differ in
        length, or there are fewer than 2 classes.

    Notes
    -----
    ``μ_G`` is the *unweighted* mean of the class means (Wu & Papyan's
    ``MeanAccumulator.compute(weighted=False)``), so the centred means sum to zero and their
    geometry does not depend on class sizes. Papyan et al. use the mean over all samples; the
    two agree for balanced classes.

    Examples
    --------
    >>> s = class_statistics([[0.0], [2.0], [10.0]], [0, 0, 1])
    >>> s.means.ravel().tolist(), s.global_mean.tolist()
    ([1.0, 10.0], [5.5])
    """
    Hf = as_samples_features(H, "H")
    labels = np.asarray(y)
    if labels.ndim != 1:
        msg = f"y must be 1-D class labels of shape (n_samples,); got shape {labels.shape}."
        raise InvalidArrayError(msg)
    check_same_n_samples(Hf, labels, "H, y")
    classes, index, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if classes.size < 2:
        msg = f"y must contain at least 2 classes; got {classes.size} ({classes.tolist()})."
        raise InvalidArrayError(msg)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))  # np.add.at is slow on rows
    means = np.add.reduceat(Hf[np.argsort(index, kind="stable")], starts, axis=0) / counts[:, None]
    return ClassStatistics(classes, index, counts, means, means.mean(axis=0), Hf - means[index])


def _check_means_differ(stats: ClassStatistics) -> None:
    """Raise when all class means coincide (Σ_B = 0 makes NC1/NC2/NC3 undefined)."""
    if not np.any(stats.centred_means):
        msg = f"class means must differ; got {stats.means.shape[0]} identical ones (Σ_B = 0)."
        raise InvalidArrayError(msg)


def nc1(H: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Return NC1 ``Tr(Σ_W Σ_B⁺) / C``, the within-class variability relative to the means.

    Parameters
    ----------
    H : array_like of shape (n_samples, n_features, ...)
        Features (penultimate-layer activations, or any layer).
    y : array_like of shape (n_samples,)
        Class labels.

    Returns
    -------
    float
        Non-negative; tends to 0 under neural collapse. Invariant to rotation, translation and
        scaling of ``H``.

    Raises
    ------
    InvalidArrayError, ShapeMismatchError
        Bad ``H`` or ``y`` (see `class_statistics`), or all class means are equal.

    Notes
    -----
    Papyan et al. (2020), Fig. 6: ``Σ_W = (1/N) Σ_i (h_i - μ_{y_i})(h_i - μ_{y_i})ᵀ``,
    ``Σ_B = (1/C) M Mᵀ`` (``μ_G`` as in `class_statistics`). As ``M 1 = 0``, ``M Mᵀ = (M P)(M P)ᵀ``
    for the (C, C-1) Helmert basis ``P`` of ``1⊥``; ``Σ_B⁺ = C U S⁻² Uᵀ`` from the thin SVD
    ``M P = U S Vᵀ``, keeping ``s > max(d, C) · eps · s_max``: ``NC1 = Σ_k u_kᵀ Σ_W u_k / s_k²``.
    A plain ``pinv(Σ_B)`` can invert the round-off left along ``1`` into a huge spurious term
    when the features carry a large offset.

    Examples
    --------
    >>> round(nc1([[-1.1], [-0.9], [0.9], [1.1]], [0, 0, 1, 1]), 6)
    0.005
    """
    stats = class_statistics(H, y)
    _check_means_differ(stats)
    C = stats.means.shape[0]
    # M P with P ⟂ 1 spans M's column space without the round-off copy of the 1 direction
    MP = stats.centred_means.T @ helmert(C).T
    U, s, _ = np.linalg.svd(MP, full_matrices=False)
    keep = s > max(U.shape[0], C) * np.finfo(np.float64).eps * s[0]
    proj = stats.residuals @ U[:, keep]  # (N, r): residuals along the between-class directions
    return float(np.sum(np.mean(proj**2, axis=0) / s[keep] ** 2))


def nc1_quotient(H: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Return the NC1 quotient ``tr Σ_W / tr Σ_B`` (Tirer et al. 2023).

    Parameters
    ----------
    H : array_like of shape (n_samples, n_features, ...)
        Features.
    y : array_like of shape (n_samples,)
        Class labels.

    Returns
    -------
    float
        Non-negative; 0 under collapse.

    Raises
    ------
    InvalidArrayError, ShapeMismatchError
        Bad ``H`` or ``y`` (see `class_statistics`), or all class means are equal.

    Notes
    -----
    Same ``Σ_W``, ``Σ_B`` and ``μ_G`` as `nc1`. For balanced classes it relates to the
    Calinski-Harabasz index: ``CH = (N - C) / ((C - 1) · quotient)``.

    Examples
    --------
    >>> round(nc1_quotient([[-1.1], [-0.9], [0.9], [1.1]], [0, 0, 1, 1]), 6)
    0.01
    """
    stats = class_statistics(H, y)
    _check_means_differ(stats)
    return stats.within_trace / stats.between_trace


def etf_measures(V: npt.ArrayLike) -> dict[str, float]:
    """Return how far the rows of ``V`` are from a simplex equiangular tight frame (NC2).

    Parameters
    ----------
    V : array_like of shape (C, d)
        Centred class means (``ClassStatistics.centred_means``) or classifier rows ``w_c``.

    Returns
    -------
    dict of str to float
        ``"equinorm"``: ``std_c ‖v_c‖ / mean_c ‖v_c‖``; ``"equiangular"``: ``std_{c≠c'} cos``;
        ``"max_angle"``: ``mean_{c≠c'} |cos + 1/(C - 1)|``; ``"etf_error"``:
        ``‖V Vᵀ/‖V Vᵀ‖_F - (I - 11ᵀ/C)/sqrt(C - 1)‖_F`` (Zhu et al. 2021). All 0 for an ETF.

    Raises
    ------
    InvalidArrayError
        ``V`` is not a finite 2-D array with at least 2 rows, or a row is zero.

    Notes
    -----
    Papyan et al. (2020), Fig. 3-4. Standard deviations are population ones (ddof = 0) over
    classes and over the ``C(C - 1)`` ordered off-diagonal pairs.

    Examples
    --------
    >>> V = [[1.0, 0.0], [-0.5, 3**0.5 / 2], [-0.5, -(3**0.5) / 2]]
    >>> {k: round(v, 6) for k, v in etf_measures(V).items()}
    {'equinorm': 0.0, 'equiangular': 0.0, 'max_angle': 0.0, 'etf_error': 0.0}
    """
    Vf = as_float_array(V, "V", min_ndim=2)
    if Vf.ndim != 2 or Vf.shape[0] < 2:
        msg = f"V must have shape (C, d) with C >= 2 rows; got shape {Vf.shape}."
        raise InvalidArrayError(msg)
    norms = np.linalg.norm(Vf, axis=1)
    if np.any(norms == 0):
        msg = f"V must have non-zero rows; got zero rows at {np.flatnonzero(norms == 0).tolist()}."
        raise InvalidArrayError(msg)
    C = Vf.shape[0]
    U = Vf / norms[:, None]
    cos = (U @ U.T)[~np.eye(C, dtype=bool)]
    G = Vf @ Vf.T
    ideal = (np.eye(C) - 1.0 / C) / np.sqrt(C - 1)
    return {
        "equinorm": float(norms.std() / norms.mean()),
        "equiangular": float(cos.std()),
        "max_angle": float(np.mean(np.abs(cos + 1.0 / (C - 1)))),
        "etf_error": float(np.linalg.norm(G / np.linalg.norm(G) - ideal)),
    }


def _check_classifier(stats: ClassStatistics, W: Any, b: Any) -> tuple[F64, F64]:
    """Validate ``W`` (n_out, d) and ``b`` (n_out,) against integer labels in [0, n_out)."""
    Wf = as_float_array(W, "W", min_ndim=2)
    d = stats.means.shape[1]
    if Wf.ndim != 2 or Wf.shape[1] != d:
        msg = f"W must have shape (n_classes, {d}) to match the features; got {Wf.shape}."
        raise ShapeMismatchError(msg)
    bf = np.zeros(Wf.shape[0]) if b is None else as_float_array(b, "b")
    if bf.shape != (Wf.shape[0],):
        msg = f"b must have shape ({Wf.shape[0]},) to match W; got {bf.shape}."
        raise ShapeMismatchError(msg)
    labels = stats.classes
    if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= Wf.shape[0]:
        msg = (
            f"y must be integer labels in [0, {Wf.shape[0]}) so that row c of W scores class "
            f"c; got labels {labels.tolist()[:10]}."
        )
        raise InvalidArrayError(msg)
    return Wf, bf


def self_duality(H: npt.ArrayLike, y: npt.ArrayLike, W: npt.ArrayLike) -> float:
    """Return NC3 ``‖Wᵀ/‖W‖_F - M/‖M‖_F‖_F²``: how far classifier rows are from the means.

    Parameters
    ----------
    H : array_like of shape (n_samples, n_features, ...)
        Features fed to the classifier.
    y : array_like of int of shape (n_samples,)
        Class labels in [0, n_out).
    W : array_like of shape (n_out, n_features)
        Classifier weight (``Linear.weight``); row ``c`` scores class ``c``.

    Returns
    -------
    float
        In [0, 4]; 0 when ``W`` is proportional to the centred means. Papyan et al. (2020),
        Fig. 5, over the classes in ``y`` (their rows of ``W``; ``M`` has columns ``μ_c - μ_G``).

    Raises
    ------
    InvalidArrayError, ShapeMismatchError
        Bad ``H``/``y``, labels outside [0, n_out), equal class means, or a ``W`` without
        ``n_features`` columns or with zero rows for the classes in ``y``.

    Examples
    --------
    >>> self_duality([[-1.0], [-3.0], [1.0], [3.0]], [0, 0, 1, 1], [[-2.0], [2.0]])
    0.0
    """
    stats = class_statistics(H, y)
    _check_means_differ(stats)
    Wf, _ = _check_classifier(stats, W, None)
    Wc = Wf[stats.classes]
    if not np.any(Wc):
        msg = "W must have a non-zero row for a class in y; got all-zero rows."
        raise InvalidArrayError(msg)
    M = stats.centred_means
    return float(np.sum((Wc / np.linalg.norm(Wc) - M / np.linalg.norm(M)) ** 2))


def ncc_disagreement(
    H: npt.ArrayLike, y: npt.ArrayLike, W: npt.ArrayLike, b: npt.ArrayLike | None = None
) -> float:
    """Return NC4: the fraction of samples where the classifier and nearest class centre differ.

    Parameters
    ----------
    H : array_like of shape (n_samples, n_features, ...)
        Features fed to the classifier.
    y : array_like of int of shape (n_samples,)
        Class labels in [0, n_out) (they define the class centres).
    W : array_like of shape (n_out, n_features)
        Classifier weight; row ``c`` scores class ``c``.
    b : array_like of shape (n_out,), optional
        Classifier bias (0 when omitted).

    Returns
    -------
    float
        In [0, 1]; 0 when ``argmax_c (w_c·h + b_c) = argmin_c ‖h - μ_c‖`` everywhere. The argmax
        runs over all ``n_out`` rows of ``W``, the nearest centre over the classes in ``y``.

    Raises
    ------
    InvalidArrayError, ShapeMismatchError
        Bad ``H``/``y``, labels outside [0, n_out), or ``W`` or ``b`` of the wrong shape.

    Examples
    --------
    >>> ncc_disagreement([[-1.0], [1.0], [2.0]], [0, 1, 1], [[-1.0], [1.0]], b=[2.5, 0.0])
    0.3333333333333333
    """
    Hf = as_samples_features(H, "H")
    stats = class_statistics(Hf, y)
    Wf, bf = _check_classifier(stats, W, b)
    pred = np.argmax(Hf @ Wf.T + bf, axis=1)
    sq = np.sum(stats.means**2, axis=1)[None, :] - 2.0 * Hf @ stats.means.T
    ncc = stats.classes[np.argmin(sq, axis=1)]
    return float(np.mean(pred != ncc))


def cdnv(H: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Return the class-distance normalised variance, averaged over pairs of classes.

    Parameters
    ----------
    H : array_like of shape (n_samples, n_features, ...)
        Features.
    y : array_like of shape (n_samples,)
        Class labels.

    Returns
    -------
    float
        ``mean_{c<c'} (Var_c + Var_c') / (2 ‖μ_c - μ_c'‖²)``; 0 under collapse.

    Raises
    ------
    InvalidArrayError, ShapeMismatchError
        Bad ``H`` or ``y`` (see `class_statistics`), or two classes share the same mean.

    Notes
    -----
    Galanti et al. (2022), with the biased class variance ``Var_c = (1/n_c) Σ_{i∈c} ‖h_i - μ_c‖²``.

    Examples
    --------
    >>> round(cdnv([[-1.1], [-0.9], [0.9], [1.1]], [0, 0, 1, 1]), 6)
    0.0025
    """
    stats = class_statistics(H, y)
    var = np.bincount(stats.index, np.sum(stats.residuals**2, axis=1)) / stats.counts
    dist2 = pdist(stats.means, "sqeuclidean")  # pairs c < c', in triu_indices order
    if np.any(dist2 == 0):
        msg = "class means must be distinct for CDNV; got two classes with the same mean."
        raise InvalidArrayError(msg)
    pair_var = (var[:, None] + var[None, :])[np.triu_indices(var.size, k=1)]
    return float(np.mean(pair_var / (2.0 * dist2)))


def ncc_margins(X: npt.ArrayLike, y: npt.ArrayLike) -> F64:
    """Return each sample's nearest-class-centre margin ``‖h - μ_j*‖ - ‖h - μ_y‖``.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features, ...)
        Representations; extra feature axes are flattened.
    y : array_like of shape (n_samples,)
        Class labels.

    Returns
    -------
    ndarray of float64 of shape (n_samples,)
        Positive when the sample is closer to its own class mean than to any other;
        ``j*`` is the nearest other class mean (features spec §4.4).

    Raises
    ------
    InvalidArrayError, ShapeMismatchError
        Bad ``X`` or ``y`` (see `class_statistics`).

    Examples
    --------
    >>> ncc_margins([[0.0], [8.0], [10.0]], [0, 0, 1])
    array([ 6., -2.,  6.])
    """
    H = as_samples_features(X, "X")
    stats = class_statistics(H, y)
    dist = cdist(H, stats.means)
    rows = np.arange(H.shape[0])
    own = dist[rows, stats.index]
    dist[rows, stats.index] = np.inf
    return dist.min(axis=1) - own
