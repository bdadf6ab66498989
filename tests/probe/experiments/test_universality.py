"""Universality, XOR and MNIST-trajectory experiments at tiny sizes; their rules and errors."""

import numpy as np
import pandas as pd
import pytest

from probe.errors import ConfigError
from probe.experiments.two_points import config
from probe.experiments.two_points.mnist_trajectory import (
    MnistTrajectoryConfig,
    _pick_pair,
    run_mnist_trajectory,
)
from probe.experiments.two_points.universality import (
    UniversalityConfig,
    run_universality,
    verdict,
)
from probe.experiments.two_points.xor import XorConfig, pair_predictions, run_xor
from probe.theory.effective import final_distance


@pytest.fixture
def tiny_rows(monkeypatch):
    """Shrink the settings rows used here to widths of 8-40, 2-3 layers, 20 epochs."""
    rows = {
        "default": ("MLP", "leaky_relu", 1.0, 0.05, 8, 3, 20, 1),
        "tanh": ("MLP", "tanh", 0.85, 0.05, 8, 3, 20, 1),
        "cnn": ("CNN", "leaky_relu", 0.95, 0.02, 40, 2, 20, 2),
    }
    for name, row in rows.items():
        monkeypatch.setitem(config.SETTINGS, name, row)


@pytest.mark.slow
@pytest.mark.usefixtures("tiny_rows")
def test_universality_table_figures_and_by_layer(tmp_path):
    cfg = UniversalityConfig(rows="cnn,default,tanh", seeds=2, halve_lr=False)
    res = run_universality(cfg, tmp_path, progress=False)
    assert list(res.table["setting"]) == ["default", "tanh", "cnn"]  # the table's order
    assert set(res.table["verdict"]) <= {"fits", "rough", "poor", "no fit"}
    row = res.table.iloc[0]
    assert row["rho"] == pytest.approx(row["eta_h"] / row["eta_y"], rel=0.5)  # means of ratios
    assert row["seeds_fitted"] == 2 and row["architecture"] == "MLP"
    assert sorted(res.by_layer["index"].unique()) == [0, 1, 2]  # default: every layer
    assert (res.seeds.query("setting == 'tanh'")["index"] == 1).all()  # others: hooked only
    text = res.table_md.read_text()
    assert "rho = eta_h / eta_y" in text and "'fits' if" in text and "| cnn | CNN |" in text
    assert [p.name for p in res.figures] == ["universality_fits.png", "default_by_layer.png"]
    assert all(p.stat().st_size > 10_000 for p in res.figures)
    assert pd.read_csv(res.table_csv).shape[0] == 3


def test_verdict_rule():
    assert verdict(0.08, 0.5, converged=False, failed=False) == "fits"
    assert verdict(0.08, 0.2, converged=True, failed=False) == "rough"
    assert verdict(0.3, 0.0, converged=True, failed=False) == "poor"
    assert verdict(0.01, 0.0, converged=True, failed=True) == "no fit"
    assert verdict(float("nan"), 0.0, converged=True, failed=False) == "no fit"


def test_universality_row_errors():
    with pytest.raises(ConfigError, match=r"rows must be 'all' or names from .*unknown \['mlp'\]"):
        UniversalityConfig(rows="default,mlp").row_names()
    assert UniversalityConfig(rows="tanh, skip").row_names() == ["tanh", "skip"]
    assert len(UniversalityConfig().row_names()) == len(config.SETTINGS)


def test_pair_predictions_rich_limit_and_merging():
    x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = np.array([[0.0], [1.0], [0.0]])
    h = 1e-4 * np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
    tab = pair_predictions(h, np.zeros((3, 1)) + 1e-8 * x[:, :1], x, y, eta_h=2.0, eta_y=0.5)
    assert list(zip(tab["i"], tab["j"], strict=True)) == [(0, 1), (0, 2), (1, 2)]
    # rich limit: h_inf = sqrt(rho dx2 dy2), rho = 4; equal targets (0, 2) merge
    np.testing.assert_allclose(tab["h_inf"], [2.0, 0.0, 2.0], atol=1e-3)
    np.testing.assert_allclose(tab["h_rich"], [2.0, 0.0, 2.0])
    r = tab.iloc[0]
    assert r["h_inf"] == final_distance(r["h0"], r["y0"], 2.0, 0.5, r["dx2"], r["dy2"])


def test_xor_tiny_run(tmp_path):
    cfg = XorConfig(settings="rich,lazy", width=16, depth=2, epochs_scale=0.01)
    res = run_xor(cfg, tmp_path, progress=False)
    assert res.table.shape[0] == 12 and set(res.table["setting"]) == {"rich", "lazy"}
    lazy = res.table[res.table["setting"] == "lazy"]
    # lr 3e-9: nothing moves, and the closed form's lazy limit keeps h0
    np.testing.assert_allclose(lazy["h_end"], lazy["h0"], rtol=1e-4)
    assert (res.table[["d_pred", "d_meas"]] >= 0).all().all()
    assert res.figure.stat().st_size > 10_000


def test_xor_default_rates_are_fitted_once(tmp_path):
    cfg = XorConfig(settings="rich,lazy", eta_source="default", width=8, depth=2, epochs_scale=0.01)
    res = run_xor(cfg, tmp_path, progress=False)
    assert res.table["eta_h"].nunique() == 1 and res.table["eta_y"].nunique() == 1
    assert (tmp_path / "default_two_points").is_dir()
    assert not (tmp_path / "rich_two_points").exists()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"settings": "rich,greedy"}, r"unknown \['greedy'\]"),
        ({"eta_source": "guess"}, "eta_source must be 'same' or 'default'"),
        ({"width": 0}, "width"),
    ],
)
def test_xor_config_errors(kw, match):
    with pytest.raises(ConfigError, match=match):
        XorConfig(**kw).rows()


def test_mnist_trajectory_on_digits(tmp_path):
    cfg = MnistTrajectoryConfig(dataset="digits", epochs=3, every=5, lr=0.05, width=16)
    res = run_mnist_trajectory(cfg, tmp_path, progress=False)
    assert res.fit.measured.dy2 == 2.0 and res.fit.eta_h > 0 and res.fit.eta_y > 0
    assert res.steps_per_epoch == 22 and len(res.fit.measured.t) == 3 * 22 // 5 + 2
    assert 0.0 <= res.test_accuracy <= 1.0 and res.figure.is_file()
    assert '"eta_h_per_epoch"' in res.summary_json.read_text()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"hooked": 4}, r"hooked must be a hidden layer in 0 \.\. 3; got 4"),
        ({"lr": -1.0}, "lr must be a finite number > 0"),
        ({"every": 0}, "every"),
    ],
)
def test_mnist_trajectory_config_errors(kw, match):
    with pytest.raises(ConfigError, match=match):
        MnistTrajectoryConfig(**kw).check()


def test_pair_needs_a_zero_and_a_one():
    import torch

    with pytest.raises(ConfigError, match="at least one '0' and one '1'"):
        _pick_pair(torch.tensor([2, 3, 1]), seed=0)
