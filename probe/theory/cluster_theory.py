"""Predicted class geometry of the two-point effective theory, and how well a measurement fits it.

The rich-regime pair law (docs/dynamics.md §1.3) gives every pair a final squared representational
distance proportional to ``‖dx‖ ‖dy‖``. Summed over classes (docs/dynamics.md §1.7, from the
authors' ``mnist_structure.ipynb``) it predicts one cluster per class and between-class squared
distances

    pred_ij = sqrt2 · Σ_{k ∈ class(i), l ∈ class(j)} ‖x_k − x_l‖     (0 when class(i) = class(j)),

``sqrt2`` being the distance of two different one-hot targets. `class_pair_distance_sums` computes
the class-pair sums once; `predicted_sq_distances` expands them to any set of probe labels, raw or
class-size normalised. `matrix_correlation`, `between_class_correlation` and
`within_between_sq_distance` compare a measured squared-distance matrix with the prediction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from probe.errors import InvalidArrayError, ShapeMismatchError, UnknownClassError
from probe.validation import as_float_array, as_samples_features, check_int, check_same_n_samples

__all__ = [
    "ONE_HOT_DISTANCE",
    "ClassPairDistances",
    "between_class_correlation",
    "class_pair_distance_sums",
    "matrix_correlation",
    "predicted_sq_distances",
    "same_class_mask",
    "within_between_sq_distance",
]

F64 = npt.NDArray[np.float64]

#: ‖dy‖ of two different one-hot targets.
ONE_HOT_DISTANCE = math.sqrt(2.0)


@dataclass(frozen=True)
class ClassPairDistances:
    """Sums of Euclidean input distances over every ordered pair of images of two classes.

    Attributes
    ----------
    classes : ndarray of shape (n_classes,)
        Sorted class labels.
    counts : ndarray of int64 of shape (n_classes,)
        Images per class.
    sums : ndarray of float64 of shape (n_classes, n_classes)
        ``sums[a, b] = Σ_{k ∈ a, l ∈ b} ‖x_k − x_l‖`` over ordered pairs (k = l included, adding
        0), so ``sums`` is symmetric.
    """

    classes: npt.NDArray[Any]
    counts: npt.NDArray[np.int64]
    sums: F64

    @property
    def means(self) -> F64:
        """Mean distance per class pair, ``sums / (counts[a] counts[b])``, shape (C, C)."""
        return self.sums / np.outer(self.counts, self.counts)


def _labels(y: Any, name: str) -> npt.NDArray[Any]:
    arr = np.asarray(y)
    if arr.ndim != 1:
        msg = f"{name} must be 1-D (one class label per sample); got shape {arr.shape}."
        raise InvalidArrayError(msg)
    return arr


def class_pair_distance_sums(
    X: npt.ArrayLike, y: npt.ArrayLike, *, batch_size: int = 1024
) -> ClassPairDistances:
    """Return the class-pair sums of Euclidean input distances ``‖x_k − x_l‖`` (not squared).

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features, ...)
        Inputs; the authors use RAW pixels (MNIST: 0–255), not normalised ones.
    y : array_like of shape (n_samples,)
        Class labels.
    batch_size : int, default 1024
        Rows of the distance matrix held at once (memory ``batch_size * n_samples`` floats).

    Returns
    -------
    ClassPairDistances

    Raises
    ------
    InvalidArrayError
        ``X`` is not a finite numeric array with rows, ``y`` is not 1-D, or ``batch_size < 1``.
    ShapeMismatchError
        ``X`` and ``y`` differ in length.

    Notes
    -----
    Computed in float64 in row blocks from the Gram matrix of the centred inputs,
    ``‖x_k − x_l‖² = K_kk + K_ll − 2 K_kl``, so the n × n distance matrix never exists in full;
    each block is reduced to classes with the one-hot matrix ``M``: ``sums = Mᵀ D M``.

    Examples
    --------
    >>> s = class_pair_distance_sums([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]], [0, 0, 1])
    >>> s.sums
    array([[10., 15.],
           [15.,  0.]])
    """
    Xf = as_samples_features(X, "X")
    labels = _labels(y, "y")
    check_same_n_samples(Xf, labels, "X, y")
    check_int(batch_size, "batch_size", error=InvalidArrayError)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    onehot = np.zeros((len(labels), len(classes)))
    onehot[np.arange(len(labels)), inverse] = 1.0
    Xc = Xf - Xf.mean(axis=0)
    sq = np.einsum("nd,nd->n", Xc, Xc)
    sums = np.zeros((len(classes), len(classes)))
    for start in range(0, len(labels), batch_size):
        stop = min(start + batch_size, len(labels))
        d2 = sq[start:stop, None] + sq[None, :] - 2.0 * (Xc[start:stop] @ Xc.T)
        dist = np.sqrt(np.maximum(d2, 0.0))
        dist[np.arange(stop - start), np.arange(start, stop)] = 0.0  # round-off on the diagonal
        sums += onehot[start:stop].T @ (dist @ onehot)
    return ClassPairDistances(classes, counts.astype(np.int64), 0.5 * (sums + sums.T))


def predicted_sq_distances(
    pairs: ClassPairDistances, labels: npt.ArrayLike, *, normalise: bool = False
) -> F64:
    """Return the theory's squared-distance matrix for samples with the given labels.

    Parameters
    ----------
    pairs : ClassPairDistances
        Class-pair sums of input distances (`class_pair_distance_sums`).
    labels : array_like of shape (n,)
        Labels of the samples whose predicted geometry is wanted (e.g. the probe images).
    normalise : bool, default False
        Divide each class pair by ``n_c n_c'``: the mean instead of the sum over class pairs,
        which removes the dependence of the raw prediction on class sizes (docs/dynamics.md §6
        V1-5).

    Returns
    -------
    ndarray of float64 of shape (n, n)
        ``pred_ij = sqrt2 · sums[c_i, c_j]`` (``sqrt2 · means[c_i, c_j]`` when normalised), 0
        when ``c_i = c_j``. Units: distance of the inputs (a proportionality to squared
        representational distance, the constant sqrt(rho) of docs/dynamics.md §1.3 being unknown).

    Raises
    ------
    InvalidArrayError
        ``labels`` is not 1-D.
    UnknownClassError
        A label is not one of ``pairs.classes``.

    Notes
    -----
    Equals the authors' ``E A E`` with ``A = D_x ∘ D_y`` and ``E = exp(−A)``: ``E`` is 1 within a
    class (D_y = 0) and underflows to ~0 between classes (A ≳ 1e3 for raw MNIST pixels), so
    ``(E A E)_ij = Σ_{k ∈ c_i, l ∈ c_j} A_kl``. This form is exact, also for close images.

    Examples
    --------
    >>> s = class_pair_distance_sums([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]], [0, 0, 1])
    >>> predicted_sq_distances(s, [0, 1], normalise=True) / np.sqrt(2)
    array([[0. , 7.5],
           [7.5, 0. ]])
    """
    lab = _labels(labels, "labels")
    idx = np.searchsorted(pairs.classes, lab)
    idx = np.minimum(idx, len(pairs.classes) - 1)
    unknown = pairs.classes[idx] != lab
    if np.any(unknown):
        bad = sorted(set(lab[unknown].tolist()))[:10]
        msg = (
            f"labels must be classes of the prediction images {pairs.classes.tolist()}; got "
            f"{bad}. Build the prediction from images that include every probe class."
        )
        raise UnknownClassError(msg)
    table = pairs.means if normalise else pairs.sums
    pred = ONE_HOT_DISTANCE * table[np.ix_(idx, idx)]
    pred[lab[:, None] == lab[None, :]] = 0.0
    return pred


def same_class_mask(labels: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Return ``mask[i, j] = labels[i] == labels[j]``, shape (n, n) (diagonal included).

    Raises
    ------
    InvalidArrayError
        ``labels`` is not 1-D.
    """
    lab = _labels(labels, "labels")
    return lab[:, None] == lab[None, :]


