"""Cost of one `probe run two-points` seed of the ``default`` row, variants side by side.

The authors' ``default`` row (20 x 500 leaky-ReLU MLP, two points, full-batch SGD, every step
recorded) through `probe.experiments.two_points.experiment.train_two_point` and `fit_layers`:
  before        every hidden layer recorded and fitted, torch's default intra-op threads (what
                `probe run two-points` did before issue 19)
  all_layers_1t every hidden layer recorded and fitted, one thread
  hooked_1t     only the hooked layer recorded and fitted, one thread (the default now)
Wall and process CPU seconds per phase (train with the recorder, fit) and the ratios to
``before``, all in one process; the protocol is 6000 epochs (``--epochs``), `--quick` runs 200.
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from probe.experiments.two_points.experiment import TwoPointsConfig, fit_layers, train_two_point

VARIANTS = {
    "before": {"layers": "all", "threads": torch.get_num_threads()},
    "all_layers_1t": {"layers": "all", "threads": 1},
    "hooked_1t": {"layers": None, "threads": 1},
}


def timed(fn):  # type: ignore[no-untyped-def]
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6000, help="SGD steps (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="200 epochs (default: off)")
    args = ap.parse_args()
    epochs = 200 if args.quick else args.epochs
    res: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, kw in VARIANTS.items():
            cfg = TwoPointsConfig(setting="default", seeds=1, epochs=epochs, **kw).resolved()
            store = Path(tmp) / f"{name}.zarr"
            _, tw, tc = timed(partial(train_two_point, cfg, 0, store, progress=False))
            _, fw, fc = timed(partial(fit_layers, store))
            res[name] = {"train_wall_s": tw, "train_cpu_s": tc, "fit_wall_s": fw, "fit_cpu_s": fc}
    base = res["before"]
    for r in res.values():
        total = r["train_wall_s"] + r["fit_wall_s"]
        r["total_wall_s"] = total
        r["wall_ratio_to_before"] = total / (base["train_wall_s"] + base["fit_wall_s"])
        r["cpu_ratio_to_before"] = (r["train_cpu_s"] + r["fit_cpu_s"]) / (
            base["train_cpu_s"] + base["fit_cpu_s"]
        )
    print(
        json.dumps(
            {
                "epochs": epochs,
                "cpu_count": os.cpu_count(),
                "load_avg_1m": os.getloadavg()[0],
                "default_threads": torch.get_num_threads(),
                "platform": platform.platform(),
                "variants": res,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
