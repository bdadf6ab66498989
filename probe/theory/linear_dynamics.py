"""Deep linear network dynamics (Saxe, McClelland & Ganguli 2014; docs/dynamics.md §2).

Mode strength trajectories `mode_trajectory` (Eq. 12) and `deep_mode_trajectory` (Eq. 15),
`time_to_learn` (Eq. 11) and `half_time`; readouts of mode strengths from weights
(`weight_mode_strengths`) or from captured hidden activations alone (`gram_mode_strengths`);
`half_times` of measured trajectories. The gated routing network's reduced dynamics and fixed
point (docs/dynamics.md §3.3) are in `probe.theory.routing`.

Conventions: ``t`` counts optimizer steps, ``tau`` is the time constant in steps (``1/lr`` for
SGD on ``0.5 * SSE`` summed over examples; ``P N_out / (2 lr)`` for ``F.mse_loss``: docs/dynamics.md
§2.2), ``s`` the singular values of the input-output correlation ``S31 = sum_mu y x^T`` and ``u``
the strength ``u_a = u_a^T W32 W21 v_a`` of mode ``a`` (balanced init: ``u = a b``).
"""

from __future__ import annotations

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
from probe.theory.effective_closed import check_positive
from probe.validation import as_float_array, check_int

__all__ = [
    "deep_mode_trajectory",
    "gram_mode_strengths",
    "half_time",
    "half_times",
    "mode_trajectory",
    "time_to_learn",
    "weight_mode_strengths",
]

F64 = npt.NDArray[np.float64]


def _positive_array(value: Any, name: str) -> F64:
    a = as_float_array(value, name, min_ndim=0)
    if np.any(a <= 0):
        msg = f"{name} must be > 0; got {value!r}."
        raise TheoryInputError(msg)
    return a


def _check_u0(u0: F64, s: F64) -> None:
    if np.any(u0 >= s):
        msg = f"u0 must be below s (the mode is learned from small to s); got u0={u0}, s={s}."
        raise TheoryInputError(msg)


def mode_trajectory(t: npt.ArrayLike, s: npt.ArrayLike, u0: npt.ArrayLike, tau: float) -> F64:
    """Return ``u(t)`` of each mode for a 3-layer deep linear net from balanced small init (Eq. 12).

    Parameters
    ----------
    t : array_like of shape (n_times,)
        Times in optimizer steps.
    s : array_like of shape (n_modes,) or scalar
        Singular values (> 0) of the input-output correlation.
    u0 : array_like broadcastable to ``s``
        Initial mode strengths, ``0 < u0 < s``.
    tau : float
        Time constant in steps (> 0).

    Returns
    -------
    ndarray of float64 of shape (n_times, n_modes) (or (n_times,) for scalar ``s``)
        ``u(t) = s e^{2st/tau} / (e^{2st/tau} - 1 + s/u0)``.

    Raises
    ------
    TheoryInputError
        ``s``, ``u0`` or ``tau`` is not > 0, or ``u0 >= s``.

    Examples
    --------
    >>> round(float(mode_trajectory([349.9], 13.6015, 1e-3, 1000.0)[0]), 1)  # at t_1/2: s/2
    6.8
    """
    tf = as_float_array(t, "t")
    sf = _positive_array(s, "s")
    u0f = np.broadcast_to(_positive_array(u0, "u0"), sf.shape)
    taf = check_positive(tau, "tau")
    _check_u0(u0f, sf)
    x = 2.0 * np.multiply.outer(tf, sf) / taf
    # e^x / (e^x - 1 + s/u0) written with e^-x so that large x does not overflow
    return sf / (1.0 + (sf / u0f - 1.0) * np.exp(-x))