def _square_pair(measured: npt.ArrayLike, predicted: npt.ArrayLike) -> tuple[F64, F64]:
    M = as_float_array(measured, "measured", min_ndim=2)
    P = as_float_array(predicted, "predicted", min_ndim=2)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        msg = f"measured must be a square (n, n) matrix; got shape {M.shape}."
        raise ShapeMismatchError(msg)
    if P.shape != M.shape:
        msg = (
            "measured and predicted must have the same shape; "
            f"got measured.shape={M.shape}, predicted.shape={P.shape}."
        )
        raise ShapeMismatchError(msg)
    return M, P


def _pearson(a: F64, b: F64, what: str) -> float:
    a, b = a - a.mean(), b - b.mean()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        which = "measured" if na == 0 else "predicted"
        msg = (
            f"{which} must vary over {what} for a Pearson r; got a constant "
            f"({a.size} entries). Check that the matrix is not all zeros."
        )
        raise InvalidArrayError(msg)
    return float(np.clip(a @ b / (na * nb), -1.0, 1.0))


def matrix_correlation(measured: npt.ArrayLike, predicted: npt.ArrayLike) -> float:
    """Return the Pearson r between two square matrices over all their entries.

    Parameters
    ----------
    measured, predicted : array_like of shape (n, n)
        E.g. measured squared representational distances and `predicted_sq_distances`.

    Returns
    -------
    float
        r over all n² entries, diagonal and same-class blocks included (as the authors).

    Raises
    ------
    InvalidArrayError
        Non-finite values, or one matrix is constant.
    ShapeMismatchError
        The matrices are not square or differ in shape.

    Examples
    --------
    >>> round(matrix_correlation([[0, 1], [1, 0]], [[0, 2], [2, 0]]), 6)
    1.0
    """
    M, P = _square_pair(measured, predicted)
    return _pearson(M.ravel(), P.ravel(), "all entries")


