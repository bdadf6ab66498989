"""Many runs: `run_sweep` trains every combination of a settings grid as dask.distributed tasks.

The config is checked and its runs named by `plan_sweep` (`probe.experiments._sweep_plan`,
importable from here). Each run is one task (`probe.experiments._sweep_task.execute`) that
writes ``out/runs/<name>/`` (run store, tidy rows, then a done-marker), so an interrupted sweep
resumes where it stopped; the rows of all finished runs become ``out/table.csv`` (and
``out/table.parquet``). The tasks run on an embedded `LocalCluster`, a running scheduler or a
given ``Client`` (`probe.engine.cluster.connect`; docs/distributed.md).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from probe.engine.cluster import connect, describe
from probe.engine.tasks import run_tasks
from probe.errors import DatasetUnavailableError, SweepConfigError, SweepRunError
from probe.experiments._sweep_plan import (
    EXPERIMENTS,
    SweepPlan,
    SweepRun,
    format_value,
    plan_sweep,
)
from probe.experiments._sweep_task import ERROR, ROWS, data_problem, execute, is_done
from probe.validation import check_int, check_positive

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "EXPERIMENTS",
    "SweepPlan",
    "SweepResult",
    "SweepRun",
    "plan_sweep",
    "run_sweep",
]


@dataclass
class SweepResult:
    """What `run_sweep` did: the table, which runs ran, were skipped (done) or failed."""

    out: Path
    table: Path
    parquet: Path | None
    ran: list[str]
    skipped: list[str]
    failed: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0


def _aggregate(plan: SweepPlan, runs_dir: Path) -> pd.DataFrame:
    """Concatenate the rows of every finished run, prefixed by run, grid values and seed."""
    tables = []
    for run in plan.runs:
        folder = runs_dir / run.name
        if not is_done(folder, run.config):
            continue
        rows = pd.read_csv(folder / ROWS)
        lead: dict[str, Any] = {"run": run.name}
        lead |= {k: format_value(v) if isinstance(v, list) else v for k, v in run.grid.items()}
        lead.setdefault("seed", run.config.get("seed"))
        tables.append(pd.concat([pd.DataFrame(lead, index=rows.index), rows], axis=1))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame({"run": []})


def _check_data(client: Client | None, datasets: list[str]) -> None:
    """Raise when this process (no client) or any worker lacks the runs' data."""
    if client is None:
        problems = {"this process": data_problem(datasets)}
    else:
        problems = client.run(data_problem, datasets)
    lacking = {w: p for w, p in problems.items() if p}
    if lacking:
        lines = "\n".join(f"  worker {w}: {p}" for w, p in sorted(lacking.items()))
        msg = f"{len(lacking)} of {len(problems)} workers lack the sweep's data:\n{lines}"
        raise DatasetUnavailableError(msg)


def _write_table(plan: SweepPlan, out: Path) -> Path | None:
    """Write ``table.csv`` and ``table.parquet``; return the parquet path (None: no pyarrow)."""
    table = _aggregate(plan, out / "runs")
    table.to_csv(out / "table.csv", index=False)
    try:
        table.to_parquet(out / "table.parquet", index=False)
    except ImportError:  # pyarrow (or fastparquet) not installed: CSV only
        (out / "table.parquet").unlink(missing_ok=True)  # never leave a stale table beside it
        return None
    return out / "table.parquet"


