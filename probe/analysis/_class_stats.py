"""Per-class summaries of labelled features: `class_statistics` -> `ClassStatistics`.

Class means, their unweighted global mean and within-class residuals, shared by the neural
collapse measures (`probe.analysis.collapse`) and the margins (`probe.analysis.margins`);
re-exported by `probe.analysis.collapse`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from probe.errors import InvalidArrayError
from probe.validation import as_samples_features, check_same_n_samples

__all__ = ["ClassStatistics", "check_means_differ", "class_statistics"]

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


def check_means_differ(stats: ClassStatistics) -> None:
    """Raise when all class means coincide (Σ_B = 0 makes NC1/NC2/NC3 undefined)."""
    if not np.any(stats.centred_means):
        msg = f"class means must differ; got {stats.means.shape[0]} identical ones (Σ_B = 0)."
        raise InvalidArrayError(msg)
