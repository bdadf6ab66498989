"""The sweep engine: throughput of one 60-run sweep on 1 vs 2 workers, and the cost per task.

Throughput: the same sweep (tiny sequential-digits runs, ~1 s each on one core) through
`run_sweep` on an embedded LocalCluster of 1 and of 2 worker processes, each from an empty
folder; runs/s and the ratio 2 workers / 1 worker (2 on two free cores; less when the cores are
shared). Cost per task: N no-op tasks (``operator.pos``) through the engine's `run_tasks` on a
warm 2-worker LocalCluster (one task per worker thread in flight, as a sweep runs) and through
a warm `ProcessPoolExecutor` of 2 spawned processes (the engine it replaced, every task
submitted at once), milliseconds per task and their ratio. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import operator
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from probe.engine.cluster import connect
from probe.engine.tasks import run_tasks
from probe.experiments.sweep import run_sweep

BASE = {"dataset": "digits", "pair": [3, 8], "hidden": 8, "epochs": 2, "probe_size": 60}


def _throughput(n_runs: int, workers: int) -> dict[str, float]:
    config = {"experiment": "seq-mnist", "grid": {"seed": list(range(n_runs))}, "base": BASE}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = run_sweep(config, Path(tmp) / "sweep", workers=workers, progress=False)
        wall = time.perf_counter() - t0
    assert len(res.ran) == n_runs, res
    return {"wall_s": round(wall, 2), "runs_per_s": round(n_runs / wall, 3)}


def _engine_ms(n_tasks: int) -> float:
    jobs = {f"t{i}": (i,) for i in range(n_tasks)}
    with connect(workers=2, dashboard=":0") as client:
        run_tasks(client, operator.pos, {"warm": (0,)}, desc="warm", progress=False)
        t0 = time.perf_counter()
        out = run_tasks(client, operator.pos, jobs, desc="noop", progress=False)
        wall = time.perf_counter() - t0
    assert len(out.results) == n_tasks
    return 1000 * wall / n_tasks


def _pool_ms(n_tasks: int) -> float:
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        list(pool.map(operator.pos, range(4)))  # start both processes
        t0 = time.perf_counter()
        futures = [pool.submit(operator.pos, i) for i in range(n_tasks)]
        results = [f.result() for f in futures]
        wall = time.perf_counter() - t0
    assert len(results) == n_tasks
    return 1000 * wall / n_tasks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="12 runs and 100 tasks")
    args = ap.parse_args()
    n_runs, n_tasks = (12, 100) if args.quick else (60, 500)
    one, two = _throughput(n_runs, 1), _throughput(n_runs, 2)
    engine, pool = _engine_ms(n_tasks), _pool_ms(n_tasks)
    load = os.getloadavg()[0]
    print(
        json.dumps(
            {
                "sweep": {"runs": n_runs, "base": BASE, "workers_1": one, "workers_2": two},
                "throughput_ratio_2_over_1": round(two["runs_per_s"] / one["runs_per_s"], 3),
                "per_task_ms": {
                    "tasks": n_tasks,
                    "dask_engine": round(engine, 3),
                    "process_pool": round(pool, 3),
                    "ratio_engine_over_pool": round(engine / pool, 1),
                },
                "cpus": os.cpu_count(),
                "load_1min_after": round(load, 2),
                "python": sys.version.split()[0],
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
