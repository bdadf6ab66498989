"""Learning-curve metrics and trajectories (Jiang & Dale 2025; features spec §3).

`curve_metrics` (start, end - start, max, tmax of one curve), `metrics_table` (one row per curve
of a tidy table), `developmental_trajectory` and `processing_trajectory` (means ± SE over runs),
`plot_trajectory`, `readout_curve` (held-out read-out accuracy at each time step or layer) and
`curves_from_run` (the metrics of a run's logged scalar).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from probe._validation import (
    InvalidArrayError,
    as_float_array,
    as_samples_features,
    check_same_n_samples,
)
from probe.errors import ProbeError
from probe.smooth import tukey_smooth

if TYPE_CHECKING:
    from probe.store import Run

__all__ = [
    "METRICS",
    "CurveMetrics",
    "CurveTableError",
    "MetricNotInRunError",
    "ReadoutError",
    "curve_metrics",
    "curves_from_run",
    "developmental_trajectory",
    "metrics_table",
    "plot_trajectory",
    "processing_trajectory",
    "readout_curve",
]

F64 = npt.NDArray[np.float64]
METRICS = ("start", "end_minus_start", "max", "tmax")
_KEYS = ["run", "group", "epoch"]
_AXES = {  # trajectory kind -> (x metric, y metric, x label, y label)
    "developmental": ("start", "max", "start performance v0", "maximum performance vmax"),
    "processing": ("tmax", "end_minus_start", "time slice of maximum tmax", "end - start"),
}


class CurveTableError(ProbeError, ValueError):
    """A tidy curve table lacks a column or holds one curve twice at the same ``t``."""


class MetricNotInRunError(ProbeError, KeyError):
    """A metric name the run never logged."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ReadoutError(ProbeError, ValueError):
    """Settings or labels a cross-validated read-out cannot use."""


