import numpy as np
import pytest

import probe
from probe.cli.app import main as cli_main
from probe.errors import ConfigError
from probe.experiments import ClassifierConfig, train_classifier
from probe.experiments.datasets import load_digits


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_digits_classifier_writes_a_readable_run(tmp_path, model):
    cfg = ClassifierConfig(
        dataset="digits",
        model=model,
        epochs=2,
        batch_size=64,
        probe_size=100,
        n_log_snapshots=5,
        seed=1,
    )
    res = train_classifier(cfg, tmp_path, progress=False)
    run = probe.open_run(res.store)
    steps_per_epoch = -(-1347 // 64)  # 1347 training digits (load_digits' split)
    assert res.n_steps == 2 * steps_per_epoch
    # log-spaced schedule plus one snapshot at each epoch end
    assert {0, 1, steps_per_epoch, 2 * steps_per_epoch} <= set(run.steps.tolist())
    assert run.epochs[-1] == 1
    m = run.metrics()
    assert {"loss", "accuracy", "test_loss", "test_accuracy"} <= set(m.columns)
    assert m["loss"].notna().sum() == res.n_steps
    assert m["test_accuracy"].dropna().iloc[-1] == pytest.approx(res.test_accuracy)
    assert res.test_accuracy > 0.5  # learned: chance is 0.1
    # the probe set: stratified test samples with their labels and dataset indices
    _, y_test = load_digits(train=False)
    np.testing.assert_array_equal(run.targets, y_test.numpy()[run.sample_ids])
    assert np.bincount(run.targets, minlength=10).min() == 10
    # every Linear/Conv layer recorded with its weights, the output has 10 logits
    assert all(run.weights(layer, step=-1).ndim == 2 for layer in run.layers)
    assert run.outputs(step=-1).shape == (100, 10)
    assert run.attrs["config"]["model"] == model


def test_mse_loss_and_sgd_constant(tmp_path):
    cfg = ClassifierConfig(
        dataset="digits",
        loss="mse",
        optimizer="sgd",
        lr=0.005,
        lr_schedule="constant",
        epochs=1,
        probe_size=50,
        max_steps=15,
    )
    res = train_classifier(cfg, tmp_path, progress=False)
    m = probe.open_run(res.store).metrics()
    assert res.n_steps == 15 and len(m["loss"].dropna()) == 15
    assert np.isfinite(res.test_loss)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("model", "vit", "model must be one of \\('mlp', 'cnn'\\); got 'vit'"),
        ("loss", "hinge", "loss must be one of"),
        ("optimizer", "lbfgs", "optimizer must be one of"),
        ("lr_schedule", "step", "lr_schedule must be one of"),
        ("epochs", 0, "epochs must be an int >= 1; got 0"),
        ("epochs", True, "epochs must be an int >= 1; got True"),
        ("writer", "disk", "writer must be one of \\('thread', 'process'\\); got 'disk'"),
    ],
)
def test_config_errors(tmp_path, field, value, match):
    cfg = ClassifierConfig(dataset="digits", **{field: value})
    with pytest.raises(ConfigError, match=match):
        train_classifier(cfg, tmp_path, progress=False)


def test_cli_run_mnist_on_digits(tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        cli_main(
            [
                "run",
                "mnist",
                "--dataset",
                "digits",
                "--epochs",
                "1",
                "--max-steps",
                "5",
                "--probe-size",
                "30",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "digits mlp: test accuracy" in text and str(out / "run.zarr") in text
    assert probe.open_run(out / "run.zarr").steps[-1] == 5
    assert "agop" not in probe.open_run(out / "run.zarr").keys("layers.0")


def test_cli_run_mnist_with_agop_feeds_the_nfa(tmp_path):
    """Also recorded by the writer process (``--writer process``)."""
    out = tmp_path / "out"
    argv = ["run", "mnist", "--dataset", "digits", "--max-steps", "4", "--probe-size", "30"]
    assert cli_main([*argv, "--agop", "--writer", "process", "--out", str(out)]) == 0
    run = probe.open_run(out / "run.zarr")
    assert run.attrs["config"]["agop"] is True and run.attrs["config"]["writer"] == "process"
    assert run.agop("layers.0").shape == (len(run.steps), 64, 64)
    df = probe.analysis.features.nfa_over_steps(run, "layers.0")
    assert set(df["step"]) == set(run.steps) and df["value"].notna().all()


def test_mnist_missing_data_names_digits_fallback(tmp_path, monkeypatch, capsys):
    import torchvision

    def offline(*args, **kwargs):
        msg = "Error downloading train-images-idx3-ubyte.gz"
        raise RuntimeError(msg)

    monkeypatch.setenv("PROBE_DATA", str(tmp_path / "empty"))
    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    assert cli_main(["run", "mnist", "--epochs", "1", "--out", str(tmp_path / "o")]) == 2
    assert "--dataset digits" in capsys.readouterr().err
