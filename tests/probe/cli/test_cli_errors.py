"""Issue 18: `probe` reports every error in one line with a documented exit status."""

import json
import os

import numpy as np
import pytest
import torch
from torch import nn

import hooks.errors
import probe.cli.app
import probe.errors
import probe.store
from hooks import Recorder
from probe.cli import EXIT_STATUS, main


@pytest.fixture
def run_path(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "run.zarr"
    x, y = torch.randn(12, 3), torch.arange(12) % 2
    with Recorder(nn.Sequential(nn.Linear(3, 4)), "0", path, (x, y), every=1) as rec:
        rec.step(loss=0.5)
    return path


def _fail_with(monkeypatch, err):
    def fail(args):
        raise err

    monkeypatch.setattr(probe.cli.app, "_cmd_info", fail)


@pytest.mark.parametrize(
    ("err", "code", "line"),
    [
        (probe.errors.CorruptRunError("bad attrs"), 2, "probe info: error: bad attrs"),
        (hooks.errors.StoreCorruptError("bad meta"), 2, "probe info: error: bad meta"),
        (
            PermissionError(13, "Permission denied", "/ro/x.html"),
            2,
            "probe info: error: Permission denied ('/ro/x.html'). Check the path, its perm",
        ),
        (OSError(28, "No space left on device"), 2, "probe info: error: No space left on dev"),
        (
            ValueError("boom\nsecond line"),
            3,
            "probe info: unexpected error (a bug in probe; rerun with --debug for the traceback):"
            " ValueError: boom second line",
        ),
        (KeyboardInterrupt(), 130, "probe info: interrupted"),
    ],
)
def test_errors_are_one_line_with_their_exit_status(monkeypatch, capsys, err, code, line):
    _fail_with(monkeypatch, err)
    assert main(["info", "RUN"]) == code
    captured = capsys.readouterr()
    assert captured.err.startswith(line)
    assert captured.err.count("\n") == 1 and captured.out == ""
    assert code in EXIT_STATUS


@pytest.mark.parametrize("where", [["--debug", "info", "RUN"], ["info", "RUN", "--debug"]])
def test_debug_anywhere_adds_the_traceback(monkeypatch, capsys, where):
    _fail_with(monkeypatch, ZeroDivisionError("division by zero"))
    assert main(where) == 3
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last)")
    assert err.endswith(
        "probe info: unexpected error (a bug in probe): ZeroDivisionError: division by zero\n"
    )