@dataclass(frozen=True)
class CurveMetrics:
    """The four learning-curve metrics of one curve v(1..T) (features spec §3.2).

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
        Smooth with R's ``smooth(v)`` (Tukey 3RS3R, Tukey end rule; `probe.smooth.tukey_smooth`)
        as Jiang & Dale do (default), or use the raw values.

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
    x, y = _AXES[kind][:2]
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


def plot_trajectory(
    trajectory: pd.DataFrame, *, path: str | os.PathLike[str] | None = None
) -> Figure:
    """Plot a trajectory: one polyline per group, marker size growing with epoch, SE bars.

    Parameters
    ----------
    trajectory : DataFrame
        Output of `developmental_trajectory` or `processing_trajectory`.
    path : str or path, optional
        Save the figure there (format from the suffix).

    Returns
    -------
    matplotlib.figure.Figure
        Drawn with the Agg canvas (no display needed).

    Raises
    ------
    CurveTableError
        ``trajectory`` is not a trajectory table.
    """
    kind = trajectory["trajectory"].iloc[0] if "trajectory" in trajectory.columns else None
    if kind not in _AXES or trajectory.empty:
        msg = (
            "trajectory must be a non-empty table from developmental_trajectory or "
            f"processing_trajectory; got columns {list(trajectory.columns)}."
        )
        raise CurveTableError(msg)
    x, y, xlabel, ylabel = _AXES[kind]
    fig = Figure(figsize=(5.0, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax: Axes = fig.add_subplot()
    epochs = trajectory["epoch"].to_numpy(dtype=float)
    span = max(epochs.max() - epochs.min(), 1.0)
    for group, g in trajectory.sort_values("epoch").groupby("group", sort=True):
        sizes = 12.0 + 60.0 * (g["epoch"].to_numpy(dtype=float) - epochs.min()) / span
        xm, ym = g[f"{x}_mean"], g[f"{y}_mean"]
        (line,) = ax.plot(xm, ym, "-", lw=1.0, label=str(group))
        bars = {"fmt": "none", "ecolor": line.get_color(), "alpha": 0.4, "lw": 0.8}
        ax.errorbar(xm, ym, xerr=g[f"{x}_se"], yerr=g[f"{y}_se"], **bars)
        ax.scatter(xm, ym, s=sizes, color=line.get_color(), zorder=3)
    if kind == "processing":
        ax.set_xlim(0.0, 1.05)  # tmax is a fraction of the sequence in (0, 1]
    ax.set(xlabel=xlabel, ylabel=ylabel, title=f"{kind} trajectory (marker size: epoch)")
    ax.legend(title="group", fontsize="small")
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def readout_curve(
    H: npt.ArrayLike | Sequence[npt.ArrayLike],
    y: npt.ArrayLike,
    *,
    method: str = "knn",
    cv: int | str = 5,
    n_neighbors: int = 3,
    seed: int = 0,
) -> F64:
    """Return the cross-validated accuracy of a read-out of ``y`` from the states at each t.

    Parameters
    ----------
    H : array_like of shape (n_samples, T, n_features), or a sequence of T arrays
        Hidden states at each time step, or (feed-forward nets) a list of per-layer activations
        of shape (n_samples, n_features_t) with t = layer index (features spec §3.5).
    y : array_like of shape (n_samples,)
        Class labels (at least 2 classes).
    method : {"knn", "linear"}
        ``KNeighborsClassifier(n_neighbors)`` on the raw states (Jiang & Dale's read-out), or
        standardised multinomial logistic regression.
    cv : int or "loo"
        Stratified k folds (shuffled with ``seed``; the same folds at every t), or leave-one-out.
    n_neighbors : int
        k of the kNN read-out.
    seed : int
        Seed of the fold assignment.

    Returns
    -------
    ndarray of float64 of shape (T,)
        Mean held-out accuracy over folds at each t.

    Raises
    ------
    InvalidArrayError, ShapeMismatchError
        ``H`` is malformed or its sample count differs from ``len(y)``.
    ReadoutError
        Unknown ``method`` or ``cv``, fewer than 2 classes, a class with fewer samples than
        folds, or ``n_neighbors`` larger than a training fold.

    Notes
    -----
    Jiang & Dale score a 3-NN read-out on the data it was fitted to (resubstitution); each point
    is then its own nearest neighbour, which inflates accuracy (pure noise scores about 0.75 for
    two balanced classes). Accuracy here is always on held-out samples.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import LeaveOneOut, StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    layers = _as_states(H)
    labels = np.asarray(y)
    check_same_n_samples(layers[0], labels, "H, y")
    classes, counts = np.unique(labels, return_counts=True)
    if labels.ndim != 1 or classes.size < 2:
        msg = f"y must be 1-d labels with at least 2 classes; got shape {labels.shape}, {classes}."
        raise ReadoutError(msg)
    if cv == "loo":
        splits = list(LeaveOneOut().split(layers[0]))
    elif isinstance(cv, (int, np.integer)) and 2 <= cv <= counts.min():
        kfold = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
        splits = list(kfold.split(layers[0], labels))
    else:
        msg = f"cv must be 'loo' or an int in [2, {counts.min()}] (smallest class); got {cv!r}."
        raise ReadoutError(msg)
    n_train = min(len(train) for train, _ in splits)
    if method not in ("knn", "linear") or not 1 <= n_neighbors <= n_train:
        msg = (
            f"method must be 'knn' or 'linear' and n_neighbors in [1, {n_train}] (smallest "
            f"training fold); got method={method!r}, n_neighbors={n_neighbors!r}."
        )
        raise ReadoutError(msg)
    estimator = (
        KNeighborsClassifier(n_neighbors=n_neighbors)
        if method == "knn"
        else make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    )
    return np.array([cross_val_score(estimator, X, labels, cv=splits).mean() for X in layers])


def _as_states(H: Any) -> list[F64]:
    """Split ``H`` into a list of T arrays of shape (n_samples, n_features_t)."""
    if isinstance(H, np.ndarray) or not isinstance(H, Sequence):
        arr = as_float_array(H, "H", min_ndim=3)
        return [arr[:, t].reshape(arr.shape[0], -1) for t in range(arr.shape[1])]
    layers = [as_samples_features(h, f"H[{t}]") for t, h in enumerate(H)]
    if not layers:
        msg = "H must hold at least one time step (layer); got an empty sequence."
        raise InvalidArrayError(msg)
    for t, h in enumerate(layers[1:], start=1):
        check_same_n_samples(layers[0], h, f"H[0], H[{t}]")
    return layers


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
