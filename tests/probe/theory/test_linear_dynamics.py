import numpy as np
import pytest
from scipy.integrate import solve_ivp

from probe.errors import ConfigError, InvalidArrayError, ShapeMismatchError, TheoryInputError
from probe.experiments.deep_linear import (
    ROUTING_ITEMS,
    DeepLinearConfig,
    hierarchical_items,
    run_deep_linear,
)
from probe.theory.linear_dynamics import (
    deep_mode_trajectory,
    gram_mode_strengths,
    half_time,
    half_times,
    mode_trajectory,
    time_to_learn,
    weight_mode_strengths,
)

S = np.array([np.sqrt(185), np.sqrt(41), 3.0, 3.0])  # V2-1 singular values


def test_routing_items_singular_values():
    np.testing.assert_allclose(np.linalg.svd(ROUTING_ITEMS, compute_uv=False), S, rtol=1e-12)


def test_eq12_solves_eq10_and_matches_eq15_at_depth_3():
    t = np.linspace(0, 3000, 301)
    u = mode_trajectory(t, S, 1e-3, 1000.0)
    sol = solve_ivp(
        lambda _t, x: 2 * x * (S - x) / 1000.0,
        (0, 3000),
        np.full(4, 1e-3),
        t_eval=t,
        rtol=1e-11,
        atol=1e-14,
        method="LSODA",
    )
    np.testing.assert_allclose(u, sol.y.T, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(deep_mode_trajectory(t, S[0], 1e-3, 1000.0, 3), u[:, 0], rtol=1e-6)
    assert np.all(np.diff(u, axis=0) >= 0) and u[-1, 0] == pytest.approx(S[0], rel=1e-9)


def test_half_times_v2_1_theory_and_eq11():
    np.testing.assert_allclose(
        half_time(S, 1e-3, 1000.0), [349.9, 684.4, 1334.3, 1334.3], atol=0.05
    )
    u = mode_trajectory([half_time(S[1], 1e-3, 1000.0)], S[1], 1e-3, 1000.0)
    assert u[0] == pytest.approx(S[1] / 2, rel=1e-12)
    t = time_to_learn(1e-3, 0.9 * S, S, 1000.0)
    np.testing.assert_allclose(mode_trajectory(t, S, 1e-3, 1000.0).diagonal(), 0.9 * S, rtol=1e-10)


def test_deeper_nets_learn_later_and_more_abruptly():
    t = np.linspace(0, 4000, 401)
    u3 = deep_mode_trajectory(t, 3.0, 1e-2, 1000.0, 3)
    u5 = deep_mode_trajectory(t, 3.0, 1e-2, 1000.0, 5)
    t3, t5 = half_times(t, np.c_[u3, u5], [3.0, 3.0])
    assert t5 > t3 and u5[-1] == pytest.approx(3.0, rel=1e-3)


def test_readouts_agree_on_the_decoupled_manifold():
    rng = np.random.default_rng(0)
    U, _, Vt = np.linalg.svd(ROUTING_ITEMS.T, full_matrices=False)
    R, _ = np.linalg.qr(rng.standard_normal((16, 4)))
    a = np.array([0.5, 1.0, 1.5, 2.0])
    W21, W32 = R @ np.diag(a) @ Vt, U @ np.diag(a) @ R.T
    H = np.eye(4) @ W21.T  # one-hot items through the first layer
    np.testing.assert_allclose(weight_mode_strengths(W32, W21, U, Vt.T), a**2, rtol=1e-12)
    np.testing.assert_allclose(gram_mode_strengths(H, Vt.T), a**2, rtol=1e-12)
    stacked = gram_mode_strengths(np.stack([H, 2 * H]), Vt.T)
    np.testing.assert_allclose(stacked, [a**2, 4 * a**2], rtol=1e-12)


def test_half_times_interpolates_and_flags_never():
    t = np.array([0.0, 10.0, 20.0])
    u = np.array([[0.0, 0.0], [1.0, 0.1], [3.0, 0.2]])
    np.testing.assert_allclose(half_times(t, u, [4.0, 4.0]), [15.0, np.nan])


def test_theory_errors():
    with pytest.raises(TheoryInputError, match="s must be > 0"):
        mode_trajectory([0.0], [1.0, -1.0], 1e-3, 1.0)
    with pytest.raises(TheoryInputError, match="u0 must be below s"):
        mode_trajectory([0.0], 1.0, 2.0, 1.0)
    with pytest.raises(TheoryInputError, match="uf must be below s"):
        time_to_learn(1e-3, 1.0, 1.0, 1.0)
    with pytest.raises(TheoryInputError, match="n_layers must be an int >= 3"):
        deep_mode_trajectory([0.0, 1.0], 1.0, 1e-3, 1.0, 2)
    with pytest.raises(InvalidArrayError, match="increasing, with at least 2 times"):
        deep_mode_trajectory([1.0, 0.0], 1.0, 1e-3, 1.0, 3)
    with pytest.raises(ShapeMismatchError, match="must chain"):
        weight_mode_strengths(np.ones((7, 16)), np.ones((15, 4)), np.ones((7, 4)), np.ones((4, 4)))
    with pytest.raises(ShapeMismatchError, match="H has 3 items but V has 4 rows"):
        gram_mode_strengths(np.ones((3, 16)), np.ones((4, 4)))
    with pytest.raises(ShapeMismatchError, match=r"u must have shape \(len\(t\), len\(s\)\)"):
        half_times([0.0, 1.0], np.ones((2, 3)), [1.0, 1.0])


def test_hierarchical_items():
    Y = hierarchical_items(5, 1000, 0.1, seed=0)
    assert Y.shape == (32, 1000) and set(np.unique(Y)) == {-1.0, 1.0}
    s = np.linalg.svd(Y, compute_uv=False)
    assert s[0] > 1.3 * s[1] and s[1] > s[2] > s[4]  # the root split dominates: graded modes
    # siblings agree more than distant leaves (diffusion down the tree)
    agree = (Y @ Y.T) / 1000
    assert agree[0, 1] > agree[0, 31] + 0.2


@pytest.mark.slow
def test_v2_1_saxe_decoupled_init(tmp_path):
    """V2-1: half-times within 1 % + 3 steps of Eq. 11; loss within 1.2 % of L(0) of theory."""
    res = run_deep_linear(DeepLinearConfig(), tmp_path)
    tab = res.table
    th = tab["t_half_theory"].to_numpy()
    np.testing.assert_allclose(th, [349.9, 684.4, 1334.3, 1334.3], atol=0.05)
    for col in ("t_half_weights", "t_half_gram"):
        assert np.all(np.abs(tab[col] - th) <= 0.01 * th + 3), tab[col]
    np.testing.assert_allclose(tab["t_half_weights"], tab["t_half_gram"], rtol=1e-5)
    assert np.all(tab["max_abs_err_over_s"] < [0.02, 0.01, 0.005, 0.005])
    from probe.store import open_run

    m = open_run(res.runs[0]).metrics()
    t = m["step"].to_numpy() - 1.0  # the loss logged at step k was computed after k-1 updates
    u = mode_trajectory(t, S, 1e-3, 1000.0)
    theory = 0.5 * ((S - u) ** 2).sum(axis=1)
    assert theory[0] == pytest.approx(121.97, abs=0.01)
    assert np.max(np.abs(m["loss"].to_numpy() - theory)) < 0.012 * theory[0]
    assert res.figure.is_file() and res.summary_json.is_file()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"data": "xor"}, "data must be 'routing' or 'hierarchy'"),
        ({"init": "ortho"}, "init must be 'decoupled' or 'random'"),
        ({"lr": 0.0}, "lr must be a finite number > 0; got 0.0"),
        ({"flip": 0.7}, r"flip must be a probability in \[0, 0.5\]"),
    ],
)
def test_config_errors(kw, match, tmp_path):
    with pytest.raises(ConfigError, match=match):
        run_deep_linear(DeepLinearConfig(**kw), tmp_path)
