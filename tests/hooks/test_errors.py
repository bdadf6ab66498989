"""Issue 18: bad arguments of the capture side get a typed error that says what and how to fix."""

import re

import numpy as np
import pytest
import torch

import probe
from hooks import Recorder, RecorderConfigError, StepOrderError


@pytest.fixture
def rec(tmp_path, tiny_mlp, probe_xy):
    with Recorder(tiny_mlp, ["0"], tmp_path / "r.zarr", probe_xy) as r:
        yield r


@pytest.mark.parametrize(
    "name",
    ["loss", "train_acc", "val.loss", "acc@1", "top-5", "_private", "Loss2", "x" * 128],
)
def test_common_metric_names_are_stored_as_columns(tmp_path, tiny_mlp, probe_xy, name):
    with Recorder(tiny_mlp, ["0"], tmp_path / "r.zarr", probe_xy) as r:
        r.step(**{name: 0.5})
        r.log(**{name: 0.25})
    assert probe.open_run(tmp_path / "r.zarr").metrics()[name].tolist() == [0.5, 0.25]


@pytest.mark.parametrize(
    ("name", "fix"),
    [
        ("a/b", "Rename it such as 'a.b'"),
        ("val/loss", "Rename it such as 'val.loss'"),
        ("..", r"Rename it \('/'"),
        (".", r"Rename it \('/'"),
        ("", r"Rename it \('/'"),
        (".hidden", "Rename it such as 'hidden'"),
        ("__x", "Rename it such as 'x'"),
        ("a b", "Rename it such as 'a_b'"),
        ("tab\t", "Rename it such as 'tab_'"),
        ("é", r"Rename it \('/'"),
        ("x" * 129, "Rename it such as 'xxx"),
    ],
)
def test_metric_names_that_cannot_be_one_zarr_array_are_refused_at_the_step(rec, name, fix):
    match = f"metric name {name!r} cannot be stored: a metric name must be 1 to 128 characters"
    with pytest.raises(RecorderConfigError, match=f"{re.escape(match[:40])}.*{fix}"):
        rec.step(**{name: 1.0})
    with pytest.raises(RecorderConfigError, match="a letter, digit or '_', then letters"):
        rec.log(**{name: 1.0})
    assert rec.step_ == 0  # nothing was counted or queued
    rec.step(loss=1.0)  # the recorder goes on
    rec.flush()


@pytest.mark.parametrize("name", ["step", "epoch"])
def test_reserved_metric_names_are_refused(rec, name):
    with pytest.raises(RecorderConfigError, match=f"metric name '{name}' is reserved .*epoch="):
        rec.log(**{name: 1.0})


@pytest.mark.parametrize(
    "value", ["0.5", None, [1.0], True, np.bool_(True), 1j, torch.ones(2), torch.tensor(True)]
)
def test_metric_values_must_be_real_scalars(rec, value):
    with pytest.raises(
        RecorderConfigError,
        match="metric 'loss' must be a number or a one-element tensor, real and not a bool; got",
    ):
        rec.step(loss=value)


def test_metric_values_of_numpy_and_tensor_scalars_are_kept(tmp_path, tiny_mlp, probe_xy):
    with Recorder(tiny_mlp, ["0"], tmp_path / "r.zarr", probe_xy) as r:
        r.step(a=np.float32(0.5), b=np.int64(2), c=torch.tensor([3.0]), d=torch.tensor(4))
    row = probe.open_run(tmp_path / "r.zarr").metrics().iloc[0]
    assert [row[k] for k in "abcd"] == [0.5, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("epoch", ["x", 1.5, True, -1, None])
def test_epoch_must_be_a_non_negative_int(rec, epoch):
    if epoch is None:
        rec.step(epoch=np.int64(3))
        assert rec.epoch == 3
        return
    msg = f"'epoch' must be a non-negative int; got {re.escape(repr(epoch))}\\. Pass"
    with pytest.raises(RecorderConfigError, match=msg):
        rec.step(epoch=epoch, loss=1.0)
    assert (rec.step_, rec.epoch) == (0, 0)


@pytest.mark.parametrize("step", ["3", 2.0, True])
def test_step_must_be_an_int(rec, step):
    msg = f"step must be an int larger than the last step 0; got {re.escape(repr(step))}"
    with pytest.raises(StepOrderError, match=msg):
        rec.step(step=step)
