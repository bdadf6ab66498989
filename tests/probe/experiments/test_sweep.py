"""Tests of probe.experiments.sweep: config checks, parallel runs, failures, resume, table, CLI."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

import pandas as pd
import pytest

from probe.cli.sweep import add_parser
from probe.errors import SweepConfigError, SweepRunError
from probe.experiments.sweep import plan_sweep, run_sweep

# tiny digits runs: 1 epoch -> snapshots at init and epoch 1; 8 time steps; 2 read-outs
BASE = {"dataset": "digits", "pair": [3, 8], "hidden": 4, "epochs": 1, "probe_size": 30}
ROWS_PER_RUN = 2 * 8 * 2


def _cfg(grid, **base):
    return {"experiment": "seq-mnist", "grid": grid, "base": {**BASE, **base}}


# --------------------------------------------------------------------------- planning


def test_plan_crosses_the_grid_in_order():
    plan = plan_sweep(
        {"experiment": "seq-mnist", "grid": {"pair": [[0, 1], [3, 8]], "seed": [0, 1, 2]}}
    )
    names = [r.name for r in plan.runs]
    assert names[:4] == ["pair=0-1_seed=0", "pair=0-1_seed=1", "pair=0-1_seed=2", "pair=3-8_seed=0"]
    assert len(names) == 6 and plan.fields == ["pair", "seed"]
    assert plan.runs[3].config["pair"] == [3, 8] and plan.runs[3].config["seed"] == 0
    assert plan.runs[3].grid == {"pair": [3, 8], "seed": 0}


def test_plan_reads_json_and_toml(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps(_cfg({"seed": [0, 1]})))
    (tmp_path / "s.toml").write_text(
        'experiment = "seq-mnist"\n[grid]\nseed = [0, 1]\n[base]\ndataset = "digits"\n'
        "pair = [3, 8]\nhidden = 4\nepochs = 1\nprobe_size = 30\n"
    )
    a, b = plan_sweep(tmp_path / "s.json"), plan_sweep(str(tmp_path / "s.toml"))
    assert [r.config for r in a.runs] == [r.config for r in b.runs]
    assert a.runs[1].config["hidden"] == 4 and a.runs[1].name == "seed=1"


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (
            {"experiment": "seq-mnsit", "grid": {"seed": [0]}},
            r"unknown experiment 'seq-mnsit'; closest: 'seq-mnist'",
        ),
        (
            {"experiment": "seq-mnist", "grid": {"hiden": [4]}},
            r"unknown seq-mnist field in grid: 'hiden'; closest: 'hidden'.*Valid: dataset, pair",
        ),
        (
            {"experiment": "seq-mnist", "grid": {"seed": [0]}, "base": {"epoch": 2}},
            r"unknown seq-mnist field in base: 'epoch'; closest: 'epochs'",
        ),
        (
            {"experiment": "seq-mnist", "grids": {"seed": [0]}},
            r"unknown sweep config key 'grids'; closest: 'grid'",
        ),
        ({"experiment": "seq-mnist", "grid": {}}, r"grid must be a non-empty mapping.*got \{\}"),
        ({"experiment": "seq-mnist"}, "grid must be a non-empty mapping.*got None"),
        (
            {"experiment": "seq-mnist", "grid": {"seed": []}},
            r"grid\['seed'\] must be a non-empty list of values; got \[\]",
        ),
        (
            {"experiment": "seq-mnist", "grid": {"seed": 3}},
            r"grid\['seed'\] must be a non-empty list of values; got 3",
        ),
        (
            {"experiment": "seq-mnist", "grid": {"seed": [0]}, "base": [["hidden", 4]]},
            r"base must be a mapping of field -> value; got \[\['hidden', 4\]\]",
        ),
        (
            {"experiment": "seq-mnist", "grid": {"pair": [3, 8]}},
            r"run 'pair=3': pair must be two distinct classes in 0-9, e.g. \(3, 8\); got 3",
        ),
        (
            {"experiment": "seq-mnist", "grid": {"seed": [0]}, "base": {"seed": 1}},
            "field 'seed' is in both grid and base",
        ),
        (
            {"experiment": "seq-mnist", "grid": {"seed": [0, 0]}},
            "two grid combinations are both named 'seed=0'",
        ),
        (
            {"experiment": "seq-mnist", "grid": {"pair": [[0, 1], [0, 11]]}},
            r"run 'pair=0-11': pair must be two distinct classes in 0-9",
        ),
    ],
)
def test_bad_sweep_configs(config, match):
    with pytest.raises(SweepConfigError, match=match):
        plan_sweep(config)


def test_bad_sweep_config_files(tmp_path, monkeypatch):
    with pytest.raises(SweepConfigError, match=r"must be a \.json or \.toml file; got '.*s\.yaml'"):
        plan_sweep(tmp_path / "s.yaml")
    with pytest.raises(SweepConfigError, match=r"sweep config file '.*nope\.json' does not exist"):
        plan_sweep(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{experiment: seq-mnist")
    with pytest.raises(SweepConfigError, match=r"'.*bad\.json' is not valid JSON"):
        plan_sweep(tmp_path / "bad.json")
    (tmp_path / "s.toml").write_text('experiment = "seq-mnist"\n')
    monkeypatch.setitem(sys.modules, "tomllib", None)  # as on Python 3.10
    with pytest.raises(SweepConfigError, match=r"needs Python >= 3.11 \(tomllib\); write the"):
        plan_sweep(tmp_path / "s.toml")


def test_bad_workers(tmp_path):
    with pytest.raises(SweepConfigError, match="workers must be an int >= 0.*got -1"):
        run_sweep(_cfg({"seed": [0]}), tmp_path, workers=-1)
    with pytest.raises(SweepConfigError, match="retries must be an int >= 0.*got 1.5"):
        run_sweep(_cfg({"seed": [0]}), tmp_path, retries=1.5)
    with pytest.raises(SweepConfigError, match="lock_wait_s must be .*got 0"):
        run_sweep(_cfg({"seed": [0]}), tmp_path, lock_wait_s=0)


# --------------------------------------------------------------------------- running


@pytest.fixture(scope="module")
def pooled(tmp_path_factory):
    """A 3-run sweep in a spawned worker; the run with n_train=100000 fails in the worker.

    One worker, not two: each spawned worker spends seconds importing torch and probe, and the
    pool code path is the same.
    """
    out = tmp_path_factory.mktemp("sweep")
    config = _cfg({"n_train": [10, 100000, 12]})
    with pytest.raises(SweepRunError) as info:
        run_sweep(config, out, workers=1, progress=False)
    return out, str(info.value), info.value.result


def test_failed_run_is_named_and_the_others_are_kept(pooled):
    out, message, result = pooled
    assert (
        list(result.failed) == ["n_train=100000"] and "Traceback" in result.failed["n_train=100000"]
    )
    assert sorted(result.ran) == ["n_train=10", "n_train=12"] and result.skipped == []
    assert message.startswith("1 of 3 runs failed:\n  n_train=100000: probe.errors.ConfigError: ")
    assert "n_train must be at most" in message and "retry only the failed runs" in message
    runs = out / "runs"
    assert "ConfigError" in (runs / "n_train=100000" / "error.txt").read_text()
    assert not (runs / "n_train=100000" / "done.json").exists()
    for name in ("n_train=10", "n_train=12"):
        marker = json.loads((runs / name / "done.json").read_text())
        assert marker["pid"] != os.getpid()  # ran in a worker process
        assert (runs / name / "run.zarr").is_dir()
    table = pd.read_csv(out / "table.csv")
    assert table["run"].unique().tolist() == ["n_train=10", "n_train=12"]  # plan order
    assert len(table) == 2 * ROWS_PER_RUN
    assert list(table.columns[:4]) == ["run", "n_train", "seed", "epoch"]
    assert {"t", "readout", "accuracy", "train_loss", "test_accuracy"} <= set(table.columns)
    assert table["accuracy"].between(0, 1).all()
    pd.testing.assert_frame_equal(pd.read_parquet(out / "table.parquet"), table)
    assert json.loads((out / "sweep.json").read_text())["grid"] == {"n_train": [10, 100000, 12]}


def test_resume_recomputes_only_the_unfinished_run(pooled, tmp_path):
    out = tmp_path / "sweep"
    shutil.copytree(pooled[0], out)
    runs = out / "runs"
    kept = (runs / "n_train=10" / "done.json").read_text()
    # an interrupted run: its store is there, its done-marker is not
    (runs / "n_train=12" / "done.json").unlink()
    before = pd.read_csv(out / "table.csv")
    res = run_sweep(_cfg({"n_train": [10, 12]}), out, workers=0, progress=False)
    assert res.ran == ["n_train=12"] and res.skipped == ["n_train=10"] and not res.failed
    assert (runs / "n_train=10" / "done.json").read_text() == kept  # untouched
    redone = json.loads((runs / "n_train=12" / "done.json").read_text())
    assert redone["pid"] == os.getpid()
    after = pd.read_csv(res.table)
    pd.testing.assert_frame_equal(after, before)  # same seed, same numbers


def test_changed_config_runs_again(pooled, tmp_path):
    out = tmp_path / "sweep"
    shutil.copytree(pooled[0], out)
    res = run_sweep(_cfg({"n_train": [10]}, hidden=3), out, workers=0, progress=False)
    assert res.ran == ["n_train=10"] and res.skipped == []
    done = json.loads((out / "runs" / "n_train=10" / "done.json").read_text())
    assert done["config"]["hidden"] == 3


# --------------------------------------------------------------------------- CLI


def test_cli_sweep(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="probe")
    add_parser(parser.add_subparsers(dest="verb"))
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(_cfg({"seed": [0]}, n_train=10)))
    out = tmp_path / "o"
    args = parser.parse_args(["sweep", str(config), "--workers", "0", "--no-progress"])
    assert args.out is None and args.workers == 0 and args.progress is False
    args.out = str(out)
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "1 runs ran and 0 were already done" in text
    assert f"table: {out / 'table.csv'} and {out / 'table.parquet'}" in text
    assert len(pd.read_csv(out / "table.csv")) == ROWS_PER_RUN


def test_moved_names_are_reexported():
    from probe.experiments import _sweep_plan, sweep

    for name in ("EXPERIMENTS", "SweepPlan", "SweepRun", "plan_sweep"):
        assert getattr(sweep, name) is getattr(_sweep_plan, name)
