"""Tests of probe.report.curve_report (sweep table -> metrics, trajectories, figures, tests)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from probe.analysis.curves import curve_metrics
from probe.analysis.stats.curve_stats import null_test
from probe.errors import CurveTableError, SweepTableError
from probe.plots.curves import plot_metric_ribbons, plot_processing_curves
from probe.report.curve_report import analyse_sweep, read_sweep_table

T = 6
HEIGHT = {"a": 0.2, "b": 0.4}  # peak gain over chance of each group's curves


def sweep_table(*, null: bool = False, seeds: int = 4, epochs: int = 3) -> pd.DataFrame:
    """Curves 0.5 at t=1 rising to a peak at t=3 (a) or t=4 (b), growing with epoch."""
    rng = np.random.default_rng(0)
    rows = []
    conditions = [False, True] if null else [False]
    for shuffled in conditions:
        for pair, height in HEIGHT.items():
            peak = 3 if pair == "a" else 4
            for seed in range(seeds):
                run = f"pair={pair}_seed={seed}" + ("_shuffle_labels=true" if shuffled else "")
                for epoch in range(epochs):
                    gain = 0.02 if shuffled else height * (1 + epoch) / epochs
                    bump = 1.0 - np.abs(np.arange(1, T + 1) - peak) / T
                    v = 0.5 + gain * bump + 0.01 * rng.random(T)
                    v[0] = 0.5  # every curve starts at chance: start is constant
                    for t in range(1, T + 1):
                        rows.append(
                            {
                                "run": run,
                                "pair": pair,
                                "seed": seed,
                                "shuffle_labels": shuffled,
                                "epoch": epoch,
                                "t": t,
                                "readout": "knn",
                                "accuracy": v[t - 1],
                            }
                        )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    sweep_table(null=True).to_csv(folder / "table.csv", index=False)
    return analyse_sweep(folder / "table.csv", folder / "out", smooth=False), folder


def test_metrics_are_curve_metrics_of_every_curve(report):
    res, folder = report
    table = pd.read_csv(folder / "table.csv")
    assert len(res.metrics) == table.groupby(["run", "epoch"]).ngroups == 2 * 2 * 4 * 3
    for _, row in res.metrics.sample(6, random_state=0).iterrows():
        curve = table[(table["run"] == row["run"]) & (table["epoch"] == row["epoch"])]
        m = curve_metrics(curve.sort_values("t")["accuracy"], smooth=False)
        assert row["smoothing"] == "raw"
        for k in ("start", "end_minus_start", "max", "tmax"):
            assert row[k] == pytest.approx(getattr(m, k), abs=1e-12)
    null_runs = res.metrics.loc[res.metrics["condition"] == "null", "run"]
    assert null_runs.str.endswith("shuffle_labels=true").all()  # bools survived the CSV trip


def test_trajectories_average_the_real_runs(report):
    res, _ = report
    real = res.metrics[res.metrics["condition"] == "real"]
    dev = res.trajectories[res.trajectories["trajectory"] == "developmental"]
    row = dev[(dev["group"] == "b") & (dev["epoch"] == 2)].iloc[0]
    vals = real[(real["group"] == "b") & (real["epoch"] == 2)]["max"]
    assert row["n_runs"] == 4
    assert row["max_mean"] == pytest.approx(vals.mean(), abs=1e-12)
    assert row["max_se"] == pytest.approx(vals.std(ddof=1) / 2.0, abs=1e-12)
    assert set(res.trajectories["trajectory"]) == {"developmental", "processing"}


def test_outputs_written(report):
    res, folder = report
    assert set(res.figures) == {
        f"knn_{k}" for k in ("curves", "ribbons", "developmental", "processing")
    }
    for path in [*res.figures.values(), *res.tables.values()]:
        assert path.parent == folder / "out" and path.stat().st_size > 0
    assert pd.read_csv(res.tables["stats"]).shape == res.stats.shape


def test_group_statistics(report):
    res, _ = report
    s = res.stats.set_index(["dv", "test"])
    assert s.loc[("start", "constant"), "n_obs"] == 24  # real runs x epochs
    real = res.metrics[res.metrics["condition"] == "real"]
    last = real[real["epoch"] == 2]
    h, p = stats.kruskal(*(g["max"] for _, g in last.groupby("group")))
    kw = s.loc[("max", "kruskal-wallis")]
    assert kw["statistic"] == pytest.approx(h) and kw["p_value"] == pytest.approx(p)
    assert kw["n_obs"] == 8 and kw["df_num"] == 1
    f = s.loc[("max", "nested-f")]
    assert (f["df_num"], f["df_den"]) == (2, 20)  # + C(group) and epoch:C(group); 24 - 4
    assert 0 < f["delta_r2"] <= f["r2"] <= 1 and f["p_value"] < 1e-6  # b peaks higher
    tmax = s.loc[("tmax", "kruskal-wallis")]
    assert tmax["p_value"] < 0.05  # b peaks later (t=4 of 6) than a (t=3)


def test_null_vs_real_is_paired_by_group_and_seed(report):
    res, _ = report
    row = res.stats.set_index(["dv", "test"]).loc[("max", "wilcoxon")]
    last = res.metrics[res.metrics["epoch"] == 2].set_index(["group", "seed", "condition"])["max"]
    diff = last.xs("null", level="condition") - last.xs("real", level="condition")
    assert row["n_obs"] == 16
    assert row["effect"] == pytest.approx(np.median(diff), abs=1e-12) and row["effect"] < 0
    assert row["ci_low"] <= row["effect"] <= row["ci_high"]
    assert row["p_value"] == pytest.approx(stats.wilcoxon(diff).pvalue)


def test_without_null_readout_or_seed_columns(tmp_path):
    table = sweep_table(seeds=3, epochs=2).drop(columns=["shuffle_labels", "readout", "seed"])
    table.to_parquet(tmp_path / "table.parquet", index=False)
    res = analyse_sweep(tmp_path / "table.parquet", tmp_path / "out")
    assert set(res.metrics["readout"]) == {"all"} and set(res.metrics["condition"]) == {"real"}
    assert (res.metrics["smoothing"] == "3RS3R").all()
    assert not res.stats["test"].isin(["wilcoxon", "mann-whitney"]).any()
    assert set(res.figures) == {
        f"all_{k}" for k in ("curves", "ribbons", "developmental", "processing")
    }


def test_unpaired_null_uses_mann_whitney(report):
    res, _ = report
    m = res.metrics[~((res.metrics["condition"] == "null") & (res.metrics["seed"] == 0))]
    row = null_test(m, "knn", "max", seed=0)  # a null run missing: runs no longer pair up
    last = m[m["epoch"] == 2]
    null, real = (last.loc[last["condition"] == c, "max"] for c in ("null", "real"))
    assert row["test"] == "mann-whitney" and row["n_obs"] == 14
    assert row["effect"] == pytest.approx(null.mean() - real.mean(), abs=1e-12)
    assert row["p_value"] == pytest.approx(stats.mannwhitneyu(null, real).pvalue)


def test_bad_tables(tmp_path):
    with pytest.raises(SweepTableError, match=r"must be a \.csv or \.parquet file; got"):
        read_sweep_table(tmp_path / "table.json")
    with pytest.raises(SweepTableError, match="does not exist; run `probe sweep CONFIG` first"):
        read_sweep_table(tmp_path / "table.csv")
    sweep_table(epochs=1).drop(columns=["pair"]).to_csv(tmp_path / "table.csv", index=False)
    with pytest.raises(SweepTableError, match=r"missing \['pair'\]"):
        analyse_sweep(tmp_path / "table.csv", tmp_path / "out")


@pytest.mark.parametrize("plot", [plot_metric_ribbons, plot_processing_curves])
def test_plots_reject_tables_without_columns(plot):
    with pytest.raises(CurveTableError, match=r"must be a non-empty table with columns"):
        plot(pd.DataFrame({"group": ["a"], "epoch": [0]}))
