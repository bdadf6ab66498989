import numpy as np
import pytest

import probe.theory.effective as effective
from probe.errors import (
    InvalidArrayError,
    OdeIntegrationError,
    ProbeError,
    ShapeMismatchError,
    TheoryInputError,
)
from probe.theory.effective import (
    final_distance,
    invariant,
    lazy_final_distance,
    mean_output_loss,
    rich_final_distance,
    simulate_two_point,
    two_point_rhs,
)

# V1-1 (docs/dynamics.md §5): bias-free 2-layer linear net, width 100, 1-D in/out, x = ±0.5,
# y = ±sqrt(0.5)/2, criterion 0.5*F.mse_loss, full-batch SGD lr 0.005, 20,000 steps.
LR = 0.005
ETA = LR / 2  # §1.4: 0.5*F.mse_loss, two points, d_out = 1 -> eta = lr/2
N_STEPS = 20_000
DX2, DY2 = 1.0, 0.5
V1_ROWS = [
    # (a, b), h0, y0, final h (simulation), closed-form h_inf
    ((0.05, 0.05), 0.0025, 6.25e-6, 0.70711, 0.70711),
    ((1.5, 0.02), 2.25, 9e-4, 2.45314, 2.45340),
    ((0.02, 1.5), 4e-4, 9e-4, 0.20382, 0.20380),
]


def train_two_layer(a, b, y_offset=0.0, width=100, seed=0):
    """Full-batch SGD on the V1-1 net in float64; h, y, w, loss recorded before every step.

    Returns arrays of length N_STEPS + 1 (the last entry is the state after the final step).
    """
    rng = np.random.default_rng(seed)
    r = rng.standard_normal(width)
    r /= np.linalg.norm(r)
    W1 = a * r[:, None]  # (width, 1)
    W2 = b * r[None, :]  # (1, width)
    X = np.array([[-0.5], [0.5]])
    dy = np.sqrt(DY2)
    Y = np.array([[-dy / 2], [dy / 2]]) + y_offset
    h = np.empty(N_STEPS + 1)
    yy = np.empty(N_STEPS + 1)
    w = np.empty(N_STEPS + 1)
    loss = np.empty(N_STEPS + 1)
    for step in range(N_STEPS + 1):
        H = X @ W1.T  # (2, width)
        Yh = H @ W2.T  # (2, 1)
        dh = H[1] - H[0]
        dyh = Yh[1, 0] - Yh[0, 0]
        h[step] = dh @ dh
        yy[step] = dyh * dyh
        w[step] = dyh * (dyh - dy)
        E = Yh - Y
        loss[step] = 0.5 * np.mean(E**2)
        if step == N_STEPS:
            break
        G = E / 2.0  # d(0.5 * mean over 2 points)/dYh
        gW2 = G.T @ H
        gW1 = (G @ W2).T @ X
        W1 = W1 - LR * gW1
        W2 = W2 - LR * gW2
    return h, yy, w, loss


def max_rel_error(measured, predicted):
    """Max over the run of |measured - predicted|, relative to the peak |measured| of the run."""
    return float(np.max(np.abs(measured - predicted)) / np.max(np.abs(measured)))


def crossing_time(t, x, level):
    """First time (linearly interpolated) at which the increasing series x reaches level."""
    i = int(np.argmax(x >= level))
    assert i > 0 and x[i] >= level
    return t[i - 1] + (level - x[i - 1]) / (x[i] - x[i - 1]) * (t[i] - t[i - 1])


@pytest.fixture(scope="module")
def v1_runs():
    t = np.arange(N_STEPS + 1, dtype=np.float64)
    runs = []
    for (a, b), *_ in V1_ROWS:
        h, y, w, loss = train_two_layer(a, b)
        traj = simulate_two_point(h[0], y[0], w[0], ETA, ETA, DX2, DY2, t)
        runs.append((h, y, w, loss, traj))
    return runs


@pytest.mark.parametrize("row", range(3))
def test_v1_1_trajectories_match_without_fitting(v1_runs, row):
    (a, b), h0, y0, h_final_table, h_inf_table = V1_ROWS[row]
    h, y, w, _, traj = v1_runs[row]
    assert h[0] == pytest.approx(h0, rel=1e-12)
    assert y[0] == pytest.approx(y0, rel=1e-12)
    for meas, pred in ((h, traj.h), (y, traj.y), (w, traj.w)):
        assert max_rel_error(meas, pred) < 0.01
    h_inf = final_distance(h[0], y[0], ETA, ETA, DX2, DY2)
    assert h_inf == pytest.approx(h_inf_table, rel=1e-4)
    assert h[-1] == pytest.approx(h_final_table, rel=0.005)
    assert h[-1] == pytest.approx(h_inf, rel=0.005)
    assert traj.h[-1] == pytest.approx(h_inf, rel=0.005)
    np.testing.assert_allclose(traj.a, traj.y - traj.w, rtol=0, atol=0)