def time_to_learn(
    u0: npt.ArrayLike, uf: npt.ArrayLike, s: npt.ArrayLike, tau: float
) -> F64 | float:
    """Return the time for a mode to grow from ``u0`` to ``uf`` (Eq. 11), in steps.

    ``t = tau/(2s) ln[uf (s - u0) / (u0 (s - uf))]``, for ``0 < u0 < s`` and ``0 < uf < s``.

    Raises
    ------
    TheoryInputError
        An argument is not > 0, or ``u0`` or ``uf`` is not below ``s``.

    Examples
    --------
    >>> round(float(time_to_learn(1e-3, 6.80075, 13.6015, 1000.0)), 1)
    349.9
    """
    sf = _positive_array(s, "s")
    u0f, uff = _positive_array(u0, "u0"), _positive_array(uf, "uf")
    _check_u0(u0f, sf)
    if np.any(uff >= sf):
        msg = f"uf must be below s (u only approaches s); got uf={uf!r}, s={s!r}."
        raise TheoryInputError(msg)
    out = check_positive(tau, "tau") / (2 * sf) * np.log(uff * (sf - u0f) / (u0f * (sf - uff)))
    return float(out) if np.ndim(out) == 0 else out


def half_time(s: npt.ArrayLike, u0: npt.ArrayLike, tau: float) -> F64 | float:
    """Return ``t_1/2 = tau/(2s) ln(s/u0 - 1)``, when ``u`` reaches ``s/2`` (Eq. 11).

    Examples
    --------
    >>> [round(float(v), 1) for v in half_time([13.6015, 6.4031, 3.0], 1e-3, 1000.0)]
    [349.9, 684.4, 1334.3]
    """
    sf = _positive_array(s, "s")
    return time_to_learn(u0, sf / 2.0, sf, tau)


def deep_mode_trajectory(
    t: npt.ArrayLike, s: float, u0: float, tau: float, n_layers: int, *, rtol: float = 1e-10
) -> F64:
    """Integrate ``tau du/dt = (N_l - 1) u^{2 - 2/(N_l - 1)} (s - u)`` (Eq. 15) for one mode.

    Parameters
    ----------
    t : array_like of shape (n_times,)
        Increasing times in steps; ``u(t[0]) = u0``.
    s, u0, tau : float
        Singular value, initial strength (``0 < u0 < s``) and time constant (> 0).
    n_layers : int
        ``N_l``: layers counted with the input layer (``N_l - 1`` weight matrices; >= 3).
        ``N_l = 3`` is Eq. 10, whose solution is `mode_trajectory`.
    rtol : float
        Relative tolerance of the LSODA integration.

    Returns
    -------
    ndarray of float64 of shape (n_times,)

    Raises
    ------
    TheoryInputError
        An argument is out of range (see above).
    InvalidArrayError
        ``t`` is not increasing or has fewer than 2 times.
    OdeIntegrationError
        The solver failed.

    Notes
    -----
    Equal per-layer strengths ``a_i = u^{1/(N_l - 1)}`` (balanced decoupled init) are assumed.
    """
    tf = as_float_array(t, "t")
    if tf.ndim != 1 or tf.size < 2 or np.any(np.diff(tf) <= 0):
        msg = f"t must be 1-D, increasing, with at least 2 times; got shape {tf.shape}."
        raise InvalidArrayError(msg)
    sf, u0f, taf = (check_positive(v, n) for v, n in ((s, "s"), (u0, "u0"), (tau, "tau")))
    _check_u0(np.asarray(u0f), np.asarray(sf))
    hint = "Count the input, hidden and output layers."
    check_int(n_layers, "n_layers", minimum=3, error=TheoryInputError, hint=hint)
    k, p = n_layers - 1, 2.0 - 2.0 / (n_layers - 1)

    def rhs(_t: float, u: F64) -> F64:
        return k * np.abs(u) ** p * (sf - u) / taf

    sol = solve_ivp(rhs, (tf[0], tf[-1]), [u0f], method="LSODA", t_eval=tf, rtol=rtol, atol=1e-14)
    if not sol.success:
        msg = f"solve_ivp must integrate the deep-linear mode ODE; got failure: {sol.message}"
        raise OdeIntegrationError(msg)
    return np.asarray(sol.y[0], dtype=np.float64)


