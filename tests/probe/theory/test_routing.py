"""Exact reduced dynamics of the routing network (docs/dynamics.md §3.3, V2-3 theory values)."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import probe.theory.routing as routing
from probe.errors import InvalidArrayError, OdeIntegrationError, TheoryInputError
from probe.theory.routing import (
    final_hidden_strength,
    half_time,
    hidden_rate,
    initial_loss,
    io_strength,
    mode_strengths,
    reduced_loss,
    routing_c0,
    routing_tau,
    routing_trajectory,
    time_to_strength,
)

Y = np.array(
    [[6, 4, 0, 3, 0, 0, 0], [6, 4, 0, 0, 3, 0, 0], [6, 0, 4, 0, 0, 3, 0], [6, 0, 4, 0, 0, 0, 3]],
    float,
)
S = np.sqrt([185.0, 41.0, 9.0, 9.0])
B0, TAU = 0.08, 700.0


def test_constants():
    assert routing_tau(0.02) == pytest.approx(700.0)
    assert routing_tau(0.01, n_items=2, d_out=3) == pytest.approx(300.0)
    assert routing_c0(B0) == pytest.approx(0.0384)
    np.testing.assert_allclose(mode_strengths(Y), S, rtol=1e-12)


def test_v2_3_theory_final_strengths():
    bh = final_hidden_strength(S, B0)
    np.testing.assert_allclose(bh, [4.5635, 3.5486, 2.7543, 2.7543], atol=5e-5)
    np.testing.assert_allclose(io_strength(bh, B0), [1.7264, 1.3433, 1.0437, 1.0437], atol=5e-5)
    np.testing.assert_allclose(bh * (bh**2 + routing_c0(B0)), 7 * S, rtol=1e-12)


def test_v2_3_theory_half_times_and_loss():
    # "epoch at which" = first whole epoch at or after the continuous time
    np.testing.assert_array_equal(np.ceil(half_time(S, B0, TAU)), [73, 151, 313, 313])
    tr = routing_trajectory([0.0, 100.0, 200.0], S, B0, TAU)
    np.testing.assert_allclose(tr.loss, [243.973, 58.845, 17.904], atol=6e-4)
    assert initial_loss(S, B0) == pytest.approx(np.sum((S - B0**3) ** 2))
    assert initial_loss(S, B0) == pytest.approx(243.973, abs=5e-4)


def test_trajectory_matches_the_three_layer_system():
    """The one-ODE reduction equals integrating (b_in, b_h, b_out) of §3.3 directly."""
    M, K = 7, 4

    def full(_t, y):
        bi, bh, bo = y.reshape(3, -1)
        err = S - bo * bh * bi
        return np.concatenate([K * bh * bo * err, M * K * bi * bo * err, K * bh * bi * err]) / TAU

    t = np.linspace(0.0, 500.0, 26)
    ref = solve_ivp(full, (0, 500), np.full(12, B0), t_eval=t, rtol=1e-11, atol=1e-13).y
    tr = routing_trajectory(t, S, B0, TAU)
    np.testing.assert_allclose(tr.b_h, ref[4:8].T, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(tr.b_io, ref[:4].T, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(tr.shat, (ref[:4] * ref[4:8] * ref[8:]).T, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(tr.loss, reduced_loss(tr.shat, S), rtol=1e-12)


def test_rate_is_the_shared_layer_equation():
    rng = np.random.default_rng(0)
    bh, s = rng.uniform(0.1, 3, 5), rng.uniform(1, 10, 5)
    bio = io_strength(bh, B0)
    expected = 7 * 4 * bio * bio * (s - bio * bh * bio) / TAU
    np.testing.assert_allclose(hidden_rate(bh, s, B0, TAU), expected, rtol=1e-12)


def test_time_to_strength_inverts_the_trajectory():
    b = final_hidden_strength(S, B0) * np.array([0.3, 0.5, 0.7, 0.9])
    t = time_to_strength(b, S, B0, TAU)
    assert time_to_strength(B0, S[0], B0, TAU) == pytest.approx(0.0)
    for a in range(4):
        tr = routing_trajectory([0.0, t[a]], S[a : a + 1], B0, TAU)
        assert tr.b_h[-1, 0] == pytest.approx(b[a], rel=1e-7)


def test_time_to_strength_when_the_mode_shrinks():
    s, b0 = 0.01, 1.0  # large init above the fixed point: b_h decays towards it
    b_inf = float(final_hidden_strength(s, b0))
    assert b_inf < b0
    b = (b0 + b_inf) / 2
    t = float(time_to_strength(b, s, b0, TAU))
    assert t > 0
    assert routing_trajectory([0.0, t], [s], b0, TAU).b_h[-1, 0] == pytest.approx(b, rel=1e-7)


def test_vectorised_shapes():
    s2 = np.array([[1.0, 2.0], [3.0, 0.0]])
    assert final_hidden_strength(s2, B0).shape == (2, 2)
    assert final_hidden_strength(0.0, B0) == pytest.approx(0.0)
    b = final_hidden_strength(s2[:, :1], B0) / 2
    assert time_to_strength(b, s2[:, :1], B0, TAU).shape == (2, 1)
    assert reduced_loss(np.zeros((3, 4)), S).shape == (3,)


@pytest.mark.parametrize(
    ("call", "err", "match"),
    [
        (lambda: routing_tau(0.0), TheoryInputError, "lr must be a finite number > 0"),
        (lambda: routing_tau(0.1, n_items=0), TheoryInputError, "n_items must be an int >= 1"),
        (lambda: routing_c0(B0, M=0), TheoryInputError, "M must be an int >= 1"),
        (lambda: hidden_rate(1.0, 1.0, B0, TAU, K=0), TheoryInputError, "K must be an int >= 1"),
        (lambda: mode_strengths(np.zeros((2, 2, 2))), InvalidArrayError, "Y must be 2-D"),
        (lambda: final_hidden_strength([-1.0], B0), InvalidArrayError, "s must be >= 0"),
        (lambda: time_to_strength(10.0, S[0], B0, TAU), TheoryInputError, "b must lie between"),
        (lambda: time_to_strength(0.01, S[0], B0, TAU), TheoryInputError, "b must lie between"),
        (lambda: half_time(S, 3.0, TAU), TheoryInputError, "b0 must be below half"),
        (lambda: routing_trajectory([0, 2, 1], S, B0, TAU), InvalidArrayError, "strictly incr"),
        (lambda: routing_trajectory([-1, 2], S, B0, TAU), InvalidArrayError, ">= 0"),
    ],
)
def test_errors(call, err, match):
    with pytest.raises(err, match=match):
        call()


def test_integration_failure_is_reported(monkeypatch):
    class Failed:
        success, message = False, "step size too small"

    monkeypatch.setattr(routing, "solve_ivp", lambda *a, **k: Failed())
    with pytest.raises(OdeIntegrationError, match="step size too small"):
        routing_trajectory([0.0, 1.0], S, B0, TAU)
