"""Group statistics for learning-curve metrics (features spec §3.4); tidy tables in and out.

`ols_glance` (OLS with categorical factors: R², adjusted R², overall F), `nested_f_test`
(anova of two nested OLS models, ΔR²), `mann_whitney`, `kruskal_wallis`,
`bootstrap_mean_difference`, and the per-run path `per_run_summary` + `compare_runs`, which
tests one value per run instead of correlated (epoch, run) rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from probe.experiments._stats import StatsInputError, compare_paired

__all__ = [
    "bootstrap_mean_difference",
    "compare_runs",
    "kruskal_wallis",
    "mann_whitney",
    "nested_f_test",
    "ols_glance",
    "per_run_summary",
]

_STATS = ("mean", "median")


def _check_columns(data: pd.DataFrame, names: Sequence[str]) -> None:
    missing = [c for c in names if c not in data.columns]
    if missing:
        msg = f"data must have columns {list(names)}; missing {missing}, got {list(data.columns)}."
        raise StatsInputError(msg)


def _fit(data: pd.DataFrame, formula: str) -> Any:
    """Fit OLS by formula, turning formula errors into `StatsInputError`."""
    import statsmodels.formula.api as smf
    from patsy import PatsyError

    try:
        return smf.ols(formula, data).fit()
    except PatsyError as err:
        msg = f"cannot fit {formula!r}: {err}. Use column names of data; C(x) marks a factor."
        raise StatsInputError(msg) from err


def ols_glance(data: pd.DataFrame, formula: str) -> pd.DataFrame:
    """Fit an OLS model and return its one-row summary (R's ``broom::glance`` of ``lm``).

    Parameters
    ----------
    data : DataFrame
        One row per observation.
    formula : str
        Patsy formula, e.g. ``"max ~ epoch * C(pair)"``; ``C(x)`` makes ``x`` categorical
        (treatment coding, first level as reference, as R's ``factor``).

    Returns
    -------
    DataFrame
        One row: ``formula, n_obs, df_model, df_resid, r2, adj_r2, f_statistic, p_value``;
        ``p_value`` is the overall F-test of the model against the intercept-only model.

    Raises
    ------
    StatsInputError
        The formula names a missing column or cannot be parsed.

    Notes
    -----
    Rows that are epochs of the same run are not independent (pseudo-replication), so this
    p-value is too small for such data; test per-run summaries with `compare_runs`.
    """
    res = _fit(data, formula)
    return pd.DataFrame([{"formula": formula, **_glance(res)}])


def _glance(res: Any) -> dict[str, float]:
    return {
        "n_obs": int(res.nobs),
        "df_model": float(res.df_model),
        "df_resid": float(res.df_resid),
        "r2": float(res.rsquared),
        "adj_r2": float(res.rsquared_adj),
        "f_statistic": float(res.fvalue) if res.df_model > 0 else np.nan,
        "p_value": float(res.f_pvalue) if res.df_model > 0 else np.nan,
    }


def nested_f_test(data: pd.DataFrame, reduced: str, full: str) -> pd.DataFrame:
    """Compare two nested OLS models with an F-test (R's ``anova(lm(reduced), lm(full))``).

    Parameters
    ----------
    data : DataFrame
        One row per observation.
    reduced, full : str
        Patsy formulas; ``full`` must contain every term of ``reduced``, e.g. Jiang & Dale's
        ``"max ~ epoch"`` and ``"max ~ epoch * C(pair)"``.

    Returns
    -------
    DataFrame
        Two rows (reduced, full): ``model, n_obs, df_resid, ssr, df_diff, ss_diff, f_statistic,
        p_value, r2, adj_r2, delta_r2``. The test columns and ``delta_r2 = R²_full - R²_reduced``
        are on the full model's row (NaN on the reduced one).

    Raises
    ------
    StatsInputError
        A formula cannot be fitted, the models use different rows (missing values), or ``full``
        has no more parameters than ``reduced``.

    Notes
    -----
    Nesting is not checked beyond the parameter count. See `ols_glance` on pseudo-replication.
    """
    from statsmodels.stats.anova import anova_lm

    small, big = _fit(data, reduced), _fit(data, full)
    if small.nobs != big.nobs:
        msg = f"both models must use the same rows; got {small.nobs:.0f} and {big.nobs:.0f} rows."
        raise StatsInputError(msg)
    if big.df_model <= small.df_model:
        msg = (
            f"full must have more parameters than reduced; got {big.df_model:.0f} <= "
            f"{small.df_model:.0f} model degrees of freedom."
        )
        raise StatsInputError(msg)
    table = anova_lm(small, big).rename(columns={"F": "f_statistic", "Pr(>F)": "p_value"})
    table.insert(0, "model", [reduced, full])
    table.insert(1, "n_obs", int(big.nobs))
    table["r2"] = [small.rsquared, big.rsquared]
    table["adj_r2"] = [small.rsquared_adj, big.rsquared_adj]
    table["delta_r2"] = [np.nan, big.rsquared - small.rsquared]
    table.loc[0, "df_diff"] = np.nan
    return table.reset_index(drop=True)


def _two_groups(
    data: pd.DataFrame, dv: str, group: str, groups: Sequence[Any] | None
) -> tuple[Any, Any, np.ndarray, np.ndarray]:
    """Labels and finite values of the two groups compared (a, b)."""
    _check_columns(data, [dv, group])
    levels = list(pd.unique(data[group]))
    if groups is None:
        if len(levels) != 2:
            msg = f"{group!r} must have exactly 2 levels, or pass groups=(a, b); got {levels}."
            raise StatsInputError(msg)
        groups = sorted(levels, key=str)
    if len(groups) != 2 or any(g not in levels for g in groups):
        msg = f"groups must be two levels of {group!r} out of {levels}; got {list(groups)}."
        raise StatsInputError(msg)
    a, b = (data.loc[data[group] == g, dv].to_numpy(dtype=float) for g in groups)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        msg = f"{dv!r} must be finite in both groups; drop or impute NaN/Inf rows first."
        raise StatsInputError(msg)
    return groups[0], groups[1], a, b


def mann_whitney(
    data: pd.DataFrame, dv: str, group: str, *, groups: Sequence[Any] | None = None
) -> pd.DataFrame:
    """Two-sided Mann–Whitney U test of ``dv`` between two groups (scipy ``mannwhitneyu``).

    Parameters
    ----------
    data : DataFrame
        One row per independent observation (e.g. per run; see `per_run_summary`).
    dv, group : str
        Value column and group column.
    groups : (a, b), optional
        The two levels to compare; default: the only two levels, sorted.

    Returns
    -------
    DataFrame
        One row: ``group_a, group_b, n_a, n_b, u_statistic, auc, p_value``. ``u_statistic`` is
        U of group a; ``auc = U / (n_a n_b)`` estimates P(a > b) + P(a = b)/2.

    Raises
    ------
    StatsInputError
        Missing columns, not exactly two groups to compare, or non-finite values.

    Examples
    --------
    >>> df = pd.DataFrame({"g": list("aaabbb"), "dv": [4, 5, 6, 1, 2, 3]})
    >>> mann_whitney(df, "dv", "g")[["u_statistic", "auc", "p_value"]].round(3).iloc[0].tolist()
    [9.0, 1.0, 0.1]
    """
    ga, gb, a, b = _two_groups(data, dv, group, groups)
    res = stats.mannwhitneyu(a, b, alternative="two-sided")
    u = float(res.statistic)
    row = {
        "group_a": ga,
        "group_b": gb,
        "n_a": a.size,
        "n_b": b.size,
        "u_statistic": u,
        "auc": u / (a.size * b.size),
        "p_value": float(res.pvalue),
    }
    return pd.DataFrame([row])


def kruskal_wallis(data: pd.DataFrame, dv: str, group: str) -> pd.DataFrame:
    """Kruskal–Wallis H test of ``dv`` across the levels of ``group`` (scipy ``kruskal``).

    Parameters
    ----------
    data : DataFrame
        One row per independent observation.
    dv, group : str
        Value column and group column.

    Returns
    -------
    DataFrame
        One row: ``n_groups, n_obs, h_statistic, p_value`` (chi-squared approximation, ties
        corrected).

    Raises
    ------
    StatsInputError
        Missing columns, fewer than 2 groups, non-finite values, or all values identical.

    Examples
    --------
    >>> df = pd.DataFrame({"g": list("xxxyyyzzz"), "dv": range(9)})
    >>> kruskal_wallis(df, "dv", "g")[["h_statistic", "p_value"]].round(4).iloc[0].tolist()
    [7.2, 0.0273]
    """
    _check_columns(data, [dv, group])
    samples = [g[dv].to_numpy(dtype=float) for _, g in data.groupby(group, sort=True)]
    values = np.concatenate(samples) if samples else np.zeros(0)
    if len(samples) < 2 or not np.isfinite(values).all() or np.all(values == values[0]):
        msg = (
            f"kruskal_wallis needs >= 2 groups of finite, not all identical {dv!r} values; "
            f"got {len(samples)} group(s)."
        )
        raise StatsInputError(msg)
    res = stats.kruskal(*samples)
    row = {
        "n_groups": len(samples),
        "n_obs": values.size,
        "h_statistic": float(res.statistic),
        "p_value": float(res.pvalue),
    }
    return pd.DataFrame([row])


def bootstrap_mean_difference(
    data: pd.DataFrame,
    dv: str,
    group: str,
    *,
    groups: Sequence[Any] | None = None,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Percentile-bootstrap CI of the difference of group means ``mean(a) - mean(b)``.

    Parameters
    ----------
    data : DataFrame
        One row per independent observation.
    dv, group, groups
        See `mann_whitney`.
    n_resamples : int
        Resamples; each draws n_a values of a and n_b values of b with replacement.
    level : float
        Confidence level in (0, 1).
    seed : int
        Seed of `numpy.random.default_rng`.

    Returns
    -------
    DataFrame
        One row: ``group_a, group_b, n_a, n_b, mean_a, mean_b, diff, ci_low, ci_high, level``.

    Raises
    ------
    StatsInputError
        As `mann_whitney`; also ``n_resamples`` < 1 or ``level`` outside (0, 1).
    """
    if n_resamples < 1 or not 0.0 < level < 1.0:
        msg = f"need n_resamples >= 1 and level in (0, 1); got {n_resamples!r}, {level!r}."
        raise StatsInputError(msg)
    ga, gb, a, b = _two_groups(data, dv, group, groups)
    rng = np.random.default_rng(seed)
    boot = a[rng.integers(0, a.size, (n_resamples, a.size))].mean(axis=1)
    boot -= b[rng.integers(0, b.size, (n_resamples, b.size))].mean(axis=1)
    low, high = np.quantile(boot, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    row = {
        "group_a": ga,
        "group_b": gb,
        "n_a": a.size,
        "n_b": b.size,
        "mean_a": a.mean(),
        "mean_b": b.mean(),
        "diff": a.mean() - b.mean(),
        "ci_low": float(low),
        "ci_high": float(high),
        "level": level,
    }
    return pd.DataFrame([row])


def per_run_summary(
    data: pd.DataFrame, dv: str, *, run: str = "run", group: str = "group", stat: str = "mean"
) -> pd.DataFrame:
    """Collapse the rows of each run (its epochs, time steps ...) into one value.

    Parameters
    ----------
    data : DataFrame
        E.g. `probe.curves.metrics_table` output: several rows per run.
    dv : str
        Value column to summarise.
    run, group : str
        Run column and group column (each run must belong to one group).
    stat : {"mean", "median"}
        Summary over a run's rows.

    Returns
    -------
    DataFrame
        One row per run: ``run, group, <dv>, n_rows`` (column names as given).

    Raises
    ------
    StatsInputError
        Missing columns, unknown ``stat``, or a run found in several groups.
    """
    _check_columns(data, [dv, run, group])
    if stat not in _STATS:
        msg = f"stat must be one of {list(_STATS)}; got {stat!r}."
        raise StatsInputError(msg)
    n_groups = data.groupby(run)[group].nunique()
    if (n_groups > 1).any():
        msg = f"each run must belong to one {group!r}; run {n_groups.idxmax()!r} is in several."
        raise StatsInputError(msg)
    g = data.groupby([run, group], sort=True)[dv]
    return g.agg(stat).to_frame().assign(n_rows=g.size()).reset_index()


def compare_runs(
    data: pd.DataFrame,
    dv: str,
    *,
    run: str = "run",
    group: str = "group",
    stat: str = "mean",
    paired_by: str | None = None,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Test a group effect on one summary value per run (no pseudo-replication).

    Two groups: Mann–Whitney with a bootstrap CI of the difference of means, or, with
    ``paired_by`` (runs of the two groups matched by e.g. seed), a Wilcoxon signed-rank test with a
    bootstrap CI of the median paired difference (`probe.experiments._stats.compare_paired`).
    Three or more groups: Kruskal–Wallis.

    Parameters
    ----------
    data : DataFrame
        Several rows per run, see `per_run_summary`.
    dv, run, group, stat
        See `per_run_summary`.
    paired_by : str, optional
        Column constant within a run that matches runs across the two groups.
    n_resamples, level, seed
        Bootstrap settings (see `bootstrap_mean_difference`).

    Returns
    -------
    DataFrame
        One row: ``test, dv, n_runs, n_groups, statistic, p_value, effect, ci_low, ci_high``;
        ``effect`` is mean(a) - mean(b) (unpaired), the median of a - b (paired) or NaN (k >= 3),
        with groups a, b the two levels sorted.

    Raises
    ------
    StatsInputError
        As `per_run_summary` and the tests; ``paired_by`` with other than 2 groups, or runs that
        do not pair up one to one.
    """
    if paired_by:
        _check_columns(data, [paired_by, run])
        if (data.groupby(run)[paired_by].nunique() > 1).any():
            msg = f"paired_by={paired_by!r} must be constant within each run; it varies."
            raise StatsInputError(msg)
    summary = per_run_summary(data, dv, run=run, group=group, stat=stat)
    if paired_by:
        summary = summary.merge(data[[run, paired_by]].drop_duplicates(), on=run)
    levels = sorted(pd.unique(summary[group]), key=str)
    if paired_by:
        wide = summary.pivot_table(index=paired_by, columns=group, values=dv, aggfunc="count")
        if len(levels) != 2 or (wide != 1).to_numpy().any():
            msg = (
                f"paired_by={paired_by!r} needs exactly 2 groups with one run per "
                f"{paired_by!r} value in each; got groups {levels}."
            )
            raise StatsInputError(msg)
        vals = summary.pivot(index=paired_by, columns=group, values=dv)
        res = compare_paired(
            vals[levels[0]], vals[levels[1]], n_resamples=n_resamples, level=level, seed=seed
        )
        result = ("wilcoxon", res.statistic, res.pvalue, res.median_diff, res.ci_low, res.ci_high)
    elif len(levels) == 2:
        mw = mann_whitney(summary, dv, group).iloc[0]
        bs = bootstrap_mean_difference(
            summary, dv, group, n_resamples=n_resamples, level=level, seed=seed
        ).iloc[0]
        result = (
            "mann-whitney",
            mw["u_statistic"],
            mw["p_value"],
            *bs[["diff", "ci_low", "ci_high"]],
        )
    else:
        kw = kruskal_wallis(summary, dv, group).iloc[0]
        result = ("kruskal-wallis", kw["h_statistic"], kw["p_value"], np.nan, np.nan, np.nan)
    cols = ["test", "statistic", "p_value", "effect", "ci_low", "ci_high"]
    sizes = {"dv": dv, "n_runs": len(summary), "n_groups": len(levels)}
    row = sizes | dict(zip(cols, result, strict=True))
    return pd.DataFrame([row])[["test", *sizes, *cols[1:]]]
