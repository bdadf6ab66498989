"""Capture throughput, same model, probe set and layers: Recorder vs hooks, TorchLens, nnsight.

A snapshot = forward the probe set (n x 784, batches of 1024, eval, no grad) through a
784-4x200-10 leaky-ReLU MLP (the layout of probe.models.mnist.MLP), capture the outputs of its 5
Linear layers and the model output on the host, and persist them to local disk:
  recorder            hooks.Recorder(layers=5 Linear, every=None): rec.step(); rec.snapshot(),
                      then rec.flush() (zarr, background writer thread)
  floor               plain forward hooks that keep the outputs, torch.cat, np.save per array and
                      snapshot: the physical floor of any capture tool
  torchlens_all       torchlens.trace(model, batch) (default save="all": every op logged and
                      saved, TorchLens's full logging), module outputs read from the trace,
                      np.save as the floor
  torchlens_selected  the same with CaptureOptions(layers_to_save=<the 5 module addresses>)
  nnsight             NNsight(model).trace(batch) with <module>.output.save(), np.save as the floor
Every method runs in its own subprocess (TorchLens wraps torch functions for the rest of the
process), interleaved over `--rounds`; one untimed warm-up snapshot, then `--snapshots` timed ones
(total time / snapshots; the Recorder's queue drained). Medians over rounds. Interpreter:
benchmarks/.venv-compare/bin/python (made by benchmarks/compare_env.sh) when present, for every
method alike; a tool that is missing or fails is reported with the reason, not fatal.
Prints one JSON document; `--quick` runs a small version.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMPARE_PY = HERE / ".venv-compare" / "bin" / "python"
METHODS = ["recorder", "floor", "torchlens_all", "torchlens_selected", "nnsight"]
LAYERS = ["layers.0", "layers.1", "layers.2", "layers.3", "head"]
TARGETS = {"floor": 1.0, "torchlens_all": 5.0}  # recorder throughput >= target x method's


def _status_kb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _mlp():
    import torch
    from torch import nn

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(784 if i == 0 else 200, 200) for i in range(4)])
            self.acts = nn.ModuleList([nn.LeakyReLU() for _ in range(4)])
            self.head = nn.Linear(200, 10)

        def forward(self, x):
            for lin, act in zip(self.layers, self.acts, strict=True):
                x = act(lin(x))
            return self.head(x)

    torch.manual_seed(0)
    return MLP().eval()


def _save_all(folder, k, arrays):
    import numpy as np

    for name, a in arrays.items():
        np.save(folder / f"s{k}_{name}.npy", a)
    return arrays


def _batches(x, batch_size):
    return [x[i : i + batch_size] for i in range(0, x.shape[0], batch_size)]


def _cat(parts):
    import torch

    return {name: torch.cat(p).numpy() for name, p in parts.items()}


def _floor(model, x, folder, batch_size):
    import torch

    parts = {}
    modules = dict(model.named_modules())
    for name in LAYERS:  # registered once: the cheapest possible hook set-up
        modules[name].register_forward_hook(
            lambda m, a, out, name=name: parts.setdefault(name, []).append(out.detach())
        )

    def snapshot(k):
        parts.clear()
        with torch.no_grad():
            outs = [model(b) for b in _batches(x, batch_size)]
        arrays = _cat(parts)
        arrays["output"] = torch.cat(outs).numpy()
        return _save_all(folder, k, arrays)

    return snapshot, None


def _recorder(model, x, folder, batch_size):
    from hooks import Recorder, schema

    rec = Recorder(
        model, LAYERS, folder / "run.zarr", probe=x, batch_size=batch_size, final_snapshot=False
    )

    def snapshot(k):
        rec.step()
        rec.snapshot()

    def finish(k_last):
        """Drain the writer (timed) and read the last snapshot back from disk."""
        import zarr

        rec.flush()
        return {"done": True}, lambda: {
            name: zarr.open_array(str(folder / "run.zarr" / path), mode="r")[k_last]
            for name, path in [(n, f"{schema.layer_group(n)}/acts") for n in LAYERS]
            + [("output", f"{schema.OUTPUTS}/acts")]
        }

    return snapshot, finish


def _torchlens(model, x, folder, batch_size, selected):
    import torch
    import torchlens as tl
    from torchlens.options import CaptureOptions

    kw = {"capture": CaptureOptions(layers_to_save=list(LAYERS))} if selected else {}

    def snapshot(k):
        parts = {name: [] for name in LAYERS}
        for b in _batches(x, batch_size):
            with torch.no_grad():
                tr = tl.trace(model, b, **kw)
            for name in LAYERS:
                parts[name].append(tr.modules[name].out.detach().cpu())
            del tr
        arrays = _cat(parts)
        arrays["output"] = arrays["head"].copy()
        return _save_all(folder, k, arrays)

    return snapshot, None


def _nnsight(model, x, folder, batch_size):
    import torch
    from nnsight import NNsight

    nm = NNsight(model)

    def trace(b):
        saved = {}
        with nm.trace(b):
            for i in range(4):
                saved[f"layers.{i}"] = nm.layers[i].output.save()
            saved["head"] = nm.head.output.save()
        return saved

    def snapshot(k):
        parts = {name: [] for name in LAYERS}
        for b in _batches(x, batch_size):
            with torch.no_grad():
                saved = trace(b)
            for name in LAYERS:
                parts[name].append(saved[name].detach().cpu())
        arrays = _cat(parts)
        arrays["output"] = arrays["head"].copy()
        return _save_all(folder, k, arrays)

    return snapshot, None


def worker(args):
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    model = _mlp()
    x = torch.randn(args.n, 784, generator=torch.Generator().manual_seed(1))
    folder = Path(args.out)
    make = {
        "floor": _floor,
        "recorder": _recorder,
        "torchlens_all": lambda *a: _torchlens(*a, selected=False),
        "torchlens_selected": lambda *a: _torchlens(*a, selected=True),
        "nnsight": _nnsight,
    }[args.worker]
    t0 = time.perf_counter()
    snapshot, finish = make(model, x, folder, args.batch_size)
    last = snapshot(0)  # warm-up: lazy set-up (TorchLens wraps torch here) is not timed
    if finish is not None:
        finish(0)
    first_s = time.perf_counter() - t0
    rss0 = _status_kb("VmRSS")
    try:  # reset the peak RSS counter (Linux >= 4.0)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    t0, c0 = time.perf_counter(), time.process_time()
    for k in range(1, args.snapshots + 1):
        last = snapshot(k)
    if finish is not None:
        _, read_back = finish(args.snapshots)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    if finish is not None:
        last = read_back()
    np.savez(folder / "check.npz", **{k: np.asarray(v) for k, v in last.items()})
    extra = {}
    if args.worker.startswith("torchlens"):
        import torchlens

        extra["torchlens_version"] = torchlens.__version__
    if args.worker == "nnsight":
        import nnsight

        extra["nnsight_version"] = nnsight.__version__
    result = {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "first_snapshot_s": first_s,
        "peak_rss_growth_MiB": (_status_kb("VmHWM") - rss0) / 1024,
        "bytes_per_snapshot": int(sum(np.asarray(v).nbytes for v in last.values())),
        **extra,
    }
    print(json.dumps(result))


def _run_worker(py, method, args, folder):
    cmd = [str(py), str(Path(__file__).resolve()), "--worker", method, "--out", str(folder)]
    cmd += ["--n", str(args.n), "--batch-size", str(args.batch_size)]
    cmd += ["--snapshots", str(args.snapshots), "--threads", str(args.threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONWARNINGS="ignore")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        return None, " | ".join(lines[-3:])[-600:] or f"exit status {proc.returncode}"
    return json.loads(proc.stdout.strip().splitlines()[-1]), None


def _max_rel_diff(a_path, b_path):
    import numpy as np

    a, b = np.load(a_path), np.load(b_path)
    out = 0.0
    for k in b.files:
        ref = b[k].astype(np.float64)
        out = max(out, float(np.abs(a[k] - ref).max() / max(np.abs(ref).max(), 1e-300)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000, help="probe samples")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--snapshots", type=int, default=4, help="timed snapshots per subprocess")
    ap.add_argument("--rounds", type=int, default=3, help="subprocesses per method, interleaved")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    ap.add_argument("--python", help="interpreter for the workers (default: .venv-compare)")
    ap.add_argument("--quick", action="store_true", help="small version (about a minute)")
    ap.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return 0
    if args.quick:
        args.n, args.snapshots, args.rounds = 2048, 2, 1
    py = Path(args.python) if args.python else (COMPARE_PY if COMPARE_PY.exists() else None)
    env_note = None
    if py is None:
        py = Path(sys.executable)
        env_note = (
            f"{COMPARE_PY} missing (run: bash benchmarks/compare_env.sh); TorchLens and "
            "nnsight cannot be measured"
        )
    tmp = Path(tempfile.mkdtemp(prefix="probe-bench-compare-"))
    runs = {m: [] for m in args.methods}
    errors, checks = {}, {}
    try:
        for _ in range(args.rounds):  # interleaved: load on a shared machine hits all alike
            for method in args.methods:
                if method in errors:
                    continue
                if env_note and method.startswith(("torchlens", "nnsight")):
                    errors[method] = env_note
                    continue
                folder = tmp / method
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir()
                os.sync()  # each method starts with no dirty pages of the previous one
                res, err = _run_worker(py, method, args, folder)
                if err:
                    errors[method] = err
                    continue
                runs[method].append(res)
                checks[method] = tmp / f"{method}.npz"
                shutil.move(folder / "check.npz", checks[method])
                shutil.rmtree(folder, ignore_errors=True)
        methods = {}
        for method, done in runs.items():
            if method in errors:
                methods[method] = {"available": False, "reason": errors[method]}
                continue
            per = [r["seconds"] / args.snapshots for r in done]
            med = statistics.median(per)
            mb = done[0]["bytes_per_snapshot"] / 1e6
            methods[method] = {
                "available": True,
                "seconds_per_snapshot_median": round(med, 4),
                "seconds_per_snapshot_min": round(min(per), 4),
                "cpu_seconds_per_snapshot_median": round(
                    statistics.median(r["cpu_seconds"] / args.snapshots for r in done), 4
                ),
                "snapshots_per_s": round(1 / med, 3),
                "MB_per_s": round(mb / med, 1),
                "MB_per_snapshot": round(mb, 2),
                "first_snapshot_s": round(
                    statistics.median(r["first_snapshot_s"] for r in done), 3
                ),
                "peak_rss_growth_MiB": round(max(r["peak_rss_growth_MiB"] for r in done), 1),
                **{k: v for k, v in done[0].items() if k.endswith("_version")},
            }
            if "floor" in checks and method in checks:
                methods[method]["max_rel_diff_vs_floor"] = _max_rel_diff(
                    checks[method], checks["floor"]
                )
        rec = methods.get("recorder", {})
        ratios, targets = {}, {}
        for method, m in methods.items():
            if method == "recorder" or not (m.get("available") and rec.get("available")):
                continue
            ratio = m["seconds_per_snapshot_median"] / rec["seconds_per_snapshot_median"]
            ratios[f"recorder_throughput_over_{method}"] = round(ratio, 3)
            if method in TARGETS:
                targets[f"recorder >= {TARGETS[method]}x {method}"] = ratio >= TARGETS[method]
        for method, target in TARGETS.items():
            if f"recorder >= {target}x {method}" not in targets:
                targets[f"recorder >= {target}x {method}"] = "not measured"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "benchmark": "capture_compare",
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": str(py),
            "threads": args.threads,
        },
        "model": "784-4x200-10 leaky-ReLU MLP; 5 Linear outputs + model output per snapshot",
        "n_probe": args.n,
        "batch_size": args.batch_size,
        "snapshots_per_round": args.snapshots,
        "rounds": args.rounds,
        "methods": methods,
        "ratios": ratios,
        "targets": targets,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
