import numpy as np
import pandas as pd
import pytest
from scipy import stats

from probe.analysis.stats.group_stats import (
    bootstrap_mean_difference,
    compare_runs,
    kruskal_wallis,
    mann_whitney,
    nested_f_test,
    ols_glance,
    per_run_summary,
)
from probe.analysis.stats.paired import compare_paired
from probe.errors import StatsInputError

ALPHA = 0.05


def binomial_bounds(n_draws, p=ALPHA):
    """Two-sided 99.9% range of the number of rejections (or misses) out of n_draws at rate p."""
    return stats.binom.ppf(0.0005, n_draws, p), stats.binom.ppf(0.9995, n_draws, p)


def epochs_by_pair(rng, slopes, n_sims=2, n_epochs=5, noise=1.0):
    """Rows (epoch, sim, pair): dv = slope[pair] * epoch + noise."""
    rows = [
        {"epoch": e, "sim": s, "pair": p, "dv": slope * e + noise * rng.standard_normal()}
        for p, slope in zip("abc", slopes, strict=True)
        for s in range(n_sims)
        for e in range(n_epochs)
    ]
    return pd.DataFrame(rows)


def lstsq_fit(X, y):
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    return float(np.sum((y - X @ beta) ** 2))


# ------------------------------------------------------------------ OLS and nested F
def test_ols_glance_matches_numpy():
    rng = np.random.default_rng(0)
    df = epochs_by_pair(rng, [0.1, 0.3, 0.2])
    out = ols_glance(df, "dv ~ epoch + C(pair)").iloc[0]
    X = np.column_stack([np.ones(len(df)), df["epoch"], df["pair"] == "b", df["pair"] == "c"])
    y = df["dv"].to_numpy()
    n, p = X.shape[0], X.shape[1] - 1
    r2 = 1.0 - lstsq_fit(X, y) / np.sum((y - y.mean()) ** 2)
    F = (r2 / p) / ((1 - r2) / (n - p - 1))
    assert out["n_obs"] == n and out["df_model"] == p and out["df_resid"] == n - p - 1
    np.testing.assert_allclose(out["r2"], r2, rtol=1e-10)
    np.testing.assert_allclose(out["adj_r2"], 1 - (1 - r2) * (n - 1) / (n - p - 1), rtol=1e-10)
    np.testing.assert_allclose(out["f_statistic"], F, rtol=1e-10)
    np.testing.assert_allclose(out["p_value"], stats.f.sf(F, p, n - p - 1), rtol=1e-8)
    # intercept-only model: no F-test
    assert np.isnan(ols_glance(df, "dv ~ 1").iloc[0]["p_value"])


def test_nested_f_test_matches_numpy_and_detects_interaction():
    rng = np.random.default_rng(1)
    df = epochs_by_pair(rng, [0.0, 0.5, 1.0], noise=0.5)  # slopes differ by pair
    table = nested_f_test(df, "dv ~ epoch", "dv ~ epoch * C(pair)")
    e = df["epoch"].to_numpy(float)
    b, c = (df["pair"] == "b").to_numpy(float), (df["pair"] == "c").to_numpy(float)
    ones, y = np.ones(len(df)), df["dv"].to_numpy()
    ssr_r = lstsq_fit(np.column_stack([ones, e]), y)
    ssr_f = lstsq_fit(np.column_stack([ones, e, b, c, e * b, e * c]), y)
    df_f = len(df) - 6
    F = ((ssr_r - ssr_f) / 4) / (ssr_f / df_f)
    full = table.iloc[1]
    assert list(table["model"]) == ["dv ~ epoch", "dv ~ epoch * C(pair)"]
    assert full["df_diff"] == 4 and full["df_resid"] == df_f and table.iloc[0]["df_resid"] == 28
    np.testing.assert_allclose(table["ssr"], [ssr_r, ssr_f], rtol=1e-10)
    np.testing.assert_allclose(full["f_statistic"], F, rtol=1e-10)
    np.testing.assert_allclose(full["p_value"], stats.f.sf(F, 4, df_f), rtol=1e-8)
    np.testing.assert_allclose(full["delta_r2"], full["r2"] - table.iloc[0]["r2"], rtol=1e-12)
    assert full["p_value"] < 1e-6 and full["delta_r2"] > 0.3
    assert np.isnan(table.iloc[0]["f_statistic"]) and np.isnan(table.iloc[0]["delta_r2"])


