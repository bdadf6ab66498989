"""probe sweep on a real dask cluster: `dask scheduler` and two `dask worker` processes, 127.0.0.1.

The workers are separate processes (no nanny, so a SIGKILL removes one for good); they and the
sweep clients see this worktree through PYTHONPATH. The faults: a worker killed in the middle of
a run, the client killed and the sweep resumed, a worker without MNIST, the scheduler killed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dask
import pandas as pd
import pytest

from probe.errors import DatasetUnavailableError, EngineError
from probe.experiments.sweep import plan_sweep, run_sweep

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
# 3 epochs of tiny digits runs: about a second each, long enough to be killed mid-run
BASE = {"dataset": "digits", "pair": [3, 8], "hidden": 4, "epochs": 3, "probe_size": 30}
ROWS_PER_RUN = 4 * 8 * 2  # snapshots x time steps x read-outs


def _env(data: Path) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PROBE_DATA": str(data), "OMP_NUM_THREADS": "1"}


def _wait(cond, what: str, timeout: float = 180.0, poll: float = 0.05) -> None:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            msg = f"timed out after {timeout} s waiting for {what}"
            raise AssertionError(msg)
        time.sleep(poll)


class Cluster:
    """A scheduler and named workers, each its own process, stopped by `close`."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.env = _env(tmp / "no-data")  # the workers have no MNIST
        file = tmp / "scheduler.json"
        self.scheduler = self._start(
            "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
            "--scheduler-file", str(file),
        )  # fmt: skip
        _wait(file.exists, "the scheduler file")
        _wait(lambda: "address" in file.read_text(), "the scheduler address")
        self.address = json.loads(file.read_text())["address"]
        self.workers: dict[str, subprocess.Popen[bytes]] = {}

    def _start(self, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{args[0]}-{len(list(self.tmp.glob('*.log')))}.log", "wb")  # noqa: SIM115
        cmd = [sys.executable, "-m", "dask", *args]
        return subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def add_worker(self, name: str) -> None:
        self.workers[name] = self._start(
            "worker", self.address, "--nthreads", "1", "--no-nanny", "--name", name,
            "--host", "127.0.0.1",
        )  # fmt: skip

    def n_workers(self) -> int:
        from distributed import Client

        with Client(self.address, timeout=30) as client:
            return len(client.scheduler_info()["workers"])

    def close(self) -> None:
        for proc in [*self.workers.values(), self.scheduler]:
            if proc.poll() is None:
                proc.terminate()
        for proc in [*self.workers.values(), self.scheduler]:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        for name in ("w1", "w2"):
            c.add_worker(name)
        _wait(lambda: c.n_workers() == 2, "two workers", poll=0.5)
        yield c
    finally:
        c.close()


def _config(tmp: Path, seeds: int, **base) -> Path:
    path = tmp / "sweep.json"
    doc = {"experiment": "seq-mnist", "grid": {"seed": list(range(seeds))}, "base": BASE | base}
    path.write_text(json.dumps(doc))
    return path


def _client(config: Path, out: Path, cluster: Cluster) -> subprocess.Popen[str]:
    """``probe sweep --scheduler`` in its own process (to be killed)."""
    cmd = [sys.executable, "-m", "probe", "sweep", str(config), "--out", str(out)]
    cmd += ["--scheduler", cluster.address, "--no-progress"]
    env = _env(cluster.tmp / "no-data")
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _done(out: Path) -> dict[str, str]:
    return {p.parent.name: p.read_text() for p in (out / "runs").glob("*/done.json")}


def _counted_once(config: Path, out: Path) -> None:
    names = [r.name for r in plan_sweep(config).runs]
    table = pd.read_csv(out / "table.csv")
    assert table["run"].value_counts().to_dict() == dict.fromkeys(names, ROWS_PER_RUN)
    assert sorted(_done(out)) == sorted(names)


def _running_on(out: Path, pid: int) -> Path | None:
    """Return the folder of a run that process ``pid`` is executing right now, if any."""
    for lock in (out / "runs").glob("*/.task.lock"):
        try:
            holder = json.loads(lock.read_text())
        except ValueError:  # being written
            continue
        if holder["pid"] == pid and not (lock.parent / "done.json").exists():
            return lock.parent
    return None


def _in_thread(fn, *args, **kwargs) -> tuple[threading.Thread, dict]:
    """Start ``fn`` in a thread; the dict gets its ``result`` or ``error``."""
    box: dict = {}

    def target():
        try:
            box["result"] = fn(*args, **kwargs)
        except Exception as err:  # handed to the test
            box["error"] = err

    thread = threading.Thread(target=target)
    thread.start()
    return thread, box


def test_a_worker_killed_mid_run_loses_only_that_run_which_is_retried(cluster, tmp_path):
    config, out = _config(tmp_path, 6), tmp_path / "out"
    sweep, box = _in_thread(run_sweep, config, out, scheduler=cluster.address, progress=False)
    victim = cluster.workers["w1"]
    found: list[Path] = []

    def caught() -> bool:
        folder = _running_on(out, victim.pid)
        if folder is not None:
            victim.send_signal(signal.SIGKILL)
            found.append(folder)
        return bool(found)

    _wait(caught, "worker w1 to start a run")
    victim.wait()
    sweep.join(timeout=300)
    assert "error" not in box, box
    assert sorted(box["result"].ran) == sorted(r.name for r in plan_sweep(config).runs)
    _counted_once(config, out)
    redone = json.loads((found[0] / "done.json").read_text())
    assert redone["pid"] == cluster.workers["w2"].pid  # the survivor redid the killed run
    cluster.add_worker("w3")  # two workers again for the next tests
    _wait(lambda: cluster.n_workers() == 2, "the replacement worker", poll=0.5)


def test_client_killed_then_the_sweep_resumes_without_losing_or_repeating_a_run(
    cluster, tmp_path
):
    config, out = _config(tmp_path, 8), tmp_path / "out"
    client = _client(config, out, cluster)
    _wait(lambda: len(_done(out)) >= 2, "two finished runs")
    client.send_signal(signal.SIGKILL)
    client.wait()
    before = _done(out)
    assert 2 <= len(before) < 8
    res = run_sweep(config, out, scheduler=cluster.address, progress=False)
    assert len(res.ran) + len(res.skipped) == 8 and len(res.skipped) >= len(before)
    after = _done(out)
    assert {k: after[k] for k in before} == before  # finished runs were not redone
    _counted_once(config, out)


def test_a_worker_without_mnist_is_named_with_its_data_root(cluster, tmp_path):
    config = _config(tmp_path, 1, dataset="mnist")
    root = re.escape(str(cluster.tmp / "no-data"))
    with pytest.raises(
        DatasetUnavailableError,
        match=rf"2 of 2 workers lack the sweep's data:\n  worker tcp://127\.0\.0\.1:\d+: host .* "
        rf"has no MNIST under the data root {root} \(missing train-images-idx3-ubyte\.gz",
    ):
        run_sweep(config, tmp_path / "out", scheduler=cluster.address, progress=False)
    assert not list((tmp_path / "out" / "runs").iterdir())  # nothing ran


def test_scheduler_killed_then_the_sweep_resumes_elsewhere(cluster, tmp_path):
    # last test of the module: it kills the module's scheduler
    config, out = _config(tmp_path, 6), tmp_path / "out"

    def kill_after_a_run():
        _wait(lambda: len(_done(out)) >= 1, "a finished run")
        cluster.scheduler.send_signal(signal.SIGKILL)

    killer, _ = _in_thread(kill_after_a_run)
    # the client notices either the closed connection or the dropped tasks first
    lost = r"(lost the dask scheduler|the dask scheduler dropped task).* run the same command again"
    with (
        dask.config.set({"distributed.comm.timeouts.connect": "3s"}),
        pytest.raises(EngineError, match=lost),
    ):
        run_sweep(config, out, scheduler=cluster.address, progress=False)
    killer.join()
    before = _done(out)
    res = run_sweep(config, out, workers=0, progress=False)  # resumed in this process
    assert len(res.ran) + len(res.skipped) == 6 and len(res.skipped) >= len(before)
    _counted_once(config, out)
