"""What checksums cost: the writer's CPU per snapshot and a checked read, with vs without crc32c.

A snapshot is the capture_compare layout (probe set of n x 200 float32 for 4 hidden layers plus
n x 10 outputs, ~6.5 MB at n=2000), appended through the writer's own `RunAppender`:
  crc32c      the arrays as the Recorder creates them (bytes + crc32c codec, raw fast path)
  plain       the same arrays without the crc32c codec (the pre-checksum layout)
Variants alternate within each round; the writer's CPU time (process time, robust to other load
on the machine) per snapshot is compared as the paired ratio crc32c / plain. Reads: every
snapshot of one layer through `probe.open_run` (checked store: presence + crc32c, then zarr's
codec) vs plain `zarr.open_array` on the plain store. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

import hooks._zarr_io as zio
import probe
from hooks import schema
from hooks._appender import RunAppender
from hooks._store import create_run
from hooks.writer import Snapshot

WIDTHS = {"layers/l0/acts": 200, "layers/l1/acts": 200, "layers/l2/acts": 200}
WIDTHS |= {"layers/l3/acts": 200, "outputs/acts": 10}


def _snapshot(step: int, n: int, rng: np.random.Generator) -> Snapshot:
    arrays = {p: rng.standard_normal((n, w), dtype=np.float32) for p, w in WIDTHS.items()}
    dims = {p: schema.array_dims(p, ("sample",), 1) for p in arrays}
    return Snapshot(step, 0, time.time(), arrays, dims)


def _write(path: Path, snaps: list[Snapshot], crc: bool) -> float:
    """Create a run at ``path``, append ``snaps`` one by one; return the CPU seconds spent."""
    attrs = {"schema": schema.SCHEMA, "schema_version": schema.SCHEMA_VERSION}
    attrs |= {"layers": ["l0", "l1", "l2", "l3"]}
    attrs |= {schema.N_COMMITTED: 0}
    root, lock = create_run(path, attrs, {}, overwrite=False)
    real = zio.create_array
    if not crc:  # the pre-checksum layout: plain bytes, zarr's own codec list

        def plain(group: zarr.Group, name: str, **kw: object) -> zarr.Array:
            arr = real(group, name, **kw)
            meta = arr.metadata.to_dict()
            meta["codecs"] = [c for c in meta["codecs"] if c["name"] != "crc32c"]
            (Path(str(path)) / arr.path / "zarr.json").write_text(json.dumps(meta))
            return zarr.open_array(str(path), path=arr.path, mode="r+")

        zio.create_array = plain
        import hooks._appender as app

        app.create_array = plain
    try:
        writer = RunAppender(root)
        c0 = time.process_time()
        for s in snaps:
            writer.write_snapshots([s])
        return time.process_time() - c0
    finally:
        import hooks._appender as app

        zio.create_array = app.create_array = real
        lock.release()


def _read(path: Path, checked: bool) -> float:
    """CPU seconds to read every snapshot of one layer (run or array opened beforehand)."""
    if checked:
        run = probe.open_run(path)
        c0 = time.process_time()
        run.acts("l0")
    else:
        arr = zarr.open_array(str(path / "layers/l0/acts"), mode="r")
        c0 = time.process_time()
        arr[:]
    return time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="probe samples")
    ap.add_argument("--snapshots", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="small version (seconds)")
    args = ap.parse_args()
    if args.quick:
        args.n, args.snapshots, args.rounds = 500, 5, 2
    probe.open_run  # noqa: B018 - import the reading side before anything is timed
    rng = np.random.default_rng(0)
    snaps = [_snapshot(i, args.n, rng) for i in range(args.snapshots)]
    mb = sum(a.nbytes for a in snaps[0].arrays.values()) / 1e6
    write = {"crc32c": [], "plain": []}
    read = {"crc32c": [], "plain": []}
    tmp = Path(tempfile.mkdtemp(prefix="checksum-cost-"))
    try:
        for r in range(args.rounds):
            order = ["crc32c", "plain"] if r % 2 == 0 else ["plain", "crc32c"]
            for name in order:
                path = tmp / f"{name}-{r}.zarr"
                write[name].append(_write(path, snaps, crc=name == "crc32c") / args.snapshots)
                read[name].append(_read(path, checked=name == "crc32c"))
                shutil.rmtree(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ratio = [c / p for c, p in zip(write["crc32c"], write["plain"], strict=True)]
    rratio = [c / p for c, p in zip(read["crc32c"], read["plain"], strict=True)]
    out = {
        "benchmark": "checksum_cost",
        "snapshot_mb": round(mb, 2),
        "snapshots": args.snapshots,
        "rounds": args.rounds,
        "writer_cpu_ms_per_snapshot_median": {
            k: round(1e3 * statistics.median(v), 2) for k, v in write.items()
        },
        "writer_cpu_ratio_crc32c_over_plain_median": round(statistics.median(ratio), 3),
        "read_all_snapshots_one_layer_cpu_ms_median": {
            k: round(1e3 * statistics.median(v), 1) for k, v in read.items()
        },
        "read_cpu_ratio_checked_over_plain_median": round(statistics.median(rratio), 3),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
