"""The pre-flight size estimate: bytes per snapshot, snapshots planned, the free-space check."""

import json
import shutil
from collections import namedtuple

import pytest
import torch
import zarr
from torch import nn

import hooks._estimate
from hooks import Recorder, RecorderConfigError, StoreTooLargeError
from hooks._estimate import Estimate, planned_snapshots

Usage = namedtuple("Usage", "total used free")


def _attrs(path):
    return json.loads((path / "zarr.json").read_text())["attributes"]


@pytest.mark.parametrize(
    ("every", "max_steps", "final", "start", "expected"),
    [
        (10, 100, True, 0, 11),  # 0, 10, ..., 100
        (10, 95, True, 0, 11),  # 0 ... 90, and the final snapshot at 95
        (10, 95, False, 0, 10),
        (10, None, True, 0, None),  # unbounded
        ([0, 5, 50, 5], None, True, 0, 3),
        ([0, 5, 50], 20, True, 0, 3),  # 0, 5, final 20
        ([0, 5, 50], 20, False, 0, 2),
        (10, 100, True, 31, 7),  # resumed after step 30
        (lambda s: s % 2 == 0, 100, True, 0, None),
        (None, 100, True, 0, None),
    ],
)
def test_planned_snapshots(every, max_steps, final, start, expected):
    assert planned_snapshots(every, max_steps, final_snapshot=final, start=start) == expected


@pytest.mark.parametrize(
    ("kwargs", "per_snapshot"),
    [
        ({}, 40 * (16 + 4 + 4) * 4),  # layers 0 and 2, and the model output, float32
        ({"dtype": "float16"}, 40 * (16 + 4 + 4) * 2),
        ({"weights": True}, 40 * 24 * 4 + (16 * 8 + 4 * 16) * 4),
        ({"agop": True}, 40 * 24 * 4 + (8 * 8 + 16 * 16) * 4),
        ({"inputs": "0"}, 40 * (8 + 24) * 4),
    ],
)
def test_bytes_per_snapshot_counts_every_array(tmp_path, tiny_mlp, probe_xy, kwargs, per_snapshot):
    path = tmp_path / "r.zarr"
    with Recorder(
        tiny_mlp, ["0", "2"], path, probe_xy, every=[0, 5, 9], max_steps=9, **kwargs
    ) as rec:
        for _ in range(9):
            rec.step()
    est = rec.estimate_
    assert (est.bytes_per_snapshot, est.snapshots_planned) == (per_snapshot, 3)
    assert est.total == 3 * per_snapshot
    assert _attrs(path)["estimate"] == est.attrs()
    assert rec.n_snapshots == 3
    group = zarr.open_group(str(path), mode="r")
    stored = sum(
        a.nbytes
        for k, a in group.members(max_depth=None)
        if isinstance(a, zarr.Array) and k.startswith(("layers/", "outputs/"))
    )
    assert stored == est.total  # the estimate is exact for a fixed schedule


def test_a_generator_schedule_is_read_once(tmp_path, tiny_mlp, probe_xy):
    every = (s for s in (0, 2, 4))
    with Recorder(tiny_mlp, "0", tmp_path / "r.zarr", probe_xy, every=every) as rec:
        for _ in range(4):
            rec.step()
    assert rec.estimate_.snapshots_planned == 3
    assert rec.n_snapshots == 3


def test_reduce_counts_after_the_reduction(tmp_path):
    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(3, 8)

        def forward(self, x):
            return self.proj(x).sum()

    x = torch.randn(10, 5, 3)
    whole = Recorder(Seq(), "proj", tmp_path / "a.zarr", x, every=1, max_steps=4)
    whole.close()
    mean = Recorder(Seq(), "proj", tmp_path / "b.zarr", x, every=1, reduce={"proj": "mean"})
    mean.close()
    # a scalar model output has no batch: stored once per snapshot (4 bytes)
    assert whole.estimate_.bytes_per_snapshot == 10 * 5 * 8 * 4 + 4
    assert whole.estimate_.snapshots_planned == 5
    assert mean.estimate_.bytes_per_snapshot == 10 * 8 * 4 + 4
    assert mean.estimate_.snapshots_planned is None
    assert _attrs(tmp_path / "b.zarr")["estimate"]["total"] is None


