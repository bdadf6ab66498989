import argparse
import contextlib
import io
import json
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits as sk_load_digits

import probe
from probe.analysis.similarity import pairwise_sq_distances
from probe.cli.run_mnist_clustering import add_run_parser
from probe.errors import ConfigError
from probe.experiments.datasets import MNIST_MEAN, MNIST_STD, load_digits
from probe.experiments.mnist_clustering._analysis import VARIANTS, compare
from probe.experiments.mnist_clustering.experiment import (
    MnistClusteringConfig,
    analyse_mnist_clustering,
    demo_config,
    raw_pixels,
    run_mnist_clustering,
)
from probe.theory.cluster_theory import (
    class_pair_distance_sums,
    matrix_correlation,
    predicted_sq_distances,
)

TINY = [
    "--dataset", "digits", "--n-nets", "2", "--epochs", "1", "--width", "32",
    "--n-probe", "40", "--n-pred-images", "300", "--max-train", "400", "--n-log-snapshots", "3",
    "--accuracy-floor", "0",
]  # fmt: skip
SMALL = {"dataset": "digits", "width": 32, "n_probe": 40, "n_pred_images": 300, "max_train": 400,
         "n_log_snapshots": 3}  # fmt: skip


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """One tiny end-to-end run through ``probe run mnist-clustering`` (2 nets, 1 epoch, digits)."""
    out = tmp_path_factory.mktemp("mc") / "out"
    parser = argparse.ArgumentParser(prog="probe run")
    add_run_parser(parser.add_subparsers(dest="experiment", required=True))
    args = parser.parse_args(["mnist-clustering", *TINY, "--out", str(out)])
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        status = args.func(args)
    return status, text.getvalue(), out


