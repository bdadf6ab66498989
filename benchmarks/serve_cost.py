"""Cost of `probe serve`: the first view of a large run, and each new snapshot while it records.

1. Record a run with hooks.Recorder (thread writer): a 5-Linear-layer tanh MLP of width --width,
   a probe set of --n-probe samples in 10 classes, a snapshot after every step until --snapshots
   are committed; the Recorder stays open (the run is "recording").
2. First view: a fresh app (probe.serve.build_app) answers, through Flask's test client, the
   requests a browser makes when it opens the run's page: the route, the first poll (which
   summarises new snapshots for at most probe.serve.run_page.BUDGET_S), the overview (header,
   learning curves, per-layer summaries, slider), the embedding at the last step, the step x step
   CKA heatmap of the last layer, the layer x layer CKA at the last step, NFA and two-point.
   Wall and CPU time of all of them; then the polls and redraws until every snapshot is
   summarised and the heatmap complete (the page fills in).
3. Per new snapshot (--new times): the Recorder appends one snapshot (flush: committed), then the
   page's requests after it: poll, overview, embedding, both heatmaps, NFA/two-point. CPU time of
   this process (time.process_time; the writer thread is idle after the flush) and wall time.
Prints one JSON document; `--quick` runs a small version.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from hooks import Recorder
from probe.serve import build_app
from probe.serve.app import limit_blas_threads
from probe.serve.client import callback
from probe.serve.run_page import BUDGET_S

LAYERS = ["0", "2", "4", "6", "8"]


class Page:
    """The requests of one open run page, in the order a browser makes them."""

    def __init__(self, client, name):
        self.client, self.name, self.version = client, name, None
        self.layer, self.step, self.max, self.theory = None, None, None, None

    def poll(self):
        out = callback(self.client, ["version.data"], [(("tick", "n_intervals"), 1)],
                    [(("run-name", "data"), self.name), (("version", "data"), self.version)])
        if out is not None:
            self.version = out["version"]["data"]
        return out is not None

    def redraw(self):
        name = [(("run-name", "data"), self.name)]
        out = callback(
            self.client,
            ["run-info.children", "curves.figure", "summaries.figure", "layer.options",
             "layer.value", "step.max", "step.marks", "step.value", "theory-layer.options",
             "theory-layer.value"],
            [(("version", "data"), self.version)],
            name + [(("layer", "value"), self.layer), (("step", "value"), self.step),
                    (("step", "max"), self.max), (("theory-layer", "value"), self.theory)],
        )
        self.layer, self.max = out["layer"]["value"], out["step"]["max"]
        self.theory = out["theory-layer"]["value"]
        self.step = out["step"]["value"]
        v, layer, step = (("version", "data"), self.version), ("layer", "value"), ("step", "value")
        callback(self.client, ["embedding.figure"], [(step, self.step), (layer, self.layer)], name)
        callback(self.client, ["cka-steps.figure"], [v, (layer, self.layer)], name)
        callback(self.client, ["cka-layers.figure"], [(step, self.step), v], name)
        callback(self.client, ["nfa.figure", "two-point.figure"],
                 [v, (("theory-layer", "value"), self.theory)], name)


def record(path, n_probe, width, snapshots):
    torch.manual_seed(0)
    y = torch.arange(n_probe) % 10
    x = torch.randn(10, 32)[y] + 0.8 * torch.randn(n_probe, 32)
    mods = [nn.Linear(32, width)]
    for _ in range(4):
        mods += [nn.Tanh(), nn.Linear(width, width if len(mods) < 7 else 10)]
    net = nn.Sequential(*mods)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    rec = Recorder(net, LAYERS, path, (x, y), every=1)
    for _ in range(snapshots - 1):  # the first snapshot is taken at step 0
        loss = nn.functional.cross_entropy(net(x[:256]), y[:256])
        opt.zero_grad()
        loss.backward()
        opt.step()
        rec.step(loss=loss.detach())
    rec.flush()
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-probe", type=int, default=2000)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--snapshots", type=int, default=200)
    ap.add_argument("--new", type=int, default=5, help="snapshots appended one at a time")
    ap.add_argument("--quick", action="store_true", help="500 probes, 20 snapshots, 2 new")
    args = ap.parse_args()
    if args.quick:
        args.n_probe, args.snapshots, args.new = 500, 20, 2
    torch.set_num_threads(1)
    limit_blas_threads()  # as make_app_server, hence `probe serve`, does
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.zarr"
        t0 = time.perf_counter()
        rec = record(path, args.n_probe, args.width, args.snapshots)
        record_s = time.perf_counter() - t0
        try:
            client = build_app(tmp).server.test_client()
            page = Page(client, "big.zarr")
            t0, c0 = time.perf_counter(), time.process_time()
            if client.get("/run/big.zarr").status_code != 200:
                msg = "the run page did not load"
                raise RuntimeError(msg)
            page.poll()
            page.redraw()
            first_view_s = time.perf_counter() - t0
            first_view_cpu_s = time.process_time() - c0
            n_first = page.version[2]
            polls = 1
            while page.version[2] < page.version[0] or page.version[-1]:  # summaries, heatmap
                page.poll()
                page.redraw()
                polls += 1
            all_summarised_s = time.perf_counter() - t0
            cpu, wall = [], []
            for _ in range(args.new):
                rec.step(loss=0.0)
                rec.flush()
                c0, w0 = time.process_time(), time.perf_counter()
                changed = page.poll()
                page.redraw()
                cpu.append(time.process_time() - c0)
                wall.append(time.perf_counter() - w0)
                if not changed or page.version[2] != page.version[0]:
                    msg = f"the new snapshot was not summarised: {page.version}"
                    raise RuntimeError(msg)
        finally:
            rec.close()
    result = {
        "run": {"n_probe": args.n_probe, "layers": len(LAYERS), "width": args.width,
                "snapshots": args.snapshots, "record_s": round(record_s, 1)},
        "first_view_s": round(first_view_s, 3),
        "first_view_cpu_s": round(first_view_cpu_s, 3),
        "snapshots_summarised_in_first_view": n_first,
        "poll_budget_s": BUDGET_S,
        "complete_s": round(all_summarised_s, 3),
        "polls_to_complete": polls,
        "new_snapshot_cpu_s": [round(c, 3) for c in cpu],
        "new_snapshot_cpu_s_median": round(statistics.median(cpu), 3),
        "new_snapshot_wall_s_median": round(statistics.median(wall), 3),
        "machine": {"cpus": os.cpu_count(), "load_1min": round(os.getloadavg()[0], 2),
                    "python": platform.python_version(), "torch_threads": 1},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
