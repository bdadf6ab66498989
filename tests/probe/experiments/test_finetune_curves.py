"""Tests of probe.experiments.finetune_speed.curves on a tiny finetune-speed run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from torch import nn

import probe
from hooks import Recorder
from probe.analysis.curves import curve_metrics
from probe.analysis.stats.paired import compare_paired
from probe.errors import FinetuneRunsError, StatsInputError
from probe.experiments.finetune_speed.curves import (
    analyse_finetune_curves,
    compare_finetune_curves,
    finetune_curve_metrics,
)
from probe.experiments.finetune_speed.experiment import FinetuneConfig, run_finetune_speed

METRICS = ["start", "end_minus_start", "max", "tmax"]


@pytest.fixture(scope="module")
def finetune_out(tmp_path_factory):
    cfg = FinetuneConfig(
        seeds=3,
        width=4,
        depth=1,
        pretrain_steps=20,
        finetune_steps=10,
        n_grid=16,
        n_snapshots=3,
        n_bootstrap=50,
    )
    out = tmp_path_factory.mktemp("fs")
    run_finetune_speed(cfg, out, progress=False)
    return out


def logged_loss(out, run):
    return probe.open_run(out / run).metrics()["loss"].to_numpy(dtype=np.float64)


def test_raw_metrics_are_the_logged_curves(finetune_out):
    m = finetune_curve_metrics(finetune_out, smooth=False)
    assert len(m) == 3 * 2 * 2 * 2  # seeds x nets x tasks x curves
    assert set(m["seed"]) == {0, 1, 2} and set(m["net"]) == {"ProductNet", "SumNet"}
    assert (m["n_steps"] == 10).all() and (m["smoothing"] == "raw").all()
    csv = pd.read_csv(finetune_out / "metrics.csv")
    loss = m[m["curve"] == "loss"].merge(csv, left_on="run", right_on="run_store")
    np.testing.assert_allclose(loss["start"], loss["initial_loss"], rtol=1e-6)
    for row in m[m["curve"] == "log10_reduction"].itertuples():
        v = logged_loss(finetune_out, row.run)
        assert row.start == 0.0
        assert row.end_minus_start == pytest.approx(np.log10(v[0] / v[-1]), abs=1e-12)
        assert row.max == pytest.approx(np.log10(v[0] / v.min()), abs=1e-12)
        assert row.tmax == (np.argmin(v) + 1) / v.size


def test_smoothed_metrics_and_fraction_curve(finetune_out):
    m = finetune_curve_metrics(finetune_out, curves=["fraction_reduced"])
    assert set(m["curve"]) == {"fraction_reduced"} and (m["smoothing"] == "3RS3R").all()
    for row in m.itertuples():
        v = logged_loss(finetune_out, row.run)
        expected = curve_metrics(1.0 - v / v[0])
        assert [getattr(row, k) for k in METRICS] == pytest.approx(
            [getattr(expected, k) for k in METRICS], abs=1e-12
        )


def test_comparison_is_paired_by_seed(finetune_out):
    m = finetune_curve_metrics(finetune_out, smooth=False)
    stats = compare_finetune_curves(m, n_resamples=200, seed=1)
    assert len(stats) == 2 * 2 * 4  # tasks x curves x metrics
    row = stats.set_index(["task", "curve", "metric"]).loc[("A", "log10_reduction", "max")]
    part = m[(m["task"] == "A") & (m["curve"] == "log10_reduction")]
    wide = part.pivot(index="seed", columns="net", values="max")
    ref = compare_paired(wide["ProductNet"], wide["SumNet"], n_resamples=200, seed=1)
    assert row["n_seeds"] == 3
    assert row["median_a"] == pytest.approx(wide["ProductNet"].median())
    assert row["median_b"] == pytest.approx(wide["SumNet"].median())
    assert row["effect"] == pytest.approx(ref.median_diff)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((ref.ci_low, ref.ci_high))
    assert (row["statistic"], row["p_value"]) == pytest.approx((ref.statistic, ref.pvalue))
    start = stats[(stats["curve"] == "log10_reduction") & (stats["metric"] == "start")]
    assert (start["effect"] == 0).all() and (start["p_value"] == 1).all()  # raw start is 0


def test_analyse_writes_csvs(finetune_out, tmp_path):
    res = analyse_finetune_curves(finetune_out, tmp_path / "curves", n_resamples=50)
    assert res.metrics_csv == tmp_path / "curves" / "curve_metrics.csv"
    assert pd.read_csv(res.metrics_csv).shape == res.metrics.shape
    assert pd.read_csv(res.stats_csv).shape == res.stats.shape == (16, 11)


def test_one_net_cannot_be_compared(finetune_out):
    m = finetune_curve_metrics(finetune_out, curves=["loss"])
    with pytest.raises(StatsInputError, match="needs exactly 2 groups"):
        compare_finetune_curves(m[m["net"] == "SumNet"])


def fake_run(path, losses, config):
    with Recorder(nn.Sequential(nn.Linear(1, 1)), layers=["0"], store=path, config=config) as rec:
        for v in losses:
            rec.step(loss=v)


def test_bad_folders(tmp_path):
    with pytest.raises(FinetuneRunsError, match="curves must be a non-empty list of"):
        finetune_curve_metrics(tmp_path, curves=["accuracy"])
    with pytest.raises(FinetuneRunsError, match="no run stores under"):
        finetune_curve_metrics(tmp_path)
    fake_run(tmp_path / "runs" / "seed0" / "other.zarr", [1.0, 0.5], {"lr": 0.1})
    with pytest.raises(FinetuneRunsError, match="is not a finetune-speed run"):
        finetune_curve_metrics(tmp_path)
    bad = tmp_path / "zero"
    fake_run(bad / "runs" / "seed0" / "SumNet_A.zarr", [1.0, 0.0], {"net": "SumNet", "task": "A"})
    with pytest.raises(FinetuneRunsError, match="loss must be finite and > 0"):
        finetune_curve_metrics(bad)