def test_larger_than_free_space_raises_before_the_store_exists(
    tmp_path, tiny_mlp, probe_xy, monkeypatch
):
    monkeypatch.setattr(hooks._estimate.shutil, "disk_usage", lambda p: Usage(10**6, 0, 5000))
    path = tmp_path / "new" / "r.zarr"
    with pytest.raises(
        StoreTooLargeError,
        match=r"the run must fit in the store's free space; got 3\.8 KiB per snapshot x 11 "
        r"snapshots planned = 41\.2 KiB; 4\.9 KiB free \(36\.4 KiB short\)\. To fix: record "
        r"fewer layers, reduce them .*dtype='float16'.* fewer snapshots; or pass "
        r"check_space=False",
    ):
        Recorder(tiny_mlp, ["0", "2"], path, probe_xy, every=10, max_steps=100)
    assert not path.exists()
    assert all(not m._forward_hooks for m in tiny_mlp.modules())
    assert issubclass(StoreTooLargeError, OSError)
    # one snapshot is compared when the schedule is open-ended
    monkeypatch.setattr(hooks._estimate.shutil, "disk_usage", lambda p: Usage(10**6, 0, 3000))
    with pytest.raises(StoreTooLargeError, match="unknown number of snapshots planned; 2.9 KiB"):
        Recorder(tiny_mlp, ["0", "2"], path, probe_xy, every=10)
    with Recorder(
        tiny_mlp, ["0", "2"], path, probe_xy, every=10, max_steps=100, check_space=False
    ) as rec:
        rec.step()
    assert _attrs(path)["estimate"] == {
        "bytes_per_snapshot": 3840,
        "snapshots_planned": 11,
        "total": 42240,
        "free_bytes": 3000,
    }


def test_free_space_of_the_nearest_existing_folder(tmp_path, monkeypatch):
    seen, usage = [], shutil.disk_usage
    monkeypatch.setattr(hooks._estimate.shutil, "disk_usage", lambda p: seen.append(p) or usage(p))
    assert hooks._estimate.free_space(tmp_path / "a" / "b" / "r.zarr") > 0
    assert seen == [tmp_path]


def test_large_run_warns_once(tmp_path, tiny_mlp, probe_xy, monkeypatch):
    monkeypatch.setattr(hooks._estimate, "WARN_BYTES", 10_000)
    with pytest.warns(
        UserWarning,
        match=r"the run will take 41\.2 KiB: 3\.8 KiB per snapshot x 11 snapshots planned"
        r".*If that is more than you meant: record fewer layers",
    ) as record:
        Recorder(tiny_mlp, ["0", "2"], tmp_path / "r.zarr", probe_xy, every=10, max_steps=100)
    assert len([w for w in record if "will take" in str(w.message)]) == 1


def test_estimate_options_and_no_probe(tmp_path, tiny_mlp, probe_xy):
    with pytest.raises(RecorderConfigError, match="'max_steps' must be a non-negative int"):
        Recorder(tiny_mlp, "0", tmp_path / "a.zarr", probe_xy, every=10, max_steps=-1)
    with pytest.raises(RecorderConfigError, match="'check_space' must be True or False"):
        Recorder(tiny_mlp, "0", tmp_path / "a.zarr", probe_xy, check_space="no")
    with Recorder(tiny_mlp, "0", tmp_path / "b.zarr") as rec:  # stream only: nothing to size
        assert rec.estimate_ is None
    assert _attrs(tmp_path / "b.zarr")["estimate"] is None
    assert str(Estimate(3 << 20, None, None, 1 << 30)) == (
        "3.0 MiB per snapshot x an unknown number of snapshots planned; 1.0 GiB free"
    )


def test_resume_counts_the_snapshots_still_planned(tmp_path, tiny_mlp, probe_xy):
    path = tmp_path / "r.zarr"
    with Recorder(tiny_mlp, "0", path, probe_xy, every=10, max_steps=100) as rec:
        for _ in range(30):
            rec.step()
    with Recorder(tiny_mlp, "0", path, probe_xy, every=10, max_steps=100, resume=True) as rec:
        assert rec.estimate_.snapshots_planned == 7  # 40, 50, ..., 100


def test_the_measuring_forward_replaces_the_layout_discovery(tmp_path, tiny_mlp, probe_xy):
    calls = []
    tiny_mlp.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    rec = Recorder(tiny_mlp, "0", tmp_path / "r.zarr", probe_xy, final_snapshot=False)
    assert calls == [3, 2, 3]  # the measured 3 samples, inside it layout discovery (2, 3)
    rec.snapshot()
    assert calls == [3, 2, 3, 40]  # the first snapshot learns nothing again
    rec.close()
