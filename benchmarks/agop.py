"""All-layer AGOP of an MNIST-sized MLP: hooks.agop (K_l route) against a vmap(jacrev) reference.

Model: probe.models.mnist.MLP (784-4x200-10, leaky ReLU), random inputs (n, 784), c = 10 outputs.
  k_route    hooks.agop.agop: one forward + c backward passes per batch for all 5 layers,
             AGOP_l = W_l^T K_l W_l
  reference  per layer l: vmap(jacrev(subnetwork from layer l's input)) over batches of 1000,
             G = einsum('ncd,ncD->dD') / n (the authors' verify_deep_NFA.py approach)
Each method runs in its own subprocess (`--rounds` of them, interleaved, `--repeat` timed calls
each; median and min wall time and median CPU time reported), so its peak memory is its own: on
CPU the rise of the process's peak RSS over its RSS before the calls, on CUDA
torch.cuda.max_memory_allocated.
Timed with one intra-op thread by default (`--threads`): stable on a shared CPU.
Prints one JSON document; `--quick` runs a small version.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.func import jacrev, vmap

from hooks.agop import agop
from probe.models.mnist import MLP


def _status_kb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _layer_inputs(model, x):
    """Inputs h_l of every Linear layer (the first layer's is x), under no_grad."""
    hs = []
    with torch.no_grad():
        h = x
        for lin, act in zip(model.layers, model.acts, strict=True):
            hs.append(h)
            h = act(lin(h))
        hs.append(h)
    return hs


def _tail(model, i, h):
    """The network from the input of Linear number i (model.head is number depth) to the logits."""
    for lin, act in list(zip(model.layers, model.acts, strict=True))[i:]:
        h = act(lin(h))
    return model.head(h)


def reference_agop(model, x, batch_size):
    names = [f"layers.{i}" for i in range(len(model.layers))] + ["head"]
    out = {}
    for i, (name, h) in enumerate(zip(names, _layer_inputs(model, x), strict=True)):
        fn = vmap(jacrev(lambda v, i=i: _tail(model, i, v[None])[0]))
        g = torch.zeros(h.shape[1], h.shape[1], dtype=torch.float64, device=h.device)
        with torch.no_grad():
            for j in range(0, h.shape[0], batch_size):
                jac = fn(h[j : j + batch_size])  # (batch, c, d)
                g += torch.einsum("ncd,ncD->dD", jac, jac).double()
        out[name] = (g / h.shape[0]).cpu()
    return out


def k_route_agop(model, x, batch_size):
    return agop(model, x, ["layers.*", "head"], batch_size=batch_size)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def worker(args):
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    model = MLP().to(device=device, dtype=dtype).eval()
    x = torch.randn(args.n, 784, generator=torch.Generator().manual_seed(1)).to(device, dtype)
    fn = {"k_route": k_route_agop, "reference": reference_agop}[args.worker]
    fn(model, x[:8], args.batch_size)  # warm-up: lazy initialisation is not part of the cost
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss0 = _status_kb("VmRSS")
    try:  # reset the peak RSS counter (Linux >= 4.0); else the peak includes set-up
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    seconds, cpu_seconds = [], []
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn(model, x, args.batch_size)
        _sync(device)
        seconds.append(time.perf_counter() - t0)
        cpu_seconds.append(time.process_time() - c0)
    peak = (
        torch.cuda.max_memory_allocated(device) / 2**20
        if device.type == "cuda"
        else (_status_kb("VmHWM") - rss0) / 1024
    )
    torch.save(result, args.out)
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_mem_MiB": peak}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000, help="number of input samples")
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (1: stable on a busy CPU)"
    )
    ap.add_argument("--rounds", type=int, default=2, help="subprocesses per method")
    ap.add_argument("--repeat", type=int, default=2, help="timed calls per subprocess")
    ap.add_argument("--quick", action="store_true", help="small version (seconds)")
    ap.add_argument("--worker", choices=["k_route", "reference"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return 0
    if args.quick:
        args.n, args.rounds, args.repeat = 1000, 1, 2
    tmp = Path(tempfile.mkdtemp(prefix="probe-bench-agop-"))
    runs, agops = {"k_route": [], "reference": []}, {}
    for _ in range(args.rounds):  # interleaved, so load on a shared machine hits both alike
        for name, done in runs.items():
            out = tmp / f"{name}.pt"
            cmd = [sys.executable, __file__, "--worker", name, "--out", str(out)]
            cmd += ["--n", str(args.n), "--batch-size", str(args.batch_size)]
            cmd += ["--repeat", str(args.repeat)]
            cmd += ["--dtype", args.dtype, "--device", args.device, "--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            done.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            agops[name] = torch.load(out, weights_only=True)
            out.unlink()
    tmp.rmdir()
    methods = {
        name: {
            "seconds_median": statistics.median(t for r in done for t in r["seconds"]),
            "seconds_min": min(t for r in done for t in r["seconds"]),
            "cpu_seconds_median": statistics.median(t for r in done for t in r["cpu_seconds"]),
            "peak_mem_MiB": max(r["peak_mem_MiB"] for r in done),
        }
        for name, done in runs.items()
    }
    rel = {
        layer: float(
            (agops["k_route"][layer] - ref).abs().max() / ref.abs().max().clamp_min(1e-300)
        )
        for layer, ref in agops["reference"].items()
    }
    result = {
        "benchmark": "agop",
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": args.threads,
            "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
        },
        "model": "probe.models.mnist.MLP 784-4x200-10 (leaky ReLU), 5 Linear layers, c=10",
        "n_samples": args.n,
        "batch_size": args.batch_size,
        "dtype": args.dtype,
        "methods": methods,
        "rounds": args.rounds,
        "repeat": args.repeat,
        "speedup_median": methods["reference"]["seconds_median"]
        / methods["k_route"]["seconds_median"],
        "speedup_min": methods["reference"]["seconds_min"] / methods["k_route"]["seconds_min"],
        "speedup_cpu_median": methods["reference"]["cpu_seconds_median"]
        / methods["k_route"]["cpu_seconds_median"],
        "max_rel_diff_per_layer": rel,
        "max_rel_diff": max(rel.values()),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
