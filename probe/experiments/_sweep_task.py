"""One sweep run as an engine task (`execute`), its done-marker, and the workers' data check.

A run writes ``runs/<name>/`` (run store, ``rows.csv``, then ``done.json``, atomically and
last), under the folder's task lock (`probe.engine.lock.folder_lock`): a second execution of
the same run waits, then finds it done and does not run it again. A run killed before its
marker counts as not done and is redone from the start (the experiment overwrites its store).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import traceback
from pathlib import Path
from typing import Any

from probe.engine.lock import folder_lock
from probe.experiments._sweep_plan import EXPERIMENTS, SweepRun, as_config
from probe.experiments.datasets import data_root

__all__ = ["DONE", "ERROR", "ROWS", "data_problem", "execute", "is_done"]

DONE = "done.json"
ROWS = "rows.csv"
ERROR = "error.txt"
_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def is_done(folder: Path, config: dict[str, Any]) -> bool:
    """Return whether the run finished with this very config (a changed config runs again)."""
    try:
        marker = json.loads((folder / DONE).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("config") == config and (folder / ROWS).is_file()


def data_problem(datasets: list[str]) -> str | None:
    """Return what this process lacks to load ``datasets`` (None: nothing), without loading.

    MNIST is read from ``$PROBE_DATA/MNIST/raw`` (see `probe.experiments.datasets.data_root`);
    a sweep never downloads it. The digits are bundled with scikit-learn.
    """
    if "mnist" not in datasets:
        return None
    raw = data_root() / "MNIST" / "raw"
    missing = [f for f in _MNIST_FILES if not any((raw / n).is_file() for n in (f, f"{f}.gz"))]
    if not missing:
        return None
    return (
        f"host {socket.gethostname()} has no MNIST under the data root {data_root()} "
        f"(missing {', '.join(f + '.gz' for f in missing)} in {raw}); copy the four archives "
        "there or set PROBE_DATA for the workers to a folder holding MNIST/raw/*.gz"
    )


def execute(
    experiment: str, run: SweepRun, folder: str, threads: int | None, lock_wait_s: float
) -> str:
    """Run one combination into ``folder``; return ``"ran"`` or ``"done"`` (found finished).

    Parameters
    ----------
    experiment : str
        A key of `EXPERIMENTS`.
    run : SweepRun
        The combination.
    folder : str
        ``runs/<name>``.
    threads : int or None
        Torch threads of this process (1 on engine workers, which share the machine); None
        leaves them.
    lock_wait_s : float
        Seconds to wait for another execution of this run to finish.

    Returns
    -------
    str

    Raises
    ------
    Exception
        Whatever the experiment raised; its traceback is also written to ``error.txt``.
    EngineError
        Another execution held the run's folder for more than ``lock_wait_s``.
    """
    path = Path(folder)
    with folder_lock(path, wait_s=lock_wait_s):
        if is_done(path, run.config):  # a lost execution finished it after all
            return "done"
        for stale in (DONE, ERROR):
            (path / stale).unlink(missing_ok=True)
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        t0 = time.perf_counter()
        try:
            exp = EXPERIMENTS[experiment]
            exp.run(as_config(exp.config, run.config), path).to_csv(path / ROWS, index=False)
        except Exception:
            with contextlib.suppress(OSError):
                (path / ERROR).write_text(traceback.format_exc())
            raise
        marker = {
            "config": run.config,
            "wall_s": time.perf_counter() - t0,
            "finished_unix": time.time(),
            "pid": os.getpid(),
            "host": socket.gethostname(),
        }
        # Written last and atomically: a run killed before this line counts as not done.
        (path / f"{DONE}.tmp").write_text(json.dumps(marker, indent=1))
        os.replace(path / f"{DONE}.tmp", path / DONE)
    return "ran"