def weight_mode_strengths(
    W32: npt.ArrayLike, W21: npt.ArrayLike, U: npt.ArrayLike, V: npt.ArrayLike
) -> F64:
    """Return ``diag(U^T W32 W21 V)``: the strength of each mode in the network's map.

    Parameters
    ----------
    W32 : array_like of shape (..., n_out, n_hidden)
    W21 : array_like of shape (..., n_hidden, n_in)
        Weights (torch convention, out x in); leading axes (e.g. snapshots) broadcast.
    U : array_like of shape (n_out, n_modes)
    V : array_like of shape (n_in, n_modes)
        Left and right singular vectors of ``S31``.

    Returns
    -------
    ndarray of float64 of shape (..., n_modes)

    Raises
    ------
    ShapeMismatchError
        The matrices do not chain.
    """
    a, b, u, v = (
        as_float_array(m, n, min_ndim=2)
        for m, n in ((W32, "W32"), (W21, "W21"), (U, "U"), (V, "V"))
    )
    if a.shape[-1] != b.shape[-2] or u.shape[0] != a.shape[-2] or v.shape[0] != b.shape[-1]:
        msg = (
            f"W32 {a.shape}, W21 {b.shape}, U {u.shape} and V {v.shape} must chain as "
            "U^T (n_out x n_hidden)(n_hidden x n_in) V."
        )
        raise ShapeMismatchError(msg)
    return np.einsum("oa,...oh,...hi,ia->...a", u, a, b, v)


def gram_mode_strengths(H: npt.ArrayLike, V: npt.ArrayLike) -> F64:
    """Return ``v_a^T (H H^T) v_a`` per mode: mode strengths from hidden activations alone (§2.3).

    Parameters
    ----------
    H : array_like of shape (..., n_items, n_hidden)
        Hidden activations of the items (one-hot or whitened inputs), e.g. ``run.acts(layer)``.
    V : array_like of shape (n_items, n_modes)
        Right singular vectors of ``S31`` in item space.

    Returns
    -------
    ndarray of float64 of shape (..., n_modes)
        ``a_a²`` of the first layer; equals ``u_a`` on the balanced decoupled manifold.

    Raises
    ------
    ShapeMismatchError
        ``H`` and ``V`` disagree in the number of items.
    """
    h = as_float_array(H, "H", min_ndim=2)
    v = as_float_array(V, "V", min_ndim=2)
    if h.shape[-2] != v.shape[0]:
        msg = f"H has {h.shape[-2]} items but V has {v.shape[0]} rows; they must match."
        raise ShapeMismatchError(msg)
    proj = np.einsum("...ih,ia->...ah", h, v)  # V^T H
    return np.einsum("...ah,...ah->...a", proj, proj)


def half_times(t: npt.ArrayLike, u: npt.ArrayLike, s: npt.ArrayLike) -> F64:
    """Return the first time each measured mode reaches ``s/2`` (linear interpolation).

    Parameters
    ----------
    t : array_like of shape (n_times,)
    u : array_like of shape (n_times, n_modes)
    s : array_like of shape (n_modes,)

    Returns
    -------
    ndarray of float64 of shape (n_modes,)
        NaN for a mode that never reaches ``s/2``.

    Raises
    ------
    ShapeMismatchError
        ``u`` is not (len(t), len(s)).
    """
    tf, uf, sf = as_float_array(t, "t"), as_float_array(u, "u", min_ndim=2), as_float_array(s, "s")
    if uf.shape != (tf.size, sf.size):
        msg = f"u must have shape (len(t), len(s)) = ({tf.size}, {sf.size}); got {uf.shape}."
        raise ShapeMismatchError(msg)
    out = np.full(sf.size, np.nan)
    for a in range(sf.size):
        hit = np.flatnonzero(uf[:, a] >= sf[a] / 2)
        if hit.size and hit[0] > 0:
            i = hit[0]
            frac = (sf[a] / 2 - uf[i - 1, a]) / (uf[i, a] - uf[i - 1, a])
            out[a] = tf[i - 1] + frac * (tf[i] - tf[i - 1])
        elif hit.size:
            out[a] = tf[0]
    return out
