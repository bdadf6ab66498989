"""Closed forms of the two-point effective theory (docs/dynamics.md §1.3).

The conserved quantity `invariant` and the final representational distance `final_distance`,
with its rich (`rich_final_distance`) and lazy (`lazy_final_distance`) limits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from probe import validation
from probe.errors import ShapeMismatchError, TheoryInputError
from probe.validation import as_float_array

__all__ = [
    "check_nonnegative",
    "check_positive",
    "check_positive_array",
    "final_distance",
    "invariant",
    "lazy_final_distance",
    "rich_final_distance",
]

F64 = npt.NDArray[np.float64]


def as_real(value: Any, name: str) -> float:
    """Return ``value`` as a float, raising `TheoryInputError` when it is not a real number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        msg = f"{name} must be a real number; got {value!r}."
        raise TheoryInputError(msg) from None


def check_positive(value: Any, name: str) -> float:
    """Return ``value`` as a float after checking that it is finite and > 0 (`TheoryInputError`)."""
    return validation.check_positive(value, name, error=TheoryInputError)


def check_nonnegative(value: Any, name: str) -> float:
    """Return ``value`` as a float after checking that it is finite and >= 0."""
    v = as_real(value, name)
    if not (np.isfinite(v) and v >= 0.0):
        msg = f"{name} must be a finite number >= 0; got {value!r}."
        raise TheoryInputError(msg)
    return v


def check_positive_array(arr: F64, name: str) -> None:
    """Raise `TheoryInputError` unless every entry of ``arr`` is > 0."""
    if np.any(arr <= 0.0):
        msg = f"{name} must be > 0 everywhere (it divides the ODEs); got min {float(arr.min())!r}."
        raise TheoryInputError(msg)


def invariant(h: npt.ArrayLike, y: npt.ArrayLike, eta_h: float, eta_y: float, dx2: float) -> F64:
    """Return the conserved quantity ``C = eta_h dx2 (y/h) - eta_y h`` of the two-point ODEs.

    Parameters
    ----------
    h : array_like of shape (n_times,) or scalar
        Squared representational distance (> 0).
    y : array_like of the shape of ``h``
        Squared prediction distance.
    eta_h, eta_y : float
        Effective rates (> 0), per optimizer step.
    dx2 : float
        Squared input distance (> 0).

    Returns
    -------
    ndarray of float64 of the shape of ``h``
        ``C`` at every time; constant along an exact ODE solution.

    Raises
    ------
    InvalidArrayError
        ``h`` or ``y`` is non-numeric or has NaN/Inf.
    ShapeMismatchError
        ``h`` and ``y`` differ in shape.
    TheoryInputError
        A rate or ``dx2`` is not > 0, or some ``h`` is not > 0.

    Notes
    -----
    docs/dynamics.md §1.3 (derived): ``d(y/h)/dt = -eta_y w`` and ``dh/dt = -eta_h dx2 w``, so ``C``
    is constant. It is the analogue of balancedness, ``eta_h dx2 ||Dy||² - eta_y ||dh||²``.

    Examples
    --------
    >>> float(invariant(0.25, 0.0625, eta_h=1.0, eta_y=1.0, dx2=1.0))
    0.0
    """
    hf = as_float_array(h, "h", min_ndim=0)
    yf = as_float_array(y, "y", min_ndim=0)
    if hf.shape != yf.shape:
        msg = f"h and y must have the same shape; got h.shape={hf.shape}, y.shape={yf.shape}."
        raise ShapeMismatchError(msg)
    eh = check_positive(eta_h, "eta_h") * check_positive(dx2, "dx2")
    ey = check_positive(eta_y, "eta_y")
    check_positive_array(hf, "h")
    return np.asarray(eh * yf / hf - ey * hf, dtype=np.float64)