def run_sweep(
    config: str | os.PathLike[str] | Mapping[str, Any],
    out: str | os.PathLike[str] = "artifacts/sweep",
    *,
    workers: int = 2,
    scheduler: str | Client | None = None,
    retries: int = 2,
    lock_wait_s: float = 600.0,
    progress: bool = True,
) -> SweepResult:
    """Run every combination of a sweep config, skipping runs that already finished.

    Parameters
    ----------
    config : str, path or mapping
        See `plan_sweep`.
    out : str or path
        Sweep folder: ``runs/<name>/`` (``run.zarr``, ``rows.csv``, ``done.json``; ``error.txt``
        if it failed), ``sweep.json`` (the config), ``table.csv`` and ``table.parquet``. On a
        cluster, a path every worker sees at the same place (a shared file system).
    workers : int, default 2
        Worker processes of the embedded `LocalCluster` (one run and one torch thread each);
        0 runs in this process without dask (for debugging). Ignored with ``scheduler``.
    scheduler : str, Client or None
        A running dask scheduler's address (``tcp://host:8786``) or a ``distributed.Client``:
        run the tasks there instead of on an embedded cluster.
    retries : int, default 2
        Times the embedded cluster reschedules a run whose worker died; then the run is
        reported failed (``KilledWorker``). A running scheduler applies its own
        ``distributed.scheduler.allowed-failures``.
    lock_wait_s : float, default 600
        Seconds a run waits for another execution of itself (e.g. left running by a killed
        client) before it fails; it then finds that execution's result and does not redo it.
    progress : bool
        Show a tqdm progress bar over runs (running / finished / failed counts) and print
        the scheduler and dashboard address.

    Returns
    -------
    SweepResult

    Raises
    ------
    SweepConfigError
        The config is invalid (see `plan_sweep`), ``workers`` or ``retries`` is not an int
        >= 0, or ``lock_wait_s`` is not a number > 0.
    DatasetUnavailableError
        A worker (or this process, with ``workers=0``) lacks MNIST under its data root; the
        message names the worker and the root. Nothing ran.
    EngineError
        The scheduler cannot be reached, or was lost mid-sweep (finished runs are kept).
    SweepRunError
        Some runs failed; the message names them and the error's ``result`` holds the
        `SweepResult` (``failed``: name -> traceback). The table of the finished runs is
        written first, and running the sweep again retries only the failed runs.

    Notes
    -----
    The table is tidy: one row per (run, epoch, time step t, read-out), columns ``run``, one
    per grid field (lists as '3-8'), ``seed``, then the experiment's rows (for ``seq-mnist``
    see `probe.experiments.seq_mnist.readout_table`). A run is skipped when its ``done.json``
    holds the same config; with another config it runs again. Each finished run appears in
    the table once, however often it was executed. The embedded cluster spawns its worker
    processes, so a script that calls `run_sweep` needs an ``if __name__ == "__main__":`` guard.
    """
    check_int(workers, "workers", minimum=0, error=SweepConfigError, hint="0 runs in this process.")
    check_int(retries, "retries", minimum=0, error=SweepConfigError)
    check_positive(lock_wait_s, "lock_wait_s", error=SweepConfigError)
    t0 = time.perf_counter()
    plan = plan_sweep(config)
    out = Path(out)
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(plan.source, indent=1))
    todo = [r for r in plan.runs if not is_done(runs_dir / r.name, r.config)]
    to_run = {r.name for r in todo}
    skipped = [r.name for r in plan.runs if r.name not in to_run]
    datasets = sorted({str(r.config.get("dataset")) for r in todo})
    local = scheduler is None and workers == 0
    jobs = {
        r.name: (plan.experiment, r, str(runs_dir / r.name), None if local else 1, lock_wait_s)
        for r in todo
    }
    bar: dict[str, Any] = {
        "desc": f"sweep {plan.experiment}",
        "unit": "run",
        "total": len(plan.runs),
        "initial": len(skipped),
        "progress": progress,
    }
    if local or not todo:
        _check_data(None, datasets)
        outcome = run_tasks(None, execute, jobs, **bar)
    else:
        with connect(scheduler, workers=min(workers, len(todo)), retries=retries) as client:
            if progress:
                print(describe(client), file=sys.stderr)
            _check_data(client, datasets)
            outcome = run_tasks(client, execute, jobs, **bar)
    ran = [n for n, how in outcome.results.items() if how == "ran"]
    skipped += [n for n, how in outcome.results.items() if how != "ran"]
    failed = outcome.failed
    parquet = _write_table(plan, out)
    wall_s = time.perf_counter() - t0
    result = SweepResult(out, out / "table.csv", parquet, ran, skipped, failed, wall_s)
    if failed:
        lines = [
            f"  {n}: {e.strip().splitlines()[-1]} (see {runs_dir / n / ERROR})"
            for n, e in failed.items()
        ]
        msg = (
            f"{len(failed)} of {len(plan.runs)} runs failed:\n" + "\n".join(lines) + "\n"
            f"The {len(plan.runs) - len(failed)} finished runs are in {out / 'table.csv'}; "
            "run the same sweep again to retry only the failed runs."
        )
        error = SweepRunError(msg)
        error.result = result
        raise error
    return result
