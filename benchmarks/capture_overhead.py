"""Capture overhead of hooks.Recorder on an MNIST-sized MLP, side by side in one process.

Variants per probe size, interleaved over rounds (medians reported):
  plain     the training loop alone (784-4x200-10 MLP, batch 64, SGD)
  manual    plus the same probe forwards done by hand every `every` steps, nothing recorded
            (the physical floor of any capture tool)
  recorder  plus hooks.Recorder(every=...) recording all 5 Linear layers and the output,
            written by a thread of the training process (writer="thread", the default)
  recorder_process  the same with writer="process": a child process writes, sharing no GIL
Also the disk's sequential write rate (fsync'd), the Recorder's write rate, the training thread's
own CPU time per variant, and how much plain training slows while another process spins, copies
memory or writes files on the other cores (`cross_core_interference`): what a background writer
can at best hide on this machine. Ratios are medians of per-round ratios (paired, same round),
with their quartiles; the variants run in a shuffled order in each round.
Prints one JSON document; `--quick` runs a small version.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from hooks import Recorder


def mlp() -> nn.Module:
    layers, d = [], 784
    for _ in range(4):
        layers += [nn.Linear(d, 200), nn.LeakyReLU()]
        d = 200
    return nn.Sequential(*layers, nn.Linear(d, 10))


# Recorder variants: which writer each uses.
WRITERS = {"recorder": "thread", "recorder_process": "process"}


def train(n_steps, every, x_probe, mode, store):
    torch.manual_seed(0)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(0)
    data = torch.randn(4096, 784, generator=g)
    labels = torch.randint(0, 10, (4096,), generator=g)
    rec, t_start = None, time.perf_counter()
    if mode.startswith("recorder"):
        rec = Recorder(
            model,
            layers=nn.Linear,
            store=store,
            probe=x_probe,
            every=every,
            overwrite=True,
            writer=WRITERS[mode],
        )
    t0, c0 = time.perf_counter(), time.thread_time()
    for step in range(1, n_steps + 1):
        idx = torch.randint(0, 4096, (64,), generator=g)
        loss = nn.functional.cross_entropy(model(data[idx]), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if rec is not None:
            rec.step(loss=loss.detach())
        elif mode == "manual" and step % every == 0:
            model.eval()
            with torch.no_grad():
                for i in range(0, len(x_probe), 1024):
                    model(x_probe[i : i + 1024])
            model.train()
    stats = {"main_thread_cpu_s": time.thread_time() - c0, "start_s": t0 - t_start}
    if rec is not None:
        rec.close()  # includes draining the queue: part of the cost
        w = rec.writer_
        stats |= {
            "bytes": w.bytes_written,
            "writer_busy_s": w.busy_s,
            "writer_cpu_s": w.cpu_s,
            "producer_wait_s": w.wait_s,
            "peak_queue_bytes": w.peak_bytes,
        }
    return time.perf_counter() - t0, stats


def probe_forward_time(x_probe, n_snapshots):
    """Time of the probe forwards alone, as done by the manual variant."""
    model = mlp().eval()
    t0 = time.perf_counter()
    with torch.no_grad():
        for _ in range(n_snapshots):
            for i in range(0, len(x_probe), 1024):
                model(x_probe[i : i + 1024])
    return time.perf_counter() - t0


_BUSY = {
    "spin": [sys.executable, "-c", "while True: pass"],
    "memcpy_16MB": [
        sys.executable,
        "-c",
        "import numpy as np\na = np.ones(1 << 21)\nb = np.empty_like(a)\n"
        "while True: np.copyto(b, a)",
    ],
}


def cross_core_interference(folder, n_steps, rounds):
    """Plain training time while another process keeps one core busy, over idle (medians)."""
    writer = [
        sys.executable,
        "-c",
        "import os\nb = os.urandom(8 << 20)\n"
        f"p = {str(Path(folder) / 'busy.bin')!r}\n"
        "while True:\n    with open(p, 'wb') as f:\n        [f.write(b) for _ in range(32)]",
    ]
    busy = {"idle": None, **_BUSY, "file_writes": writer}
    times = {k: [] for k in busy}
    for _ in range(rounds):
        for name, cmd in busy.items():
            proc = subprocess.Popen(cmd) if cmd else None
            time.sleep(0.3)
            try:
                times[name].append(train(n_steps, n_steps + 1, None, "plain", None)[0])
            finally:
                if proc is not None:
                    proc.kill()
                    proc.wait()
    idle = statistics.median(times.pop("idle"))
    (Path(folder) / "busy.bin").unlink(missing_ok=True)
    return {f"slowdown_while_{k}": round(statistics.median(v) / idle, 3) for k, v in times.items()}


def disk_write_rate(folder, mb=256):
    buf = os.urandom(1 << 20)
    path = Path(folder) / "dd.bin"
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(mb):
            f.write(buf)
        f.flush()
        os.fsync(f.fileno())
    rate = mb / (time.perf_counter() - t0)
    path.unlink()
    return rate


def _spread(ratios):
    """Median and quartiles of per-round paired ratios: how far one round can be trusted."""
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {"median": round(q[1], 3), "q1": round(q[0], 3), "q3": round(q[2], 3)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--probe-sizes", type=int, nargs="+", default=[2000, 10000])
    ap.add_argument(
        "--threads",
        type=int,
        default=max(1, (os.cpu_count() or 2) - 1),
        help="torch intra-op threads (default: all cores but one, left to the writer thread)",
    )
    ap.add_argument("--quick", action="store_true", help="small version (seconds)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.steps, args.rounds, args.probe_sizes = 300, 1, [2000]
    tmp = Path(tempfile.mkdtemp(prefix="probe-bench-"))
    try:
        result = {
            "benchmark": "capture_overhead",
            "machine": {
                "cpu_count": os.cpu_count(),
                "platform": platform.platform(),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
            },
            "steps": args.steps,
            "every": args.every,
            "rounds": args.rounds,
            "disk_seq_write_MBps": round(disk_write_rate(tmp), 1),
            "cases": [],
        }
        rng = random.Random(0)
        for n_probe in args.probe_sizes:
            x_probe = torch.randn(n_probe, 784, generator=torch.Generator().manual_seed(1))
            n_snap = args.steps // args.every + 1
            times = {"plain": [], "manual": [], **{k: [] for k in WRITERS}}
            cpu = {k: [] for k in times}
            rec_stats = {k: [] for k in WRITERS}
            for _ in range(args.rounds):
                order = list(times)
                rng.shuffle(order)  # no variant always follows the same other one
                for mode in order:
                    os.sync()  # each variant starts with no dirty pages of the previous one
                    t, stats = train(args.steps, args.every, x_probe, mode, tmp / "run.zarr")
                    times[mode].append(t)
                    cpu[mode].append(stats["main_thread_cpu_s"])
                    if mode in rec_stats:
                        rec_stats[mode].append(stats)
                    shutil.rmtree(tmp / "run.zarr", ignore_errors=True)
            fwd = statistics.median(probe_forward_time(x_probe, n_snap) for _ in range(args.rounds))
            paired = {
                k: [a / p for a, p in zip(v, times["plain"], strict=True)] for k, v in times.items()
            }
            case = {
                "n_probe": n_probe,
                "n_snapshots": n_snap,
                "wall_s": {k: round(statistics.median(v), 3) for k, v in times.items()},
                "main_thread_cpu_s": {k: round(statistics.median(v), 3) for k, v in cpu.items()},
                "probe_forwards_alone_s": round(fwd, 3),
                "ratio_over_plain": {k: _spread(v) for k, v in paired.items()},
                "ratio_manual_over_plain": round(statistics.median(paired["manual"]), 3),
                "writers": {},
            }
            for mode, writer in WRITERS.items():
                st = rec_stats[mode][len(rec_stats[mode]) // 2]
                ratio = statistics.median(paired[mode])
                extra = statistics.median(
                    r - p for r, p in zip(times[mode], times["plain"], strict=True)
                )
                rate = st["bytes"] / 1e6 / max(st["writer_busy_s"], 1e-9)
                case["writers"][writer] = {
                    "ratio_recorder_over_plain": round(ratio, 3),
                    "extra_s_over_probe_forwards": round(extra / fwd, 3),
                    "recorder_start_s": round(st["start_s"], 3),
                    "recorded_MB": round(st["bytes"] / 1e6, 1),
                    "writer_cpu_s": round(st["writer_cpu_s"], 3),
                    "writer_MBps": round(rate, 1),
                    "writer_MBps_over_disk": round(rate / result["disk_seq_write_MBps"], 3),
                    "producer_wait_s": round(st["producer_wait_s"], 3),
                    "peak_queue_MB": round(st["peak_queue_bytes"] / 1e6, 1),
                    "targets": {
                        "ratio_recorder_over_plain<=1.15 (2000 probes)": n_probe != 2000
                        or ratio <= 1.15,
                        "extra<=1.5x probe forwards (10000 probes)": n_probe != 10000
                        or extra / fwd <= 1.5,
                    },
                }
            result["cases"].append(case)
        result["cross_core_interference"] = cross_core_interference(
            tmp, min(args.steps, 1000), args.rounds
        )
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
