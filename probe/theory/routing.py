"""Exact reduced dynamics of the gated routing network (Saxe, Sodhani & Lewallen 2022).

The equations are in docs/dynamics.md §3.3.

Per mode a, the shared-layer strength ``b_h`` obeys one separable ODE (`hidden_rate`); the module
strengths follow from it (`io_strength`). Also: the time to reach a strength (`time_to_strength`,
`half_time`), the fixed point (`final_hidden_strength`), trajectories (`routing_trajectory`), the
loss on the reduced manifold (`reduced_loss`, `initial_loss`) and the time constant (`routing_tau`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.integrate import quad, solve_ivp

from probe.errors import InvalidArrayError, OdeIntegrationError, TheoryInputError
from probe.theory.effective_closed import check_positive
from probe.validation import as_float_array, check_int

__all__ = [
    "RoutingTrajectory",
    "final_hidden_strength",
    "half_time",
    "hidden_rate",
    "initial_loss",
    "io_strength",
    "mode_strengths",
    "reduced_loss",
    "routing_c0",
    "routing_tau",
    "routing_trajectory",
    "time_to_strength",
]

F64 = npt.NDArray[np.float64]


def routing_tau(lr: float, n_items: int = 4, d_out: int = 7) -> float:
    """Return ``tau = n_items d_out / (2 lr)`` in optimizer steps (docs/dynamics.md §2.2, §3.3).

    This is the time constant of full-batch SGD at rate ``lr`` on a loss that sums
    ``F.mse_loss`` (mean over items x outputs) over paths: 14/lr for the §3.3 task.

    Raises
    ------
    TheoryInputError
        ``lr`` is not > 0, or a count is not a positive int.

    Examples
    --------
    >>> routing_tau(0.02)
    700.0
    """
    for name, v in (("n_items", n_items), ("d_out", d_out)):
        check_int(v, name, error=TheoryInputError)
    return n_items * d_out / (2.0 * check_positive(lr, "lr"))


def routing_c0(b0: float, M: int = 7) -> float:
    """Return ``c0 = (M - 1) b0²``, so that ``M b_io² = b_h² + c0`` from the equal init ``b0``.

    Examples
    --------
    >>> round(routing_c0(0.08), 6)
    0.0384
    """
    return (_modules(M) - 1) * check_positive(b0, "b0") ** 2


def mode_strengths(Y: npt.ArrayLike) -> F64:
    """Return the singular values ``s`` of ``Y^T`` (descending), the mode strengths for ``X = I``.

    Parameters
    ----------
    Y : array_like of shape (n_items, d_out)
        One target row per one-hot item.

    Returns
    -------
    ndarray of shape (min(n_items, d_out),)

    Examples
    --------
    >>> mode_strengths([[6, 4, 0, 3, 0, 0, 0], [6, 4, 0, 0, 3, 0, 0],
    ...                 [6, 0, 4, 0, 0, 3, 0], [6, 0, 4, 0, 0, 0, 3]]).round(4)
    array([13.6015,  6.4031,  3.    ,  3.    ])
    """
    arr = as_float_array(Y, "Y", min_ndim=2)
    if arr.ndim != 2:
        msg = f"Y must be 2-D (n_items, d_out); got shape {arr.shape}."
        raise InvalidArrayError(msg)
    return np.linalg.svd(arr.T, compute_uv=False).astype(np.float64, copy=False)


def io_strength(b_h: npt.ArrayLike, b0: float, M: int = 7) -> F64:
    """Return ``b_in = b_out = sqrt((b_h² + c0) / M)`` (the conserved quantities of §3.3)."""
    bh = as_float_array(b_h, "b_h", min_ndim=0)
    return np.sqrt((bh**2 + routing_c0(b0, M)) / _modules(M))


def hidden_rate(
    b_h: npt.ArrayLike, s: npt.ArrayLike, b0: float, tau: float, M: int = 7, K: int = 4
) -> F64:
    """Return ``db_h/dt = K (b_h² + c0)(s - b_h (b_h² + c0)/M) / tau`` per mode (§3.3).

    Parameters
    ----------
    b_h : array_like
        Shared-layer strength per mode (broadcast with ``s``).
    s : array_like
        Mode strengths (singular values of the gated input-output correlation).
    b0 : float
        Initial strength of every weight (equal, balanced init).
    tau : float
        Time constant in optimizer steps (`routing_tau`).
    M, K : int
        Input modules, and trained outputs per input (= trained inputs per output).

    Returns
    -------
    ndarray
        Rate per optimizer step, of the broadcast shape.

    Notes
    -----
    From ``tau db_h/dt = M K b_in b_out (s - shat)`` with ``shat = b_out b_h b_in`` and
    ``M b_in² = M b_out² = b_h² + c0``; the shared layer sums the gradient of all MK trained paths.
    """
    bh = as_float_array(b_h, "b_h", min_ndim=0)
    sa = as_float_array(s, "s", min_ndim=0)
    c0, m, k = routing_c0(b0, M), _modules(M), _modules(K, "K")
    return k * (bh**2 + c0) * (sa - bh * (bh**2 + c0) / m) / check_positive(tau, "tau")


def final_hidden_strength(s: npt.ArrayLike, b0: float, M: int = 7) -> F64:
    """Return the fixed point ``b_h_inf``: the real root of ``b (b² + c0) = M s``.

    Parameters
    ----------
    s : array_like
        Mode strengths (>= 0).
    b0 : float
        Initial strength (sets ``c0``).
    M : int
        Input modules.

    Returns
    -------
    ndarray of the shape of ``s``
        ``≈ (M s)^{1/3}`` for small ``b0``.

    Raises
    ------
    InvalidArrayError
        A negative strength.

    Notes
    -----
    Cardano's formula for ``b³ + c0 b - M s = 0``: with ``c0 >= 0`` the cubic is increasing, so
    the root is unique, ``cbrt(q + r) + cbrt(q - r)`` with ``q = M s / 2``,
    ``r = sqrt(q² + (c0/3)³)``; one Newton step polishes it to machine precision.

    Examples
    --------
    >>> final_hidden_strength(np.sqrt([185.0, 41.0, 9.0]), 0.08).round(4)
    array([4.5635, 3.5486, 2.7543])
    """
    sa = _strengths(s)
    c0, m = routing_c0(b0, M), _modules(M)
    q = m * sa / 2.0
    r = np.sqrt(q**2 + (c0 / 3.0) ** 3)
    b = np.cbrt(q + r) + np.cbrt(q - r)
    return b - (b**3 + c0 * b - m * sa) / (3.0 * b**2 + c0)


def time_to_strength(
    b: npt.ArrayLike, s: npt.ArrayLike, b0: float, tau: float, M: int = 7, K: int = 4
) -> F64:
    """Return the time at which ``b_h`` first equals ``b`` on the trajectory from ``b0``.

    ``t(b) = tau ∫_{b0}^{b} dx / [K (x² + c0)(s - x (x² + c0) / M)]`` (docs/dynamics.md §3.3).

    Parameters
    ----------
    b : array_like
        Target strengths, between ``b0`` (included) and the fixed point (excluded); broadcast
        with ``s``.
    s, b0, tau, M, K
        As in `hidden_rate`.

    Returns
    -------
    ndarray
        Optimizer steps (continuous time), of the broadcast shape.

    Raises
    ------
    TheoryInputError
        A ``b`` that the trajectory from ``b0`` never reaches.

    Notes
    -----
    Evaluated with `scipy.integrate.quad`, like the authors' notebook (which writes the rates as
    K/M², K/M with dt = 3.5 lr; docs/dynamics.md §3.3). Discrete GD lags it by about 1-3 steps
    (docs/dynamics.md §4).

    Examples
    --------
    >>> s = np.sqrt(185.0)
    >>> float(time_to_strength(final_hidden_strength(s, 0.08) / 2, s, 0.08, 700.0).round(2))
    72.43
    """
    bb, sa = np.broadcast_arrays(as_float_array(b, "b", min_ndim=0), _strengths(s))
    t0 = check_positive(tau, "tau")
    b0f, c0, m, k = check_positive(b0, "b0"), routing_c0(b0, M), _modules(M), _modules(K, "K")
    b_inf = final_hidden_strength(sa, b0f, M)
    bad = ((bb - b0f) * (b_inf - bb) < 0) | ((bb == b_inf) & (bb != b0f))
    if np.any(bad):
        i = np.flatnonzero(bad.ravel())[0]
        msg = (
            f"b must lie between b0={b0f} and the fixed point b_h_inf (excluded); got "
            f"b={bb.ravel()[i]!r} for s={sa.ravel()[i]!r} (b_h_inf={b_inf.ravel()[i]:.6g})."
        )
        raise TheoryInputError(msg)

    def one(bi: float, si: float) -> float:
        def f(x: float) -> float:
            return 1.0 / (k * (x**2 + c0) * (si - x * (x**2 + c0) / m))

        return t0 * quad(f, b0f, bi, epsabs=0.0, epsrel=1e-11, limit=200)[0]

    return np.vectorize(one, otypes=[np.float64])(bb, sa)


def half_time(s: npt.ArrayLike, b0: float, tau: float, M: int = 7, K: int = 4) -> F64:
    """Return the time at which ``b_h`` reaches half its fixed point ``b_h_inf / 2``.

    Raises
    ------
    TheoryInputError
        ``b0`` is not below ``b_h_inf / 2`` (the half point is never crossed).

    Examples
    --------
    >>> half_time(np.sqrt([185.0, 41.0, 9.0]), 0.08, 700.0).round(2)
    array([ 72.43, 150.69, 312.91])
    """
    half = final_hidden_strength(s, b0, M) / 2.0
    if np.any(half <= check_positive(b0, "b0")):
        msg = (
            f"b0 must be below half the fixed point; got b0={b0!r} and "
            f"b_h_inf/2 = {np.round(half, 6).tolist()}. Use a smaller init."
        )
        raise TheoryInputError(msg)
    return time_to_strength(half, s, b0, tau, M, K)


@dataclass
class RoutingTrajectory:
    """Reduced routing dynamics sampled at times ``t``.

    Attributes
    ----------
    t : ndarray of shape (n_times,)
        Optimizer steps.
    b_h : ndarray of shape (n_times, n_modes)
        Shared-layer strength per mode.
    b_io : ndarray of shape (n_times, n_modes)
        Input- and output-module strength ``b_in = b_out``.
    shat : ndarray of shape (n_times, n_modes)
        Path strength ``b_out b_h b_in``.
    loss : ndarray of shape (n_times,)
        `reduced_loss` of ``shat``.
    """

    t: F64
    b_h: F64
    b_io: F64
    shat: F64
    loss: F64


def routing_trajectory(
    t: npt.ArrayLike, s: npt.ArrayLike, b0: float, tau: float, M: int = 7, K: int = 4
) -> RoutingTrajectory:
    """Integrate the reduced dynamics from ``b_h(0) = b0`` for every mode at once.

    Parameters
    ----------
    t : array_like of shape (n_times,)
        Times >= 0 in optimizer steps, strictly increasing.
    s : array_like of shape (n_modes,)
        Mode strengths.
    b0, tau, M, K
        As in `hidden_rate`.

    Returns
    -------
    RoutingTrajectory

    Raises
    ------
    InvalidArrayError
        ``t`` is not 1-D, has a negative time or is not strictly increasing.
    OdeIntegrationError
        `scipy.integrate.solve_ivp` fails.

    Examples
    --------
    >>> tr = routing_trajectory([0, 100, 200], np.sqrt([185.0, 41.0, 9.0, 9.0]), 0.08, 700.0)
    >>> tr.loss.round(3)
    array([243.973,  58.845,  17.904])
    """
    tf = as_float_array(t, "t")
    if tf.ndim != 1 or np.any(tf < 0) or np.any(np.diff(tf) <= 0):
        msg = f"t must be 1-D, >= 0 and strictly increasing; got shape {tf.shape}."
        raise InvalidArrayError(msg)
    sa = np.atleast_1d(_strengths(s))
    b0f = check_positive(b0, "b0")

    def fun(_t: float, y: F64) -> F64:
        return hidden_rate(y, sa, b0f, tau, M, K)

    sol = solve_ivp(
        fun,
        (0.0, float(tf[-1])),
        np.full(sa.shape, b0f),
        method="DOP853",
        t_eval=tf,
        rtol=1e-10,
        atol=1e-12,
    )
    if not sol.success:
        msg = f"solve_ivp must integrate the routing ODE; got failure: {sol.message}"
        raise OdeIntegrationError(msg)
    b_h = sol.y.T
    b_io = io_strength(b_h, b0f, M)
    shat = b_io**2 * b_h
    return RoutingTrajectory(tf.copy(), b_h, b_io, shat, reduced_loss(shat, sa))


def reduced_loss(shat: npt.ArrayLike, s: npt.ArrayLike) -> F64:
    """Return ``Σ_a (s_a - shat_a)²`` over the last axis: the §3.3 loss on the reduced manifold.

    Notes
    -----
    The gated loss sums ``F.mse_loss`` over the MK trained paths, each giving
    ``Σ_a (s_a - shat_a)² / (n_items d_out)``; for §3.3, MK = 28 = n_items d_out, so the factor
    is 1. Multiply by ``MK / (n_items d_out)`` for other settings.
    """
    return np.sum((_strengths(s) - as_float_array(shat, "shat", min_ndim=0)) ** 2, axis=-1)


def initial_loss(s: npt.ArrayLike, b0: float) -> float:
    """Return the loss at the equal init ``b0``: ``Σ_a (s_a - b0³)²``.

    Examples
    --------
    >>> round(initial_loss(np.sqrt([185.0, 41.0, 9.0, 9.0]), 0.08), 3)
    243.973
    """
    return float(reduced_loss(check_positive(b0, "b0") ** 3, s))


def _modules(M: Any, name: str = "M") -> int:
    return check_int(M, name, error=TheoryInputError)


def _strengths(s: npt.ArrayLike) -> F64:
    sa = as_float_array(s, "s", min_ndim=0)
    if np.any(sa < 0):
        msg = f"s must be >= 0 (singular values); got min {float(sa.min())!r}."
        raise InvalidArrayError(msg)
    return sa
