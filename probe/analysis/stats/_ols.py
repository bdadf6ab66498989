"""Ordinary least squares with categorical factors: `ols_glance` and `nested_f_test`.

R's ``broom::glance(lm(...))`` and ``anova(lm(reduced), lm(full))`` for tidy tables (features
docs/features.md §3.4), through statsmodels formulas; re-exported by
`probe.analysis.stats.group_stats`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from probe.errors import StatsInputError

__all__ = ["nested_f_test", "ols_glance"]


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
