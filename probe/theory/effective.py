"""Two-point effective theory of representation dynamics (van Rossem & Saxe 2024).

The equations are in docs/dynamics.md §1.

The ODEs for (h, y, w) (`two_point_rhs`), the invariant `invariant`, the final distance
`final_distance` with its `rich_final_distance` and `lazy_final_distance` limits, the integrator
`simulate_two_point` (returns `TwoPointTrajectory`) and the train-loss curve `mean_output_loss`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.integrate import solve_ivp

from probe.errors import (
    InvalidArrayError,
    OdeIntegrationError,
    ShapeMismatchError,
    TheoryInputError,
)
from probe.theory.effective_closed import (
    as_real,
    check_nonnegative,
    check_positive,
    check_positive_array,
    final_distance,
    invariant,
    lazy_final_distance,
    rich_final_distance,
)
from probe.validation import as_float_array

__all__ = [
    "TwoPointTrajectory",
    "final_distance",
    "invariant",
    "lazy_final_distance",
    "mean_output_loss",
    "rich_final_distance",
    "simulate_two_point",
    "two_point_rhs",
]

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TwoPointTrajectory:
    """Solution of the two-point ODEs on a time grid (all arrays of shape (n_times,)).

    Attributes
    ----------
    t : ndarray of float64 of shape (n_times,)
        Time in optimizer steps.
    h : ndarray of float64 of shape (n_times,)
        Squared representational distance ``||dh||²``.
    y : ndarray of float64 of shape (n_times,)
        Squared prediction distance ``||dyhat||²``.
    w : ndarray of float64 of shape (n_times,)
        Misalignment ``dyhat·(dyhat - dy)``; 0 at the solution.
    a : ndarray of float64 of shape (n_times,)
        Alignment ``dy·dyhat = y - w``.
    """

    t: F64
    h: F64
    y: F64
    w: F64
    a: F64


def _rhs(h: Any, y: Any, w: Any, eh: float, ey: float, dy2: float) -> tuple[Any, Any, Any]:
    """Right-hand side of §1.2 with ``eh = eta_h dx2``, ``ey = eta_y`` (no checks)."""
    dh = -eh * w
    dy = -w * (ey * h + eh * y / h)
    dw = -0.5 * ey * h * (3.0 * w - y + dy2) - 0.5 * eh * (y + w) * w / h
    return dh, dy, dw


def _jac(h: float, y: float, w: float, eh: float, ey: float, dy2: float) -> F64:
    """Jacobian of `_rhs` with respect to ``(h, y, w)`` (saves Radau's finite differences)."""
    return np.array(
        [
            [0.0, 0.0, -eh],
            [-w * (ey - eh * y / h**2), -w * eh / h, -(ey * h + eh * y / h)],
            [
                -0.5 * ey * (3.0 * w - y + dy2) + 0.5 * eh * (y + w) * w / h**2,
                0.5 * ey * h - 0.5 * eh * w / h,
                -1.5 * ey * h - 0.5 * eh * (y + 2.0 * w) / h,
            ],
        ]
    )


def two_point_rhs(state: npt.ArrayLike, eta_h: float, eta_y: float, dx2: float, dy2: float) -> F64:
    """Return the time derivative of the two-point state ``(h, y, w)``.

    Parameters
    ----------
    state : array_like of shape (3,) or (3, n_pairs)
        ``(h, y, w)``: squared representational distance (> 0), squared prediction distance and
        misalignment, for one pair or stacked along the last axis for ``n_pairs`` pairs.
    eta_h, eta_y : float
        Effective rates (> 0) of the encoder Jacobian and the decoder Jacobian, per optimizer step.
    dx2 : float
        Squared input distance ``||dx||²`` (> 0).
    dy2 : float
        Squared target distance ``||dy||²`` (>= 0).

    Returns
    -------
    ndarray of float64 of the shape of ``state``
        ``(dh/dt, dy/dt, dw/dt)``.

    Raises
    ------
    InvalidArrayError
        ``state`` is non-numeric, has NaN/Inf or its first axis is not of length 3.
    TheoryInputError
        A rate or ``dx2`` is not > 0, ``dy2`` is negative, or some ``h`` is not > 0.

    Notes
    -----
    docs/dynamics.md §1.2 (from the authors' code ``simulate.der``)::

        dh/dt = - eta_h dx2 w
        dy/dt = - w (eta_y h + eta_h dx2 y/h)
        dw/dt = - (1/2) eta_y h (3w - y + dy2) - (1/2) eta_h dx2 (y + w) w / h

    The y and w equations use the closure ``Dy Dyᵀ ≈ dyhat dyhatᵀ / ||dh||²`` (exact for 1-D
    outputs when the decoder row is parallel to ``dh``).

    Examples
    --------
    >>> two_point_rhs([1.0, 0.25, 0.25], eta_h=0.1, eta_y=0.1, dx2=1.0, dy2=0.5)
    array([-0.025  , -0.03125, -0.05625])
    """
    s = as_float_array(state, "state")
    if s.shape[0] != 3:
        msg = f"state must have shape (3,) or (3, n_pairs) for (h, y, w); got shape {s.shape}."
        raise InvalidArrayError(msg)
    eh = check_positive(eta_h, "eta_h") * check_positive(dx2, "dx2")
    ey = check_positive(eta_y, "eta_y")
    dy2f = check_nonnegative(dy2, "dy2")
    check_positive_array(s[0], "h")
    return np.stack(_rhs(s[0], s[1], s[2], eh, ey, dy2f))


def simulate_two_point(
    h0: float,
    y0: float,
    w0: float,
    eta_h: float,
    eta_y: float,
    dx2: float,
    dy2: float,
    t: npt.ArrayLike,
    *,
    method: str = "Radau",
    rtol: float = 1e-10,
    atol: float = 1e-13,
    max_nfev: int | None = None,
) -> TwoPointTrajectory:
    """Integrate the two-point ODEs from ``(h0, y0, w0)`` at ``t[0]`` and return them on ``t``.

    Parameters
    ----------
    h0 : float
        Initial squared representational distance (> 0).
    y0 : float
        Initial squared prediction distance (>= 0).
    w0 : float
        Initial misalignment ``dyhat·(dyhat - dy)``.
    eta_h, eta_y : float
        Effective rates (> 0), per optimizer step.
    dx2 : float
        Squared input distance (> 0).
    dy2 : float
        Squared target distance (>= 0).
    t : array_like of shape (n_times,)
        Strictly increasing times in optimizer steps, ``n_times >= 2``; ``t[0]`` is the start.
    method : str, default "Radau"
        `scipy.integrate.solve_ivp` method; use a stiff one ("Radau", "BDF", "LSODA") because the
        ``y/h`` terms are stiff when ``h -> 0``.
    rtol, atol : float, default 1e-10, 1e-13
        Tolerances passed to `scipy.integrate.solve_ivp`.
    max_nfev : int, optional
        Give up (`OdeIntegrationError`) after this many right-hand-side calls; bounds the work of
        pathological rates inside a fit (a typical solution needs a few hundred).

    Returns
    -------
    TwoPointTrajectory
        ``t``, ``h``, ``y``, ``w`` and ``a = y - w``, each of shape (n_times,).

    Raises
    ------
    InvalidArrayError
        ``t`` is not 1-D, has fewer than 2 times, NaN/Inf, or is not strictly increasing.
    TheoryInputError
        A rate, ``dx2`` or ``h0`` is not > 0, ``y0`` or ``dy2`` is negative, or ``w0`` is NaN/Inf.
    OdeIntegrationError
        `scipy.integrate.solve_ivp` reports failure (its message is included), or the
        integration needed more than ``max_nfev`` right-hand-side calls.

    Notes
    -----
    docs/dynamics.md §1.2 and §1.5 (the authors integrate with Radau). ``(h0, y0, w0)`` should come
    from real vectors, i.e. ``a0 = y0 - w0`` obeys ``a0² <= y0 dy2`` (Cauchy-Schwarz); this is not
    checked. The solution is meaningful only while ``h`` stays > 0.

    Examples
    --------
    >>> traj = simulate_two_point(0.0025, 6.25e-6, -0.0017615, 2.5e-3, 2.5e-3, 1.0, 0.5,
    ...                           t=[0.0, 20000.0])
    >>> round(float(traj.h[-1]), 4), round(float(traj.y[-1]), 4)
    (0.7071, 0.5)
    """
    tf = as_float_array(t, "t")
    if tf.ndim != 1 or tf.size < 2:
        msg = f"t must be 1-D with at least 2 times; got shape {tf.shape}."
        raise InvalidArrayError(msg)
    if np.any(np.diff(tf) <= 0.0):
        msg = "t must be strictly increasing; got a non-increasing step."
        raise InvalidArrayError(msg)
    h0f = check_positive(h0, "h0")
    y0f = check_nonnegative(y0, "y0")
    w0f = as_real(w0, "w0")
    if not np.isfinite(w0f):
        msg = f"w0 must be a finite number; got {w0!r}."
        raise TheoryInputError(msg)
    eh = check_positive(eta_h, "eta_h") * check_positive(dx2, "dx2")
    ey = check_positive(eta_y, "eta_y")
    dy2f = check_nonnegative(dy2, "dy2")

    calls = 0

    def fun(_t: float, s: F64) -> tuple[Any, Any, Any]:
        nonlocal calls
        calls += 1
        if max_nfev is not None and calls > max_nfev:
            msg = f"the two-point ODEs needed more than max_nfev={max_nfev} evaluations."
            raise OdeIntegrationError(msg)
        return _rhs(s[0], s[1], s[2], eh, ey, dy2f)

    def jac(_t: float, s: F64) -> F64:
        return _jac(s[0], s[1], s[2], eh, ey, dy2f)

    sol = solve_ivp(
        fun,
        (float(tf[0]), float(tf[-1])),
        np.array([h0f, y0f, w0f]),
        method=method,
        jac=jac if method in ("Radau", "BDF", "LSODA") else None,
        t_eval=tf,
        rtol=rtol,
        atol=atol,
    )
    if not sol.success:
        msg = f"solve_ivp must integrate the two-point ODEs; got failure: {sol.message}"
        raise OdeIntegrationError(msg)
    h, y, w = (np.asarray(v, dtype=np.float64) for v in sol.y)
    return TwoPointTrajectory(t=tf.copy(), h=h, y=y, w=w, a=y - w)


def mean_output_loss(
    t: npt.ArrayLike,
    y: npt.ArrayLike,
    w: npt.ArrayLike,
    dy2: float,
    m0: float = 0.0,
    eta_ybar: float = 0.0,
) -> F64:
    """Return the train loss ``L(t)`` of criterion ``0.5*F.mse_loss`` on two points, 1-D output.

    Parameters
    ----------
    t : array_like of shape (n_times,)
        Time in optimizer steps.
    y : array_like of shape (n_times,)
        Squared prediction distance at each time.
    w : array_like of shape (n_times,)
        Misalignment at each time.
    dy2 : float
        Squared target distance (>= 0).
    m0 : float, default 0.0
        ``||mean prediction - mean target||²`` at ``t = 0`` (>= 0); 0 for centred, bias-free nets.
    eta_ybar : float, default 0.0
        Effective rate (>= 0) of the mean output.

    Returns
    -------
    ndarray of float64 of shape (n_times,)
        ``L(t) = (1/4) [2 m0 exp(-2 eta_ybar t) + w + (dy2 - y)/2]``.

    Raises
    ------
    InvalidArrayError
        ``t``, ``y`` or ``w`` is non-numeric or has NaN/Inf.
    ShapeMismatchError
        ``t``, ``y`` and ``w`` differ in shape.
    TheoryInputError
        ``dy2``, ``m0`` or ``eta_ybar`` is negative or not finite.

    Notes
    -----
    docs/dynamics.md §1.2 (from the authors' code ``simulate.loss``), using
    ``||dyhat - dy||² = 2w - y + dy2``. The squared mean-output error decays as
    ``exp(-2 eta_ybar t)``. Other criteria rescale ``L`` (see §1.4).

    Examples
    --------
    >>> mean_output_loss([0.0], y=[0.0], w=[0.0], dy2=0.5)
    array([0.0625])
    """
    tf = as_float_array(t, "t", min_ndim=0)
    yf = as_float_array(y, "y", min_ndim=0)
    wf = as_float_array(w, "w", min_ndim=0)
    if not (tf.shape == yf.shape == wf.shape):
        msg = (
            "t, y and w must have the same shape; "
            f"got t.shape={tf.shape}, y.shape={yf.shape}, w.shape={wf.shape}."
        )
        raise ShapeMismatchError(msg)
    dy2f = check_nonnegative(dy2, "dy2")
    m0f = check_nonnegative(m0, "m0")
    eb = check_nonnegative(eta_ybar, "eta_ybar")
    return 0.25 * (2.0 * m0f * np.exp(-2.0 * eb * tf) + wf + 0.5 * (dy2f - yf))
