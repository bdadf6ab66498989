"""probe.engine: the task lock, connecting, bounded retries of a task whose worker dies."""

from __future__ import annotations

import operator
import os
import threading
import time

import pytest

from probe.engine import cluster
from probe.engine.cluster import connect, describe
from probe.engine.lock import LOCK_NAME, folder_lock
from probe.engine.tasks import gather_map, run_tasks
from probe.errors import ConfigError, EngineError


def test_a_second_execution_waits_for_the_lock_then_gives_up_naming_the_holder(tmp_path):
    with folder_lock(tmp_path / "run"):
        holder = (tmp_path / "run" / LOCK_NAME).read_text()
        assert f'"pid": {os.getpid()}' in holder
        with (
            pytest.raises(
                EngineError,
                match=rf"run is still being written by another execution of the same task "
                rf"\(\{{\"pid\": {os.getpid()}, .*\) after 0.2 s",
            ),
            folder_lock(tmp_path / "run", wait_s=0.2),
        ):
            pass
    with folder_lock(tmp_path / "run", wait_s=0.2):  # released on exit
        pass


def test_in_process_tasks_keep_results_and_tracebacks():
    out = run_tasks(
        None, operator.truediv, {"half": (1, 2), "zero": (1, 0)}, desc="t", progress=False
    )
    assert out.results == {"half": 0.5}
    assert list(out.failed) == ["zero"] and "ZeroDivisionError" in out.failed["zero"]
    assert gather_map(None, operator.add, [(1, 2), (3, 4)]) == [3, 7]


def test_bad_local_cluster_settings():
    with pytest.raises(ConfigError, match="workers must be an int >= 1.*got 0"), connect(workers=0):
        pass
    with pytest.raises(ConfigError, match="retries must be an int >= 0"), connect(retries=-1):
        pass


def test_unreachable_scheduler(monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1)
    with (
        pytest.raises(EngineError, match=r"cannot reach the dask scheduler at 'tcp://127.0.0.1:9'"),
        connect("tcp://127.0.0.1:9"),
    ):
        pass


class _LostClient:
    """A Client whose scheduler connection is gone: every call raises OSError."""

    def nthreads(self):
        msg = "connection closed"
        raise OSError(msg)

    def cancel(self, futures):
        msg = "connection closed"
        raise OSError(msg)


def test_lost_scheduler_connection():
    with pytest.raises(EngineError, match=r"lost the dask scheduler \(OSError: connection closed"):
        run_tasks(_LostClient(), operator.pos, {"a": (1,)}, desc="t", progress=False)


@pytest.mark.slow
def test_local_cluster_retries_a_task_whose_worker_dies_then_reports_it():
    with connect(workers=1, retries=1, dashboard=":0") as client:
        assert "with 1 workers; dashboard http://127.0.0.1:" in describe(client)
        with connect(client) as same:  # a given Client is used as is
            assert same is client
        # os._exit kills the worker process (its nanny starts a new one); both pickle by name
        jobs = {"crash": (os._exit, 3), "fine": (os.path.exists, "/")}
        out = run_tasks(client, operator.call, jobs, desc="t", progress=False)
        assert out.results == {"fine": True}
        assert "KilledWorker: Attempted to run task" in out.failed["crash"]
        assert "on 2 different workers" in out.failed["crash"]
        assert gather_map(client, operator.add, [(1, 2), (3, 4)]) == [3, 7]
        with pytest.raises(ZeroDivisionError, match="division by zero"):
            gather_map(client, operator.truediv, [(1, 0)])
        # a scheduler restart drops every task, as a lost scheduler does
        restart = threading.Timer(1.0, client.restart)
        restart.start()
        with pytest.raises(EngineError, match=r"the dask scheduler dropped task 'nap'.*run the"):
            run_tasks(client, time.sleep, {"nap": (30,)}, desc="t", progress=False)
        restart.join()