def final_distance(
    h0: float, y0: float, eta_h: float, eta_y: float, dx2: float, dy2: float
) -> float:
    """Return the final squared representational distance ``h_inf`` predicted by the theory.

    Parameters
    ----------
    h0 : float
        Initial squared representational distance (> 0).
    y0 : float
        Initial squared prediction distance (>= 0).
    eta_h, eta_y : float
        Effective rates (> 0), per optimizer step.
    dx2 : float
        Squared input distance (> 0).
    dy2 : float
        Squared target distance (>= 0).

    Returns
    -------
    float
        ``h_inf = A_hi/2 + sqrt(A_hi²/4 + A_lo²)``.

    Raises
    ------
    TheoryInputError
        A rate, ``dx2`` or ``h0`` is not > 0, or ``y0`` or ``dy2`` is negative.

    Notes
    -----
    docs/dynamics.md §1.3 (formula from the authors' ``rich_structure.ipynb`` and ``XOR.ipynb``):
    ``A_hi = h0 - rho dx2 y0/h0``, ``A_lo = sqrt(rho dx2 dy2)``, ``rho = eta_h/eta_y``. It is the
    positive root of ``eta_y h² + C h - eta_h dx2 dy2 = 0``, i.e. the invariant `invariant`
    evaluated at the fixed point ``y = dy2``. For ``A_hi < 0`` the root is computed as
    ``A_lo² / (sqrt(A_hi²/4 + A_lo²) - A_hi/2)`` to avoid cancellation.

    Examples
    --------
    >>> round(final_distance(0.0025, 6.25e-6, 2.5e-3, 2.5e-3, dx2=1.0, dy2=0.5), 5)
    0.70711
    """
    h0f = check_positive(h0, "h0")
    y0f = check_nonnegative(y0, "y0")
    rho = check_positive(eta_h, "eta_h") / check_positive(eta_y, "eta_y")
    dx2f = check_positive(dx2, "dx2")
    dy2f = check_nonnegative(dy2, "dy2")
    a_hi = h0f - rho * dx2f * y0f / h0f
    a_lo2 = rho * dx2f * dy2f
    root = float(np.sqrt(0.25 * a_hi**2 + a_lo2))
    if a_hi >= 0.0:
        return 0.5 * a_hi + root
    # root - a_hi/2 > 0 here since a_hi < 0.
    return a_lo2 / (root - 0.5 * a_hi)


def rich_final_distance(eta_h: float, eta_y: float, dx2: float, dy2: float) -> float:
    """Return the rich-limit final distance ``sqrt(rho dx2 dy2)`` (``h0, y0 -> 0``).

    Parameters
    ----------
    eta_h, eta_y : float
        Effective rates (> 0), per optimizer step.
    dx2 : float
        Squared input distance (> 0).
    dy2 : float
        Squared target distance (>= 0).

    Returns
    -------
    float
        ``||dh_inf||² = sqrt(rho) ||dx|| ||dy||`` with ``rho = eta_h/eta_y``.

    Raises
    ------
    TheoryInputError
        A rate or ``dx2`` is not > 0, or ``dy2`` is negative.

    Notes
    -----
    docs/dynamics.md §1.3: the final geometry is input distance times output distance; pairs with
    equal targets (``dy2 = 0``) merge.

    Examples
    --------
    >>> rich_final_distance(1.0, 1.0, dx2=4.0, dy2=9.0)
    6.0
    """
    rho = check_positive(eta_h, "eta_h") / check_positive(eta_y, "eta_y")
    dx2f = check_positive(dx2, "dx2")
    dy2f = check_nonnegative(dy2, "dy2")
    return float(np.sqrt(rho * dx2f * dy2f))


def lazy_final_distance(h0: float, y0: float, eta_h: float, eta_y: float, dx2: float) -> float:
    """Return the lazy-limit final distance ``h0 - rho dx2 y0/h0`` (``A_hi >> A_lo``).

    Parameters
    ----------
    h0 : float
        Initial squared representational distance (> 0).
    y0 : float
        Initial squared prediction distance (>= 0).
    eta_h, eta_y : float
        Effective rates (> 0), per optimizer step.
    dx2 : float
        Squared input distance (> 0).

    Returns
    -------
    float
        ``A_hi = h0 - rho dx2 y0/h0`` with ``rho = eta_h/eta_y``; about ``h0`` for small ``y0``.

    Raises
    ------
    TheoryInputError
        A rate, ``dx2`` or ``h0`` is not > 0, or ``y0`` is negative.

    Notes
    -----
    docs/dynamics.md §1.3. Only meaningful when ``A_hi² / 4 >> rho dx2 dy2``; use `final_distance`
    otherwise.

    Examples
    --------
    >>> lazy_final_distance(2.0, 0.5, 1.0, 1.0, dx2=1.0)
    1.75
    """
    h0f = check_positive(h0, "h0")
    y0f = check_nonnegative(y0, "y0")
    rho = check_positive(eta_h, "eta_h") / check_positive(eta_y, "eta_y")
    dx2f = check_positive(dx2, "dx2")
    return h0f - rho * dx2f * y0f / h0f
