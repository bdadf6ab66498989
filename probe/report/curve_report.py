"""Learning-curve report of a sweep: metrics, trajectories, figures and group statistics.

`analyse_sweep` reads a sweep table (one row per run, epoch, time step t and read-out; as
`probe.experiments.sweep.run_sweep` writes), turns every (run, epoch, read-out) curve over t into
the four metrics of `probe.analysis.curves`, averages them into trajectories per group, draws them,
and tests the group effects (docs/features.md §3.3-3.4); `CurveReport` holds what it wrote. The
metrics (runs split into batches), trajectories and tests are tasks of the engine
(`probe.engine`): in this process by default, on a dask cluster with ``scheduler``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from probe.analysis.curves import (
    METRICS,
    TRAJECTORIES,
    developmental_trajectory,
    metrics_table,
    processing_trajectory,
)
from probe.analysis.stats.curve_stats import STATS_COLUMNS, group_tests, null_test
from probe.engine.cluster import connect
from probe.engine.tasks import gather_map
from probe.errors import SweepTableError
from probe.plots.curves import plot_metric_ribbons, plot_processing_curves, plot_trajectory

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["CurveReport", "analyse_sweep", "read_sweep_table"]

#: Runs per metrics task: 750 runs make 24 tasks.
RUNS_PER_TASK = 32


@dataclass
class CurveReport:
    """What `analyse_sweep` wrote under ``out`` and the tables behind it.

    Attributes
    ----------
    out : Path
        The output folder.
    metrics : DataFrame
        One row per (readout, condition, run, epoch) curve: ``readout, condition, run, group,
        epoch, n_steps, smoothing, start, end_minus_start, max, tmax`` (``metrics.csv``).
    trajectories : DataFrame
        Means ± SE over the main condition's runs per (readout, trajectory, group, epoch)
        (``trajectories.csv``; see `probe.analysis.curves.developmental_trajectory`).
    stats : DataFrame
        Tidy group statistics, columns `STATS_COLUMNS` (``stats.csv``).
    figures : dict of str to Path
        ``"<readout>_<kind>"`` -> PNG, kinds ``curves``, ``ribbons``, ``developmental``,
        ``processing``.
    tables : dict of str to Path
        ``"metrics"``, ``"trajectories"``, ``"stats"`` -> CSV.
    """

    out: Path
    metrics: pd.DataFrame
    trajectories: pd.DataFrame
    stats: pd.DataFrame
    figures: dict[str, Path] = field(default_factory=dict)
    tables: dict[str, Path] = field(default_factory=dict)


def read_sweep_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a sweep table from a ``.csv`` or ``.parquet`` file.

    Parameters
    ----------
    path : str or path
        E.g. ``artifacts/sweep-seq/table.csv``.

    Returns
    -------
    DataFrame

    Raises
    ------
    SweepTableError
        The file does not exist or its suffix is neither ``.csv`` nor ``.parquet``.
    """
    p = Path(os.fspath(path))
    if p.suffix not in (".csv", ".parquet"):
        msg = f"sweep table must be a .csv or .parquet file; got {str(p)!r}."
        raise SweepTableError(msg)
    if not p.is_file():
        msg = f"sweep table {str(p)!r} does not exist; run `probe sweep CONFIG` first."
        raise SweepTableError(msg)
    return pd.read_csv(p) if p.suffix == ".csv" else pd.read_parquet(p)


def _tidy(table: pd.DataFrame, value: str, group: str, null: str) -> pd.DataFrame:
    """Rename to ``run, group, epoch, t, value, readout, seed, condition`` (real or null)."""
    missing = [c for c in ("run", "epoch", "t", value, group) if c not in table.columns]
    if missing:
        msg = (
            f"the sweep table must have columns run, epoch, t, {value}, {group} (and optionally "
            f"readout, {null}); missing {missing}, got {list(table.columns)}."
        )
        raise SweepTableError(msg)
    df = pd.DataFrame(
        {
            "run": table["run"].astype(str),
            "group": table[group].astype(str),
            "epoch": table["epoch"],
            "t": table["t"],
            "value": table[value],
            "readout": table["readout"].astype(str) if "readout" in table else "all",
            "seed": table["seed"] if "seed" in table else np.nan,
        }
    )
    # CSV round trips turn the grid's booleans into True/False, "true" or 1: accept all three.
    is_null = table[null].astype(str).str.lower().isin(["true", "1"]) if null in table else False
    return df.assign(condition=np.where(is_null, "null", "real"))


