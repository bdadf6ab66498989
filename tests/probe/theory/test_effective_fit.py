import numpy as np
import pytest

import probe.theory.effective_fit as effective_fit
from probe.errors import (
    ConfigError,
    InvalidArrayError,
    OdeIntegrationError,
    ShapeMismatchError,
    TheoryInputError,
)
from probe.experiments.two_points.experiment import TwoPointsConfig, run_two_points
from probe.theory.effective import _jac, _rhs, final_distance, mean_output_loss, simulate_two_point
from probe.theory.effective_fit import (
    TwoPointTraces,
    fit_mean_output_rate,
    fit_two_point,
    two_point_traces,
)

COARSE = np.logspace(-4, -1, 13)  # start grid around the rates of these tests (speed)


def synthetic(eta_h=2e-3, eta_y=3e-3, n=3001, stride=10):
    t = np.arange(0, n, stride, dtype=float)
    p = simulate_two_point(0.02, 1e-4, -5e-3, eta_h, eta_y, 1.0, 0.5, t)
    return TwoPointTraces(t=t, h=p.h, y=p.y, w=p.w, dx2=1.0, dy2=0.5)


def test_analytic_jacobian_matches_finite_differences():
    s, args, eps = np.array([0.3, 0.2, -0.05]), (2e-3, 3e-3, 0.5), 1e-7
    cols = [
        (np.array(_rhs(*(s + eps * e), *args)) - np.array(_rhs(*(s - eps * e), *args))) / (2 * eps)
        for e in np.eye(3)
    ]
    np.testing.assert_allclose(_jac(*s, *args), np.array(cols).T, atol=1e-12)


def test_traces_from_arrays():
    rng = np.random.default_rng(0)
    acts = rng.standard_normal((4, 3, 5, 2))  # steps, samples, (5, 2) features
    out = rng.standard_normal((4, 3, 2))
    x, tgt = rng.standard_normal((3, 7)), rng.standard_normal((3, 2))
    tr = two_point_traces(acts, out, x, tgt, steps=[0, 1, 2, 5], pair=(2, 0))
    dh = (acts[:, 0] - acts[:, 2]).reshape(4, -1)
    dyh, dy = out[:, 0] - out[:, 2], tgt[0] - tgt[2]
    np.testing.assert_allclose(tr.h, (dh**2).sum(1), rtol=1e-12)
    np.testing.assert_allclose(tr.y, (dyh**2).sum(1), rtol=1e-12)
    np.testing.assert_allclose(tr.w, (dyh * (dyh - dy)).sum(1), rtol=1e-12)
    assert tr.dx2 == pytest.approx(((x[0] - x[2]) ** 2).sum()) and tr.dy2 == pytest.approx(dy @ dy)
    np.testing.assert_array_equal(tr.t, [0, 1, 2, 5])


def test_traces_errors():
    a, o = np.zeros((2, 3, 4)), np.zeros((2, 3, 1))
    x, y = np.zeros((3, 1)), np.zeros((3, 1))
    with pytest.raises(ShapeMismatchError, match="agree in snapshots and samples"):
        two_point_traces(a, o[:1], x, y, steps=[0, 1])
    with pytest.raises(ShapeMismatchError, match="one row per probe sample"):
        two_point_traces(a, o, x[:2], y, steps=[0, 1])
    with pytest.raises(InvalidArrayError, match="two distinct sample indices below 3"):
        two_point_traces(a, o, x, y, steps=[0, 1], pair=(1, 1))


def test_fit_recovers_known_rates():
    tr = synthetic()
    fit = fit_two_point(tr, grid=COARSE)
    assert fit.eta_h == pytest.approx(2e-3, rel=1e-4)
    assert fit.eta_y == pytest.approx(3e-3, rel=1e-4)
    assert fit.rho == pytest.approx(2 / 3, rel=2e-4)
    assert fit.sse < 1e-10 and max(fit.rel_error.values()) < 1e-4
    assert fit.prediction.h.shape == tr.h.shape and fit.measured is tr
    assert fit.h_inf == pytest.approx(final_distance(0.02, 1e-4, 2e-3, 3e-3, 1.0, 0.5), rel=1e-4)


