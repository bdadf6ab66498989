"""Neural collapse of a classifier against the class means: NC3 and NC4.

`self_duality` (NC3: classifier rows against centred class means) and `ncc_disagreement` (NC4:
classifier against the nearest class centre), Papyan, Han & Donoho (2020); re-exported by
`probe.analysis.collapse`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from probe.analysis._class_stats import ClassStatistics, check_means_differ, class_statistics
from probe.errors import InvalidArrayError, ShapeMismatchError
from probe.validation import as_float_array, as_samples_features

__all__ = ["ncc_disagreement", "self_duality"]

F64 = npt.NDArray[np.float64]


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
    check_means_differ(stats)
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
