"""Cost of `probe serve`'s run list on a large sweep: paged and sent only when changed.

1. Record one run with hooks.Recorder (an MLP, --n-probe samples, --snapshots snapshots, a loss
   per step) and copy it into --runs run stores, runs/seed=<k>/run.zarr, each with its own grid
   settings in its config (lr, seed): the folder of a sweep.
2. Paged list (what the page does): through Flask's test client, poll the run list as the page
   does until every run is read (each poll opens runs for probe.serve.run_list.LIST_BUDGET_S);
   then idle polls, which send nothing when nothing changed (HTTP 204); then the next page.
3. Baseline, every run on one page and sent at every poll (the list before paging): the same
   polls with PAGE_SIZE = --runs and no digest.
Prints one JSON document: wall time and bytes of each kind of poll, and paged/baseline ratios.
`--quick` runs a small version.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import probe.serve.run_list as run_list_module
from hooks import Recorder
from probe.serve import build_app
from probe.serve.app import limit_blas_threads
from probe.serve.client import run_list


def record(path: Path, n_probe: int, snapshots: int) -> None:
    torch.manual_seed(0)
    x, y = torch.randn(n_probe, 16), torch.arange(n_probe) % 4
    net = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 4))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with Recorder(net, ["0", "2"], path, (x, y), every=1) as rec:
        for _ in range(snapshots - 1):
            loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.step(loss=loss.detach())


def sweep(root: Path, n_runs: int, n_probe: int, snapshots: int) -> Path:
    source = root / "source.zarr"
    record(source, n_probe, snapshots)
    runs = root / "runs"
    for k in range(n_runs):
        run = runs / f"seed={k}" / "run.zarr"
        shutil.copytree(source, run)
        meta = json.loads((run / "zarr.json").read_text())
        meta["attributes"]["config"] = {"lr": [0.1, 0.2, 0.4][k % 3], "seed": k}
        (run / "zarr.json").write_text(json.dumps(meta))
    return runs


def poll(client, **kw):
    """Return (wall s, bytes of the answer, answer or None) of one run-list poll."""
    t0 = time.perf_counter()
    answer = run_list(client, **kw)
    return time.perf_counter() - t0, len(json.dumps(answer)) if answer else 0, answer


def measure(runs: Path, idle: int, paged: bool) -> dict:
    client = build_app(runs).server.test_client()
    first, digest, polls, t0 = None, None, 0, time.perf_counter()
    while True:
        wall, size, answer = poll(client, digest=digest if paged else None)
        polls += 1
        first = first or {"wall_s": round(wall, 3), "bytes": size}
        digest = answer["runs-digest"]["data"] if answer else digest
        if answer and "opening" not in answer["runs-count"]["children"]:
            break
    all_read_s = time.perf_counter() - t0
    walls, sizes = [], []
    for _ in range(idle):
        wall, size, answer = poll(client, digest=digest if paged else None)
        walls.append(wall)
        sizes.append(size)
    out = {
        "first_poll": first,
        "polls_until_every_run_read": polls,
        "every_run_read_s": round(all_read_s, 3),
        "idle_poll_wall_s_median": round(statistics.median(walls), 4),
        "idle_poll_bytes_median": int(statistics.median(sizes)),
    }
    if paged:
        wall, size, answer = poll(client, digest=digest, changed="runs-next")
        out["next_page"] = {"wall_s": round(wall, 3), "bytes": size,
                            "shows": answer["runs-count"]["children"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=750)
    ap.add_argument("--n-probe", type=int, default=200)
    ap.add_argument("--snapshots", type=int, default=20)
    ap.add_argument("--idle", type=int, default=10, help="idle polls measured")
    ap.add_argument("--quick", action="store_true", help="120 runs, 3 idle polls")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.idle = 120, 3
    torch.set_num_threads(1)
    limit_blas_threads()  # as make_app_server, hence `probe serve`, does
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        runs = sweep(Path(tmp), args.runs, args.n_probe, args.snapshots)
        make_s = time.perf_counter() - t0
        page_size = run_list_module.PAGE_SIZE
        paged = measure(runs, args.idle, paged=True)
        run_list_module.PAGE_SIZE = args.runs  # the baseline: one page of every run
        baseline = measure(runs, args.idle, paged=False)
    result = {
        "sweep": {"runs": args.runs, "n_probe": args.n_probe, "snapshots": args.snapshots,
                  "made_s": round(make_s, 1)},
        "page_size": page_size,
        "paged": paged,
        "baseline_one_page_sent_every_poll": baseline,
        "ratios_paged_over_baseline": {
            "first_poll_bytes": round(paged["first_poll"]["bytes"]
                                      / baseline["first_poll"]["bytes"], 4),
            "idle_poll_bytes": round(paged["idle_poll_bytes_median"]
                                     / baseline["idle_poll_bytes_median"], 4),
            "idle_poll_wall": round(paged["idle_poll_wall_s_median"]
                                    / baseline["idle_poll_wall_s_median"], 4),
        },
        "machine": {"cpus": os.cpu_count(), "load_1min": round(os.getloadavg()[0], 2),
                    "python": platform.python_version()},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
