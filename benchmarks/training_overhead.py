"""Training overhead of hooks.Recorder at realistic schedules, side by side in one process.

A 784-4x200-10 leaky-ReLU MLP trained with SGD (momentum 0.9, batch 128) on a synthetic 10-class
task (Gaussian class clusters in 784-d); variants, interleaved over `--rounds` (medians):
  plain           the training loop alone
  snap_every_100  + Recorder(probe=(x, y) of --n-probe samples, every=100), rec.step(loss=...)
                  at every step (the loss is logged every step)
  snap_log50      + Recorder(every=hooks.log_schedule(steps, 50)): dense early, sparse late
  stream_every    + Recorder.watch(sample_id=...) around every training forward: the 5 Linear
                  outputs of every training batch streamed to disk, rec.step(loss=...)
  stream_and_snap + both stream_every and snap_every_100
Wall and process CPU time (all threads: the writer's work included); the Recorder's write rate,
writer CPU and the time the training thread spent in the writer's put (lock, GIL and byte
budget). The CPU time of one probe-set forward (eval, no grad, batches of 1024) is measured alone,
so a snapshot variant's CPU cost splits into those inherent forwards and the Recorder's own.
On CPU with `--threads` intra-op threads; on CUDA too when torch.cuda.is_available() (else the
JSON says "no GPU"). Prints one JSON document; `--quick` runs a small version.
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

from hooks import Recorder, log_schedule

VARIANTS = ["plain", "snap_every_100", "snap_log50", "stream_every", "stream_and_snap"]


def mlp() -> nn.Module:
    layers, d = [], 784
    for _ in range(4):
        layers += [nn.Linear(d, 200), nn.LeakyReLU()]
        d = 200
    return nn.Sequential(*layers, nn.Linear(d, 10))


def task(n_train, n_probe, device):
    """Gaussian class clusters: (x_train, y_train) on ``device``, (x_probe, y_probe) on the CPU."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(10, 784, generator=g) * 0.3
    y = torch.randint(0, 10, (n_train + n_probe,), generator=g)
    x = centres[y] + torch.randn(n_train + n_probe, 784, generator=g)
    return x[:n_train].to(device), y[:n_train].to(device), x[n_train:], y[n_train:]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train(variant, data, steps, batch, store, device):
    x, y, x_probe, y_probe = data
    torch.manual_seed(0)
    model = mlp().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    every = {"snap_every_100": 100, "stream_and_snap": 100, "snap_log50": log_schedule(steps, 50)}
    stream = variant in ("stream_every", "stream_and_snap")
    rec = None
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    if variant != "plain":  # construction (probe trial forward, store creation) is a real cost
        snap = variant in every
        rec = Recorder(
            model,
            layers=nn.Linear,
            store=store,
            probe=(x_probe, y_probe) if snap else None,
            every=every.get(variant),
            overwrite=True,
        )
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (batch,), generator=g)
        xb, yb = x[idx.to(device)], y[idx.to(device)]
        if stream:
            with rec.watch(sample_id=idx):
                out = model(xb)
        else:
            out = model(xb)
        loss = nn.functional.cross_entropy(out, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if rec is not None:
            rec.step(loss=loss.detach())
    stats = {}
    if rec is not None:
        rec.close()  # drains the writer: part of the cost
        w = rec.writer_
        stats = {
            "MB_written": w.bytes_written / 1e6,
            "n_snapshots": w.n_committed,
            "n_stream_rows": w.n_stream_rows,
            "writer_cpu_s": w.cpu_s,
            "writer_busy_s": w.busy_s,
            "producer_wait_s": w.wait_s,
        }
    _sync(device)
    return time.perf_counter() - t0, time.process_time() - c0, stats


def probe_forward_cpu_s(data, device, repeat=3):
    """Median process CPU time of one forward of the probe set, nothing recorded."""
    model = mlp().to(device).eval()
    x_probe = data[2]
    times = []
    for _ in range(repeat):
        c0 = time.process_time()
        with torch.no_grad():
            for i in range(0, x_probe.shape[0], 1024):
                model(x_probe[i : i + 1024].to(device))
        _sync(device)
        times.append(time.process_time() - c0)
    return statistics.median(times)


def run_device(device, args, tmp):
    data = task(8192, args.n_probe, device)
    times = {v: [] for v in VARIANTS}
    cpu = {v: [] for v in VARIANTS}
    stats = {}
    train("plain", data, min(20, args.steps), args.batch, tmp / "w.zarr", device)  # warm-up
    for _ in range(args.rounds):  # interleaved, so load on a shared machine hits all alike
        for v in VARIANTS:
            store = tmp / f"{v}.zarr"
            os.sync()  # each variant starts with no dirty pages of the previous one
            wall, proc, st = train(v, data, args.steps, args.batch, store, device)
            times[v].append(wall)
            cpu[v].append(proc)
            if st:
                stats[v] = st
            shutil.rmtree(store, ignore_errors=True)
    med = {v: statistics.median(t) for v, t in times.items()}
    med_cpu = {v: statistics.median(t) for v, t in cpu.items()}
    fwd = probe_forward_cpu_s(data, device)
    out = {"probe_forward_cpu_s": round(fwd, 4)}
    for v in VARIANTS:
        row = {
            "wall_s_median": round(med[v], 3),
            "wall_s_all": [round(t, 3) for t in times[v]],
            "cpu_s_median": round(med_cpu[v], 3),
            "overhead_wall": round(med[v] / med["plain"] - 1, 3),
            "overhead_cpu": round(med_cpu[v] / med_cpu["plain"] - 1, 3),
        }
        if v in stats:
            st = stats[v]
            row.update({k: round(val, 3) for k, val in st.items()})
            row["writer_MBps"] = round(st["MB_written"] / max(st["writer_busy_s"], 1e-9), 1)
            extra = med_cpu[v] - med_cpu["plain"]
            if st["n_snapshots"]:  # the Recorder's own CPU beyond the probe forwards it must do
                own = extra - st["n_snapshots"] * fwd
                row["recorder_own_cpu_s"] = round(own, 3)
                row["recorder_own_cpu_over_probe_forwards"] = round(
                    own / (st["n_snapshots"] * fwd), 3
                )
            if st["n_stream_rows"]:
                row["extra_cpu_ms_per_step"] = round(1e3 * extra / args.steps, 3)
        out[v] = row
    return {"device": str(device), "variants": out}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--n-probe", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads on the CPU")
    ap.add_argument("--quick", action="store_true", help="small version (about a minute)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.steps, args.n_probe, args.rounds = 300, 2000, 1
    tmp = Path(tempfile.mkdtemp(prefix="probe-bench-train-"))
    try:
        result = {
            "benchmark": "training_overhead",
            "machine": {
                "cpu_count": os.cpu_count(),
                "platform": platform.platform(),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
            },
            "model": "784-4x200-10 leaky-ReLU MLP, SGD momentum 0.9, 5 Linear layers recorded",
            "steps": args.steps,
            "batch": args.batch,
            "n_probe": args.n_probe,
            "rounds": args.rounds,
            "cpu": run_device(torch.device("cpu"), args, tmp),
        }
        if torch.cuda.is_available():
            result["gpu"] = run_device(torch.device("cuda"), args, tmp)
            result["gpu"]["name"] = torch.cuda.get_device_name(0)
        else:
            result["gpu"] = "no GPU (torch.cuda.is_available() is False): GPU path not run"
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