def test_wide_starts_find_a_shrinking_distance():
    """Large init (h falls from 1.36): the rich-limit start misses, a 2-D start grid recovers."""
    t = np.arange(0, 2001, 20.0)
    p = simulate_two_point(1.36, 0.004, 0.049, 0.05, 1.6e-4, 1.0, 0.5, t)
    tr = TwoPointTraces(t, p.h, p.y, p.w, 1.0, 0.5)
    grid = np.logspace(-6, 2, 25)
    authors = fit_two_point(tr, grid=grid)
    wide = fit_two_point(tr, grid=grid, rho_factors=np.logspace(-3, 3, 7))
    assert wide.eta_h == pytest.approx(0.05, rel=1e-4)
    assert wide.eta_y == pytest.approx(1.6e-4, rel=1e-4)
    assert wide.sse < 1e-8 < authors.sse


def test_fit_errors(monkeypatch):
    tr = synthetic(n=101)
    short = TwoPointTraces(tr.t[:2], tr.h[:2], tr.y[:2], tr.w[:2], 1.0, 0.5)
    with pytest.raises(InvalidArrayError, match="at least 3 snapshots"):
        fit_two_point(short)
    bad_h = TwoPointTraces(tr.t, np.r_[0.0, tr.h[1:]], tr.y, tr.w, 1.0, 0.5)
    with pytest.raises(TheoryInputError, match="h at the first snapshot"):
        fit_two_point(bad_h)
    with pytest.raises(TheoryInputError, match="grid must hold eta_y values > 0"):
        fit_two_point(tr, grid=[1e-3, 0.0])
    with pytest.raises(TheoryInputError, match="rho_factors must be > 0"):
        fit_two_point(tr, rho_factors=[1.0, -2.0])

    def fail(*args, **kwargs):
        msg = "solver failed"
        raise OdeIntegrationError(msg)

    monkeypatch.setattr(effective_fit, "simulate_two_point", fail)
    with pytest.raises(OdeIntegrationError, match="could not be integrated at any rate"):
        fit_two_point(tr, grid=COARSE)


def test_mean_output_rate():
    t = np.arange(0, 2000, 5, dtype=float)
    y = 0.5 * (1 - np.exp(-t / 400))
    w = -0.1 * np.exp(-t / 300)
    loss = mean_output_loss(t, y, w, dy2=0.5, m0=0.3, eta_ybar=4e-3)
    assert fit_mean_output_rate(t, loss, y, w, 0.5, 0.3) == pytest.approx(4e-3, rel=1e-6)
    with pytest.raises(ShapeMismatchError, match="same shape"):
        fit_mean_output_rate(t, loss[:-1], y, w, 0.5, 0.3)
    with pytest.raises(TheoryInputError, match="m0"):
        fit_mean_output_rate(t, loss, y, w, 0.5, 0.0)


@pytest.mark.slow
def test_v1_2_authors_two_layer_row(tmp_path):
    """V1-2: fitted eta within 10 % of lr/2 for 3 seeds of the authors' `two_layer` row."""
    res = run_two_points(TwoPointsConfig(setting="two_layer", seeds=3), tmp_path, progress=False)
    tab = res.table
    assert len(tab) == 3 and (tab["layer"] == "hidden.0").all()
    lr_half = 0.005 / 2
    assert np.all(np.abs(tab["eta_h"] / lr_half - 1) < 0.10), tab["eta_h"]
    assert np.all(np.abs(tab["eta_y"] / lr_half - 1) < 0.10), tab["eta_y"]
    # reference values: h_end 0.674-0.677, fitted ODE hits y = dy2/2 within 4 epochs of the data
    assert np.all((tab["h_end"] > 0.66) & (tab["h_end"] < 0.69))
    assert np.all(np.abs(tab["t_half_y_data"] - tab["t_half_y_ode"]) <= 4)
    assert np.all(tab["rel_err_h"] < 0.03) and np.all(tab["rel_err_w"] < 0.10)
    assert res.table_csv.is_file() and res.summary_json.is_file()
    assert all(p.is_file() and p.stat().st_size > 10_000 for p in res.figures)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"setting": "nope"}, "setting must be one of"),
        ({"nonlinearity": "gelu"}, "nonlinearity must be one of"),
        ({"dtype": "float16"}, "dtype must be 'float32' or 'float64'"),
        ({"lr": 0.0}, "lr must be a finite number > 0; got 0.0"),
        ({"hooked": 20}, r"hooked must be a hidden-layer index in 0 \.\. 19"),
    ],
)
def test_config_errors(kw, match, tmp_path):
    with pytest.raises(ConfigError, match=match):
        run_two_points(TwoPointsConfig(**kw), tmp_path, progress=False)
