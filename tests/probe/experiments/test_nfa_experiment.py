import argparse
import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest
import torch

import probe
from probe.analysis.features import compare, matrix_power_psd, nfm, rho_cos, rho_pearson
from probe.cli.run_nfa import add_run_parser
from probe.errors import ConfigError
from probe.experiments.nfa._report import gstar
from probe.experiments.nfa._setup import make_setup
from probe.experiments.nfa.experiment import NfaConfig, demo_config, poly_data, run_nfa

TINY_DIGITS = [
    *("--task", "mnist", "--dataset", "digits", "--epochs", "1", "--max-train", "200"),
    *("--batch-size", "64", "--n-probe", "40", "--width", "8", "--depth", "1"),
    *("--n-log-snapshots", "3", "--local-layer", "0", "--n-local", "40", "--k", "3"),
]
TINY_POLY = NfaConfig(
    task="poly",
    init="rich",
    dim=6,
    n_train=48,
    n_test=16,
    width=8,
    depth=1,
    epochs=2,
    seeds=2,
    batch_size=16,
    n_log_snapshots=3,
    local_layer=0,
    n_local=48,
    k=3,
)
MEASURES = ("pearson", "cosine", "offdiag")


@pytest.fixture(scope="module")
def digits_out(tmp_path_factory):
    """`probe run nfa` on a tiny digits MLP, through a parser built as probe.cli.app builds it."""
    out = tmp_path_factory.mktemp("nfa_digits")
    parser = argparse.ArgumentParser(prog="probe run")
    add_run_parser(parser.add_subparsers(dest="experiment", required=True))
    args = parser.parse_args(["nfa", *TINY_DIGITS, "--out", str(out)])
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        status = args.func(args)
    return status, text.getvalue(), out


@pytest.fixture(scope="module")
def poly_res(tmp_path_factory):
    return run_nfa(TINY_POLY, tmp_path_factory.mktemp("nfa_poly"), progress=False)


def _table(out):
    return pd.read_csv(out / "nfa_table.csv")


def test_cli_writes_every_file_and_prints_the_table(digits_out):
    status, text, out = digits_out
    assert status == 0
    assert "| layers.0 | init |" in text and "| head | trained |" in text
    assert "static vs local (layers.0, 40 points)" in text
    names = ["nfa_table.csv", "nfa_table.json", "nfa_steps.csv", "nfa_M.png", "nfa_dM.png"]
    for name in [*names, "static_vs_local.png", "seed-0/run.zarr"]:
        assert (out / name).exists(), name
    assert not (out / "ground_truth.png").exists()  # poly only


def test_table_columns_and_rows(digits_out, poly_res):
    ratios = [f"{m}_{n}_{p}" for m in MEASURES for n in ("M", "dM") for p in ("sqrtG", "G")]
    base = {"seed", "layer", "d_in", "state", "step", *ratios, *(f"{m}_M_M0" for m in MEASURES)}
    digits = _table(digits_out[2])
    assert set(digits.columns) == base | {"test_loss", "test_accuracy"}
    assert list(digits["layer"]) == ["layers.0"] * 2 + ["head"] * 2
    assert list(digits["state"]) == ["init", "trained"] * 2
    assert list(digits["d_in"]) == [64, 64, 8, 8]
    truth = {"cos_M_Gstar", "cos_dM_Gstar", "cos_G_Gstar", "trace_share_M", "trace_share_dM"}
    assert set(poly_res.table.columns) == base | {"test_mse"} | truth
    assert list(poly_res.table["seed"]) == [0] * 4 + [1] * 4
    assert len(poly_res.stores) == 2 and all(s.is_dir() for s in poly_res.stores)


def _check_against_compare(row_init, row_trained, run, layer):
    """The table's values are `features.compare` on the stored weights and AGOPs."""
    W, G = run.weights(layer).astype(np.float64), run.agop(layer).astype(np.float64)
    M0, MT, dM = nfm(W[0]), nfm(W[-1]), nfm(W[-1], W[0], subtract_init=True)
    init = compare(M0, G[0], powers=(1, 0.5))
    trained = compare(MT, G[-1], powers=(1, 0.5), M0=M0, G0=G[0])
    delta = compare(dM, G[-1], powers=(1, 0.5))
    for m in MEASURES:
        for p, name in ((0.5, "sqrtG"), (1.0, "G")):
            assert row_init[f"{m}_M_{name}"] == pytest.approx(init.value[m][p], abs=1e-12)
            # the at-init baseline carried by the trained comparison is the same number
            assert trained.init[m][p] == pytest.approx(init.value[m][p], abs=1e-12)
            assert row_trained[f"{m}_M_{name}"] == pytest.approx(trained.value[m][p], abs=1e-12)
            assert row_trained[f"{m}_dM_{name}"] == pytest.approx(delta.value[m][p], abs=1e-12)
            assert np.isnan(row_init[f"{m}_dM_{name}"])  # dM = 0 at init
        assert row_init[f"{m}_M_M0"] == pytest.approx(1.0, abs=1e-12)
        assert row_trained[f"{m}_M_M0"] == pytest.approx(trained.nfm_change[m], abs=1e-12)


@pytest.mark.parametrize("which", ["digits", "poly"])
def test_table_matches_compare_on_the_stored_arrays(digits_out, poly_res, which):
    out = digits_out[2] if which == "digits" else poly_res.out
    table = _table(out)
    for seed, rows in table.groupby("seed"):
        run = probe.open_run(out / f"seed-{seed}" / "run.zarr")
        assert rows["step"].max() == run.steps[-1] and rows["step"].min() == 0
        for layer in run.layers:
            sub = rows[rows["layer"] == layer].set_index("state")
            _check_against_compare(sub.loc["init"], sub.loc["trained"], run, layer)


