"""Input checks shared by the metric modules, called once at the top of each public function.

Holds the errors they raise (`ShapeMismatchError`, `InvalidArrayError`, `PairIndexError`,
`MissingTargetsError`) and helpers that return validated float64 arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from probe.errors import (
    InvalidArrayError,
    PairIndexError,
    ShapeMismatchError,
)

__all__ = [
    "as_float_array",
    "as_pairs",
    "as_samples_features",
    "check_min_samples",
    "check_not_constant",
    "check_same_shape",
    "check_same_n_samples",
]

F64 = npt.NDArray[np.float64]


def as_float_array(A: Any, name: str, *, min_ndim: int = 1) -> F64:
    """Return ``A`` as a finite float64 array with at least ``min_ndim`` dimensions."""
    arr = np.asarray(A)
    if arr.dtype.kind not in "biuf":
        msg = f"{name} must be a real numeric array; got dtype {arr.dtype}."
        raise InvalidArrayError(msg)
    if arr.ndim < min_ndim:
        msg = f"{name} must have at least {min_ndim} dimensions; got shape {arr.shape}."
        raise InvalidArrayError(msg)
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        n_bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        msg = f"{name} must be finite; got {n_bad} NaN or Inf values."
        raise InvalidArrayError(msg)
    return arr


def as_samples_features(X: Any, name: str) -> F64:
    """Return ``X`` as float64 of shape (n_samples, n_features), flattening extra feature axes."""
    arr = as_float_array(X, name, min_ndim=2)
    if arr.shape[0] == 0:
        msg = f"{name} must have at least 1 sample (row); got shape {arr.shape}."
        raise InvalidArrayError(msg)
    return arr.reshape(arr.shape[0], -1)


def check_same_n_samples(X: npt.NDArray[Any], Y: npt.NDArray[Any], names: str = "X, Y") -> None:
    """Raise `ShapeMismatchError` unless ``X`` and ``Y`` have the same number of rows."""
    if X.shape[0] != Y.shape[0]:
        a, b = names.split(", ")
        msg = (
            f"{a} and {b} must have the same number of samples (rows); "
            f"got {a}.shape={X.shape}, {b}.shape={Y.shape}."
        )
        raise ShapeMismatchError(msg)


def check_same_shape(X: npt.NDArray[Any], Y: npt.NDArray[Any], names: str = "X, Y") -> None:
    """Raise `ShapeMismatchError` unless ``X`` and ``Y`` have the same shape."""
    if X.shape != Y.shape:
        a, b = names.split(", ")
        msg = f"{a} and {b} must have the same shape; got {a}.shape={X.shape}, {b}.shape={Y.shape}."
        raise ShapeMismatchError(msg)


def check_min_samples(X: npt.NDArray[Any], n_min: int, name: str, why: str) -> None:
    """Raise `InvalidArrayError` when ``X`` has fewer than ``n_min`` rows (``why`` is the hint)."""
    if X.shape[0] < n_min:
        msg = f"{name} must have at least {n_min} samples (rows) {why}; got {X.shape[0]}."
        raise InvalidArrayError(msg)


def check_not_constant(X: F64, name: str) -> None:
    """Raise `InvalidArrayError` when every row of ``X`` is the same (zero centred norm)."""
    if not np.any(X != X[:1]):
        msg = (
            f"{name} must vary across samples; got {X.shape[0]} identical rows "
            "(its centred norm is 0, so the normalised quantity is undefined)."
        )
        raise InvalidArrayError(msg)


def as_pairs(pairs: Any, n_samples: int) -> npt.NDArray[np.intp]:
    """Return ``pairs`` as an int array of shape (n_pairs, 2) with indices in [0, n_samples)."""
    arr = np.asarray(pairs)
    if arr.dtype.kind not in "iu" and arr.size:
        msg = f"pairs must be an integer array; got dtype {arr.dtype}."
        raise InvalidArrayError(msg)
    if arr.ndim != 2 or arr.shape[1] != 2:
        msg = (
            f"pairs must have shape (n_pairs, 2); got shape {arr.shape}. "
            "Stack index pairs as np.array([[i, j], ...])."
        )
        raise ShapeMismatchError(msg)
    arr = arr.astype(np.intp, copy=False)
    bad = (arr < 0) | (arr >= n_samples)
    if np.any(bad):
        first = arr[np.argwhere(bad)[0][0]].tolist()
        msg = f"pairs must index samples in [0, {n_samples}); got pair {first}."
        raise PairIndexError(msg)
    return arr