def _figures(
    curves: pd.DataFrame,
    metrics: pd.DataFrame,
    traj: pd.DataFrame,
    names: tuple[str, str, str],
    out: Path,
) -> dict[str, Path]:
    """Draw one read-out's four figures; ``names``: (readout, value column, main condition)."""
    readout, value, main = names
    null = metrics[metrics["condition"] == "null"] if main == "real" else metrics.iloc[:0]
    paths = {k: out / f"{readout}_{k}.png" for k in ("curves", "ribbons", *TRAJECTORIES)}
    label = f"{readout} read-out"
    plot_processing_curves(
        curves[curves["condition"] == main].rename(columns={"value": value}),
        value=value,
        title=f"{label}: mean curve over runs",
        path=paths["curves"],
    )
    plot_metric_ribbons(
        metrics[metrics["condition"] == main],
        reference=null if len(null) else None,
        title=f"{label}: curve metrics, mean ± SE over runs",
        path=paths["ribbons"],
    )
    for kind in TRAJECTORIES:
        fig = plot_trajectory(traj[traj["trajectory"] == kind])
        fig.axes[0].set_title(f"{kind} trajectory, {label} (marker size: epoch)", fontsize=10)
        fig.savefig(paths[kind], dpi=120)
    return {f"{readout}_{k}": v for k, v in paths.items()}


def _metrics_of(curves: pd.DataFrame, smooth: bool) -> pd.DataFrame:
    """Return the metrics of every (readout, condition, run, epoch) curve of some runs."""
    parts = [
        metrics_table(c, smooth=smooth).assign(readout=r, condition=k)
        for (r, k), c in curves.groupby(["readout", "condition"], sort=True)
    ]
    return pd.concat(parts, ignore_index=True)


def _trajectory_of(curves: pd.DataFrame, kind: str, readout: str, smooth: bool) -> pd.DataFrame:
    build = developmental_trajectory if kind == "developmental" else processing_trajectory
    return build(curves, smooth=smooth).assign(readout=readout)


def _tests_of(m: pd.DataFrame, readout: str, dv: str, main: str, seed: int) -> list[dict[str, Any]]:
    """Return the group tests of one read-out's metric (and null vs real with both)."""
    rows = group_tests(m[m["condition"] == main], readout, dv)
    if m["condition"].nunique() == 2:
        rows.append(null_test(m, readout, dv, seed))
    return rows


def _analyse(
    client: Client | None, df: pd.DataFrame, smooth: bool, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str]:
    """Return (metrics, trajectories, stats, main condition), computed as tasks of ``client``."""
    runs = df["run"].unique()
    batches = [runs[i : i + RUNS_PER_TASK] for i in range(0, len(runs), RUNS_PER_TASK)]
    parts = [(df[df["run"].isin(b)], smooth) for b in batches]
    metrics = pd.concat(gather_map(client, _metrics_of, parts), ignore_index=True)
    metrics = metrics.sort_values(["readout", "condition", "run", "group", "epoch"])
    metrics = metrics.reset_index(drop=True).merge(
        df[["run", "seed"]].drop_duplicates(), on="run", how="left"
    )
    main = "real" if (df["condition"] == "real").any() else "null"
    real = df[df["condition"] == main].groupby("readout", sort=True)
    kinds = [(c, k, str(r), smooth) for r, c in real for k in TRAJECTORIES]
    traj = pd.concat(gather_map(client, _trajectory_of, kinds), ignore_index=True)
    by_readout = metrics.groupby("readout", sort=True)
    tests = [(m, str(r), dv, main, seed) for r, m in by_readout for dv in METRICS]
    stats = [row for rows in gather_map(client, _tests_of, tests) for row in rows]
    return metrics, traj, pd.DataFrame(stats).reindex(columns=STATS_COLUMNS), main