@pytest.mark.parametrize("row", range(3))
def test_v1_1_invariant_conserved_in_ode_solution(v1_runs, row):
    *_, traj = v1_runs[row]
    C = invariant(traj.h, traj.y, ETA, ETA, DX2)
    # Scale of the two terms of C (C itself is 0 for the balanced rich row).
    scale = max(np.max(ETA * DX2 * traj.y / traj.h), np.max(ETA * traj.h))
    assert np.max(np.abs(C - C[0])) / scale < 1e-4


def test_v1_1_rich_half_time(v1_runs):
    h, y, _, _, traj = v1_runs[0]
    h_inf = final_distance(h[0], y[0], ETA, ETA, DX2, DY2)
    t = traj.t
    t_half_gd = int(np.argmax(h >= h_inf / 2))
    assert abs(t_half_gd - 3192) <= 3
    # Saxe logistic (§1.3): s = ||dy||/||dx||, tau = 2/(eta dx2), u0 = h0/dx2.
    s, tau, u0 = np.sqrt(DY2 / DX2), 2.0 / (ETA * DX2), h[0] / DX2
    t_half_logistic = tau / (2 * s) * np.log(s / u0 - 1.0)
    assert t_half_logistic == pytest.approx(3191.2, abs=0.1)
    assert crossing_time(t, traj.h, h_inf / 2) == pytest.approx(t_half_logistic, abs=0.5)
    assert abs(crossing_time(t, h, h_inf / 2) - 3192) <= 3


@pytest.mark.parametrize("row", range(3))
def test_mean_output_loss_matches_centred_training_loss(v1_runs, row):
    h, y, w, loss, _ = v1_runs[row]
    t = np.arange(N_STEPS + 1, dtype=np.float64)
    np.testing.assert_allclose(mean_output_loss(t, y, w, DY2), loss, rtol=1e-9, atol=1e-15)


def test_mean_output_loss_offset_targets_m0_term():
    # Bias-free net on symmetric inputs: the mean prediction stays 0, so with targets offset by c
    # the mean error c² never decays (eta_ybar = 0) and L = (1/4)[2 c² + w + (dy2 - y)/2].
    c = 0.3
    _, y, w, loss = train_two_layer(0.05, 0.05, y_offset=c)
    t = np.arange(N_STEPS + 1, dtype=np.float64)
    pred = mean_output_loss(t, y, w, DY2, m0=c**2, eta_ybar=0.0)
    np.testing.assert_allclose(pred, loss, rtol=1e-9)


def test_mean_output_loss_decay_of_mean_term():
    t = np.array([0.0, 100.0])
    L = mean_output_loss(t, y=[DY2, DY2], w=[0.0, 0.0], dy2=DY2, m0=2.0, eta_ybar=0.01)
    np.testing.assert_allclose(L, [1.0, np.exp(-2.0)])


# --------------------------------------------------------------------------- ODE sanity


@pytest.mark.parametrize("h", [1e-3, 0.7, 5.0])
def test_fixed_point_w0_y_dy2(h):
    np.testing.assert_array_equal(two_point_rhs([h, DY2, 0.0], 0.3, 1.7, 2.0, DY2), 0.0)
    traj = simulate_two_point(h, DY2, 0.0, 0.3, 1.7, 2.0, DY2, np.linspace(0, 50, 11))
    np.testing.assert_allclose(traj.h, h, rtol=1e-12)
    np.testing.assert_allclose(traj.y, DY2, rtol=1e-12)
    np.testing.assert_allclose(traj.w, 0.0, atol=1e-15)
    np.testing.assert_allclose(traj.a, traj.y - traj.w)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rhs_matches_written_equations_and_conserves_invariant(seed):
    rng = np.random.default_rng(seed)
    n = 7
    h, y = rng.uniform(0.1, 3.0, n), rng.uniform(0.0, 2.0, n)
    w = rng.uniform(-1.0, 1.0, n)
    eta_h, eta_y, dx2, dy2 = rng.uniform(0.1, 2.0, 4)
    d = two_point_rhs(np.stack([h, y, w]), eta_h, eta_y, dx2, dy2)
    assert d.shape == (3, n)
    np.testing.assert_allclose(d[0], -eta_h * dx2 * w)
    np.testing.assert_allclose(d[1], -w * (eta_y * h + eta_h * dx2 * y / h))
    dw = -0.5 * eta_y * h * (3 * w - y + dy2) - 0.5 * eta_h * dx2 * (y + w) * w / h
    np.testing.assert_allclose(d[2], dw)
    # Column-wise evaluation equals the stacked one.
    np.testing.assert_allclose(two_point_rhs([h[3], y[3], w[3]], eta_h, eta_y, dx2, dy2), d[:, 3])
    # dC/dt = eta_h dx2 (y'/h - y h'/h²) - eta_y h' = 0 along the flow.
    dC = eta_h * dx2 * (d[1] / h - y * d[0] / h**2) - eta_y * d[0]
    np.testing.assert_allclose(dC, 0.0, atol=1e-12)
    # da/dt in the alignment form of §1.2, with a = y - w.
    a = y - w
    da = 0.5 * eta_y * h * (dy2 - a) + 0.5 * eta_h * dx2 * (a / h) * (a - y)
    np.testing.assert_allclose(d[1] - d[2], da, atol=1e-12)


