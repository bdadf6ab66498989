"""Paired comparisons over seeds: Wilcoxon signed-rank test, bootstrap CIs, t-based mean CIs.

Used by the reference experiments to compare two conditions run with the same seeds; every
difference is ``a - b`` of the values paired by seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from probe.errors import StatsInputError

__all__ = [
    "PairedComparison",
    "bootstrap_ci",
    "compare_paired",
    "mean_ci",
    "paired_differences",
    "wilcoxon_signed_rank",
]

FloatArray = npt.NDArray[np.float64]
_STATISTICS: dict[str, Callable[..., Any]] = {"median": np.median, "mean": np.mean}


@dataclass(frozen=True)
class PairedComparison:
    """Result of `compare_paired`: paired differences ``a - b`` summarised and tested.

    Attributes
    ----------
    n : int
        Number of pairs (seeds).
    median_a, median_b : float
        Medians of ``a`` and of ``b``.
    median_diff : float
        Median of the paired differences ``a - b`` (not the difference of the medians).
    ci_low, ci_high : float
        Percentile-bootstrap CI of the median paired difference.
    level : float
        Confidence level of the CI (e.g. 0.95).
    statistic : float
        Wilcoxon signed-rank statistic (the smaller of the positive- and negative-rank sums).
    pvalue : float
        Two-sided Wilcoxon signed-rank p-value (zero differences dropped).
    """

    n: int
    median_a: float
    median_b: float
    median_diff: float
    ci_low: float
    ci_high: float
    level: float
    statistic: float
    pvalue: float


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        msg = f"level must be in (0, 1); got {level!r}. Pass e.g. level=0.95."
        raise StatsInputError(msg)


def paired_differences(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """Return ``a - b`` after checking that the values are finite pairs.

    Parameters
    ----------
    a, b : array-like of shape (n,)
        Values of the two conditions, paired by position (e.g. by seed).

    Returns
    -------
    ndarray of float64 of shape (n,)

    Raises
    ------
    StatsInputError
        ``a`` and ``b`` are not 1-d of the same length >= 2, or hold NaN/inf.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.size < 2:
        msg = (
            f"paired values must be two 1-d arrays of the same length >= 2; got shapes "
            f"{a.shape} and {b.shape}. Pass one value per seed for each condition."
        )
        raise StatsInputError(msg)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        msg = (
            "paired values must be finite; got NaN or inf. "
            "Censor them to a finite value (e.g. the step budget + 1) first."
        )
        raise StatsInputError(msg)
    return a - b


def wilcoxon_signed_rank(diff: npt.ArrayLike) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank test of paired differences against 0.

    Zero differences are dropped (scipy's ``zero_method="wilcox"``); when every difference is
    zero the result is (0.0, 1.0) without calling scipy.

    Parameters
    ----------
    diff : array-like of shape (n,)
        Paired differences ``a - b``.

    Returns
    -------
    statistic : float
        The smaller of the positive- and negative-rank sums.
    pvalue : float
        Two-sided p-value (exact for small n without ties, else normal approximation).
    """
    d = np.asarray(diff, dtype=np.float64)
    if not np.any(d):
        return 0.0, 1.0
    res = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    return float(res.statistic), float(res.pvalue)


def bootstrap_ci(
    values: npt.ArrayLike,
    *,
    statistic: str = "median",
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the median (or mean) of ``values``.

    Parameters
    ----------
    values : array-like of shape (n,)
        E.g. paired differences, one per seed.
    statistic : {"median", "mean"}
        The statistic whose CI is returned.
    n_resamples : int
        Bootstrap resamples (each draws n values with replacement).
    level : float
        Confidence level in (0, 1).
    seed : int
        Seed of the resampling RNG (`numpy.random.default_rng`); same seed, same CI.

    Returns
    -------
    tuple of float
        ``(low, high)``: the (1 - level)/2 and (1 + level)/2 quantiles of the resampled statistic.

    Raises
    ------
    StatsInputError
        Unknown ``statistic``, ``n_resamples`` < 1 or ``level`` outside (0, 1).
    """
    if statistic not in _STATISTICS:
        msg = f"statistic must be one of {sorted(_STATISTICS)}; got {statistic!r}."
        raise StatsInputError(msg)
    if n_resamples < 1:
        msg = f"n_resamples must be >= 1; got {n_resamples!r}. Pass e.g. 2000."
        raise StatsInputError(msg)
    _check_level(level)
    v = np.asarray(values, dtype=np.float64)
    idx = np.random.default_rng(seed).integers(0, v.size, size=(n_resamples, v.size))
    boot = _STATISTICS[statistic](v[idx], axis=1)
    low, high = np.quantile(boot, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(low), float(high)


def mean_ci(values: npt.ArrayLike, *, level: float = 0.95) -> tuple[FloatArray, FloatArray]:
    """Mean over the first axis with the half-width of its t-based confidence interval.

    The half-width is ``t_{(1+level)/2, n-1} * std(ddof=1) / sqrt(n)`` for n rows.

    Parameters
    ----------
    values : array-like of shape (n, ...)
        E.g. one loss curve per seed, (n_seeds, n_steps); n >= 2.
    level : float
        Confidence level in (0, 1).

    Returns
    -------
    mean, half_width : ndarray of shape (...)

    Raises
    ------
    StatsInputError
        Fewer than 2 rows, or ``level`` outside (0, 1).
    """
    _check_level(level)
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 0 or v.shape[0] < 2:
        msg = f"mean_ci needs at least 2 rows (e.g. seeds); got shape {v.shape}."
        raise StatsInputError(msg)
    n = v.shape[0]
    half = stats.t.ppf((1.0 + level) / 2.0, n - 1) * v.std(axis=0, ddof=1) / np.sqrt(n)
    return v.mean(axis=0), half


def compare_paired(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    *,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Compare two conditions paired by seed: Wilcoxon test and bootstrap CI of ``a - b``.

    Parameters
    ----------
    a, b : array-like of shape (n,)
        Values of the two conditions, paired by position.
    n_resamples, level, seed
        Settings of the percentile bootstrap of the median difference (see `bootstrap_ci`).

    Returns
    -------
    PairedComparison

    Raises
    ------
    StatsInputError
        See `paired_differences` and `bootstrap_ci`.
    """
    diff = paired_differences(a, b)
    low, high = bootstrap_ci(diff, n_resamples=n_resamples, level=level, seed=seed)
    statistic, pvalue = wilcoxon_signed_rank(diff)
    return PairedComparison(
        n=int(diff.size),
        median_a=float(np.median(np.asarray(a, dtype=np.float64))),
        median_b=float(np.median(np.asarray(b, dtype=np.float64))),
        median_diff=float(np.median(diff)),
        ci_low=low,
        ci_high=high,
        level=level,
        statistic=statistic,
        pvalue=pvalue,
    )
