"""Group statistics of learning-curve metrics, one tidy row per test (`STATS_COLUMNS`).

`group_tests` (nested F-test and OLS fit of ``dv ~ epoch * C(group)`` over (run, epoch) rows,
Kruskal–Wallis across groups on final-epoch values) and `null_test` (label-shuffled null vs
real runs); used by `probe.report.curve_report`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from probe.analysis.stats.group_stats import compare_runs, kruskal_wallis, nested_f_test, ols_glance
from probe.errors import StatsInputError

__all__ = ["STATS_COLUMNS", "final_epoch", "group_tests", "null_test"]

#: Columns of the tidy statistics table; a test leaves the columns it has no value for empty.
STATS_COLUMNS = [
    "readout",
    "dv",
    "test",
    "model",
    "n_obs",
    "statistic",
    "df_num",
    "df_den",
    "p_value",
    "effect",
    "ci_low",
    "ci_high",
    "r2",
    "adj_r2",
    "delta_r2",
    "note",
]


def final_epoch(metrics: pd.DataFrame) -> pd.DataFrame:
    """Return the rows of each run's last epoch: one independent value per run and read-out."""
    return metrics[metrics["epoch"] == metrics.groupby("run")["epoch"].transform("max")]


def _row(readout: str, dv: str, test: str, model: str, **values: Any) -> dict[str, Any]:
    return {"readout": readout, "dv": dv, "test": test, "model": model} | values


def group_tests(m: pd.DataFrame, readout: str, dv: str) -> list[dict[str, Any]]:
    """Return the tests of a group effect on one metric, as rows of `STATS_COLUMNS`.

    Parameters
    ----------
    m : DataFrame
        `probe.analysis.curves.metrics_table` rows of one read-out and condition (``run, group,
        epoch`` and the metrics).
    readout, dv : str
        The read-out's name (copied into the rows) and the metric tested.

    Returns
    -------
    list of dict
        ``nested-f`` (``dv ~ epoch`` vs ``dv ~ epoch * C(group)``) and ``ols`` (the full model)
        over every (run, epoch) row, then ``kruskal-wallis`` across groups on final-epoch values
        (its ``note`` holds the reason when it cannot run); a single ``constant`` row instead
        when ``dv`` takes one value.
    """
    if m[dv].nunique() < 2:
        return [_row(readout, dv, "constant", "", n_obs=len(m), note=f"{dv} takes one value")]
    reduced, full = f"{dv} ~ epoch", f"{dv} ~ epoch * C(group)"
    f = nested_f_test(m, reduced, full).iloc[1]
    g = ols_glance(m, full).iloc[0]
    rows = [
        _row(
            readout,
            dv,
            "nested-f",
            f"{reduced} vs {full}",
            n_obs=int(f["n_obs"]),
            statistic=f["f_statistic"],
            df_num=f["df_diff"],
            df_den=f["df_resid"],
            p_value=f["p_value"],
            r2=f["r2"],
            adj_r2=f["adj_r2"],
            delta_r2=f["delta_r2"],
            note="rows are (run, epoch): pseudo-replicated, p too small",
        ),
        _row(
            readout,
            dv,
            "ols",
            full,
            n_obs=int(g["n_obs"]),
            statistic=g["f_statistic"],
            df_num=g["df_model"],
            df_den=g["df_resid"],
            p_value=g["p_value"],
            r2=g["r2"],
            adj_r2=g["adj_r2"],
            note="overall F against the intercept-only model; pseudo-replicated",
        ),
    ]
    last = final_epoch(m)
    try:
        kw = kruskal_wallis(last, dv, "group").iloc[0]
    except StatsInputError as err:  # e.g. one value at the final epoch
        return [*rows, _row(readout, dv, "kruskal-wallis", "group", note=str(err))]
    rows.append(
        _row(
            readout,
            dv,
            "kruskal-wallis",
            "group (final epoch, one value per run)",
            n_obs=int(kw["n_obs"]),
            statistic=kw["h_statistic"],
            df_num=kw["n_groups"] - 1,
            p_value=kw["p_value"],
        )
    )
    return rows


def null_test(m: pd.DataFrame, readout: str, dv: str, seed: int) -> dict[str, Any]:
    """Return the null-vs-real test of one metric on final-epoch values, as a stats row.

    Parameters
    ----------
    m : DataFrame
        Metrics rows of one read-out with columns ``condition`` ("null" or "real") and ``seed``.
    readout, dv : str
        The read-out's name and the metric tested.
    seed : int
        Seed of the bootstrap CI.

    Returns
    -------
    dict
        Wilcoxon signed-rank paired by (group, seed) when every pair has one run of each
        condition, else Mann–Whitney (`probe.analysis.stats.group_stats.compare_runs`); ``effect``
        is the median paired (or the mean) difference null - real.
    """
    last = final_epoch(m).assign(pairing=lambda d: d["group"] + "|" + d["seed"].astype(str))
    counts = last.groupby(["pairing", "condition"]).size().unstack(fill_value=0)
    paired = counts.shape[1] == 2 and bool((counts == 1).all(axis=None))
    try:
        res = compare_runs(
            last, dv, group="condition", paired_by="pairing" if paired else None, seed=seed
        ).iloc[0]
    except StatsInputError as err:
        return _row(readout, dv, "null-vs-real", "condition", note=str(err))
    what = "median paired" if paired else "mean"
    return _row(
        readout,
        dv,
        str(res["test"]),
        "condition: null vs real (final epoch, one value per run)",
        n_obs=int(res["n_runs"]),
        statistic=res["statistic"],
        p_value=res["p_value"],
        effect=res["effect"],
        ci_low=res["ci_low"],
        ci_high=res["ci_high"],
        note=f"effect: {what} difference null - real",
    )