def test_nested_f_test_rejection_rate_is_nominal_under_the_null():
    rng = np.random.default_rng(2)
    n_draws = 100  # each draw fits two formula models (~30 ms each)
    p = [
        nested_f_test(
            epochs_by_pair(rng, [0.2, 0.2, 0.2]), "dv ~ epoch", "dv ~ epoch * C(pair)"
        ).iloc[1]["p_value"]
        for _ in range(n_draws)
    ]
    low, high = binomial_bounds(n_draws)
    assert low <= np.sum(np.array(p) < ALPHA) <= high


def test_ols_errors():
    df = epochs_by_pair(np.random.default_rng(0), [0.1, 0.2, 0.3])
    with pytest.raises(StatsInputError, match="cannot fit 'dv ~ speed'"):
        ols_glance(df, "dv ~ speed")
    with pytest.raises(StatsInputError, match="full must have more parameters than reduced"):
        nested_f_test(df, "dv ~ epoch * C(pair)", "dv ~ epoch")
    with pytest.raises(StatsInputError, match="same rows; got 30 and 29 rows"):
        nested_f_test(df.assign(x=np.r_[np.nan, np.arange(29.0)]), "dv ~ epoch", "dv ~ epoch + x")


# ------------------------------------------------------------------ rank tests and bootstrap
def two_groups(rng, shift, n=10):
    dv = rng.standard_normal(2 * n) + np.r_[np.full(n, shift), np.zeros(n)]
    return pd.DataFrame({"g": ["a"] * n + ["b"] * n, "dv": dv})


def test_mann_whitney_known_answer_and_effect():
    # complete separation, 5 vs 5: U = 25, exact two-sided p = 2 / C(10, 5) = 2/252
    df = pd.DataFrame({"g": list("aaaaabbbbb"), "dv": [6, 7, 8, 9, 10, 1, 2, 3, 4, 5]})
    out = mann_whitney(df, "dv", "g").iloc[0]
    assert (out["group_a"], out["group_b"], out["n_a"], out["n_b"]) == ("a", "b", 5, 5)
    assert out["u_statistic"] == 25 and out["auc"] == 1.0
    np.testing.assert_allclose(out["p_value"], 2 / 252, rtol=1e-12)
    swapped = mann_whitney(df, "dv", "g", groups=("b", "a")).iloc[0]
    assert swapped["u_statistic"] == 0 and swapped["auc"] == 0.0
    effect = mann_whitney(two_groups(np.random.default_rng(0), 2.0), "dv", "g")
    assert effect.iloc[0]["p_value"] < 1e-3


def test_mann_whitney_and_kruskal_rejection_rates_are_nominal():
    rng = np.random.default_rng(3)
    n_draws = 200
    mw, kw = [], []
    for _ in range(n_draws):
        df = two_groups(rng, 0.0)
        mw.append(mann_whitney(df, "dv", "g").iloc[0]["p_value"])
        df3 = pd.DataFrame({"g": np.repeat(list("xyz"), 8), "dv": rng.standard_normal(24)})
        kw.append(kruskal_wallis(df3, "dv", "g").iloc[0]["p_value"])
    low, high = binomial_bounds(n_draws)
    assert low <= np.sum(np.array(mw) < ALPHA) <= high
    assert low <= np.sum(np.array(kw) < ALPHA) <= high


