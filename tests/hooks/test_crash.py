"""SIGKILL a recording process at random moments; the store must open with every commit intact."""

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import probe
from probe.errors import RunNotFoundError

CHILD = Path(__file__).with_name("crash_child.py")
ROOT = Path(__file__).parents[2]
N_KILLS = 20


def _spawn(store, *args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(store), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )


def _wait_ready(child, timeout=60.0):
    """Block until the child prints its ``ready`` line (it has opened the run)."""
    ready, _, _ = select.select([child.stdout], [], [], timeout)
    assert ready, "the crash child did not start recording within 60 s"
    assert child.stdout.readline().startswith("ready")


def _probe():
    n, w = 2000, 64
    return (np.arange(n * w, dtype=np.float32).reshape(n, w) % 97) - 48


def check_store(store, x):
    """Assert every committed row equals what was captured; return the run (or None if absent)."""
    try:
        run = probe.open_run(store)
    except RunNotFoundError:
        return None
    steps = run.steps
    assert np.all(np.diff(steps) > 0)
    if run.n_snapshots:  # the commit writes both counters in one atomic metadata write
        assert run.attrs["last_step"] == steps[-1]
    if run.n_snapshots:
        # Every committed row is checked at the ends, where a kill lands, and a seeded sample
        # in between: reading all of them made each check O(run length) (GBs late in the test).
        n = run.n_snapshots
        rng = np.random.default_rng(n)
        picks = np.unique(np.r_[0, np.arange(max(0, n - 8), n), rng.integers(0, n, 8)])
        assert run.open_array("layers/lin/acts").shape[1:] == (2000, 64)
        for k in picks:
            np.testing.assert_array_equal(run.acts("lin", int(steps[k])), x * steps[k])
            np.testing.assert_array_equal(run.outputs(int(steps[k])), x * steps[k])
    m = run.metrics()
    if run.n_metric_records:
        np.testing.assert_array_equal(m["loss"].to_numpy(), m["step"].to_numpy().astype(float))
    if run.n_stream_rows:
        s = run.stream("lin")
        np.testing.assert_array_equal(s.acts, x[s.sample_id] * s.step[:, None].astype(np.float32))
    return run


@pytest.mark.slow
@pytest.mark.parametrize(("writer", "n_kills"), [("thread", N_KILLS), ("process", N_KILLS)])
def test_sigkill_at_random_moments_then_resume(tmp_path, writer, n_kills):
    """The writer thread dies with the process; the writer process is killed with its parent."""
    store = tmp_path / "run.zarr"
    x = _probe()
    rng = np.random.default_rng(12345)
    n_reads = committed = 0
    for i in range(n_kills):
        child = _spawn(store, 10**9, writer)
        try:
            # Child start-up (imports, store creation) takes 1-3 s on an idle machine and much
            # longer on a loaded one: odd rounds kill at a random moment of it, even rounds a
            # random moment after the child reports it is recording.
            if i % 2 == 0:
                _wait_ready(child)
            if i == 0:  # a second writer on the live run is refused and changes nothing
                second = _spawn(store, 5, writer)
                _, err = second.communicate(timeout=120)
                assert second.returncode != 0
                assert f"StoreLockedError: the run at {str(store)!r} is being written by " in err
                assert f"process {child.pid} on host" in err
            deadline = time.monotonic() + rng.uniform(0.3, 4.0)
            while time.monotonic() < deadline:  # a concurrent reader while the child writes
                run = check_store(store, x)
                n_reads += run is not None
                time.sleep(0.05)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        run = check_store(store, x)
        if run is not None:
            assert run.n_snapshots >= committed  # nothing committed is ever lost
            committed = run.n_snapshots
    assert committed > 0 and n_reads > 0
    assert probe.open_run(store).n_metric_records > 0  # metrics are committed about every second
    # A clean resume after the last kill continues the same run.
    before = probe.open_run(store)
    child = _spawn(store, 5, writer)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    after = check_store(store, x)
    assert after.n_snapshots == before.n_snapshots + 5
    assert after.steps[-1] == before.steps[-1] + 5
    assert after.info()["state"] == "closed"
    leftovers = list(store.rglob("*.partial")) + list(tmp_path.glob(".run.zarr.creating-*"))
    assert not list(store.rglob("*.partial"))  # resume removed interrupted temp files
    assert all(p.name.startswith(".run.zarr.creating-") for p in leftovers)
