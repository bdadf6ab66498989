"""Margins of labelled representations (docs/features.md §4.4).

`output_margins` (``f_y - max_{j≠y} f_j`` of model outputs), `ncc_margins` (distance to the
nearest other class mean minus distance to the own one) and `centroid_separation` (the closest
pair of class means in units of within-class spread).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.spatial.distance import cdist, pdist

from probe.analysis._class_stats import class_statistics
from probe.errors import InvalidArrayError, ShapeMismatchError
from probe.validation import as_float_array, as_samples_features

__all__ = ["centroid_separation", "ncc_margins", "output_margins"]

F64 = npt.NDArray[np.float64]


def output_margins(logits: npt.ArrayLike, y: npt.ArrayLike) -> F64:
    """Return each sample's output margin ``f_y(x) - max_{j≠y} f_j(x)``.

    Parameters
    ----------
    logits : array_like of shape (n_samples, n_out)
        Model outputs; column ``c`` scores class ``c``.
    y : array_like of int of shape (n_samples,)
        Class labels in [0, n_out).

    Returns
    -------
    ndarray of float64 of shape (n_samples,)
        Positive where the sample is classified correctly.

    Raises
    ------
    InvalidArrayError
        ``logits`` is not a finite (n_samples, n_out >= 2) array, or ``y`` is not integer
        labels in [0, n_out).
    ShapeMismatchError
        ``logits`` and ``y`` have different numbers of samples.

    Examples
    --------
    >>> output_margins([[2.0, 0.5, 1.0], [0.0, 3.0, 4.0]], [0, 1])
    array([ 1., -1.])
    """
    F = as_float_array(logits, "logits", min_ndim=2)
    labels = np.asarray(y)
    if F.ndim != 2 or F.shape[1] < 2:
        msg = f"logits must have shape (n_samples, n_out) with n_out >= 2; got {F.shape}."
        raise InvalidArrayError(msg)
    if labels.shape != (F.shape[0],):
        msg = f"y must have shape ({F.shape[0]},) to match logits; got {labels.shape}."
        raise ShapeMismatchError(msg)
    if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= F.shape[1]:
        msg = f"y must be integer labels in [0, {F.shape[1]}) indexing logits' columns."
        raise InvalidArrayError(msg)
    rows = np.arange(F.shape[0])
    own = F[rows, labels]  # advanced indexing copies
    F = F.copy()
    F[rows, labels] = -np.inf
    return own - F.max(axis=1)


def centroid_separation(X: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Return ``min_{c≠c'} ‖μ_c - μ_c'‖ / sqrt(tr Σ_W)``, the closest class pair in noise units.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features, ...)
        Representations; extra feature axes are flattened.
    y : array_like of shape (n_samples,)
        Class labels.

    Returns
    -------
    float
        Non-negative; ``inf`` when every class is collapsed to its mean (``Σ_W = 0``).
        ``Σ_W`` is divided by the total number of samples, as in `probe.analysis.collapse.nc1`.

    Raises
    ------
    InvalidArrayError, ShapeMismatchError
        Bad ``X`` or ``y`` (see `probe.analysis.collapse.class_statistics`).

    Examples
    --------
    >>> round(centroid_separation([[-1.1], [-0.9], [0.9], [1.1]], [0, 0, 1, 1]), 6)
    20.0
    """
    stats = class_statistics(X, y)
    gap = float(np.min(pdist(stats.means)))
    noise = np.sqrt(stats.within_trace)
    return float(gap / noise) if noise > 0 else float("inf")


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
        ``j*`` is the nearest other class mean (docs/features.md §4.4).

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
