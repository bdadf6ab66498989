"""Group statistics for learning-curve metrics (docs/features.md §3.4); tidy tables in and out.

The per-run path `per_run_summary` + `compare_runs` tests one value per run instead of
correlated (epoch, run) rows. Also importable from here: `mann_whitney`, `kruskal_wallis`,
`bootstrap_mean_difference` (`probe.analysis.stats._group_tests`), `ols_glance` (OLS with
categorical factors: R², adjusted R², overall F) and `nested_f_test` (nested OLS models, ΔR²;
`probe.analysis.stats._ols`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from probe.analysis.stats._group_tests import (
    bootstrap_mean_difference,
    check_columns,
    kruskal_wallis,
    mann_whitney,
)
from probe.analysis.stats._ols import nested_f_test, ols_glance
from probe.analysis.stats.paired import compare_paired
from probe.errors import StatsInputError

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


def per_run_summary(
    data: pd.DataFrame, dv: str, *, run: str = "run", group: str = "group", stat: str = "mean"
) -> pd.DataFrame:
    """Collapse the rows of each run (its epochs, time steps ...) into one value.

    Parameters
    ----------
    data : DataFrame
        E.g. `probe.analysis.curves.metrics_table` output: several rows per run.
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
    check_columns(data, [dv, run, group])
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
    bootstrap CI of the median paired difference (`probe.analysis.stats.paired.compare_paired`).
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
        check_columns(data, [paired_by, run])
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
