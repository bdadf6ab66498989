"""Learning-curve metrics and trajectories (Jiang & Dale 2025; docs/features.md §3).

`curve_metrics` (start, end - start, max, tmax of one curve), `metrics_table` (one row per curve
of a tidy table), `developmental_trajectory` and `processing_trajectory` (means ± SE over runs)
and `curves_from_run` (the metrics of a run's logged scalar). Also importable from here:
`readout_curve` (`probe.analysis.readout`). Figures of them: `probe.plots.curves`.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd

from probe.analysis.readout import readout_curve
from probe.analysis.smooth import tukey_smooth
from probe.errors import (
    CurveTableError,
    InvalidArrayError,
    MetricNotInRunError,
)
from probe.validation import as_float_array

if TYPE_CHECKING:
    from probe.store import Run

__all__ = [
    "METRICS",
    "TRAJECTORIES",
    "CurveMetrics",
    "curve_metrics",
    "curves_from_run",
    "developmental_trajectory",
    "metrics_table",
    "processing_trajectory",
    "readout_curve",
]

METRICS = ("start", "end_minus_start", "max", "tmax")
#: Trajectory kind -> (x metric, y metric) of its plane (docs/features.md §3.3).
TRAJECTORIES = {"developmental": ("start", "max"), "processing": ("tmax", "end_minus_start")}
_KEYS = ["run", "group", "epoch"]


@dataclass(frozen=True)
class CurveMetrics:
    """The four learning-curve metrics of one curve v(1..T) (docs/features.md §3.2).

    Attributes
    ----------
    start : float
        ``s[1]``, the first value of the (smoothed) curve.
    end_minus_start : float
        ``s[T] - s[1]``.
    max : float
        ``max_t s[t]``.
    tmax : float
        ``argmax_t s[t] / T`` with the first argmax and 1-based t: a fraction in (0, 1].
    smoothing : str
        ``"3RS3R"`` when ``s`` is R's ``smooth(v)``, ``"raw"`` when ``s = v``.
    """

    start: float
    end_minus_start: float
    max: float
    tmax: float
    smoothing: str


def curve_metrics(v: npt.ArrayLike, *, smooth: bool = True) -> CurveMetrics:
    """Return start, end - start, max and tmax of a curve, smoothed first by default.

    Parameters
    ----------
    v : array_like of shape (T,)
        The curve, e.g. read-out accuracy at time steps (or layers) t = 1..T; finite, T >= 1.
    smooth : bool
        Smooth with R's ``smooth(v)`` (Tukey 3RS3R, Tukey end rule;
        `probe.analysis.smooth.tukey_smooth`) as Jiang & Dale do (default), or use the raw values.

    Returns
    -------
    CurveMetrics
        ``smoothing`` says which variant was computed. A curve of length 1 gives
        ``start = max = v[0]``, ``end_minus_start = 0`` and ``tmax = 1``.

    Raises
    ------
    InvalidArrayError
        ``v`` is not a non-empty 1-d numeric array, or holds NaN/Inf.

    Examples
    --------
    >>> m = curve_metrics([0.5, 0.7, 0.9, 0.9, 0.8], smooth=False)
    >>> m.start, m.max, m.tmax, round(m.end_minus_start, 12)
    (0.5, 0.9, 0.6, 0.3)
    """
    arr = as_float_array(v, "v")
    if arr.ndim != 1 or arr.size == 0:
        msg = f"v must be a non-empty 1-d curve of shape (T,); got shape {arr.shape}."
        raise InvalidArrayError(msg)
    s = tukey_smooth(arr) if smooth else arr
    i = int(np.argmax(s))  # the first maximum, as R's which.max
    return CurveMetrics(
        start=float(s[0]),
        end_minus_start=float(s[-1] - s[0]),
        max=float(s[i]),
        tmax=(i + 1) / s.size,
        smoothing="3RS3R" if smooth else "raw",
    )


def metrics_table(
    curves: pd.DataFrame, *, smooth: bool = True, value: str = "value"
) -> pd.DataFrame:
    """Return the four metrics of every curve in a tidy table, one row per (run, group, epoch).

    Parameters
    ----------
    curves : DataFrame
        Long format with columns ``run``, ``epoch``, ``t``, ``value`` and optionally ``group``
        (e.g. a class pair or a condition; one group ``"all"`` when absent). A curve is the
        rows of one (run, group, epoch) ordered by ``t`` (time step, or layer index).
    smooth : bool
        See `curve_metrics`.
    value : str
        Name of the value column.

    Returns
    -------
    DataFrame
        Columns ``run, group, epoch, n_steps, smoothing, start, end_minus_start, max, tmax``.

    Raises
    ------
    CurveTableError
        A required column is missing, or a curve has two rows at the same ``t``.
    InvalidArrayError
        A curve holds NaN/Inf (the message names the curve).
    """
    missing = [c for c in ("run", "epoch", "t", value) if c not in curves.columns]
    if missing:
        msg = (
            f"the curve table must have columns run, epoch, t, {value} (and optionally group); "
            f"missing {missing}, got {list(curves.columns)}."
        )
        raise CurveTableError(msg)
    df = curves if "group" in curves.columns else curves.assign(group="all")
    dup = df.duplicated([*_KEYS, "t"])
    if dup.any():
        first = df.loc[dup, [*_KEYS, "t"]].head(1).to_dict("records")[0]  # native Python scalars
        where = ", ".join(f"{k}={v!r}" for k, v in first.items())
        msg = (
            f"each (run, group, epoch) curve must have one row per t; got a repeat at {where}. "
            "Average repeated measurements first."
        )
        raise CurveTableError(msg)
    rows = []
    for key, g in df.sort_values("t").groupby(_KEYS, sort=True):
        try:
            m = curve_metrics(g[value].to_numpy(), smooth=smooth)
        except InvalidArrayError as err:
            msg = f"curve run={key[0]!r}, group={key[1]!r}, epoch={key[2]!r}: {err}"
            raise InvalidArrayError(msg) from err
        rows.append((*key, len(g), m.smoothing, *(getattr(m, k) for k in METRICS)))
    return pd.DataFrame(rows, columns=[*_KEYS, "n_steps", "smoothing", *METRICS])


def _trajectory(curves: pd.DataFrame, kind: str, smooth: bool, value: str) -> pd.DataFrame:
    """Mean and SE over runs of the two metrics of one trajectory, per (group, epoch)."""
    x, y = TRAJECTORIES[kind]
    g = metrics_table(curves, smooth=smooth, value=value).groupby(["group", "epoch"])
    out = g.size().rename("n_runs").to_frame()
    for col in (x, y):
        out[f"{col}_mean"] = g[col].mean()
        out[f"{col}_se"] = g[col].std(ddof=1) / np.sqrt(out["n_runs"])
    return out.reset_index().assign(trajectory=kind)


def developmental_trajectory(
    curves: pd.DataFrame, *, smooth: bool = True, value: str = "value"
) -> pd.DataFrame:
    """Return the developmental trajectory: start vs max performance across epochs.

    Parameters
    ----------
    curves, smooth, value
        The tidy curve table and options of `metrics_table`.

    Returns
    -------
    DataFrame
        One row per (group, epoch): ``group, epoch, n_runs, start_mean, start_se, max_mean,
        max_se, trajectory``. SE is ``std(ddof=1) / sqrt(n_runs)`` over runs (NaN for 1 run).

    Raises
    ------
    CurveTableError, InvalidArrayError
        See `metrics_table`.
    """
    return _trajectory(curves, "developmental", smooth, value)


def processing_trajectory(
    curves: pd.DataFrame, *, smooth: bool = True, value: str = "value"
) -> pd.DataFrame:
    """Return the information-processing trajectory: tmax vs end - start across epochs.

    Parameters
    ----------
    curves, smooth, value
        The tidy curve table and options of `metrics_table`.

    Returns
    -------
    DataFrame
        One row per (group, epoch): ``group, epoch, n_runs, tmax_mean, tmax_se,
        end_minus_start_mean, end_minus_start_se, trajectory``; SE as in
        `developmental_trajectory`.

    Raises
    ------
    CurveTableError, InvalidArrayError
        See `metrics_table`.
    """
    return _trajectory(curves, "processing", smooth, value)


def curves_from_run(
    run: Run | str | os.PathLike[str], metric: str = "loss", *, smooth: bool = True
) -> CurveMetrics:
    """Return the curve metrics of a scalar the run logged (``run.metrics()[metric]``).

    Parameters
    ----------
    run : Run or path
        An open run (`probe.open_run`) or the path of its store.
    metric : str
        Name of the logged scalar, e.g. ``"loss"``.
    smooth : bool
        See `curve_metrics`.

    Returns
    -------
    CurveMetrics
        Over the records where ``metric`` was logged, in logging order: T is the number of those
        records, so ``tmax`` is a fraction of records (of steps only when logged evenly).

    Raises
    ------
    MetricNotInRunError
        The run never logged ``metric`` (the message lists the logged names).
    RunNotFoundError, NotARunError
        From `probe.open_run` when ``run`` is a path.
    InvalidArrayError
        ``metric`` has no logged value, or an Inf one (NaN records count as not logged).
    """
    from probe.store import open_run

    table = (run if hasattr(run, "metrics") else open_run(run)).metrics()
    names = [c for c in table.columns if c not in ("step", "epoch")]
    if metric not in names:
        close = difflib.get_close_matches(metric, names, n=3)
        hint = f"; closest: {close}" if close else ""
        msg = f"metric {metric!r} was not logged in this run; logged: {names}{hint}."
        raise MetricNotInRunError(msg)
    values = table[metric].dropna().to_numpy()  # NaN = not logged at that record
    if values.size == 0:
        msg = f"metric {metric!r} has no logged values in this run."
        raise InvalidArrayError(msg)
    return curve_metrics(values, smooth=smooth)