@pytest.mark.parametrize(
    ("h0", "y0", "a0", "eta_h", "eta_y", "dx2", "dy2"),
    [
        (0.5, 0.04, 0.1, 1e-2, 2e-2, 1.0, 0.5),  # A_hi > 0
        (0.05, 0.5, -0.3, 3e-2, 1e-2, 2.0, 1.0),  # A_hi < 0 (stable branch)
        (0.2, 0.01, 0.05, 1e-2, 1e-2, 1.0, 0.0),  # equal targets
    ],
)
def test_final_distance_is_root_and_ode_limit(h0, y0, a0, eta_h, eta_y, dx2, dy2):
    h_inf = final_distance(h0, y0, eta_h, eta_y, dx2, dy2)
    C = float(invariant(h0, y0, eta_h, eta_y, dx2))
    assert eta_y * h_inf**2 + C * h_inf - eta_h * dx2 * dy2 == pytest.approx(0.0, abs=1e-12)
    assert h_inf >= 0.0
    if dy2 > 0:
        traj = simulate_two_point(h0, y0, y0 - a0, eta_h, eta_y, dx2, dy2, [0.0, 1e5])
        assert traj.h[-1] == pytest.approx(h_inf, rel=1e-6)
        assert traj.y[-1] == pytest.approx(dy2, rel=1e-6)


def test_rich_and_lazy_limits():
    eta_h, eta_y, dx2, dy2 = 2e-3, 8e-3, 3.0, 0.7
    rho = eta_h / eta_y
    rich = rich_final_distance(eta_h, eta_y, dx2, dy2)
    assert rich == pytest.approx(np.sqrt(rho) * np.sqrt(dx2) * np.sqrt(dy2), rel=1e-14)
    # A_hi = 0 (h0² = rho dx2 y0) gives exactly the rich value, however small h0 is.
    for h0 in (1e-2, 1e-6):
        assert final_distance(h0, h0**2 / (rho * dx2), eta_h, eta_y, dx2, dy2) == pytest.approx(
            rich, rel=1e-12
        )
    h0, y0 = 400.0, 1e-3
    lazy = lazy_final_distance(h0, y0, eta_h, eta_y, dx2)
    assert lazy == pytest.approx(h0 - rho * dx2 * y0 / h0, rel=1e-14)
    assert final_distance(h0, y0, eta_h, eta_y, dx2, dy2) == pytest.approx(lazy, rel=1e-5)


def test_scaling_eta_y_sets_the_clock():
    t = np.linspace(0.0, 400.0, 41)
    slow = simulate_two_point(0.01, 1e-4, -0.005, 0.01, 0.02, 1.0, 0.5, t)
    fast = simulate_two_point(0.01, 1e-4, -0.005, 0.03, 0.06, 1.0, 0.5, t / 3)
    for name in ("h", "y", "w"):
        np.testing.assert_allclose(getattr(fast, name), getattr(slow, name), rtol=1e-6, atol=1e-12)


# --------------------------------------------------------------------------- errors


def test_errors_are_probe_errors():
    assert issubclass(TheoryInputError, ProbeError)
    assert issubclass(TheoryInputError, ValueError)
    assert issubclass(OdeIntegrationError, ProbeError)
    assert issubclass(OdeIntegrationError, RuntimeError)


