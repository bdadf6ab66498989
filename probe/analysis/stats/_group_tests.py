"""Rank tests and a bootstrap CI comparing groups of independent observations.

`mann_whitney` (two groups), `kruskal_wallis` (two or more) and `bootstrap_mean_difference`
(percentile CI of a difference of means), on tidy tables; re-exported by
`probe.analysis.stats.group_stats`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from probe.errors import StatsInputError

__all__ = ["bootstrap_mean_difference", "check_columns", "kruskal_wallis", "mann_whitney"]


def check_columns(data: pd.DataFrame, names: Sequence[str]) -> None:
    """Raise `StatsInputError` naming the columns of ``names`` that ``data`` lacks."""
    missing = [c for c in names if c not in data.columns]
    if missing:
        msg = f"data must have columns {list(names)}; missing {missing}, got {list(data.columns)}."
        raise StatsInputError(msg)


def _two_groups(
    data: pd.DataFrame, dv: str, group: str, groups: Sequence[Any] | None
) -> tuple[Any, Any, np.ndarray, np.ndarray]:
    """Labels and finite values of the two groups compared (a, b)."""
    check_columns(data, [dv, group])
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
    check_columns(data, [dv, group])
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
