import json
import os
import socket
import subprocess
import sys

from probe.serve import state
from probe.serve.state import CLOSED, RECORDING, STOPPED, run_state


def _dead_pid():
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_closed_recording_and_stopped_from_the_writer_attrs(tmp_path):
    here = socket.gethostname()
    live = {"writer": {"pid": os.getpid(), "host": here}}
    assert run_state({"closed_utc": "2026-01-01T00:00:00Z"}, tmp_path, []) == CLOSED
    assert run_state(live, tmp_path, []) == RECORDING
    assert run_state({"writer": {"pid": _dead_pid(), "host": here}}, tmp_path, []) == STOPPED


def test_a_writer_on_another_host_is_judged_by_the_age_of_its_last_commit(tmp_path, monkeypatch):
    (tmp_path / "zarr.json").write_text(json.dumps({}))
    other = {"writer": {"pid": 1, "host": "elsewhere"}}
    assert run_state(other, tmp_path, []) == RECORDING
    monkeypatch.setattr(state, "STALE_S", -1.0)
    assert run_state(other, tmp_path, []) == STOPPED
    assert run_state(other, tmp_path / "missing", []) == STOPPED


def test_ranks_record_while_any_rank_lives_and_close_when_all_closed(tmp_path):
    here = socket.gethostname()
    closed = {"closed_utc": "x"}
    live = {"writer": {"pid": os.getpid(), "host": here}}
    dead = {"writer": {"pid": _dead_pid(), "host": here}}
    assert run_state({}, tmp_path, [closed, closed]) == CLOSED
    assert run_state({}, tmp_path, [closed, live]) == RECORDING
    assert run_state({}, tmp_path, [closed, dead, None]) == STOPPED
    assert run_state({}, tmp_path, [live, None]) == RECORDING  # rank 1 may start later
    assert run_state({}, tmp_path, [closed, None]) == STOPPED  # rank 1 never ran: not complete
    assert run_state(closed, tmp_path, [None, None]) == CLOSED


def test_a_thread_recorder_is_recording_until_closed(tmp_path, record):
    from probe.store import open_run

    path = tmp_path / "r.zarr"
    rec = record(path, 2, close=False)
    try:
        run = open_run(path)
        assert run_state(run.attrs, run.path, []) == RECORDING
    finally:
        rec.close()
    run.refresh()
    assert run_state(run.attrs, run.path, []) == CLOSED


def test_a_writer_that_exited_unreaped_is_not_alive():
    import subprocess
    import time
    from pathlib import Path

    from probe.serve.state import _pid_alive

    child = subprocess.Popen(["true"])  # exits at once; not waited for: a zombie
    try:
        stat = Path(f"/proc/{child.pid}/stat")
        deadline = time.monotonic() + 30
        while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child did not exit"
            time.sleep(0.01)
        assert not _pid_alive(child.pid)
    finally:
        child.wait()
    assert not _pid_alive(child.pid)  # reaped: gone
    assert _pid_alive(os.getpid())
