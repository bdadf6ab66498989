"""probe.experiments._sweep_task: a finished run is not redone; the data check names the root."""

from __future__ import annotations

import re

import pytest

from probe.errors import DatasetUnavailableError
from probe.experiments._sweep_task import DONE, data_problem, execute
from probe.experiments.sweep import plan_sweep, run_sweep

BASE = {"dataset": "digits", "pair": [3, 8], "hidden": 4, "epochs": 1, "probe_size": 30}
CONFIG = {"experiment": "seq-mnist", "grid": {"seed": [0]}, "base": BASE}


def test_a_second_execution_of_a_finished_run_returns_done_without_running(tmp_path):
    res = run_sweep(CONFIG, tmp_path, workers=0, progress=False)
    assert res.ran == ["seed=0"]
    folder = tmp_path / "runs" / "seed=0"
    marker = (folder / DONE).read_text()
    run = plan_sweep(CONFIG).runs[0]
    assert execute("seq-mnist", run, str(folder), None, 1.0) == "done"
    assert (folder / DONE).read_text() == marker


def test_data_problem_names_the_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBE_DATA", str(tmp_path / "empty"))
    assert data_problem(["digits"]) is None
    text = data_problem(["digits", "mnist"])
    assert f"has no MNIST under the data root {tmp_path / 'empty'}" in text
    assert "t10k-labels-idx1-ubyte.gz" in text
    mnist = {**CONFIG, "base": {**BASE, "dataset": "mnist"}}
    root = re.escape(str(tmp_path / "empty"))
    with pytest.raises(
        DatasetUnavailableError,
        match=rf"1 of 1 workers lack the sweep's data:\n  worker this process: .* root {root} ",
    ):
        run_sweep(mnist, tmp_path / "out", workers=0, progress=False)