def between_class_correlation(
    measured: npt.ArrayLike, predicted: npt.ArrayLike, labels: npt.ArrayLike
) -> float:
    """Return the Pearson r over the entries of different-class pairs only.

    The same-class blocks, where the prediction is 0, are left out, so this r says whether the
    theory orders the *between-class* distances, not merely that classes cluster.

    Parameters
    ----------
    measured, predicted : array_like of shape (n, n)
        Square matrices over the same samples.
    labels : array_like of shape (n,)
        Class label of each sample (row).

    Returns
    -------
    float
        r over the entries with ``labels[i] != labels[j]`` (both triangles, which gives the same
        r as one triangle for symmetric matrices).

    Raises
    ------
    InvalidArrayError
        Non-finite values, ``labels`` not 1-D, fewer than 2 classes, or one matrix is constant
        over the different-class entries.
    ShapeMismatchError
        The matrices are not square, differ in shape, or ``labels`` has another length.

    Examples
    --------
    >>> M = [[0, 1, 2], [1, 0, 3], [2, 3, 0]]
    >>> round(between_class_correlation(M, M, [0, 1, 1]), 6)
    1.0
    """
    M, P = _square_pair(measured, predicted)
    keep = ~_checked_mask(labels, M.shape[0])
    if not np.any(keep):
        msg = "labels must hold at least 2 classes for a between-class r; got 1 class."
        raise InvalidArrayError(msg)
    return _pearson(M[keep], P[keep], "the different-class entries")


def _checked_mask(labels: npt.ArrayLike, n: int) -> npt.NDArray[np.bool_]:
    mask = same_class_mask(labels)
    if mask.shape[0] != n:
        msg = f"labels must have one entry per row (n = {n}); got {mask.shape[0]} labels."
        raise ShapeMismatchError(msg)
    return mask


def within_between_sq_distance(
    measured: npt.ArrayLike, labels: npt.ArrayLike
) -> tuple[float, float]:
    """Return the mean of a squared-distance matrix within and between classes.

    Parameters
    ----------
    measured : array_like of shape (n, n)
        Squared distances (e.g. `probe.analysis.similarity.pairwise_sq_distances`).
    labels : array_like of shape (n,)
        Class label of each sample.

    Returns
    -------
    within : float
        Mean over pairs ``i != j`` of the same class (the zero diagonal is left out).
    between : float
        Mean over pairs of different classes.

    Raises
    ------
    InvalidArrayError
        Non-finite values, ``labels`` not 1-D, no class with 2 samples, or only 1 class.
    ShapeMismatchError
        ``measured`` is not square or ``labels`` has another length.

    Examples
    --------
    >>> within_between_sq_distance([[0, 1, 4], [1, 0, 9], [4, 9, 0]], [0, 0, 1])
    (1.0, 6.5)
    """
    M, _ = _square_pair(measured, measured)
    same = _checked_mask(labels, M.shape[0])
    within = same & ~np.eye(len(same), dtype=bool)
    if not np.any(within) or np.all(same):
        msg = (
            "labels must hold at least 2 classes and a class with 2 samples; got "
            f"{len(np.unique(np.asarray(labels)))} classes over {len(same)} samples."
        )
        raise InvalidArrayError(msg)
    return float(M[within].mean()), float(M[~same].mean())
