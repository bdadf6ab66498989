"""Run every benchmark script in this folder; print their JSON and save it under artifacts/bench/.

Usage: python benchmarks/run_all.py [--quick] [NAME ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
OUT = HERE.parent / "artifacts" / "bench"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="benchmark names (default: all)")
    ap.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    args = ap.parse_args()
    scripts = sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name)
    if args.names:
        scripts = [p for p in scripts if p.stem in args.names]
    OUT.mkdir(parents=True, exist_ok=True)
    results, failed = {}, []
    for script in scripts:
        cmd = [sys.executable, str(script)] + (["--quick"] if args.quick else [])
        print(f"running {script.name} ...", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode:
            failed.append(script.stem)
            print(proc.stderr[-3000:], file=sys.stderr)
            continue
        results[script.stem] = json.loads(proc.stdout)
        (OUT / f"{script.stem}.json").write_text(proc.stdout)
    print(json.dumps(results, indent=2))
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
