"""Analysis at scale: cluster metrics and step-to-step CKA on a run store larger than a memory cap.

1. Write a run store with hooks.Recorder: a 784-4x200-10 leaky-ReLU MLP trained on a synthetic
   10-class task (Gaussian class clusters), probe set (x, y) of --n-probe samples, a snapshot
   every 10 steps until the store holds at least --factor x the cap (5 Linear layers + output).
2. In a subprocess whose address space may grow by at most the cap (resource.setrlimit
   RLIMIT_AS = address space after imports + cap, so any larger allocation raises MemoryError):
   a. streaming: probe.analysis.streaming.class_moments(...).metrics() for every (layer, step)
      (NC1, NC1 quotient, NC2, CDNV, participation ratio, centroid separation) and
      probe.analysis.streaming.consecutive_cka for every layer, reading --chunk-rows samples at a
      time; peak RSS growth (VmHWM, reset after the imports) against the cap, and times;
   b. exactness: the streamed values against the in-memory ones on the last snapshots
      (probe.analysis.collapse / probe.analysis.clusters / probe.analysis.dimension, and a float64
      feature-space CKA);
   c. the in-memory library path under the same cap: probe.analysis.similarity.linear_cka of
      one pair, probe.analysis.similarity.layer_cka_over_steps, probe.analysis.clusters.geometry of
      one snapshot: each reported as done (time) or failed (MemoryError), with what it would need.
Prints one JSON document; `--quick` runs a small version.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HIDDEN = "2"  # a 200-wide hidden Linear layer of the nn.Sequential below
THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MALLOC_ARENA_MAX": "2",
}


def _status_kb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _dir_bytes(path):
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def write_store(path, n_probe, n_snapshots, every):
    import torch
    from torch import nn

    from hooks import Recorder

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(10, 784, generator=g) * 0.3
    y = torch.randint(0, 10, (8192 + n_probe,), generator=g)
    x = centres[y] + torch.randn(8192 + n_probe, 784, generator=g)
    torch.manual_seed(0)
    layers, d = [], 784
    for _ in range(4):
        layers += [nn.Linear(d, 200), nn.LeakyReLU()]
        d = 200
    model = nn.Sequential(*layers, nn.Linear(d, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    probe = (x[8192:], y[8192:])
    t0 = time.perf_counter()
    with Recorder(model, nn.Linear, path, probe, every=every, overwrite=True) as rec:
        for _ in range(every * (n_snapshots - 1)):
            idx = torch.randint(0, 8192, (128,), generator=g)
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            rec.step(loss=loss.detach())
    seconds = time.perf_counter() - t0
    w = rec.writer_
    return {
        "write_s": round(seconds, 2),
        "recorder_MB_written": round(w.bytes_written / 1e6, 1),
        "writer_MBps": round(w.bytes_written / 1e6 / max(w.busy_s, 1e-9), 1),
        "n_snapshots": w.n_committed,
    }


def _timed(fn):
    """(result, seconds, error): a MemoryError under the cap is a result, not a crash."""
    t0 = time.perf_counter()
    try:
        return fn(), round(time.perf_counter() - t0, 3), None
    except MemoryError as err:
        return None, round(time.perf_counter() - t0, 3), f"MemoryError {err}".strip()


def analyse(args):
    import numpy as np

    import probe
    from probe.analysis import clusters, collapse, dimension, similarity
    from probe.analysis.streaming import class_moments, consecutive_cka

    run = probe.open_run(args.store)
    y = run.targets
    rss0, vm0 = _status_kb("VmRSS"), _status_kb("VmSize")
    cap = args.cap_mib << 20
    resource.setrlimit(resource.RLIMIT_AS, (vm0 * 1024 + cap, resource.RLIM_INFINITY))
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux >= 4.0)
    out = {"baseline_rss_MiB": round(rss0 / 1024, 1), "baseline_vm_MiB": round(vm0 / 1024, 1)}

    def sweep():  # keeps only the metric dicts: the (d, d) scatters are dropped at once
        return {
            (layer, int(step)): class_moments(
                run, layer, int(step), chunk_rows=args.chunk_rows
            ).metrics()
            for layer in run.layers
            for step in run.steps
        }

    metrics, out["class_metrics_s"], out["class_metrics_error"] = _timed(sweep)
    metrics = metrics or {}
    cka, out["consecutive_cka_s"], out["consecutive_cka_error"] = _timed(
        lambda: {
            layer: consecutive_cka(run, layer, chunk_rows=args.chunk_rows) for layer in run.layers
        }
    )
    out["streaming_peak_rss_growth_MiB"] = round((_status_kb("VmHWM") - rss0) / 1024, 1)
    out["n_layer_step_pairs"] = len(metrics)
    if metrics:
        last = {k: v for k, v in metrics.items() if k[1] == int(run.steps[-1])}
        first = {k: v for k, v in metrics.items() if k[1] == int(run.steps[0])}
        out["nc1_first_last_step"] = {
            k[0]: [round(first[(k[0], int(run.steps[0]))]["nc1"], 4), round(v["nc1"], 4)]
            for k, v in last.items()
        }
    if cka:
        out["consecutive_cka_min_per_layer"] = {k: round(float(v.min()), 4) for k, v in cka.items()}

    # b. exactness against in-memory computations on the last snapshots (one snapshot fits)
    def check():
        diffs = {}
        for layer in (HIDDEN, run.layers[-1]):
            X = run.acts(layer, -1)
            got = metrics[(layer, int(run.steps[-1]))]
            want = {
                "nc1": collapse.nc1(X, y),
                "nc1_quotient": collapse.nc1_quotient(X, y),
                "cdnv": collapse.cdnv(X, y),
                "participation_ratio": dimension.participation_ratio(X),
                "centroid_separation": clusters.centroid_separation(X, y),
            }
            for k, v in want.items():
                diffs[f"{layer}/{k}"] = abs(got[k] - v) / max(abs(v), 1e-300)
            A = run.acts(layer, -2).astype(np.float64)
            B = X.astype(np.float64)
            A -= A.mean(0)
            B -= B.mean(0)
            ref = np.sum((A.T @ B) ** 2) / np.sqrt(np.sum((A.T @ A) ** 2) * np.sum((B.T @ B) ** 2))
            diffs[f"{layer}/cka"] = abs(cka[layer][-1] - ref) / ref
        return max(diffs.values()), max(diffs, key=diffs.get)

    worst, out["check_s"], out["check_error"] = (
        _timed(check) if metrics and cka else (None, 0, "skipped")
    )
    if worst:
        out["max_rel_diff_streaming_vs_in_memory"], out["worst_check"] = worst

    # c. the in-memory library path under the same cap
    n, T = len(y), run.n_snapshots
    lib = {}
    _, s, err = _timed(lambda: similarity.linear_cka(run.acts(HIDDEN, -2), run.acts(HIDDEN, -1)))
    lib["similarity.linear_cka(one pair)"] = {
        "seconds": s,
        "error": err,
        "needs_MiB_about": round(2 * n * n * 8 / 2**20),
    }
    _, s, err = _timed(lambda: similarity.layer_cka_over_steps(run, HIDDEN))
    lib["similarity.layer_cka_over_steps"] = {
        "seconds": s,
        "error": err,
        "needs_MiB_about": round((T * n * n * 8 + T * n * 200 * 4) / 2**20),
    }
    _, s, err = _timed(lambda: clusters.geometry(run.acts(HIDDEN, -1), y))
    lib["clusters.geometry(one snapshot)"] = {"seconds": s, "error": err}
    out["in_memory_library"] = lib
    out["final_peak_rss_growth_MiB"] = round((_status_kb("VmHWM") - rss0) / 1024, 1)
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cap-mib", type=int, default=256, help="memory cap of the analysis (MiB)")
    ap.add_argument("--factor", type=float, default=5.0, help="store size / cap, at least")
    ap.add_argument("--n-probe", type=int, default=20000)
    ap.add_argument("--chunk-rows", type=int, default=4096)
    ap.add_argument("--store", help="analyse this store instead of writing one")
    ap.add_argument("--quick", action="store_true", help="small version (about a minute)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        analyse(args)
        return 0
    if args.quick:
        args.cap_mib, args.factor, args.n_probe = 128, 4.5, 8192
    tmp = Path(tempfile.mkdtemp(prefix="probe-bench-scale-"))
    try:
        result = {
            "benchmark": "analysis_scale",
            "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
            "cap_MiB": args.cap_mib,
            "chunk_rows": args.chunk_rows,
        }
        if args.store:
            store = Path(args.store)
        else:
            store = tmp / "run.zarr"
            per_snapshot = args.n_probe * (4 * 200 + 10 + 10) * 4
            n_snap = max(2, math.ceil(args.factor * (args.cap_mib << 20) / per_snapshot))
            result["n_probe"] = args.n_probe
            result["write"] = write_store(store, args.n_probe, n_snap, every=10)
        result["store_MiB"] = round(_dir_bytes(store) / 2**20, 1)
        result["store_over_cap"] = round(result["store_MiB"] / args.cap_mib, 2)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--store", str(store)]
        cmd += ["--cap-mib", str(args.cap_mib), "--chunk-rows", str(args.chunk_rows)]
        t0 = time.perf_counter()
        proc = subprocess.run(
            cmd, capture_output=True, text=True, check=False, env={**os.environ, **THREAD_ENV}
        )
        result["analysis_wall_s"] = round(time.perf_counter() - t0, 2)
        if proc.returncode:
            result["analysis_error"] = proc.stderr.strip().splitlines()[-5:]
        else:
            result["analysis"] = json.loads(proc.stdout.strip().splitlines()[-1])
            a = result["analysis"]
            result["targets"] = {
                "store >= 4x cap": result["store_over_cap"] >= 4,
                "streaming peak RSS growth <= cap": a["streaming_peak_rss_growth_MiB"]
                <= args.cap_mib,
                "streaming == in-memory to 1e-10": a.get("max_rel_diff_streaming_vs_in_memory", 1)
                <= 1e-10,
            }
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
