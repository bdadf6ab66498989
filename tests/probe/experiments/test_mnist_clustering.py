import argparse
import contextlib
import io
import json
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
from probe.experiments.mnist_clustering.experiment import (
    MnistClusteringConfig,
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
]  # fmt: skip


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
    assert "r_between_normalised" in text and str(out / "figure.png") in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["n_nets"] == 2 and summary["n_pred_images_used"] == 300
    assert summary["n_steps"] == 7  # ceil(400 / 64)
    assert summary["test_accuracy_mean"] == pytest.approx(np.mean(summary["test_accuracy"]))
    for key in ("r_all", "r_between", "r_all_normalised", "r_between_normalised"):
        for average in ("raw", "scaled"):
            assert -1.0 <= summary["final"][average][key] <= 1.0
            assert -1.0 <= summary["initial"][average][key] <= 1.0
        assert len(summary["per_net_final"][key]) == 2
    final = summary["final"]["raw"]
    assert final["step"] == 7 and summary["initial"]["raw"]["step"] == 0
    assert final["within_sq_distance"] < final["between_sq_distance"]
    png = (out / "figure.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


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
    dists = [pairwise_sq_distances(r.acts("hidden.2", step=-1)) for r in runs]
    np.testing.assert_allclose(mats["measured"], np.mean(dists, axis=0), rtol=1e-10)
    scaled = np.mean([d / d.mean() for d in dists], axis=0)
    np.testing.assert_allclose(mats["measured_scaled"], scaled, rtol=1e-10)
    last = steps[steps["average"] == "scaled"].iloc[-1]
    r = matrix_correlation(scaled, mats["predicted"])
    assert last["r_all"] == pytest.approx(r, abs=1e-12)
    pairs = class_pair_distance_sums(raw_pixels("digits", x_tr[:300]), y_tr[:300])
    np.testing.assert_allclose(mats["predicted"], predicted_sq_distances(pairs, mats["labels"]))
    norm = predicted_sq_distances(pairs, mats["labels"], normalise=True)
    np.testing.assert_allclose(mats["predicted_normalised"], norm)


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
    assert (cfg.n_nets, cfg.epochs, cfg.max_train) == (3, 2, 10000)


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
    ],
)
def test_config_errors(tmp_path, field, value, match):
    cfg = replace(MnistClusteringConfig(dataset="digits", max_train=400), **{field: value})
    with pytest.raises(ConfigError, match=match):
        run_mnist_clustering(cfg, tmp_path, progress=False)
