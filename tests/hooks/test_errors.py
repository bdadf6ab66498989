"""Issue 18: bad arguments of the capture side get a typed error that says what and how to fix."""

import errno
import re

import numpy as np
import pytest
import torch

import probe
from hooks import (
    ProbeInputError,
    Recorder,
    RecorderConfigError,
    StepOrderError,
    StoreNotWritableError,
)


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


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"layers": 123}, "layers must be a str, an nn.Module subclass, a callable .*got 123"),
        ({"layers": None}, r"or a list of them \(e.g. \['encoder.\*', 'head'\]\); got None"),
        ({"store": None}, "'store' must be the path of the run's folder .*got None"),
        ({"store": 123}, "'store' must be the path of the run's folder .*got 123"),
        ({"store": ""}, "'store' must be the path of the run's folder .*got ''"),
        ({"max_queue_bytes": "big"}, "'max_queue_bytes' must be a positive int; got 'big'. It is"),
        ({"max_queue_bytes": -1}, "'max_queue_bytes' must be a positive int; got -1"),
        ({"max_queue_bytes": 0}, "'max_queue_bytes' must be a positive int; got 0"),
        ({"batch_size": True}, "'batch_size' must be a positive int; got True"),
        ({"seed": "abc"}, "'seed' must be a non-negative int; got 'abc'. It is saved"),
        ({"seed": -1}, "'seed' must be a non-negative int; got -1"),
        ({"seed": 1.5}, "'seed' must be a non-negative int; got 1.5"),
        ({"resume": True, "overwrite": True}, "'resume' and 'overwrite' contradict each other"),
        ({"resume": "yes"}, "'resume' must be True or False; got 'yes'"),
        ({"weights": None}, "'weights' must be True or False; got None"),
        ({"device": "banana"}, "'device' must be a torch.device or a device string .*'banana'"),
        ({"device": 3.5}, "'device' must be a torch.device or a device string .*got 3.5"),
        ({"store_probe_inputs": "x"}, "'store_probe_inputs' must be a non-negative int; got 'x'"),
        ({"config": "abc"}, "'config' must be a mapping .* or None; got 'abc'"),
    ],
)
def test_bad_recorder_arguments_are_refused_before_the_disk(
    tmp_path, tiny_mlp, probe_xy, kwargs, match
):
    args = {"layers": "0", "store": tmp_path / "r.zarr", "probe": probe_xy, **kwargs}
    with pytest.raises(RecorderConfigError, match=match):
        Recorder(tiny_mlp, **args)
    assert list(tmp_path.iterdir()) == []


def test_resolve_layers_names_the_selector_forms():
    from hooks import resolve_layers

    with pytest.raises(RecorderConfigError, match="got None. See hooks.list_layers"):
        resolve_layers(torch.nn.Linear(2, 2), None)


@pytest.mark.skipif(torch.cuda.device_count() >= 8, reason="the machine has a cuda:7")
def test_a_device_this_machine_lacks_is_named(tmp_path, tiny_mlp, probe_xy):
    n = torch.cuda.device_count()
    have = f"cuda:0 to cuda:{n - 1}" if n else "no CUDA device"
    with pytest.raises(RecorderConfigError, match=f"'device' 'cuda:7' is not available .*{have}"):
        Recorder(tiny_mlp, "0", tmp_path / "r.zarr", probe_xy, device="cuda:7")


def test_numpy_seeds_and_flags_are_accepted_as_plain_values(tmp_path, tiny_mlp, probe_xy):
    path = tmp_path / "r.zarr"
    with Recorder(tiny_mlp, "0", path, probe_xy, seed=np.int64(7), weights=np.bool_(True)):
        pass
    assert probe.open_run(path).attrs["seed"] == 7


@pytest.mark.parametrize("ids", [np.arange(-1, 39), np.arange(40) - 5, [-3] + list(range(1, 40))])
def test_negative_sample_ids_are_refused(tmp_path, tiny_mlp, probe_xy, ids):
    with pytest.raises(
        ProbeInputError, match=r"sample ids must be >= 0 .*got \[-\d.*\] among them. Pass"
    ):
        Recorder(tiny_mlp, "0", tmp_path / "r.zarr", probe_xy, sample_id=ids)


@pytest.mark.parametrize(
    ("ids", "match"),
    [
        ([-1, 2], r"watch\(sample_id=...\) must be >= 0 .*got \[-1\] among them. Leave them"),
        (np.array([0.5, 1.5]), r"watch\(sample_id=...\) must be integers .*got dtype float64"),
        ("ab", r"watch\(sample_id=...\) must be a tensor, numpy array or list; got str"),
    ],
)
def test_watched_sample_ids_must_be_dataset_indices(rec, ids, match):
    with pytest.raises(ProbeInputError, match=match), rec.watch(sample_id=ids):
        pass


def test_disk_full_while_the_store_is_created_names_path_and_free_space(
    tmp_path, monkeypatch, tiny_mlp, probe_xy
):
    from zarr.storage import LocalStore

    async def full_set(self, key, value):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(LocalStore, "set", full_set)
    path = tmp_path / "r.zarr"
    match = (
        f"creating the run store at {re.escape(repr(str(path)))} failed: No space left on "
        r"device \(\d+\.\d MiB free there\); nothing was left at that path. Free disk space"
    )
    with pytest.raises(StoreNotWritableError, match=match) as info:
        Recorder(tiny_mlp, "0", path, probe_xy)
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []  # no half-made run, no temporary folder


def test_no_space_for_the_temporary_folder_is_typed_too(tmp_path, monkeypatch, tiny_mlp, probe_xy):
    import tempfile

    def full_mkdtemp(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkdtemp", full_mkdtemp)
    with pytest.raises(StoreNotWritableError, match="No space left on device .*MiB free there"):
        Recorder(tiny_mlp, "0", tmp_path / "r.zarr", probe_xy)


@pytest.mark.parametrize(
    ("value", "minimum", "match"),
    [
        (True, 1, "n must be a positive int; got True. Fix it."),
        (1.0, 0, "n must be a non-negative int; got 1.0. Fix it."),
        (1, 2, "n must be an int >= 2; got 1. Fix it."),
    ],
)
def test_check_int_wording(value, minimum, match):
    from hooks._checks import check_int

    with pytest.raises(ValueError, match=re.escape(match)):
        check_int(value, "n", minimum=minimum, error=ValueError, hint="Fix it.")
    assert check_int(np.int32(2), "n", minimum=minimum) == 2


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0, -1e-9, True, "1", None])
def test_check_float_wants_finite_positive_reals(value):
    from hooks._checks import check_float

    with pytest.raises(RecorderConfigError, match=f"x must be a finite number > 0; got {value!r}"):
        check_float(value, "x")
    assert check_float(np.float32(0.5), "x") == 0.5
    assert check_float(3, "x") == 3.0