def analyse_sweep(
    table_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    value: str = "accuracy",
    group: str = "pair",
    null: str = "shuffle_labels",
    smooth: bool = True,
    seed: int = 0,
    scheduler: str | Client | None = None,
) -> CurveReport:
    """Compute the learning-curve metrics, trajectories, figures and statistics of a sweep.

    Parameters
    ----------
    table_path : str or path
        A sweep table (``.csv`` or ``.parquet``) with columns ``run``, ``epoch``, ``t``,
        ``value`` and ``group``, optionally ``readout``, ``seed`` and ``null``. Each (run,
        epoch, readout) is one curve over t (time step, or layer index).
    out_dir : str or path
        Output folder (created): ``metrics.csv``, ``trajectories.csv``, ``stats.csv`` and per
        read-out ``<readout>_{curves,ribbons,developmental,processing}.png``.
    value : str
        Column holding the curve's values (higher is better), e.g. read-out ``accuracy``.
    group : str
        Column of the groups compared, e.g. the class ``pair``.
    null : str
        Boolean column marking label-shuffled null runs (``True``); absent or all False: no
        null condition.
    smooth : bool
        Smooth each curve with Tukey 3RS3R before the metrics
        (`probe.analysis.curves.curve_metrics`).
    seed : int
        Seed of the bootstrap CIs of the null-vs-real comparison.
    scheduler : str, Client or None
        A running dask scheduler's address or a ``distributed.Client``: compute the metrics
        (batches of `RUNS_PER_TASK` runs), trajectories and tests as its tasks. None: in this
        process. The results are the same.

    Returns
    -------
    CurveReport

    Raises
    ------
    SweepTableError
        The table is missing, not .csv/.parquet, or lacks a required column.
    EngineError
        ``scheduler`` cannot be reached.
    CurveTableError, InvalidArrayError
        A curve repeats a ``t`` or holds NaN/Inf (see `probe.analysis.curves.metrics_table`).

    Notes
    -----
    Trajectories, figures and the group tests use the real runs (the null runs when there are
    no others); the null runs are the grey reference of the ribbon plots and the second
    condition of the null-vs-real tests. Per read-out and metric (``dv``): the nested F-test
    ``dv ~ epoch`` vs ``dv ~ epoch * C(group)`` and the full model's OLS fit over every (run,
    epoch) row, epoch numeric and the untrained epoch 0 included (rows of one run are not
    independent, so these p-values are too small; docs/features.md §3.4); Kruskal–Wallis across
    groups on each run's final-epoch value; with both conditions, null vs real on final-epoch
    values (Wilcoxon signed-rank paired by (group, seed) when the runs pair up one to one, else
    Mann–Whitney; effect = null - real). A metric with one value over all rows (e.g. ``start``
    when every curve begins at chance) gets one ``constant`` row instead of tests.
    """
    df = _tidy(read_sweep_table(table_path), value, group, null)
    out = Path(os.fspath(out_dir))
    out.mkdir(parents=True, exist_ok=True)
    if scheduler is None:
        metrics, traj, stats_df, main = _analyse(None, df, smooth, seed)
    else:
        with connect(scheduler) as client:
            metrics, traj, stats_df, main = _analyse(client, df, smooth, seed)
    figures: dict[str, Path] = {}
    for readout, m in metrics.groupby("readout", sort=True):
        r = str(readout)
        names = (r, value, main)
        figures |= _figures(df[df["readout"] == r], m, traj[traj["readout"] == r], names, out)
    tables = {k: out / f"{k}.csv" for k in ("metrics", "trajectories", "stats")}
    metrics.to_csv(tables["metrics"], index=False)
    traj.to_csv(tables["trajectories"], index=False)
    stats_df.to_csv(tables["stats"], index=False)
    return CurveReport(out, metrics, traj, stats_df, figures, tables)
