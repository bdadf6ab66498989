"""Dimensionality of representations.

`participation_ratio` and `participation_ratio_from_spectrum` (Gao et al. 2017), `effective_rank`
and `effective_rank_from_spectrum` (Roy & Vetterli 2007), and the TwoNN intrinsic dimension
`twonn` (Facco et al. 2017), by a fit through the origin or by maximum likelihood.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
from sklearn.neighbors import NearestNeighbors

from probe.errors import ConfigError, InvalidArrayError
from probe.validation import as_float_array, as_samples_features

__all__ = [
    "effective_rank",
    "effective_rank_from_spectrum",
    "participation_ratio",
    "participation_ratio_from_spectrum",
    "twonn",
]

F64 = npt.NDArray[np.float64]


def _as_spectrum(values: npt.ArrayLike) -> F64:
    """Non-negative 1-D spectrum; round-off negatives (eigh of a PSD matrix) are clipped to 0."""
    lam = as_float_array(values, "spectrum")
    if lam.ndim != 1 or lam.size == 0:
        msg = f"spectrum must be a non-empty 1-D array; got shape {lam.shape}."
        raise InvalidArrayError(msg)
    scale = float(np.max(np.abs(lam)))
    if np.any(lam < -1e-12 * scale):
        msg = (
            f"spectrum must be non-negative (eigenvalues of a covariance or singular values); "
            f"got minimum {lam.min():.3g}."
        )
        raise InvalidArrayError(msg)
    if scale == 0.0:
        msg = "spectrum must have a positive entry; got all zeros (a constant representation)."
        raise InvalidArrayError(msg)
    return np.clip(lam, 0.0, None)


def _centred_singular_values(X: npt.ArrayLike) -> F64:
    """Singular values of the column-centred (n_samples, n_features) matrix."""
    Xf = as_samples_features(X, "X")
    return np.linalg.svd(Xf - Xf.mean(axis=0), compute_uv=False)


def participation_ratio_from_spectrum(eigenvalues: npt.ArrayLike) -> float:
    """Return the participation ratio ``(Σ λ)² / Σ λ²`` of a covariance spectrum.

    Parameters
    ----------
    eigenvalues : array_like of shape (n,)
        Eigenvalues of a covariance matrix (non-negative; round-off negatives down to
        ``-1e-12 · max|λ|`` are treated as 0).

    Returns
    -------
    float
        In [1, number of positive eigenvalues].

    Raises
    ------
    InvalidArrayError
        Not a non-empty finite 1-D array, a clearly negative entry, or all zeros.

    Examples
    --------
    >>> participation_ratio_from_spectrum([4.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    3.2
    """
    lam = _as_spectrum(eigenvalues)
    lam = lam / lam.max()  # scale-free; avoids overflow of Σλ² for huge activations
    return float(lam.sum() ** 2 / np.sum(lam**2))


def participation_ratio(X: npt.ArrayLike) -> float:
    """Return the participation ratio ``tr(C)² / tr(C²)`` of the feature covariance.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features, ...)
        Representations; extra feature axes are flattened.

    Returns
    -------
    float
        In [1, min(n_samples - 1, n_features)]; invariant to translation, rotation and scaling.

    Raises
    ------
    InvalidArrayError
        ``X`` is not finite numeric of at least 2 dimensions, has no rows, or is constant.

    Notes
    -----
    ``C`` is the covariance of the centred features (Gao et al. 2017; Recanatesi et al. 2019);
    its normalisation (1/n or 1/(n-1)) cancels. The eigenvalues of ``C`` are the squared
    singular values of the centred ``X``, which is how they are computed.

    Examples
    --------
    >>> participation_ratio([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    2.0
    """
    return participation_ratio_from_spectrum(_centred_singular_values(X) ** 2)


def effective_rank_from_spectrum(singular_values: npt.ArrayLike) -> float:
    """Return the entropy effective rank ``exp(-Σ p log p)``, ``p = σ / Σ σ``.

    Parameters
    ----------
    singular_values : array_like of shape (n,)
        Singular values of a matrix (non-negative).

    Returns
    -------
    float
        In [1, number of positive values].

    Raises
    ------
    InvalidArrayError
        Not a non-empty finite 1-D array, a clearly negative entry, or all zeros.

    Notes
    -----
    Roy & Vetterli (2007), eq. (1)-(2), with ``0 log 0 = 0``. Passing covariance eigenvalues
    instead gives the effective rank of the covariance, which for a feature matrix ``X`` differs
    from that of ``X`` (its singular values are the square roots).

    Examples
    --------
    >>> round(effective_rank_from_spectrum([1.0, 1.0, 0.0]), 6)
    2.0
    """
    s = _as_spectrum(singular_values)
    p = s[s > 0] / s.sum()
    return float(np.exp(-np.sum(p * np.log(p))))


def effective_rank(X: npt.ArrayLike) -> float:
    """Return the entropy effective rank of the centred feature matrix.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features, ...)
        Representations; extra feature axes are flattened.

    Returns
    -------
    float
        In [1, min(n_samples - 1, n_features)].

    Raises
    ------
    InvalidArrayError
        ``X`` is not finite numeric of at least 2 dimensions, has no rows, or is constant.

    Notes
    -----
    `effective_rank_from_spectrum` of the singular values of ``X - mean(X)`` (not of its
    covariance: those would be the squared values, a smaller effective rank).

    Examples
    --------
    >>> round(effective_rank([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]), 6)
    2.0
    """
    return effective_rank_from_spectrum(_centred_singular_values(X))


def twonn(
    X: npt.ArrayLike,
    *,
    method: Literal["fit", "mle"] = "fit",
    discard_fraction: float = 0.1,
) -> float:
    """Return the TwoNN intrinsic dimension of a point cloud.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features, ...)
        Points; extra feature axes are flattened. Duplicate rows are removed first.
    method : {"fit", "mle"}
        ``"fit"``: least-squares slope through the origin of ``-log(1 - F_emp)`` against
        ``log μ``; ``"mle"``: maximum likelihood ``(n - 1) / Σ log μ``.
    discard_fraction : float
        Fraction in [0, 1) of the largest ratios ``μ`` left out of the fit (unused by ``"mle"``).

    Returns
    -------
    float
        The estimated dimension.

    Raises
    ------
    ConfigError
        Unknown ``method`` or ``discard_fraction`` outside [0, 1).
    InvalidArrayError
        ``X`` is not finite numeric of at least 2 dimensions, or fewer than 3 usable points
        remain after removing duplicates and ties.

    Notes
    -----
    Facco et al. (2017): ``μ_i = r₂(i) / r₁(i)`` (second over first nearest-neighbour Euclidean
    distance) follows the Pareto law ``F(μ) = 1 - μ^(-d)``. As in Ansuini et al. (2019,
    ``IDNN/intrinsic_dimension.py``): exact duplicate rows are removed (``r₁ = 0``), points with
    ``r₁ = r₂`` are dropped, the sorted ``μ`` get ``F_emp = i / n`` for ``i = 1..n`` (scikit-
    dimension counts from ``i = 0``), and the first ``floor((1 - discard_fraction) n)`` enter
    the fit. The estimate is biased low as ``d`` grows for a fixed ``n`` (docs/features.md §5: 9.6
    for ``d = 10``, ``n = 5000``).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((2000, 2)) @ rng.standard_normal((2, 10))
    >>> round(twonn(X), 1)
    2.0
    """
    if method not in ("fit", "mle"):
        msg = f"method must be 'fit' or 'mle'; got {method!r}."
        raise ConfigError(msg)
    if not 0.0 <= discard_fraction < 1.0:
        msg = f"discard_fraction must be a float in [0, 1); got {discard_fraction!r}."
        raise ConfigError(msg)
    Xu = np.unique(as_samples_features(X, "X"), axis=0)
    if Xu.shape[0] < 3:
        msg = f"X must have at least 3 distinct points for TwoNN; got {Xu.shape[0]}."
        raise InvalidArrayError(msg)
    dist, _ = NearestNeighbors(n_neighbors=3).fit(Xu).kneighbors(Xu)
    r1, r2 = dist[:, 1], dist[:, 2]
    keep = r2 > r1  # r1 = r2 ties carry no scale information (Ansuini et al.)
    mu = np.sort(r2[keep] / r1[keep])
    n = mu.size
    if n < 3:
        msg = (
            f"X must have at least 3 points whose two nearest neighbours are at different "
            f"distances; got {n} (a lattice or heavily tied data?)."
        )
        raise InvalidArrayError(msg)
    log_mu = np.log(mu)
    if method == "mle":
        return float((n - 1) / log_mu.sum())
    n_fit = max(1, int(np.floor(n * (1.0 - discard_fraction))))
    n_fit = min(n_fit, n - 1)  # F_emp = 1 at i = n would give log(0)
    x = log_mu[:n_fit]
    y = -np.log(1.0 - np.arange(1, n_fit + 1) / n)
    return float(x @ y / (x @ x))
