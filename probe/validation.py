"""Input checks shared by every module of probe, called once at the top of each public function.

`check_int` and `check_positive` check settings (a bool is not a number here); `as_float_array`,
`as_samples_features`, `as_pairs` and the `check_*` array helpers return or check validated
float64 arrays. The errors they raise live in `probe.errors`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from probe.errors import ConfigError, InvalidArrayError, PairIndexError, ShapeMismatchError

__all__ = [
    "check_int",
    "check_positive",
    "as_float_array",
    "as_pairs",
    "as_samples_features",
    "check_min_samples",
    "check_not_constant",
    "check_same_shape",
    "check_same_n_samples",
]

F64 = npt.NDArray[np.float64]


def check_int(
    value: Any, name: str, *, minimum: int = 1, error: type[Exception] = ConfigError, hint: str = ""
) -> int:
    """Return ``value`` as an int after checking that it is an integer >= ``minimum``.

    Parameters
    ----------
    value : object
        The setting; a Python or numpy integer. A bool is rejected, though Python counts it as
        an int (``epochs=True`` is a mistake, not one epoch).
    name : str
        The setting's name, for the message.
    minimum : int
        Smallest allowed value.
    error : type of Exception
        The error to raise (`ConfigError` unless the caller's domain has its own).
    hint : str
        A fix hint appended to the message.

    Returns
    -------
    int

    Raises
    ------
    ConfigError
        (or ``error``) ``value`` is not an int >= ``minimum``.

    Examples
    --------
    >>> check_int(3, "epochs")
    3
    >>> check_int(True, "epochs")
    Traceback (most recent call last):
    ...
    probe.errors.ConfigError: epochs must be an int >= 1; got True.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        msg = f"{name} must be an int >= {minimum}; got {value!r}." + (f" {hint}" if hint else "")
        raise error(msg)
    return int(value)


def check_positive(
    value: Any, name: str, *, error: type[Exception] = ConfigError, hint: str = ""
) -> float:
    """Return ``value`` as a float after checking that it is a finite real number > 0.

    Parameters
    ----------
    value : object
        The setting: a Python or numpy real number (a bool or a string is rejected).
    name : str
        The setting's name, for the message.
    error : type of Exception
        The error to raise (`ConfigError` unless the caller's domain has its own).
    hint : str
        A fix hint appended to the message.

    Returns
    -------
    float

    Raises
    ------
    ConfigError
        (or ``error``) ``value`` is not a finite real number > 0.

    Examples
    --------
    >>> check_positive(1e-3, "lr")
    0.001
    >>> check_positive(0, "lr", hint="Pass e.g. lr=1e-3.")
    Traceback (most recent call last):
    ...
    probe.errors.ConfigError: lr must be a finite number > 0; got 0. Pass e.g. lr=1e-3.
    """
    real = not isinstance(value, (bool, str, bytes)) and np.ndim(value) == 0
    try:
        v = float(value) if real else math.nan
    except (TypeError, ValueError):
        v = math.nan
    if not 0.0 < v < math.inf:
        msg = f"{name} must be a finite number > 0; got {value!r}." + (f" {hint}" if hint else "")
        raise error(msg)
    return v


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
