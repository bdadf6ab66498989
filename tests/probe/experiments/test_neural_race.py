"""The neural-race experiment: V2-3 known answers through the Recorder and the run store.

Decoupled init b0 = 0.08, lr 0.02 (tau = 700), 500 full-batch epochs, float64 (docs/dynamics.md §5
V2-3).
"""

import argparse
import json

import numpy as np
import pandas as pd
import pytest
import torch

from probe.cli.run_neural_race import add_run_parser
from probe.errors import ConfigError
from probe.experiments.neural_race.experiment import (
    InitScaleSweepConfig,
    NeuralRaceConfig,
    RoutingPaths,
    init_scale_sweep,
    path_errors,
    race_traces,
    run_neural_race,
)
from probe.models.gdln import gate_matrix, routing_data, routing_network
from probe.store import open_run


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: more threads only contend on a shared machine
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def v2_3(tmp_path_factory):
    cfg = NeuralRaceConfig(init="decoupled", scale=0.08, lr=0.02, epochs=500, seeds=1)
    cfg.record_every = 1  # half-times to the epoch
    return run_neural_race(cfg, tmp_path_factory.mktemp("race"), progress=False)


def modes(res, layer):
    return res.table[res.table["layer"] == layer].sort_values("mode")


def test_v2_3_final_singular_values(v2_3):
    h = modes(v2_3, "h")
    np.testing.assert_allclose(h["sv_final"], [4.5641, 3.5489, 2.7544, 2.7544], rtol=1e-3)
    np.testing.assert_allclose(h["sv_final_theory"], [4.5635, 3.5486, 2.7543, 2.7543], atol=5e-5)
    np.testing.assert_allclose(h["sv_final"], h["sv_final_theory"], rtol=1e-3)
    for layer in ("in", "out"):
        m = modes(v2_3, layer)
        np.testing.assert_allclose(m["sv_final"][:3], [1.7263, 1.3432, 1.0436], rtol=1e-3)
        np.testing.assert_allclose(m["sv_final_theory"][:3], [1.7264, 1.3433, 1.0437], atol=5e-5)
        np.testing.assert_allclose(m["sv_final"], m["sv_final_theory"], rtol=1e-3)


def test_v2_3_half_times(v2_3):
    h = modes(v2_3, "h")
    assert np.all(np.abs(h["t_half"].to_numpy() - [75, 153, 315, 315]) <= 3)
    assert np.all(np.abs(h["t_half"] - h["t_half_theory"]) <= 3)
    np.testing.assert_array_equal(np.ceil(h["t_half_theory"]), [73, 151, 313, 313])


def test_v2_3_loss(v2_3):
    loss = v2_3.losses.set_index("epoch")
    np.testing.assert_allclose(
        loss.loc[[0, 100, 200], "loss"], [243.973, 58.850, 17.906], rtol=1e-3
    )
    np.testing.assert_allclose(
        loss.loc[[0, 100, 200], "loss_theory"], [243.973, 58.845, 17.904], rtol=1e-3
    )
    np.testing.assert_allclose(
        loss.loc[[0, 100, 200], "loss"], loss.loc[[0, 100, 200], "loss_theory"], rtol=1e-3
    )


def test_outputs_written_and_store_read_back(v2_3):
    for path in (
        v2_3.table_csv,
        v2_3.summary_json,
        v2_3.figure,
        v2_3.table_csv.parent / "losses.csv",
    ):
        assert path.is_file()
    summary = json.loads(v2_3.summary_json.read_text())
    assert summary["tau"] == pytest.approx(700.0)
    assert pd.read_csv(v2_3.table_csv).shape[0] == 12
    run = open_run(v2_3.runs[0])
    np.testing.assert_array_equal(run.steps, np.arange(501))
    tr = race_traces(v2_3.runs[0])
    assert tr.sv["h"].shape == (501, 4)
    np.testing.assert_allclose(tr.sv["h"][0], 0.08, rtol=1e-6)
    np.testing.assert_array_equal(tr.loss_steps, np.arange(501))
    assert run.outputs().shape == (501, 4, 7, 7, 7)
    # trained paths fit Y; the shared representation also carries the untrained ones
    assert tr.trained_error[-1] < 1e-6
    assert tr.untrained_error[-1] < 1e-6


def test_path_errors_known_answers():
    _, Y = routing_data()
    G = gate_matrix(7).numpy()
    zero = np.zeros((4, 7, 7, 7))
    assert path_errors(zero, Y, G) == pytest.approx((122.0, 122.0))
    fit_trained = G[None, :, :, None] * Y.numpy()[:, None, None, :]
    trained, untrained = path_errors(np.stack([zero, fit_trained]), Y, G)
    np.testing.assert_allclose(trained, [122.0, 0.0])
    np.testing.assert_allclose(untrained, [122.0, 122.0])


def test_routing_paths_wrapper():
    net = routing_network(d_hidden=8)
    X, _ = routing_data()
    torch.testing.assert_close(RoutingPaths(net)(X), net.all_paths(X))
    assert "net.edges.h" in dict(RoutingPaths(net).named_modules())


def test_init_scale_sweep_tiny(tmp_path):
    cfg = InitScaleSweepConfig(sigmas="0.3,2", epochs=20, seeds=1, record_every=10, d_hidden=8)
    res = init_scale_sweep(cfg, tmp_path, progress=False)
    assert list(res.table["sigma0"]) == [0.3, 2.0]
    np.testing.assert_allclose(res.table["lr"], [0.006 / 0.3 ** (1 / 3), 0.006 / 2 ** (1 / 3)])
    assert np.all(res.table["zero_error"] == 122.0)
    assert np.all(res.table[["trained_error", "untrained_error"]] > 0)
    assert res.figure.is_file()
    assert res.means.shape[0] == 2


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        (NeuralRaceConfig(init="xavier"), "init must be 'decoupled' or 'orthogonal'"),
        (NeuralRaceConfig(dtype="float16"), "dtype must be 'float32' or 'float64'"),
        (NeuralRaceConfig(lr=-1.0), "lr must be a finite number > 0"),
        (NeuralRaceConfig(epochs=2.5), "epochs must be an int >= 1"),
        (NeuralRaceConfig(theory_b0=0.0), "theory_b0 must be > 0"),
    ],
)
def test_config_errors(cfg, match):
    with pytest.raises(ConfigError, match=match):
        cfg.checked()


@pytest.mark.parametrize("sigmas", ["", "0.2,x", "0.2,-1"])
def test_sweep_config_errors(sigmas):
    with pytest.raises(ConfigError, match="sigmas must be comma-separated numbers > 0"):
        InitScaleSweepConfig(sigmas=sigmas).sigma_values()


def test_cli(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="probe")
    exp = parser.add_subparsers(dest="experiment")
    add_run_parser(exp)
    args = parser.parse_args(
        ["neural-race", "--init", "decoupled", "--scale", "0.08", "--epochs", "20", "--seeds", "1"]
        + ["--d-hidden", "8", "--out", str(tmp_path / "race")]
    )
    assert (args.init, args.scale, args.lr, args.record_every) == ("decoupled", 0.08, 0.02, 2)
    assert args.func(args) == 0
    assert "sv_final_theory" in capsys.readouterr().out
    args = parser.parse_args(
        ["neural-race-sweep", "--sigmas", "1", "--epochs", "10", "--seeds", "1", "--d-hidden", "8"]
        + ["--out", str(tmp_path / "sweep")]
    )
    assert args.func(args) == 0
    assert "untrained_error" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["neural-race", "--init", "xavier"])
