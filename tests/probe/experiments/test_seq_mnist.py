"""Tests of the sequential classifier, the seq-mnist experiment (digits only) and its read-out."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from torch import nn

import probe
from hooks import Recorder
from probe.cli.sweep import add_run_parser, parse_pair
from probe.errors import ConfigError, InputShapeError, ModelConfigError, ProbeError
from probe.experiments.datasets import load_digits
from probe.experiments.seq_mnist import (
    READOUTS,
    SeqMnistConfig,
    readout_table,
    train_seq_mnist,
    validate_config,
)
from probe.models.sequence import RecurrentEncoder, SequenceClassifier

# --------------------------------------------------------------------------- model


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("shape", [(5, 64), (5, 8, 8), (5, 1, 8, 8)])
def test_classifier_reads_rows_as_time_steps(cell, shape):
    torch.manual_seed(0)
    model = SequenceClassifier(input_size=8, hidden=6, n_classes=3, cell=cell)
    x = torch.randn(*shape)
    seq = model.as_sequence(x)
    assert seq.shape == (5, 8, 8)
    torch.testing.assert_close(seq[:, 2], x.reshape(5, 8, 8)[:, 2])  # step t is image row t
    h = model.rnn(seq)
    assert h.shape == (5, 8, 6)
    torch.testing.assert_close(model(x), model.head(h[:, -1]))
    names = dict(model.named_modules())
    assert isinstance(names["rnn"], RecurrentEncoder)
    assert isinstance(names["rnn.cell"], nn.GRU if cell == "gru" else nn.LSTM)


def test_encoder_states_match_torch_rnn_last_state():
    torch.manual_seed(0)
    enc = RecurrentEncoder(4, 5, "gru", num_layers=2)
    x = torch.randn(3, 7, 4)
    out, h_n = enc.cell(x)
    torch.testing.assert_close(enc(x), out)
    torch.testing.assert_close(enc(x)[:, -1], h_n[-1])  # top layer's final state


def test_model_errors():
    with pytest.raises(ModelConfigError, match=r"cell must be one of \('gru', 'lstm'\); got 'rnn'"):
        RecurrentEncoder(8, 4, "rnn")
    with pytest.raises(ModelConfigError, match="hidden must be >= 1; got 0"):
        RecurrentEncoder(8, 0)
    with pytest.raises(ModelConfigError, match="n_classes must be >= 1; got 0"):
        SequenceClassifier(n_classes=0)
    with pytest.raises(InputShapeError, match=r"multiple of 28 elements per sample; got \(2, 30\)"):
        SequenceClassifier()(torch.zeros(2, 30))
    with pytest.raises(InputShapeError, match=r"got \(28,\)"):
        SequenceClassifier()(torch.zeros(28))


# --------------------------------------------------------------------------- experiment


def _tiny(**kw):
    base = dict(
        dataset="digits", pair=(3, 8), hidden=6, epochs=2, n_train=30, probe_size=40,
        batch_size=16, seed=1,
    )  # fmt: skip
    return SeqMnistConfig(**{**base, **kw})


@pytest.mark.parametrize(("model", "shuffle"), [("gru", False), ("lstm", True)])
def test_run_records_hidden_state_per_time_step(tmp_path, model, shuffle):
    cfg = _tiny(model=model, shuffle_labels=shuffle)
    res = train_seq_mnist(cfg, tmp_path, progress=False)
    run = probe.open_run(res.store)
    # 60 training images, batches of 16: 4 steps per epoch; snapshots at init and epoch ends
    assert res.n_steps == 8
    assert run.steps.tolist() == [0, 4, 8] and run.epochs.tolist() == [0, 1, 2]
    h = run.acts("rnn")
    assert h.shape == (3, 40, 8, 6)  # (snapshot, probe sample, time step, hidden)
    assert np.abs(h).max() < 1  # GRU and LSTM hidden states lie in (-1, 1)
    np.testing.assert_allclose(run.outputs(), run.acts("head"))
    # the probe set: 20 + 20 test digits of the pair, label 1 for class 8
    _, y_test = load_digits(train=False)
    digits = y_test.numpy()[run.sample_ids]
    assert set(digits) == {3, 8}
    np.testing.assert_array_equal(run.targets, (digits == 8).astype(np.int64))
    assert np.bincount(run.targets).tolist() == [20, 20]
    m = run.metrics()
    assert m["loss"].notna().sum() == 8
    assert m.dropna(subset=["test_accuracy"])["epoch"].tolist() == [0, 1, 2]
    assert [r["epoch"] for r in res.history] == [0, 1, 2]
    assert run.attrs["config"]["model"] == model
    assert run.attrs["config"]["shuffle_labels"] is shuffle


def test_recorded_initial_states_are_the_models_hidden_states(tmp_path):
    cfg = _tiny(epochs=1)
    res = train_seq_mnist(cfg, tmp_path, progress=False)
    run = probe.open_run(res.store)
    torch.manual_seed(cfg.seed)  # the experiment builds the model first after seeding
    model = SequenceClassifier(input_size=8, hidden=6, n_classes=2)
    x_test, _ = load_digits(train=False)
    with torch.no_grad():
        h0 = model.rnn(model.as_sequence(x_test[run.sample_ids]))
    np.testing.assert_allclose(run.acts("rnn", step=0), h0.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"dataset": "cifar"}, r"dataset must be one of \('digits', 'mnist'\); got 'cifar'"),
        ({"model": "rnn"}, r"model must be one of \('gru', 'lstm'\); got 'rnn'"),
        ({"pair": (3, 3)}, r"pair must be two distinct classes in 0-9.*got \(3, 3\)"),
        ({"pair": (0, 10)}, r"pair must be two distinct classes in 0-9.*got \(0, 10\)"),
        ({"pair": (1,)}, r"pair must be two distinct classes"),
        ({"hidden": 0}, "hidden must be an int >= 1; got 0"),
        ({"epochs": 1.5}, "epochs must be an int >= 1; got 1.5"),
        ({"n_train": 0}, "n_train must be an int >= 1; got 0"),
        ({"seed": -1}, "seed must be an int >= 0; got -1"),
        ({"lr": 0.0}, r"lr must be a finite number > 0; got 0.0"),
        ({"lr": "fast"}, r"lr must be a finite number > 0; got 'fast'"),
    ],
)
def test_config_errors(kw, match):
    with pytest.raises(ConfigError, match=match):
        validate_config(_tiny(**kw))


def test_too_many_training_images_per_class(tmp_path):
    with pytest.raises(ConfigError, match=r"n_train must be at most \d+ \(the digits training"):
        train_seq_mnist(_tiny(n_train=1000), tmp_path, progress=False)
    assert issubclass(ConfigError, ProbeError) and issubclass(ConfigError, ValueError)


# --------------------------------------------------------------------------- read-out


class _Given(nn.Module):
    """Stands in for a recurrent model: its ``rnn`` returns the input states unchanged."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.Identity()
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.rnn(x)[:, -1] + self.bias