def test_help_documents_debug_and_exit_status(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--debug show the full traceback of an error" in out
    assert "Exit status: 0 done; 1 `probe verify` found the run damaged" in out
    assert "2 an error in the input" in out
    assert "3 an unexpected error, a bug in probe" in out


def test_a_hooks_error_of_a_run_is_one_line(tmp_path, capsys):
    """`probe run` records with hooks: a HooksError reaches the CLI (here a foreign folder)."""
    out = tmp_path / "o"
    (out / "run.zarr").mkdir(parents=True)
    (out / "run.zarr" / "data.txt").write_text("mine")
    argv = ["run", "mnist", "--dataset", "digits", "--epochs", "1", "--max-steps", "1"]
    assert main([*argv, "--probe-size", "20", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("probe run mnist: error: store path ") and err.count("\n") == 1
    assert "exists and is not a probe run" in err


@pytest.mark.parametrize(
    ("flag", "value", "match"),
    [
        ("--lr", "nan", "lr must be a finite number > 0; got nan."),
        ("--lr", "inf", "lr must be a finite number > 0; got inf."),
        ("--lr", "-0.1", "lr must be a finite number > 0; got -0.1."),
        ("--gain", "0", "gain must be a finite number > 0; got 0.0."),
        ("--n-log-snapshots", "0", "n_log_snapshots must be an int >= 1; got 0."),
        ("--max-steps", "0", "max_steps must be an int >= 1; got 0. Or None: every step."),
        ("--seed", "-1", "seed must be an int >= 0; got -1."),
    ],
)
def test_run_mnist_refuses_meaningless_numbers_before_loading_data(
    tmp_path, capsys, flag, value, match
):
    out = tmp_path / "o"
    assert main(["run", "mnist", "--dataset", "digits", flag, value, "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"probe run mnist: error: {match}\n"
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["run", "seq-mnist", "--lr", "nan"], "lr must be a finite number > 0; got nan. Pass e."),
        (["run", "two-points", "--dx2", "inf"], "dx2 must be a finite number > 0; got inf."),
        (["run", "deep-linear", "--sigma", "nan"], "sigma must be a finite number > 0; got nan"),
        (["run", "finetune-speed", "--lr", "inf"], "FinetuneConfig.lr must be a finite number"),
        (["run", "finetune-speed", "--threshold", "nan"], r"threshold must be a finite number >"),
        (["run", "mnist-clustering", "--gain", "inf"], "gain must be a finite number > 0; got"),
        (["run", "neural-race", "--scale", "nan"], "scale must be a finite number > 0; got nan"),
        (["run", "nfa", "--lr", "inf"], "lr must be a finite number > 0; got inf."),
    ],
)
def test_every_experiment_refuses_non_finite_rates(tmp_path, capsys, argv, match):
    out = tmp_path / "o"
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"probe {argv[0]} {argv[1]}: error: ") and err.count("\n") == 1
    assert match.replace("\\", "") in err


@pytest.mark.parametrize(
    ("text", "got"),
    [
        (json.dumps([{"experiment": "seq-mnist", "grid": {"seed": [0]}}]), "list"),
        ("[]", "list"),
        ("[1, 2]", "list"),
        ('"seq-mnist"', "str"),
        ("3", "int"),
    ],
)
def test_a_sweep_config_that_is_not_a_json_object(tmp_path, capsys, text, got):
    config = tmp_path / "sweep.json"
    config.write_text(text)
    assert main(["sweep", str(config), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"probe sweep: error: sweep config {str(config)!r} must hold one JSON object; got a "
        f'{got}. Write it as {{"experiment": "seq-mnist", "grid": {{"seed": [0, 1]}}, '
        '"base": {"epochs": 2}}.\n'
    )


def test_analyze_out_problems_are_reported_before_the_report(run_path, tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("")
    assert main(["analyze", str(run_path), "--out", str(blocker / "r.html")]) == 2
    assert capsys.readouterr().err == (
        f"probe analyze: error: --out {str(blocker / 'r.html')!r} cannot be created: "
        f"{str(blocker)!r} is a file, not a folder. Choose another --out.\n"
    )
    assert main(["analyze", str(run_path), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"probe analyze: error: --out must be a file; {str(tmp_path)!r} is a folder. "
        f"Choose another --out, e.g. {str(tmp_path / 'report.html')!r}.\n"
    )


def test_analyze_into_a_folder_without_write_permission(run_path, tmp_path, capsys, monkeypatch):
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: real(p, mode) and p != tmp_path)
    out = tmp_path / "new" / "r.html"
    assert main(["analyze", str(run_path), "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith(
        f"probe analyze: error: --out {str(out)!r} cannot be written: no write permission in "
        f"{str(tmp_path)!r}. Choose a --out under a folder you can write"
    )


def test_export_out_must_be_a_folder_and_replaces_its_own_files(run_path, tmp_path, capsys):
    existing = tmp_path / "table.parquet"
    existing.write_text("old")
    assert main(["export", str(run_path), "--format", "npz", "--out", str(existing)]) == 2
    assert capsys.readouterr().err == (
        "probe export: error: --out must be a folder (the verb writes several files into it); "
        f"{str(existing)!r} is a file. Choose another --out.\n"
    )
    assert existing.read_text() == "old"
    out = tmp_path / "export"
    for _ in range(2):  # a second export replaces the first one's file
        assert main(["export", str(run_path), "--format", "npz", "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines() == [str(out / "run_acts.npz")] * 2
    assert np.load(out / "run_acts.npz")


@pytest.mark.parametrize("path", [None, 3, ""])
def test_open_run_needs_a_path(path):
    with pytest.raises(
        probe.errors.InvalidArgumentError,
        match=f"open_run needs the path of a run store .*; got {path!r}",
    ):
        probe.store.open_run(path)
