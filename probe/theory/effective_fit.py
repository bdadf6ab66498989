"""Fit the two-point effective theory to measured trajectories (docs/dynamics.md §1.5).

`two_point_traces` turns recorded activations and outputs of a pair of probe samples into the
measured ``h, y, w`` over steps; `fit_two_point` fits the effective rates ``(eta_h, eta_y)`` of
the ODEs in `probe.theory.effective` to them; `fit_mean_output_rate` fits ``eta_ybar`` to a loss
curve.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize, minimize_scalar

from probe.errors import (
    InvalidArrayError,
    OdeIntegrationError,
    ShapeMismatchError,
    TheoryInputError,
)
from probe.theory.effective import (
    TwoPointTrajectory,
    final_distance,
    mean_output_loss,
    simulate_two_point,
)
from probe.theory.effective_closed import check_nonnegative, check_positive
from probe.validation import as_float_array

__all__ = [
    "TwoPointFit",
    "TwoPointTraces",
    "fit_mean_output_rate",
    "fit_two_point",
    "two_point_traces",
]

F64 = npt.NDArray[np.float64]
VARIABLES = ("h", "y", "w")
#: The authors' start grid of eta_y (``optimize_eta``: ``logspace(-6, 2, 100)``).
DEFAULT_GRID = np.logspace(-6, 2, 100)
# Right-hand-side calls after which one integration inside a fit scores inf: a 6000-step
# trajectory needs ~240 (LSODA); some far-off rates make LSODA crawl for minutes instead.
_MAX_NFEV = 50_000


@dataclass(frozen=True)
class TwoPointTraces:
    """Measured two-point quantities of one pair at every recorded step.

    Attributes
    ----------
    t : ndarray of float64 of shape (n_steps,)
        Optimizer steps of the snapshots.
    h, y, w : ndarray of float64 of shape (n_steps,)
        ``||dh||²``, ``||dyhat||²`` and ``dyhat·(dyhat - dy)`` (docs/dynamics.md §1.1).
    dx2, dy2 : float
        ``||x2 - x1||²`` and ``||y2 - y1||²``.
    """

    t: F64
    h: F64
    y: F64
    w: F64
    dx2: float
    dy2: float


@dataclass(frozen=True)
class TwoPointFit:
    """Fitted effective rates and how well the ODE prediction matches the measurement.

    Attributes
    ----------
    eta_h, eta_y : float
        Fitted effective rates per optimizer step (the authors' 1/tau_h, 1/tau_y).
    rho : float
        ``eta_h / eta_y``.
    sse : float
        ``sum_t (h_t - ĥ_t)² + (y_t - ŷ_t)² + (w_t - ŵ_t)²`` at the fitted rates.
    rel_error : dict of str to float
        Per variable ``max_t |measured - predicted| / max_t |measured|`` (peak-relative).
    prediction : TwoPointTrajectory
        The ODE solution at the fitted rates, on the measured steps.
    measured : TwoPointTraces
        The trajectories that were fitted.
    h_inf : float
        Closed-form final distance (§1.3) at the fitted rates from the measured start.
    n_evals : int
        ODE integrations the fit took (grid and optimiser).
    """

    eta_h: float
    eta_y: float
    rho: float
    sse: float
    rel_error: dict[str, float]
    prediction: TwoPointTrajectory
    measured: TwoPointTraces
    h_inf: float
    n_evals: int


def two_point_traces(
    acts: npt.ArrayLike,
    outputs: npt.ArrayLike,
    inputs: npt.ArrayLike,
    targets: npt.ArrayLike,
    steps: npt.ArrayLike,
    pair: tuple[int, int] = (0, 1),
) -> TwoPointTraces:
    """Return the measured ``h, y, w`` of the pair ``(i, j)`` at every snapshot.

    Parameters
    ----------
    acts : array_like of shape (n_steps, n_samples, ...)
        Hidden activations of the hooked layer at each snapshot.
    outputs : array_like of shape (n_steps, n_samples, ...)
        Model outputs at each snapshot.
    inputs : array_like of shape (n_samples, ...)
        Probe inputs (for ``dx2``).
    targets : array_like of shape (n_samples, ...)
        Regression targets, of the output's trailing shape.
    steps : array_like of shape (n_steps,)
        Optimizer step of each snapshot.
    pair : tuple of int
        Probe-sample indices ``(i, j)``; differences are ``sample j - sample i``.

    Returns
    -------
    TwoPointTraces

    Raises
    ------
    ShapeMismatchError
        The arrays disagree in their number of snapshots or samples, or the targets' shape is
        not that of one output.
    InvalidArrayError
        An array has NaN/Inf or ``pair`` is not two distinct sample indices.

    Examples
    --------
    >>> import numpy as np
    >>> acts = np.array([[[0.0, 0.0], [1.0, 1.0]]])   # 1 step, 2 samples, 2 features
    >>> out = np.array([[[0.0], [0.5]]])
    >>> tr = two_point_traces(acts, out, [[0.0], [1.0]], [[0.0], [1.0]], steps=[0])
    >>> float(tr.h[0]), float(tr.y[0]), float(tr.w[0]), tr.dx2, tr.dy2
    (2.0, 0.25, -0.25, 1.0, 1.0)
    """
    A = as_float_array(acts, "acts", min_ndim=2)
    Y = as_float_array(outputs, "outputs", min_ndim=2)
    X = as_float_array(inputs, "inputs")
    T = as_float_array(targets, "targets")
    t = as_float_array(steps, "steps")
    if not (A.shape[0] == Y.shape[0] == t.shape[0]) or A.shape[1] != Y.shape[1]:
        msg = (
            "acts, outputs and steps must agree in snapshots and samples; got acts "
            f"{A.shape}, outputs {Y.shape}, steps {t.shape}."
        )
        raise ShapeMismatchError(msg)
    if X.shape[0] != A.shape[1] or T.shape[0] != A.shape[1] or T.shape[1:] != Y.shape[2:]:
        msg = (
            f"inputs {X.shape} and targets {T.shape} must have one row per probe sample "
            f"({A.shape[1]}), targets shaped like one output {Y.shape[2:]}."
        )
        raise ShapeMismatchError(msg)
    i, j = (int(k) for k in pair)
    if i == j or not (0 <= i < A.shape[1] and 0 <= j < A.shape[1]):
        msg = f"pair must be two distinct sample indices below {A.shape[1]}; got {pair!r}."
        raise InvalidArrayError(msg)
    dh = (A[:, j] - A[:, i]).reshape(len(t), -1)
    dyhat = (Y[:, j] - Y[:, i]).reshape(len(t), -1)
    dy = (T[j] - T[i]).ravel()
    y = np.einsum("sk,sk->s", dyhat, dyhat)
    return TwoPointTraces(
        t=t,
        h=np.einsum("sk,sk->s", dh, dh),
        y=y,
        w=y - dyhat @ dy,
        dx2=float(np.sum((X[j] - X[i]) ** 2)),
        dy2=float(dy @ dy),
    )


def _simulate(
    tr: TwoPointTraces, eta_h: float, eta_y: float, rtol: float, method: str
) -> TwoPointTrajectory:
    return simulate_two_point(
        tr.h[0],
        tr.y[0],
        tr.w[0],
        eta_h,
        eta_y,
        tr.dx2,
        tr.dy2,
        tr.t,
        method=method,
        rtol=rtol,
        atol=rtol * 1e-3,
        max_nfev=_MAX_NFEV,
    )


def fit_two_point(
    traces: TwoPointTraces,
    *,
    grid: npt.ArrayLike = DEFAULT_GRID,
    method: str = "LSODA",
    rtol: float = 1e-8,
    maxiter: int = 400,
    rho_factors: npt.ArrayLike = (1.0,),
) -> TwoPointFit:
    """Fit ``(eta_h, eta_y)`` of the two-point ODEs to measured ``h, y, w`` by least squares.

    Parameters
    ----------
    traces : TwoPointTraces
        Measured trajectories, e.g. from `two_point_traces`; the ODE starts at their first entry.
    grid : array_like of shape (n_grid,)
        Start grid of ``eta_y`` (> 0), each paired with ``eta_h = eta_y h_end² / (dx2 dy2)``.
    method : str, default "LSODA"
        Stiff-capable `scipy.integrate.solve_ivp` method of every integration.
    rtol : float, default 1e-8
        Relative tolerance of the integration (absolute tolerance ``rtol * 1e-3``).
    maxiter : int, default 400
        Iterations of the Nelder-Mead refinement.
    rho_factors : array_like of shape (n_factors,), default (1.0,)
        Each grid point is also tried with ``eta_h`` multiplied by these factors (> 0). The
        default is the authors' 1-D start; e.g. ``np.logspace(-3, 3, 7)`` makes it a 2-D start
        grid, which finds the optimum where the rich-limit guess is far off (a representation
        distance that shrinks under a large init).

    Returns
    -------
    TwoPointFit

    Raises
    ------
    TheoryInputError
        ``h`` is not > 0 at the start, ``dx2`` or ``dy2`` is not > 0, or ``grid`` or
        ``rho_factors`` has a non-positive entry.
    InvalidArrayError
        Fewer than 3 snapshots.
    OdeIntegrationError
        No rate on the grid gives an ODE solution.

    Notes
    -----
    Follows the authors' ``optimize_eta`` (docs/dynamics.md §1.5): SSE over ``h, y, w`` with equal
    weights, ODE started at the measured ``(h0, y0, w0)``, a 1-D grid over ``eta_y`` with ``eta_h``
    tied to it by the rich-limit relation ``rho = h_end² / (dx2 dy2)``, then a local optimiser.
    Deviation: the optimiser is Nelder-Mead over ``(log eta_h, log eta_y)`` instead of BFGS in
    linear scale; rates differ by orders of magnitude between settings and the SSE has no
    analytic gradient. Integration uses LSODA (switches to a stiff BDF method when ``h -> 0``
    makes the system stiff) rather than the authors' Radau: on a 6000-step V1-2 trajectory it
    needs ~240 right-hand-side calls against Radau's ~2200, with the same solution to ``rtol``.
    Rates at which the solver fails score ``inf``. With ``rho_factors`` other than ``(1.0,)``
    the start grid is 2-D, another deviation (the grid costs ``n_grid * n_factors`` integrations).
    """
    if traces.t.size < 3:
        msg = f"fitting needs at least 3 snapshots; got {traces.t.size}."
        raise InvalidArrayError(msg)
    check_positive(traces.h[0], "h at the first snapshot")
    dx2 = check_positive(traces.dx2, "dx2")
    dy2 = check_positive(traces.dy2, "dy2")
    g = as_float_array(grid, "grid")
    if np.any(g <= 0):
        msg = "grid must hold eta_y values > 0; got a non-positive entry."
        raise TheoryInputError(msg)
    measured = np.stack([traces.h, traces.y, traces.w])
    n_evals = 0

    def sse(log_eta: F64) -> float:
        nonlocal n_evals
        n_evals += 1
        try:
            with np.errstate(all="ignore"):  # rates far off the data drive h to 0: scored inf
                eta_h, eta_y = np.exp(log_eta)
                p = _simulate(traces, eta_h, eta_y, rtol, method)
        except (OdeIntegrationError, TheoryInputError):
            return np.inf
        r = np.stack([p.h, p.y, p.w]) - measured
        value = float(np.sum(r * r))
        return value if np.isfinite(value) else np.inf

    factors = as_float_array(rho_factors, "rho_factors")
    if np.any(factors <= 0):
        msg = "rho_factors must be > 0; got a non-positive entry."
        raise TheoryInputError(msg)
    ratio = max(traces.h[-1] ** 2 / (dx2 * dy2), 1e-12)
    starts = [np.log([ey * ratio * k, ey]) for ey in g for k in factors]
    scores = [sse(s) for s in starts]
    best = int(np.argmin(scores))
    if not np.isfinite(scores[best]):
        msg = "the two-point ODEs could not be integrated at any rate of the grid."
        raise OdeIntegrationError(msg)
    res: Any = minimize(
        sse,
        starts[best],
        method="Nelder-Mead",
        options={"xatol": 1e-6, "fatol": 1e-12 * max(scores[best], 1e-30), "maxiter": maxiter},
    )
    log_eta = res.x if res.fun <= scores[best] else starts[best]
    eta_h, eta_y = (float(v) for v in np.exp(log_eta))
    pred = _simulate(traces, eta_h, eta_y, rtol, method)
    rel = {
        k: float(np.max(np.abs(m - p)) / max(np.max(np.abs(m)), 1e-300))
        for k, m, p in zip(VARIABLES, measured, (pred.h, pred.y, pred.w), strict=True)
    }
    resid = np.stack([pred.h, pred.y, pred.w]) - measured
    return TwoPointFit(
        eta_h=eta_h,
        eta_y=eta_y,
        rho=eta_h / eta_y,
        sse=float(np.sum(resid * resid)),
        rel_error=rel,
        prediction=pred,
        measured=traces,
        h_inf=float(final_distance(traces.h[0], traces.y[0], eta_h, eta_y, traces.dx2, traces.dy2)),
        n_evals=n_evals,
    )


def fit_mean_output_rate(
    t: npt.ArrayLike,
    loss: npt.ArrayLike,
    y: npt.ArrayLike,
    w: npt.ArrayLike,
    dy2: float,
    m0: float,
) -> float:
    """Fit ``eta_ybar`` to a train-loss curve by 1-D least squares against `mean_output_loss`.

    Parameters
    ----------
    t, loss, y, w : array_like of shape (n_times,)
        Steps, measured train loss (criterion ``0.5*F.mse_loss`` on the two points) and the
        measured ``y``, ``w`` at those steps.
    dy2 : float
        Squared target distance (>= 0).
    m0 : float
        ``||mean prediction - mean target||²`` at the first step (> 0: with 0 the rate is not
        identifiable).

    Returns
    -------
    float
        ``eta_ybar`` per optimizer step.

    Raises
    ------
    ShapeMismatchError
        The arrays differ in shape.
    TheoryInputError
        ``m0`` is not > 0 or ``dy2`` is negative.

    Notes
    -----
    docs/dynamics.md §1.5: a separate fit of the loss curve. The search runs over
    ``log eta_ybar`` in ``[-30, 10]`` (bounded Brent).
    """
    arrays = [as_float_array(v, name) for v, name in ((t, "t"), (loss, "loss"), (y, "y"), (w, "w"))]
    if len({a.shape for a in arrays}) != 1:
        msg = f"t, loss, y and w must have the same shape; got {[a.shape for a in arrays]}."
        raise ShapeMismatchError(msg)
    tf, lf, yf, wf = arrays
    check_nonnegative(dy2, "dy2")
    check_positive(m0, "m0")

    def sse(log_eta: float) -> float:
        pred = mean_output_loss(tf - tf[0], yf, wf, dy2, m0, float(np.exp(log_eta)))
        return float(np.sum((pred - lf) ** 2))

    res = minimize_scalar(sse, bounds=(-30.0, 10.0), method="bounded", options={"xatol": 1e-8})
    return float(np.exp(res.x))
