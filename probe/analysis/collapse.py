"""Neural collapse of class representations (Papyan, Han & Donoho 2020).

NC1 `nc1`, `nc1_quotient`; NC2 `etf_measures` (of centred means or classifier rows); `cdnv`.
Also importable from here: `class_statistics` / `ClassStatistics` (`probe.analysis._class_stats`),
NC3 `self_duality` and NC4 `ncc_disagreement` (`probe.analysis._collapse_classifier`) and
`ncc_margins` (`probe.analysis.margins`; docs/features.md §4.4).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.linalg import helmert
from scipy.spatial.distance import pdist

from probe.analysis._class_stats import ClassStatistics, check_means_differ, class_statistics
from probe.analysis._collapse_classifier import ncc_disagreement, self_duality
from probe.analysis.margins import ncc_margins
from probe.errors import InvalidArrayError
from probe.validation import as_float_array

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
    check_means_differ(stats)
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
    check_means_differ(stats)
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