def test_kruskal_wallis_known_answer():
    # ranks 1-3, 4-6, 7-9: H = 12/(9*10) * (6² + 15² + 24²)/3 - 3*10 = 7.2, p = exp(-3.6)
    df = pd.DataFrame({"g": np.repeat(["x", "y", "z"], 3), "dv": np.arange(1.0, 10.0)})
    out = kruskal_wallis(df, "dv", "g").iloc[0]
    assert out["n_groups"] == 3 and out["n_obs"] == 9
    np.testing.assert_allclose([out["h_statistic"], out["p_value"]], [7.2, np.exp(-3.6)])


def test_bootstrap_mean_difference_known_and_coverage():
    df = pd.DataFrame({"g": ["a"] * 3 + ["b"] * 2, "dv": [1.0, 2.0, 3.0, 0.0, 1.0]})
    out = bootstrap_mean_difference(df, "dv", "g", n_resamples=500).iloc[0]
    assert out["diff"] == 1.5 and out["mean_a"] == 2.0 and out["mean_b"] == 0.5
    # resampled means lie in [1, 3] - [0, 1]
    assert -0.0 <= out["ci_low"] <= 1.5 <= out["ci_high"] <= 3.0 and out["level"] == 0.95
    again = bootstrap_mean_difference(df, "dv", "g", n_resamples=500).iloc[0]
    assert again["ci_low"] == out["ci_low"]  # seeded
    rng = np.random.default_rng(4)
    n_draws, misses = 200, 0
    for seed in range(n_draws):
        res = bootstrap_mean_difference(
            two_groups(rng, 0.7, n=30), "dv", "g", n_resamples=400, seed=seed
        ).iloc[0]
        misses += not res["ci_low"] <= 0.7 <= res["ci_high"]
    low, high = binomial_bounds(n_draws)
    assert low <= misses <= high


def test_rank_and_bootstrap_errors():
    df = pd.DataFrame({"g": list("aabbcc"), "dv": np.arange(6.0)})
    with pytest.raises(StatsInputError, match=r"missing \['score'\]"):
        mann_whitney(df, "score", "g")
    with pytest.raises(StatsInputError, match="exactly 2 levels, or pass groups"):
        mann_whitney(df, "dv", "g")
    with pytest.raises(StatsInputError, match="groups must be two levels of 'g'"):
        mann_whitney(df, "dv", "g", groups=("a", "d"))
    with pytest.raises(StatsInputError, match="must be finite in both groups"):
        mann_whitney(df.assign(dv=[np.nan, 1, 2, 3, 4, 5]), "dv", "g", groups=("a", "b"))
    with pytest.raises(StatsInputError, match=r"needs >= 2 groups .* got 1 group"):
        kruskal_wallis(df.assign(g="a"), "dv", "g")
    with pytest.raises(StatsInputError, match="not all identical"):
        kruskal_wallis(df.assign(dv=1.0), "dv", "g")
    with pytest.raises(StatsInputError, match=r"level in \(0, 1\); got 2000, 95"):
        bootstrap_mean_difference(df, "dv", "g", groups=("a", "b"), level=95)
    with pytest.raises(StatsInputError, match="n_resamples >= 1"):
        bootstrap_mean_difference(df, "dv", "g", groups=("a", "b"), n_resamples=0)


# ------------------------------------------------------------------ per-run tests
def runs_table(rng, shift=0.0, n_runs=8, n_epochs=10, run_sd=1.0, noise=0.3, groups="xy"):
    """n_runs per group, each with a random intercept (sd run_sd) and n_epochs rows."""
    rows = []
    for gi, g in enumerate(groups):
        for r in range(n_runs):
            level = run_sd * rng.standard_normal() + (shift if gi == 0 else 0.0)
            rows += [
                {
                    "run": f"{g}{r}",
                    "group": g,
                    "seed": r,
                    "epoch": e,
                    "max": level + noise * rng.standard_normal(),
                }
                for e in range(n_epochs)
            ]
    return pd.DataFrame(rows)