def _given_run(path, h, y):
    """Write a run with two identical snapshots (epochs 0 and 1) of the states ``h``."""
    with Recorder(_Given(), layers=["rnn"], store=path, probe=(h, y)) as rec:
        rec.log(test_loss=0.7, test_accuracy=0.5)
        rec.snapshot()
        for loss in (0.6, 0.4):
            rec.step(epoch=1, loss=loss)
        rec.log(test_loss=0.3, test_accuracy=0.9)
        rec.snapshot()
    return path


def test_readout_table_known_answer(tmp_path):
    # class information only from time step 3 on (1-based): a shift of 10 noise sds
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 20)
    h = rng.normal(size=(40, 4, 3)).astype(np.float32)
    h[:, 2:, 0] += 10.0 * y[:, None]
    table = readout_table(_given_run(tmp_path / "run.zarr", torch.from_numpy(h), y), seed=0)
    assert list(table.columns) == [
        "epoch", "step", "t", "readout", "accuracy", "train_loss", "test_loss", "test_accuracy",
    ]  # fmt: skip
    assert len(table) == 2 * 4 * len(READOUTS)
    assert set(table["readout"]) == {"knn", "logreg"}
    late, early = table[table["t"] >= 3], table[table["t"] <= 2]
    assert (late["accuracy"] == 1.0).all()
    assert (early["accuracy"] <= 0.8).all()
    # accuracies are fractions of the 40 held-out predictions
    np.testing.assert_allclose(table["accuracy"] * 40, np.round(table["accuracy"] * 40))
    by_epoch = table.groupby("epoch")[["train_loss", "test_loss", "test_accuracy"]].first()
    assert np.isnan(by_epoch.loc[0, "train_loss"])
    assert by_epoch.loc[1, "train_loss"] == pytest.approx(0.5)  # mean of 0.6 and 0.4
    assert by_epoch["test_loss"].tolist() == pytest.approx([0.7, 0.3])
    assert by_epoch["test_accuracy"].tolist() == pytest.approx([0.5, 0.9])
    assert table["step"].unique().tolist() == [0, 2]


def test_readout_table_errors(tmp_path):
    y = np.array([0, 0, 0, 0, 1])
    path = _given_run(tmp_path / "run.zarr", torch.zeros(5, 2, 2), y)
    with pytest.raises(ConfigError, match=r"at least folds=2 probe samples; got counts \[4, 1\]"):
        readout_table(path)
    with pytest.raises(ConfigError, match="folds must be an int >= 2; got 1"):
        readout_table(path, folds=1)


# --------------------------------------------------------------------------- CLI


def test_cli_run_seq_mnist(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="probe")
    run = parser.add_subparsers(dest="verb").add_parser("run")
    add_run_parser(run.add_subparsers(dest="experiment"))
    out = tmp_path / "o"
    argv = "run seq-mnist --dataset digits --pair 3,8 --hidden 4 --epochs 1 --n-train 20"
    args = parser.parse_args([*argv.split(), "--probe-size", "30", "--out", str(out)])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "digits gru 3 vs 8: test accuracy" in text and "best read-out" in text
    table = (out / "readout.csv").read_text().splitlines()
    assert table[0] == "epoch,step,t,readout,accuracy,train_loss,test_loss,test_accuracy"
    assert len(table) == 1 + 2 * 8 * 2  # 2 snapshots x 8 time steps x 2 read-outs
    assert probe.open_run(out / "run.zarr").attrs["config"]["pair"] == [3, 8]


def test_parse_pair():
    assert parse_pair("3,8") == (3, 8) and parse_pair(" 0 - 1 ") == (0, 1)
    with pytest.raises(ConfigError, match=r"pair must be two classes separated by ','.*got '3'"):
        parse_pair("3")