def test_cli_run_writes_stores_summary_and_figure(cli_run):
    status, text, out = cli_run
    assert status == 0
    assert "digits clustering: 2 nets x 1 epochs on 400 images" in text
    assert "diverged: 0 of 2 nets; averages and CIs over the 2 kept nets" in text
    assert "r_between_normalised" in text and str(out / "trajectory.png") in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["n_nets"] == 2 and summary["n_pred_images_used"] == 300
    assert summary["n_steps"] == 7  # ceil(400 / 64)
    assert summary["test_accuracy_mean"] == pytest.approx(np.mean(summary["test_accuracy"]))
    assert summary["averaged_nets"] == [0, 1] and summary["n_diverged"] == 0
    for key in VARIANTS:
        for average in ("raw", "scaled"):
            assert -1.0 <= summary["final"][average][key] <= 1.0
            assert -1.0 <= summary["initial"][average][key] <= 1.0
        ci = summary["final_ci"][key]
        assert ci["n_nets"] == 2 and ci["ci_low"] <= ci["mean"] <= ci["ci_high"]
        assert ci["mean"] == pytest.approx(np.mean([n[key] for n in summary["nets"]]))
    final = summary["final"]["raw"]
    assert final["step"] == 7 and summary["initial"]["raw"]["step"] == 0
    assert final["within_sq_distance"] < final["between_sq_distance"]
    for name in ("figure.png", "trajectory.png"):
        png = (out / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    report = (out / "report.md").read_text()
    assert "| step | nets | r_all | r_between |" in report and "**r_between**" in report


def test_outputs_agree_with_the_stores_and_the_theory(cli_run):
    _, _, out = cli_run
    runs = [probe.open_run(out / "nets" / f"net-{i:02d}" / "run.zarr") for i in range(2)]
    x_tr, y_tr = load_digits(train=True)
    # probe = the first 40 training images, stable-sorted by label
    order = np.argsort(y_tr[:40].numpy(), kind="stable")
    for run in runs:
        assert run.layers == ["hidden.2"]
        np.testing.assert_array_equal(run.sample_ids, order)
        np.testing.assert_array_equal(run.targets, y_tr.numpy()[order])
        assert run.steps[0] == 0 and run.steps[-1] == 7
    summary = json.loads((out / "summary.json").read_text())
    logged = [r.metrics()["test_accuracy"].dropna().iloc[-1] for r in runs]
    np.testing.assert_allclose(summary["test_accuracy"], logged)
    steps = pd.read_csv(out / "steps.csv")
    for average in ("raw", "scaled"):
        np.testing.assert_array_equal(steps[steps["average"] == average]["step"], runs[0].steps)
    mats = np.load(out / "matrices.npz")
    dists = [[pairwise_sq_distances(a) for a in r.acts("hidden.2")] for r in runs]
    np.testing.assert_allclose(mats["measured"], np.mean([d[-1] for d in dists], 0), rtol=1e-10)
    scaled = np.mean([d[-1] / d[-1].mean() for d in dists], axis=0)
    np.testing.assert_allclose(mats["measured_scaled"], scaled, rtol=1e-10)
    last = steps[steps["average"] == "scaled"].iloc[-1]
    r = matrix_correlation(scaled, mats["predicted"])
    assert last["r_all"] == pytest.approx(r, abs=1e-12)
    pairs = class_pair_distance_sums(raw_pixels("digits", x_tr[:300]), y_tr[:300])
    np.testing.assert_allclose(mats["predicted"], predicted_sq_distances(pairs, mats["labels"]))
    norm = predicted_sq_distances(pairs, mats["labels"], normalise=True)
    np.testing.assert_allclose(mats["predicted_normalised"], norm)
    pixels = pairwise_sq_distances(raw_pixels("digits", x_tr[order]))
    r_pixels = matrix_correlation(pixels, mats["predicted"])
    assert summary["input_pixels"]["r_all"] == pytest.approx(r_pixels, abs=1e-12)
    # every net's r at every snapshot, and the trajectory as their mean
    per_net = pd.read_csv(out / "per_net_steps.csv")
    for (net, step), row in per_net.set_index(["net", "step"]).iterrows():
        want = compare(dists[net][list(runs[0].steps).index(step)], mats["predicted"], norm,
                       mats["labels"])  # fmt: skip
        assert row[list(VARIANTS)].to_dict() == pytest.approx({k: want[k] for k in VARIANTS})
    traj = pd.read_csv(out / "trajectory.csv")
    assert len(traj) == len(runs[0].steps) * 4 and (traj["n_nets"] == 2).all()
    means = per_net.groupby("step")[list(VARIANTS)].mean()
    for _, row in traj.iterrows():
        assert row["mean"] == pytest.approx(means.loc[row["step"], row["variant"]])
        assert row["ci_low"] - 1e-12 <= row["mean"] <= row["ci_high"] + 1e-12


@pytest.mark.slow
def test_reanalysis_excludes_a_net_below_the_floor_and_can_include_it(cli_run, tmp_path):
    _, _, out = cli_run
    copy = tmp_path / "copy"
    shutil.copytree(out / "nets", copy / "nets")
    accs = json.loads((out / "summary.json").read_text())["test_accuracy"]
    low, high = int(np.argmin(accs)), int(np.argmax(accs))
    cfg = MnistClusteringConfig(accuracy_floor=float(np.mean(accs)), n_bootstrap=50)
    res = analyse_mnist_clustering(copy, cfg)
    s = res.summary
    assert s["diverged_nets"] == [low] and s["averaged_nets"] == [high]
    assert s["nets"][low]["reasons"].startswith(f"final test accuracy {accs[low]:.4f} < floor")
    assert s["test_accuracy_mean"] == accs[high]
    for key in VARIANTS:  # one kept net: the mean and a degenerate CI are its own r
        ci, own = s["final_ci"][key], s["nets"][high][key]
        assert ci["n_nets"] == 1 and ci["mean"] == ci["ci_low"] == ci["ci_high"] == own
    mats = np.load(res.matrices)
    kept = probe.open_run(res.stores[high]).acts("hidden.2", step=-1)
    np.testing.assert_allclose(mats["measured"], pairwise_sq_distances(kept), rtol=1e-12)
    assert f"net {low}: final test accuracy" in res.report.read_text()
    both = analyse_mnist_clustering(copy, replace(cfg, include_diverged=True)).summary
    assert both["diverged_nets"] == [low] and both["averaged_nets"] == [0, 1]
    assert both["final_ci"]["r_all"]["n_nets"] == 2


@pytest.mark.slow
def test_a_blown_up_net_is_flagged_and_leaves_no_average(tmp_path, cli_run):
    cfg = MnistClusteringConfig(n_nets=1, epochs=2, lr=0.5, accuracy_floor=0.0, **SMALL)
    res = run_mnist_clustering(cfg, tmp_path / "blown", progress=False)
    net = res.summary["nets"][0]
    assert net["diverged"] and net["first_spike_step"] is not None
    assert net["reasons"].startswith("loss spike x") and net["max_spike_ratio"] > 100
    assert res.summary["averaged_nets"] == [] and res.summary["test_accuracy_mean"] is None
    assert res.summary["final_ci"]["r_between"] == {
        "n_nets": 0, "mean": None, "ci_low": None, "ci_high": None
    }  # fmt: skip
    assert "DIVERGED" in res.report.read_text() and res.trajectory_figure.is_file()
    # until_divergence: its snapshots before the weights that gave the spike still count
    cfg = MnistClusteringConfig(until_divergence=True, accuracy_floor=0.0, n_bootstrap=20)
    again = analyse_mnist_clustering(res.out, cfg)
    traj = pd.read_csv(again.trajectory_csv)
    before = traj["step"] < net["first_spike_step"] - 1
    assert before.any() and (traj["n_nets"] == np.where(before, 1, 0)).all()
    per_net = pd.read_csv(again.per_net_csv).set_index("step")
    first = traj[before & (traj["variant"] == "r_between")].iloc[0]
    assert first["mean"] == first["ci_low"] == per_net.loc[first["step"], "r_between"]
    # its store (14 steps) next to the 7-step nets of cli_run is an unfinished net there
    _, _, out = cli_run
    shutil.copytree(out / "nets", tmp_path / "mixed" / "nets")
    shutil.copytree(res.stores[0], tmp_path / "mixed" / "nets" / "net-02" / "run.zarr")
    with pytest.raises(ConfigError, match="finished net .* got unfinished \\['net-02'\\]"):
        analyse_mnist_clustering(tmp_path / "mixed")


def test_reanalysis_needs_stores(tmp_path):
    with pytest.raises(ConfigError, match="out must hold the run stores of an earlier run"):
        analyse_mnist_clustering(tmp_path)


def test_raw_pixels_recovers_digits_and_mnist_values():
    x, y = load_digits(train=True)
    raw = raw_pixels("digits", x)
    bunch = sk_load_digits()
    rows = {tuple(r): t for r, t in zip(bunch.data, bunch.target, strict=True)}
    assert all(rows[tuple(r)] == t for r, t in zip(raw, y.numpy(), strict=True))
    pixels = torch.arange(256, dtype=torch.float32).reshape(2, 128)
    normalised = (pixels / 255.0 - MNIST_MEAN) / MNIST_STD
    np.testing.assert_array_equal(raw_pixels("mnist", normalised), pixels.numpy())


def test_demo_config_is_small():
    assert demo_config("digits").dataset == "digits"
    cfg = demo_config("mnist")
    assert (cfg.n_nets, cfg.epochs, cfg.max_train, cfg.accuracy_floor) == (3, 2, 10000, 0.5)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("n_nets", 0, "n_nets must be an int >= 1; got 0"),
        ("n_log_snapshots", 1.5, "n_log_snapshots must be an int >= 1; got 1.5"),
        ("max_train", 0, "max_train must be an int >= 1; got 0. Or pass None"),
        ("hidden_layer", 4, "hidden_layer must be an int in \\[0, depth\\) = \\[0, 4\\); got 4"),
        ("lr", 0.0, "lr must be a finite number > 0; got 0.0"),
        ("gain", -1.0, "gain must be a finite number > 0; got -1.0"),
        ("n_probe", 500, "n_probe must be at most the 400 training images; got 500"),
        ("spike_factor", 1.0, "spike_factor must be > 1 \\(a multiple of the running loss\\)"),
        ("spike_window", 0, "spike_window must be an int >= 1; got 0"),
        ("n_bootstrap", 0, "n_bootstrap must be an int >= 1; got 0"),
        ("accuracy_floor", 1.5, "accuracy_floor must be a number in \\[0, 1\\]"),
        ("ci_level", 1.0, "ci_level must be a number in \\(0, 1\\), e.g. 0.95; got 1.0"),
    ],
)
def test_config_errors(tmp_path, field, value, match):
    cfg = replace(MnistClusteringConfig(dataset="digits", max_train=400), **{field: value})
    with pytest.raises(ConfigError, match=match):
        run_mnist_clustering(cfg, tmp_path, progress=False)