def test_per_run_summary_known_values():
    df = pd.DataFrame(
        {
            "run": ["r1"] * 3 + ["r2"] * 2,
            "group": ["x"] * 3 + ["y"] * 2,
            "max": [0.1, 0.2, 0.6, 0.5, 0.7],
        }
    )
    out = per_run_summary(df, "max")
    assert list(out.columns) == ["run", "group", "max", "n_rows"]
    np.testing.assert_allclose(out["max"], [0.3, 0.6])
    np.testing.assert_allclose(per_run_summary(df, "max", stat="median")["max"], [0.2, 0.6])
    assert out["n_rows"].tolist() == [3, 2]


def test_compare_runs_avoids_pseudo_replication():
    # No group effect, strong run effect: rows of one run are correlated, so a row-level OLS
    # F-test rejects far too often while the test on one mean per run stays at the nominal rate.
    rng = np.random.default_rng(5)
    n_draws, rows_reject, runs_reject = 100, 0, 0
    for _ in range(n_draws):
        df = runs_table(rng)
        rows_reject += ols_glance(df, "max ~ C(group)").iloc[0]["p_value"] < ALPHA
        runs_reject += compare_runs(df, "max", n_resamples=50).iloc[0]["p_value"] < ALPHA
    low, high = binomial_bounds(n_draws)
    assert low <= runs_reject <= high
    assert rows_reject > 3 * high  # intraclass correlation 0.92 over 10 rows: ~50% rejections


def test_compare_runs_detects_effect_paired_and_k_groups():
    rng = np.random.default_rng(6)
    df = runs_table(rng, shift=2.5)
    out = compare_runs(df, "max").iloc[0]
    assert out["test"] == "mann-whitney" and out["n_runs"] == 16 and out["n_groups"] == 2
    assert out["p_value"] < 0.01 and out["ci_low"] < out["effect"] < out["ci_high"]
    means = per_run_summary(df, "max").groupby("group")["max"].mean()
    np.testing.assert_allclose(out["effect"], means["x"] - means["y"], rtol=1e-12)
    paired = compare_runs(df, "max", paired_by="seed").iloc[0]
    s = per_run_summary(df, "max")
    ref = compare_paired(s.loc[s.group == "x", "max"], s.loc[s.group == "y", "max"])
    assert paired["test"] == "wilcoxon"
    assert (paired["statistic"], paired["p_value"], paired["effect"]) == (
        ref.statistic,
        ref.pvalue,
        ref.median_diff,
    )
    three = compare_runs(runs_table(rng, groups="xyz"), "max").iloc[0]
    assert three["test"] == "kruskal-wallis" and three["n_groups"] == 3
    assert np.isnan(three["effect"]) and 0.0 < three["p_value"] <= 1.0


def test_per_run_errors():
    df = runs_table(np.random.default_rng(0), n_runs=3, n_epochs=2)
    with pytest.raises(StatsInputError, match="stat must be one of"):
        per_run_summary(df, "max", stat="last")
    with pytest.raises(StatsInputError, match="run 'x0' is in several"):
        per_run_summary(df.assign(group=np.where(df.index == 0, "y", df["group"])), "max")
    with pytest.raises(StatsInputError, match=r"missing \['pair'\]"):
        compare_runs(df, "max", group="pair")
    with pytest.raises(StatsInputError, match="needs exactly 2 groups with one run per 'seed'"):
        compare_runs(runs_table(np.random.default_rng(0), groups="xyz"), "max", paired_by="seed")
    with pytest.raises(StatsInputError, match="needs exactly 2 groups"):
        compare_runs(df[df["run"] != "x0"], "max", paired_by="seed")
    with pytest.raises(StatsInputError, match="must be constant within each run"):
        compare_runs(df.assign(seed=df.index), "max", paired_by="seed")


def test_moved_names_are_reexported():
    from probe.analysis.stats import _group_tests, _ols, group_stats

    assert group_stats.ols_glance is _ols.ols_glance
    assert group_stats.nested_f_test is _ols.nested_f_test
    for name in ("mann_whitney", "kruskal_wallis", "bootstrap_mean_difference"):
        assert getattr(group_stats, name) is getattr(_group_tests, name)
