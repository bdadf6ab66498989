"""probe.analysis.cross_run: CKA of a layer of two runs at matched snapshots, and ``probe cka``."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from hooks import Recorder
from probe.analysis.cross_run import cross_run_cka, matched_snapshots
from probe.cli.cka import add_parser
from probe.errors import ConfigError, ShapeMismatchError, StepNotFoundError
from probe.store import open_run

X = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
Y = torch.arange(40) % 2


def _record(path, seed, ids, epochs=(0, 1, 2), layer_name="hidden"):
    """A tiny net recorded at one snapshot per epoch on the probe samples ``ids``."""
    torch.manual_seed(seed)
    net = nn.Sequential()
    net.add_module(layer_name, nn.Linear(3, 6))
    net.add_module("out", nn.Linear(6, 2))
    idx = torch.as_tensor(ids)
    with Recorder(net, layers=layer_name, store=path, probe=(X[idx], Y[idx], idx)) as rec:
        for e in epochs:
            rec.step(epoch=e, loss=1.0)
            rec.snapshot()
            with torch.no_grad():
                net[0].weight += 0.3 * torch.randn_like(net[0].weight)
    return open_run(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cross")
    a = _record(tmp / "a.zarr", 0, range(40))
    b = _record(tmp / "b.zarr", 1, range(10, 40), epochs=(0, 1, 2, 3))
    return a, b


def test_a_run_against_itself_is_one_at_every_epoch(runs):
    a, _ = runs
    table = cross_run_cka(a, a.path, "hidden")
    assert table["epoch"].tolist() == [0, 1, 2] and (table["n_samples"] == 40).all()
    np.testing.assert_allclose(table["cka"], 1.0)


def test_two_seeds_on_their_shared_samples(runs):
    a, b = runs
    table = cross_run_cka(a, b, "hidden")
    assert list(table.columns) == ["epoch", "step_a", "step_b", "n_samples", "cka"]
    assert table["epoch"].tolist() == [0, 1, 2] and (table["n_samples"] == 30).all()
    # by hand at epoch 1: samples 10..39 of each run, in dataset-index order
    step_a, step_b = table.loc[1, ["step_a", "step_b"]]
    from probe.analysis.similarity import linear_cka

    xa = np.asarray(a.acts("hidden", int(step_a)))[10:]
    xb = np.asarray(b.acts("hidden", int(step_b)))
    assert table.loc[1, "cka"] == pytest.approx(linear_cka(xa, xb))
    assert ((table["cka"] > 0) & (table["cka"] < 1)).all()


def test_snapshots_matched_by_step(runs):
    a, b = runs
    pairs = matched_snapshots(a, b, "step")
    assert (pairs["step_a"] == pairs["step_b"]).all() and len(pairs) == 3


def test_different_layer_names(runs, tmp_path):
    a, _ = runs
    c = _record(tmp_path / "c.zarr", 0, range(40), layer_name="branch")
    table = cross_run_cka(a, c, "hidden", layer_b="branch")
    np.testing.assert_allclose(table["cka"], 1.0)  # same seed, same weights


def test_bad_inputs(runs, tmp_path):
    a, b = runs
    with pytest.raises(ConfigError, match=r"match must be one of \['epoch', 'step'\]; got 'time'"):
        cross_run_cka(a, b, "hidden", match="time")
    late = _record(tmp_path / "late.zarr", 0, range(40), epochs=(7,))
    with pytest.raises(StepNotFoundError, match=r"share no epoch: .* has epochs \[0, 1, 2\]"):
        cross_run_cka(a, late, "hidden")
    few = _record(tmp_path / "few.zarr", 0, [0, 1, 2])
    with pytest.raises(ShapeMismatchError, match=r"the runs share 0 probe samples .*at least 2"):
        cross_run_cka(b, few, "hidden")


def test_cli_cka(runs, tmp_path, capsys):
    a, b = runs
    parser = argparse.ArgumentParser(prog="probe")
    add_parser(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(["cka", str(a.path), str(b.path), "--layer", "hidden"])
    assert args.match == "epoch" and args.out == "artifacts/cka" and not args.unbiased
    args.out = str(tmp_path / "o")
    assert args.func(args) == 0
    assert "written:" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "o" / "cka_hidden.csv")
    assert len(table) == 3 and table["run_a"].iloc[0] == str(a.path)
