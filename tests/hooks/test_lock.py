"""One writer per run: a second Recorder (new, resume or overwrite) on a live run is refused."""

import copy
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

import probe
from hooks import Recorder
from hooks._lock import WriterLock
from hooks.errors import StoreExistsError, StoreLockedError


def _rec(model, x, path, **kw):
    return Recorder(model, layers="0", store=path, probe=x, every=1, **kw)


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_a_second_writer_is_refused_while_the_first_records(tmp_path, tiny_mlp, probe_xy, writer):
    x, path = probe_xy[0], tmp_path / "r.zarr"
    first = _rec(tiny_mlp, x, path, writer=writer)
    first.step(loss=1.0)
    holder = f"being written by process {os.getpid()} on host"
    with pytest.raises(StoreLockedError, match=holder):
        _rec(tiny_mlp, x, path, resume=True)
    with pytest.raises(StoreLockedError, match="overwrite=True"):
        _rec(tiny_mlp, x, path, overwrite=True)
    with pytest.raises(StoreExistsError, match="already holds a run"):
        _rec(tiny_mlp, x, path)
    for k in range(2, 5):  # the first writer goes on, untouched
        first.step(loss=float(k))
    first.close()
    run = probe.open_run(path)
    np.testing.assert_array_equal(run.steps, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(run.metrics()["loss"], [1.0, 2.0, 3.0, 4.0])
    assert not np.isnan(run.acts("0")).any()
    with _rec(tiny_mlp, x, path, resume=True) as again:  # free once the first closed
        again.step(loss=5.0)
    assert probe.open_run(path).steps[-1] == 5


def test_the_lock_is_freed_when_the_construction_fails(tmp_path, tiny_mlp, probe_xy, monkeypatch):
    import hooks._start as start

    def broken(*args, **kwargs):
        msg = "no writer today"
        raise RuntimeError(msg)

    monkeypatch.setattr(start, "make_writer", broken)
    with pytest.raises(RuntimeError, match="no writer today"):
        _rec(tiny_mlp, probe_xy[0], tmp_path / "r.zarr")
    WriterLock.acquire(tmp_path / "r.zarr").release()  # nobody holds it


def test_recorders_started_at_the_same_instant_get_typed_errors(tmp_path, tiny_mlp, probe_xy):
    """The loser of a creation race is told the run exists (before: a raw ENOTEMPTY)."""
    x = probe_xy[0]
    for trial in range(8):
        path = tmp_path / f"r{trial}.zarr"
        gate = threading.Barrier(2)
        outcomes: list[object] = []

        # One model per thread: each Recorder forwards its model at construction (the size
        # estimate), and hooks of two Recorders on one model would see each other's forwards.
        def start(model, path=path, gate=gate, outcomes=outcomes):
            gate.wait()
            try:
                rec = _rec(model, x, path)
            except Exception as err:  # noqa: BLE001 - collected and checked below
                outcomes.append(err)
            else:
                outcomes.append(rec)

        threads = [
            threading.Thread(target=start, args=(copy.deepcopy(tiny_mlp),)) for _ in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        recs = [o for o in outcomes if isinstance(o, Recorder)]
        errors = [o for o in outcomes if not isinstance(o, Recorder)]
        assert len(recs) == 1, outcomes
        assert len(errors) == 1 and isinstance(errors[0], StoreExistsError), errors
        recs[0].close()
        assert probe.open_run(path).n_snapshots == 1


def test_a_killed_writer_frees_the_lock_and_the_run_resumes(tmp_path, tiny_mlp, probe_xy):
    path = tmp_path / "r.zarr"
    code = (
        "import sys, time, torch\n"
        "from torch import nn\n"
        "from hooks import Recorder\n"
        "torch.manual_seed(0)\n"
        "m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))\n"
        "g = torch.Generator().manual_seed(1)\n"
        "x = torch.randn(40, 8, generator=g)\n"
        f"rec = Recorder(m, layers='0', store={str(path)!r}, probe=x, every=1)\n"
        "rec.step(loss=1.0); rec.flush()\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError, match=f"process {child.pid} on host"):
            _rec(tiny_mlp, probe_xy[0], path, resume=True)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    with _rec(tiny_mlp, probe_xy[0], path, resume=True) as rec:
        rec.step(loss=2.0)
    np.testing.assert_array_equal(probe.open_run(path).steps, [0, 1, 2])


def test_a_full_disk_while_resuming_is_a_typed_error(tmp_path, tiny_mlp, probe_xy, monkeypatch):
    import errno

    import hooks._resume as resume
    from hooks.errors import StoreNotWritableError

    path = tmp_path / "r.zarr"
    with _rec(tiny_mlp, probe_xy[0], path) as rec:
        rec.step()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(resume, "update_attributes", full)
    with pytest.raises(StoreNotWritableError, match="resuming the run at .* No space left"):
        _rec(tiny_mlp, probe_xy[0], path, resume=True)
    monkeypatch.undo()
    with _rec(tiny_mlp, probe_xy[0], path, resume=True) as rec:  # intact, and not left locked
        rec.step()
    np.testing.assert_array_equal(probe.open_run(path).steps, [0, 1, 2])


def test_each_rank_group_has_its_own_writer_lock(tmp_path, tiny_mlp, probe_xy):
    """Ranks record side by side; a second writer of one rank (or of the root) is refused."""
    x, path = probe_xy[0], tmp_path / "r.zarr"
    rank0 = _rec(tiny_mlp, x, path, rank=0, world_size=2)
    rank1 = _rec(tiny_mlp, x, path, rank=1, world_size=2)  # its own group: no conflict
    with pytest.raises(StoreLockedError, match=r"the run at '.*ranks/1' is being written"):
        _rec(tiny_mlp, x, path, rank=1, world_size=2, resume=True)
    with pytest.raises(StoreLockedError, match=r"the run at '.*r\.zarr' is being written"):
        _rec(tiny_mlp, x, path, rank=0, world_size=2, resume=True)
    for rec in (rank0, rank1):
        rec.step(loss=1.0)
        rec.close()
    run = probe.open_run(path)
    assert run.world_size == 2 and run.steps.tolist() == [0, 1]


def test_without_flock_the_lock_is_a_no_op(tmp_path, monkeypatch):
    """Windows has no flock: the run is written as before, a second writer is not refused."""
    import hooks._lock as lock_module

    monkeypatch.setattr(lock_module, "fcntl", None)
    a, b = WriterLock.acquire(tmp_path), WriterLock.acquire(tmp_path)
    assert not a.held and not b.held
    with lock_module.creating(tmp_path):
        pass


def test_a_file_system_without_locks_warns(tmp_path, monkeypatch):
    import errno

    import hooks._lock as lock_module

    class NoLocks:
        LOCK_EX, LOCK_NB = 2, 4

        @staticmethod
        def flock(fd, op):
            raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock_module, "fcntl", NoLocks)
    with pytest.warns(UserWarning, match="does not support locks .* would not be refused"):
        lock = WriterLock.acquire(tmp_path)
    assert lock.held
    lock.release()


def test_a_failed_first_snapshot_frees_the_lock(tmp_path):
    """The construction's own snapshot fails: the caller has no Recorder to close."""
    from torch import nn

    class BigBatchesFail(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2)

        def forward(self, x):
            if x.shape[0] > 5:  # the small measuring forwards pass, the snapshot does not
                msg = "out of memory (simulated)"
                raise RuntimeError(msg)
            return self.lin(x)

    path = tmp_path / "r.zarr"
    with pytest.raises(RuntimeError, match="out of memory"):
        Recorder(BigBatchesFail(), layers="lin", store=path, probe=torch.randn(10, 4), every=1)
    WriterLock.acquire(path).release()  # nobody holds it