def test_two_point_rhs_errors():
    with pytest.raises(InvalidArrayError, match=r"state must have shape \(3,\) or \(3, n_pairs\)"):
        two_point_rhs([1.0, 0.5], 0.1, 0.1, 1.0, 0.5)
    with pytest.raises(InvalidArrayError, match="state must be finite"):
        two_point_rhs([np.nan, 0.5, 0.0], 0.1, 0.1, 1.0, 0.5)
    with pytest.raises(TheoryInputError, match=r"eta_h must be a finite number > 0; got 0.0\."):
        two_point_rhs([1.0, 0.5, 0.0], 0.0, 0.1, 1.0, 0.5)
    with pytest.raises(TheoryInputError, match=r"eta_y must be a finite number > 0; got nan\."):
        two_point_rhs([1.0, 0.5, 0.0], 0.1, float("nan"), 1.0, 0.5)
    with pytest.raises(TheoryInputError, match=r"dx2 must be a finite number > 0; got -1.0\."):
        two_point_rhs([1.0, 0.5, 0.0], 0.1, 0.1, -1.0, 0.5)
    with pytest.raises(TheoryInputError, match=r"dy2 must be a finite number >= 0; got -0.5\."):
        two_point_rhs([1.0, 0.5, 0.0], 0.1, 0.1, 1.0, -0.5)
    with pytest.raises(TheoryInputError, match=r"h must be > 0 everywhere .*; got min 0.0\."):
        two_point_rhs([0.0, 0.5, 0.0], 0.1, 0.1, 1.0, 0.5)


def test_invariant_errors():
    with pytest.raises(ShapeMismatchError, match=r"h and y must have the same shape"):
        invariant([1.0, 2.0], [1.0], 0.1, 0.1, 1.0)
    with pytest.raises(TheoryInputError, match=r"h must be > 0 everywhere"):
        invariant([1.0, -2.0], [1.0, 1.0], 0.1, 0.1, 1.0)


def test_closed_form_errors():
    with pytest.raises(TheoryInputError, match=r"h0 must be a finite number > 0; got 0\."):
        final_distance(0, 0.1, 0.1, 0.1, 1.0, 0.5)
    with pytest.raises(TheoryInputError, match=r"y0 must be a finite number >= 0; got -0.1\."):
        final_distance(1.0, -0.1, 0.1, 0.1, 1.0, 0.5)
    with pytest.raises(TheoryInputError, match=r"dy2 must be a finite number >= 0; got inf\."):
        rich_final_distance(0.1, 0.1, 1.0, float("inf"))
    with pytest.raises(TheoryInputError, match=r"eta_y must be a finite number > 0; got -1\."):
        lazy_final_distance(1.0, 0.1, 0.1, -1, 1.0)
    with pytest.raises(TheoryInputError, match=r"dx2 must be a finite number > 0; got 'one'\."):
        final_distance(1.0, 0.1, 0.1, 0.1, "one", 0.5)
    with pytest.raises(TheoryInputError, match=r"w0 must be a real number; got None\."):
        simulate_two_point(0.01, 1e-4, None, 0.01, 0.01, 1.0, 0.5, t=[0.0, 1.0])


def test_simulate_errors(monkeypatch):
    args = (0.01, 1e-4, -0.005, 0.01, 0.01, 1.0, 0.5)
    with pytest.raises(InvalidArrayError, match=r"t must be 1-D with at least 2 times; got shape"):
        simulate_two_point(*args, t=[0.0])
    with pytest.raises(InvalidArrayError, match=r"t must be 1-D with at least 2 times"):
        simulate_two_point(*args, t=np.zeros((2, 2)))
    with pytest.raises(InvalidArrayError, match=r"t must be strictly increasing"):
        simulate_two_point(*args, t=[0.0, 2.0, 2.0])
    with pytest.raises(TheoryInputError, match=r"w0 must be a finite number; got nan\."):
        simulate_two_point(0.01, 1e-4, float("nan"), 0.01, 0.01, 1.0, 0.5, t=[0.0, 1.0])

    class Failed:
        success = False
        message = "Required step size is less than spacing between numbers."

    monkeypatch.setattr(effective, "solve_ivp", lambda *a, **k: Failed())
    match = r"solve_ivp must integrate .* Required step size"
    with pytest.raises(OdeIntegrationError, match=match):
        simulate_two_point(*args, t=[0.0, 1.0])


def test_mean_output_loss_errors():
    with pytest.raises(ShapeMismatchError, match=r"t, y and w must have the same shape"):
        mean_output_loss([0.0, 1.0], [0.0], [0.0], 0.5)
    with pytest.raises(TheoryInputError, match=r"m0 must be a finite number >= 0; got -1.0\."):
        mean_output_loss([0.0], [0.0], [0.0], 0.5, m0=-1.0)
    with pytest.raises(TheoryInputError, match=r"eta_ybar must be a finite number >= 0"):
        mean_output_loss([0.0], [0.0], [0.0], 0.5, eta_ybar=-0.1)


def test_simulate_gives_up_after_max_nfev():
    with pytest.raises(OdeIntegrationError, match="more than max_nfev=10 evaluations"):
        simulate_two_point(
            0.0025, 6.25e-6, -0.0017615, 2.5e-3, 2.5e-3, 1.0, 0.5, t=[0.0, 20000.0], max_nfev=10
        )
