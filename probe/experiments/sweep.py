"""Many runs: `run_sweep` trains every combination of a settings grid in worker processes.

The config is checked and its runs named by `plan_sweep` (`probe.experiments._sweep_plan`,
importable from here). Each run writes ``out/runs/<name>/`` (run store, tidy rows, then a
done-marker), so an interrupted sweep resumes where it stopped; the rows of all finished runs become
``out/table.csv`` (and ``out/table.parquet``).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import time
import traceback
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from probe.errors import SweepConfigError, SweepRunError
from probe.experiments._sweep_plan import (
    EXPERIMENTS,
    SweepPlan,
    SweepRun,
    as_config,
    format_value,
    plan_sweep,
)
from probe.validation import check_int

__all__ = [
    "EXPERIMENTS",
    "SweepPlan",
    "SweepResult",
    "SweepRun",
    "plan_sweep",
    "run_sweep",
]

DONE = "done.json"
ROWS = "rows.csv"
ERROR = "error.txt"


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


def _is_done(folder: Path, config: dict[str, Any]) -> bool:
    """Return whether the run finished with this very config (a changed config runs again)."""
    try:
        marker = json.loads((folder / DONE).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("config") == config and (folder / ROWS).is_file()


def _execute(experiment: str, run: SweepRun, folder: str) -> tuple[str, str | None]:
    """Run one combination; return (name, None) or (name, traceback). Never raises."""
    path = Path(folder)
    t0 = time.perf_counter()
    try:
        path.mkdir(parents=True, exist_ok=True)
        for stale in (DONE, ERROR):
            (path / stale).unlink(missing_ok=True)
        exp = EXPERIMENTS[experiment]
        exp.run(as_config(exp.config, run.config), path).to_csv(path / ROWS, index=False)
        marker = {
            "config": run.config,
            "wall_s": time.perf_counter() - t0,
            "finished_unix": time.time(),
            "pid": os.getpid(),
        }
        # Written last and atomically: a run killed before this line counts as not done.
        (path / f"{DONE}.tmp").write_text(json.dumps(marker, indent=1))
        os.replace(path / f"{DONE}.tmp", path / DONE)
        return run.name, None
    except Exception:
        text = traceback.format_exc()
        with contextlib.suppress(OSError):
            (path / ERROR).write_text(text)
        return run.name, text


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one core per run: the workers share the machine


def _aggregate(plan: SweepPlan, runs_dir: Path) -> pd.DataFrame:
    """Concatenate the rows of every finished run, prefixed by run, grid values and seed."""
    tables = []
    for run in plan.runs:
        folder = runs_dir / run.name
        if not _is_done(folder, run.config):
            continue
        rows = pd.read_csv(folder / ROWS)
        lead: dict[str, Any] = {"run": run.name}
        lead |= {k: format_value(v) if isinstance(v, list) else v for k, v in run.grid.items()}
        lead.setdefault("seed", run.config.get("seed"))
        tables.append(pd.concat([pd.DataFrame(lead, index=rows.index), rows], axis=1))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame({"run": []})


def run_sweep(
    config: str | os.PathLike[str] | Mapping[str, Any],
    out: str | os.PathLike[str] = "artifacts/sweep",
    *,
    workers: int = 2,
    progress: bool = True,
) -> SweepResult:
    """Run every combination of a sweep config, skipping runs that already finished.

    Parameters
    ----------
    config : str, path or mapping
        See `plan_sweep`.
    out : str or path
        Sweep folder: ``runs/<name>/`` (``run.zarr``, ``rows.csv``, ``done.json``; ``error.txt``
        if it failed), ``sweep.json`` (the config), ``table.csv`` and ``table.parquet``.
    workers : int, default 2
        Worker processes (spawned, one torch thread each); 0 runs in this process.
    progress : bool
        Show a tqdm progress bar over runs.

    Returns
    -------
    SweepResult

    Raises
    ------
    SweepConfigError
        The config is invalid (see `plan_sweep`) or ``workers`` is not an int >= 0.
    SweepRunError
        Some runs failed; the message names them and the error's ``result`` holds the
        `SweepResult` (``failed``: name -> traceback). The table of the finished runs is
        written first, and running the sweep again retries only the failed runs.

    Notes
    -----
    The table is tidy: one row per (run, epoch, time step t, read-out), columns ``run``, one
    per grid field (lists as '3-8'), ``seed``, then the experiment's rows (for ``seq-mnist``
    see `probe.experiments.seq_mnist.readout_table`). A run is skipped when its ``done.json``
    holds the same config; with another config it runs again. Worker processes are spawned,
    so a script that calls `run_sweep` needs an ``if __name__ == "__main__":`` guard.
    """
    check_int(workers, "workers", minimum=0, error=SweepConfigError, hint="0 runs in this process.")
    t0 = time.perf_counter()
    plan = plan_sweep(config)
    out = Path(out)
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(plan.source, indent=1))
    todo = [r for r in plan.runs if not _is_done(runs_dir / r.name, r.config)]
    skipped = [r.name for r in plan.runs if r not in todo]
    ran: list[str] = []
    failed: dict[str, str] = {}
    bar = tqdm(
        total=len(plan.runs),
        initial=len(skipped),
        desc=f"sweep {plan.experiment}",
        unit="run",
        disable=not progress,
    )

    def record(name: str, error: str | None) -> None:
        if error is None:
            ran.append(name)
        else:
            failed[name] = error
        bar.update()
        bar.set_postfix_str(f"{name}{' FAILED' if error else ''}")

    if workers == 0 or not todo:
        for r in todo:
            record(*_execute(plan.experiment, r, str(runs_dir / r.name)))
    else:
        ctx = multiprocessing.get_context("spawn")
        n = min(workers, len(todo))
        pool = ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker)
        futures = {
            pool.submit(_execute, plan.experiment, r, str(runs_dir / r.name)): r.name for r in todo
        }
        try:
            for fut in as_completed(futures):
                try:
                    record(*fut.result())
                except BrokenProcessPool as err:  # a worker was killed (e.g. out of memory)
                    record(futures[fut], f"worker process died: {err!r}")
        finally:
            # Every run has returned (or we were interrupted): cancel what is queued and let
            # the workers' interpreters tear down (seconds with torch) while we aggregate.
            pool.shutdown(wait=False, cancel_futures=True)
    bar.close()
    table = _aggregate(plan, runs_dir)
    table.to_csv(out / "table.csv", index=False)
    parquet: Path | None = out / "table.parquet"
    try:
        table.to_parquet(out / "table.parquet", index=False)
    except ImportError:  # pyarrow (or fastparquet) not installed: CSV only
        (out / "table.parquet").unlink(missing_ok=True)  # never leave a stale table beside it
        parquet = None
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