def test_poly_ground_truth_and_metrics(poly_res):
    run = probe.open_run(poly_res.stores[0])
    x, y = run.probe_inputs, run.targets
    assert x.shape == (48, 6)
    np.testing.assert_array_equal(y[:, 0], x[:, 0] * x[:, 1])  # y = x0 x1, all train points
    t = poly_res.table[poly_res.table["seed"] == 0].set_index(["layer", "state"])
    W, G = run.weights("fc0").astype(np.float64), run.agop("fc0").astype(np.float64)
    Gs = gstar(6)
    assert t.loc[("fc0", "trained"), "cos_G_Gstar"] == pytest.approx(rho_cos(G[-1], Gs))
    assert t.loc[("fc0", "init"), "cos_M_Gstar"] == pytest.approx(rho_cos(nfm(W[0]), Gs))
    M = nfm(W[-1])
    share = np.trace(M[:2, :2]) / np.trace(M)
    assert t.loc[("fc0", "trained"), "trace_share_M"] == pytest.approx(share)
    assert np.isnan(t.loc[("fc0", "init"), "cos_dM_Gstar"])
    assert t.loc["readout", "cos_G_Gstar"].isna().all()  # only the input layer has a G*
    mse = run.metrics()["test_mse"].dropna()
    assert t.loc[("fc0", "init"), "test_mse"] == pytest.approx(mse.iloc[0])
    assert t.loc[("fc0", "trained"), "test_mse"] == pytest.approx(mse.iloc[-1])
    truth = pd.read_csv(poly_res.out / "ground_truth_steps.csv")
    assert set(truth["seed"]) == {0, 1} and (poly_res.out / "ground_truth.png").is_file()


@pytest.mark.parametrize("which", ["digits", "poly"])
def test_static_vs_local_summary(digits_out, poly_res, which):
    """Local output pullbacks have rank <= c; averaged over all probe points they give the AGOP."""
    out = digits_out[2] if which == "digits" else poly_res.out
    doc = json.loads((out / "nfa_table.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    svl = doc["static_vs_local"]
    c = 10 if which == "digits" else 1
    assert max(map(int, svl["rank_counts"])) <= c
    assert sum(svl["rank_counts"].values()) == svl["n_samples"]
    run = probe.open_run(out / "seed-0" / "run.zarr")
    layer = svl["layer"]
    assert layer == run.layers[0] and svl["power"] == 0.5
    # n_local covers the whole probe set: mean_i J_iᵀJ_i is the stored final AGOP (float32)
    G = matrix_power_psd(run.agop(layer, step=-1).astype(np.float64), 0.5)
    expected = rho_pearson(G, nfm(run.weights(layer, step=-1)))
    assert svl["mean_corr"] == pytest.approx(expected, abs=1e-4)
    assert 0 <= svl["chance"] < 1 and set(svl["knn"]) == {
        "euclidean~nfm",
        "euclidean~local",
        "nfm~local",
    }
    assert len(doc["mean_over_seeds"]) == len(doc["rows"]) // doc["config"]["seeds"]


def test_steps_csv_is_tidy(poly_res):
    df = pd.read_csv(poly_res.steps_csv)
    n_steps = probe.open_run(poly_res.stores[0]).n_snapshots
    assert set(df["nfm"]) == {"M", "dM"} and set(df["measure"]) == set(MEASURES)
    assert len(df) == 2 * 2 * 2 * n_steps * 3 * 2  # seeds, layers, nfm, steps, measures, powers
    assert df.loc[(df["nfm"] == "dM") & (df["step"] == 0), "value"].isna().all()


def test_rich_init_and_poly_data():
    setup = make_setup(NfaConfig(task="poly", init="rich", n_train=8, n_test=4), 0, 64, 2)
    fc0, readout = setup.model.fc0.weight, setup.model.readout.weight
    assert fc0.std().item() == pytest.approx(0.1 / np.sqrt(100), rel=0.05)  # N(0, 0.01/fan_in)
    assert readout.abs().max().item() <= 1 / np.sqrt(64)  # readout: PyTorch's default uniform
    x, y, xt, yt = poly_data(20000, 10, 5, seed=1)
    assert x.shape == (20000, 5) and yt.shape == (10, 1)
    assert torch.equal(y[:, 0], x[:, 0] * x[:, 1])
    assert y.var().item() == pytest.approx(1.0, abs=0.05)  # Var(x0 x1) = 1


def test_demo_configs():
    assert demo_config("poly").init == "rich" and demo_config("poly").epochs == 60
    assert demo_config("mnist").max_train == 20000 and demo_config("mnist").epochs == 2
    assert demo_config("mnist", "digits").dataset == "digits"


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"task": "cifar"}, r"task must be one of \('mnist', 'poly'\); got 'cifar'"),
        ({"init": "xavier"}, "init must be one of"),
        ({"dataset": "svhn"}, "dataset must be one of"),
        ({"seeds": 0}, "seeds must be an int >= 1; got 0"),
        ({"epochs": 0}, "epochs must be an int >= 1; got 0"),
        ({"max_train": -1}, "max_train must be an int >= 1; got -1"),
        ({"local_layer": 5}, r"local_layer must be in \[0, depth = 4\]"),
        ({"k": 0}, r"k in \[1, 299\]"),
        ({"lr": 0.0}, "lr must be a finite number > 0; got 0.0"),
        ({"task": "poly", "dim": 1}, r"dim must be >= 2 \(y = x0 x1\); got dim=1"),
    ],
)
def test_config_errors(tmp_path, fields, match):
    with pytest.raises(ConfigError, match=match):
        run_nfa(NfaConfig(**fields), tmp_path, progress=False)
