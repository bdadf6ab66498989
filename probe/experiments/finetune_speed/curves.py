"""Learning-curve metrics of the finetune-speed runs: ProductNet vs SumNet per task.

`finetune_curve_metrics` reads the run stores `probe.experiments.finetune_speed.experiment` wrote
and gives each run's loss curve (and performance curves derived from it) the four metrics of
`probe.analysis.curves` (start, end - start, max, tmax); `compare_finetune_curves` tests the nets
against each other per task, paired by seed; `analyse_finetune_curves` does both and writes CSVs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from probe.analysis.curves import METRICS, curve_metrics
from probe.analysis.stats.group_stats import compare_runs
from probe.errors import FinetuneRunsError
from probe.store import open_run

__all__ = [
    "CURVES",
    "FinetuneCurves",
    "analyse_finetune_curves",
    "compare_finetune_curves",
    "finetune_curve_metrics",
]

#: Curves derived from a run's logged loss[k] (the MSE after k updates, k = 0 .. steps - 1).
CURVES = {
    "loss": "loss[k] itself; lower is better, so max is the worst loss and tmax its time",
    "log10_reduction": "log10(loss[0] / loss[k]): decades of loss removed since the pretrained "
    "net; higher is better, 0 at k = 0",
    "fraction_reduced": "1 - loss[k] / loss[0]: fraction of the initial loss removed; higher is "
    "better, but it saturates near 1 once the loss has fallen 100-fold",
}
_DEFAULT_CURVES = ("loss", "log10_reduction")
_KEYS = ["run", "seed", "net", "task"]


@dataclass
class FinetuneCurves:
    """What `analyse_finetune_curves` computed and where it wrote it."""

    metrics: pd.DataFrame
    stats: pd.DataFrame
    metrics_csv: Path
    stats_csv: Path


def _curve(loss: npt.NDArray[np.float64], name: str) -> npt.NDArray[np.float64]:
    if name == "loss":
        return loss
    if name == "log10_reduction":
        return np.log10(loss[0] / loss)
    return 1.0 - loss / loss[0]


def _stores(out: Path) -> list[Path]:
    stores = sorted((out / "runs").glob("*/*.zarr"))
    if not stores:
        msg = (
            f"no run stores under {str(out / 'runs')!r}; pass the folder run_finetune_speed "
            "wrote (probe run finetune-speed --out FOLDER)."
        )
        raise FinetuneRunsError(msg)
    return stores


def finetune_curve_metrics(
    out: str | os.PathLike[str],
    *,
    curves: Sequence[str] = _DEFAULT_CURVES,
    smooth: bool = True,
) -> pd.DataFrame:
    """Return start, end - start, max and tmax of every finetune run's curves.

    Parameters
    ----------
    out : str or path
        Output folder of `probe.experiments.finetune_speed.experiment.run_finetune_speed`; its run
        stores ``runs/seed<s>/<net>_<task>.zarr`` each logged ``loss`` at every finetune step.
    curves : sequence of str
        Names in `CURVES`: ``"loss"`` (lower is better), ``"log10_reduction"`` (default
        performance curve, higher is better) and ``"fraction_reduced"``.
    smooth : bool
        Smooth each curve with Tukey 3RS3R first (`probe.analysis.curves.curve_metrics`).

    Returns
    -------
    DataFrame
        One row per (run, curve): ``run`` (store path relative to ``out``), ``seed``, ``net``,
        ``task``, ``curve``, ``n_steps``, ``smoothing``, ``start``, ``end_minus_start``,
        ``max``, ``tmax`` (first argmax / n_steps, a fraction of the finetune steps).

    Raises
    ------
    FinetuneRunsError
        Unknown curve name, no run store under ``out/runs``, a store that is not a
        finetune-speed run (no ``net``/``task`` in its config), or a loss that is not positive
        (the performance curves divide by it and take its log).

    Notes
    -----
    With smoothing, Tukey's end rule replaces the first value by ``median(v[0], s[1],
    3 s[1] - 2 s[2])``: when the loss drops steeply over the first updates, ``start`` is then
    below ``loss[0]`` (and ``start`` of the performance curves above 0). Use ``smooth=False``
    for the raw first value.
    """
    unknown = [c for c in curves if c not in CURVES]
    if unknown or not curves:
        msg = f"curves must be a non-empty list of {list(CURVES)}; got {list(curves)!r}."
        raise FinetuneRunsError(msg)
    root = Path(os.fspath(out))
    rows = []
    for store in _stores(root):
        run = open_run(store)
        config = run.attrs.get("config") or {}
        if "net" not in config or "task" not in config:
            msg = f"{str(store)!r} is not a finetune-speed run: its config has no net and task."
            raise FinetuneRunsError(msg)
        loss = run.metrics()["loss"].dropna().to_numpy(dtype=np.float64)
        if loss.size == 0 or not (np.isfinite(loss).all() and (loss > 0).all()):
            msg = f"{str(store)!r}: the logged loss must be finite and > 0; got {loss[:5]}..."
            raise FinetuneRunsError(msg)
        keys = [str(store.relative_to(root)), run.attrs.get("seed"), config["net"], config["task"]]
        for name in curves:
            m = curve_metrics(_curve(loss, name), smooth=smooth)
            rows.append([*keys, name, loss.size, m.smoothing, *(getattr(m, k) for k in METRICS)])
    return pd.DataFrame(rows, columns=[*_KEYS, "curve", "n_steps", "smoothing", *METRICS])


def compare_finetune_curves(
    metrics: pd.DataFrame, *, n_resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> pd.DataFrame:
    """Compare ProductNet with SumNet on every (task, curve, metric), paired by seed.

    Parameters
    ----------
    metrics : DataFrame
        `finetune_curve_metrics` output.
    n_resamples, level, seed
        Percentile-bootstrap settings of the CI of the median paired difference.

    Returns
    -------
    DataFrame
        One row per (task, curve, metric): ``task, curve, metric, n_seeds, median_a,
        median_b, effect, ci_low, ci_high, statistic, p_value`` with a = ProductNet and
        b = SumNet (nets sorted by name), ``effect`` the median over seeds of a - b and the
        two-sided Wilcoxon signed-rank test (`probe.analysis.stats.group_stats.compare_runs`, zeros
        dropped; p = 1 when every difference is 0).

    Raises
    ------
    StatsInputError
        A task without exactly two nets, or seeds that do not pair up one to one.
    """
    rows = []
    for (task, curve), part in metrics.groupby(["task", "curve"], sort=True):
        nets = sorted(pd.unique(part["net"]))
        for metric in METRICS:
            res = compare_runs(
                part,
                metric,
                group="net",
                paired_by="seed",
                n_resamples=n_resamples,
                level=level,
                seed=seed,
            ).iloc[0]
            medians = part.groupby("net")[metric].median()
            rows.append(
                {
                    "task": task,
                    "curve": curve,
                    "metric": metric,
                    "n_seeds": int(res["n_runs"]) // 2,
                    "median_a": float(medians[nets[0]]),
                    "median_b": float(medians[nets[-1]]),
                    "effect": res["effect"],
                    "ci_low": res["ci_low"],
                    "ci_high": res["ci_high"],
                    "statistic": res["statistic"],
                    "p_value": res["p_value"],
                }
            )
    return pd.DataFrame(rows)


def analyse_finetune_curves(
    out: str | os.PathLike[str],
    dest: str | os.PathLike[str] | None = None,
    *,
    curves: Sequence[str] = _DEFAULT_CURVES,
    smooth: bool = True,
    n_resamples: int = 2000,
    seed: int = 0,
) -> FinetuneCurves:
    """Compute the curve metrics of a finetune-speed folder, compare the nets, write two CSVs.

    Parameters
    ----------
    out : str or path
        Output folder of `run_finetune_speed`.
    dest : str or path, optional
        Folder of ``curve_metrics.csv`` and ``curve_stats.csv`` (created); default ``out``.
    curves, smooth
        See `finetune_curve_metrics`.
    n_resamples, seed
        See `compare_finetune_curves` (95% CIs).

    Returns
    -------
    FinetuneCurves

    Raises
    ------
    FinetuneRunsError, StatsInputError
        See `finetune_curve_metrics` and `compare_finetune_curves`.
    """
    metrics = finetune_curve_metrics(out, curves=curves, smooth=smooth)
    stats = compare_finetune_curves(metrics, n_resamples=n_resamples, seed=seed)
    folder = Path(os.fspath(out if dest is None else dest))
    folder.mkdir(parents=True, exist_ok=True)
    metrics_csv, stats_csv = folder / "curve_metrics.csv", folder / "curve_stats.csv"
    metrics.to_csv(metrics_csv, index=False)
    stats.to_csv(stats_csv, index=False)
    return FinetuneCurves(metrics, stats, metrics_csv, stats_csv)
