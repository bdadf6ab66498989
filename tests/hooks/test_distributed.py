"""Multi-process capture: DDP ranks record their shards into their own groups; open_run merges."""

import importlib
import json
import re
import shutil
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import zarr
from torch import nn

import hooks._ranks
import probe
from hooks import (
    ProbeInputError,
    Recorder,
    RecorderConfigError,
    ResumeMismatchError,
    StoreExistsError,
)
from hooks.agop import agop
from probe.errors import CorruptRunError, LayerNotInRunError, RunNotFoundError

HERE = Path(__file__).parent


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """Train 3 + 2 (resumed) steps on 2 gloo ranks; return (store, folder of their logs, module).

    Forked on Linux: a spawned child spends ~10-20 s importing torch and torch._dynamo (which
    DDP imports) on a loaded 2-core machine; the worker keeps to one thread (fork-safe OpenMP).
    """
    tmp = tmp_path_factory.mktemp("ddp")
    method = "fork" if sys.platform == "linux" else "spawn"
    with pytest.MonkeyPatch.context() as mpatch:
        mpatch.syspath_prepend(str(HERE))  # spawned children import the worker by name
        child = importlib.import_module("ddp_child")
        args = (2, _free_port(), str(tmp / "run.zarr"), str(tmp))
        ctx = mp.start_processes(child.worker, args, nprocs=2, join=False, start_method=method)
        deadline = time.monotonic() + 300
        while not ctx.join(timeout=1):  # raises when a child fails (and stops the other)
            if time.monotonic() > deadline:
                for p in ctx.processes:
                    p.kill()
                pytest.fail("the DDP children did not finish within 300 s")
    return tmp / "run.zarr", tmp, child


def _forward(child, state, x):
    model = child.make_model()
    model.load_state_dict(state)
    with torch.no_grad():
        h = model[0](x)
        return model, h, model(x)


@pytest.mark.slow
def test_merged_acts_equal_a_single_process_forward(ddp_run):
    store, logs, child = ddp_run
    x, y, ids = child.probe_set()
    run = probe.open_run(store)
    assert run.world_size == 2 and run.layers == ["0", "2"]
    np.testing.assert_array_equal(run.steps, [0, 1, 2, 3, 4, 5])  # 3 steps, resumed for 2
    np.testing.assert_array_equal(run.sample_ids, ids)
    np.testing.assert_array_equal(run.targets, y.numpy())
    shards = [run.rank(r).sample_ids for r in range(2)]
    np.testing.assert_array_equal(np.sort(np.concatenate(shards)), ids)  # complete, disjoint
    np.testing.assert_array_equal(shards[1], ids[1::2])
    for step, name in ((0, "init.pt"), (-1, "final.pt")):
        model, h, out = _forward(child, torch.load(logs / name, weights_only=True), x)
        np.testing.assert_allclose(run.acts("0", step), h.numpy(), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(run.outputs(step), out.numpy(), rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(run.weights("2", step), model[2].weight.detach().numpy())
        full = agop(model, x, ["0", "2"])
        np.testing.assert_allclose(run.agop("2", step), full["2"].numpy(), rtol=1e-5, atol=1e-8)
    assert run.acts("2").shape == (6, 10, 3)


@pytest.mark.slow
def test_stream_metrics_and_resume_across_ranks(ddp_run):
    store, logs, child = ddp_run
    run = probe.open_run(store)
    s = run.stream("0")
    assert s.acts.shape == (2 * 5 * child.BATCH, 12)
    assert np.all(np.diff(s.step) >= 0)
    for r in range(2):
        mine = s.rank == r
        expected = np.concatenate([child.batch_ids(r, k) for k in range(5)])
        np.testing.assert_array_equal(s.sample_id[mine], expected)
    m = run.metrics()
    assert list(m.columns) == ["step", "epoch", "loss"] and list(m["step"]) == [1, 2, 3, 4, 5]
    assert set(run.metrics(all_ranks=True)["rank"]) == {0}  # rank 0 logs by default
    info = run.info()
    assert info["world_size"] == 2 and info["state"] == "closed"
    assert [r["n_snapshots"] for r in info["ranks"]] == [6, 6]
    assert info["arrays"]["layers/0/acts"] == (6, 10, 12)
    ds = run.to_xarray()
    np.testing.assert_array_equal(ds["layers/0/acts"].values, run.acts("0"))
    assert ds["stream/rank"].shape == (40,)
    errs = [json.loads((logs / f"errors_{r}.json").read_text()) for r in range(2)]
    assert [e["resumed_at"] for e in errs] == [3, 3]
    solo = probe.open_run(store.with_name("solo.zarr"))  # one process of the DDP job alone
    assert solo.world_size == 1 and solo.acts("0", 0).shape == (10, 12)


@pytest.mark.slow
def test_failures_on_one_rank_stop_every_rank(ddp_run):
    _, logs, _ = ddp_run
    errs = [json.loads((logs / f"errors_{r}.json").read_text()) for r in range(2)]
    assert errs[0]["exists"][0] == errs[1]["exists"][0] == "StoreExistsError"
    assert re.search("^rank 0 could not open the run.*already holds a run", errs[1]["exists"][1])
    assert errs[1]["mismatch"][0] == errs[0]["mismatch"][0] == "ResumeMismatchError"
    assert "rank 1 has layers=['0']" in errs[1]["mismatch"][1]
    assert errs[0]["mismatch"][1].startswith("rank 1 could not open the run")


@pytest.mark.slow
def test_ranks_never_write_the_same_file(ddp_run):
    store, logs, _ = ddp_run
    written = []
    for r in range(2):
        paths = json.loads((logs / f"writes_{r}.json").read_text())
        # the root and each rank group are built under a temporary name, then renamed
        paths = {re.sub(r"\.([^/]+)\.creating-[^/]+", r"\1", p) for p in paths}
        written.append({str(Path(p).relative_to(store)) for p in paths if "solo.zarr" not in p})
    assert not written[0] & written[1]
    assert all(p.startswith("ranks/1/") for p in written[1])
    shared = {p for p in written[0] if not p.startswith("ranks/0/")}
    assert shared and all(p == "zarr.json" or re.match(r"(probe|ranks)/", p) for p in shared)
    assert not {p for p in shared if p.startswith("ranks/")} - {"ranks/zarr.json"}
    assert any(p.startswith("ranks/1/layers/0/acts/c.") for p in written[1])  # rank 1's chunks
    root = zarr.open_group(str(store), mode="r")
    for path, node in root.members(max_depth=None):
        if isinstance(node, zarr.Array):
            assert re.match(r"(probe/|ranks/[01]/)", path), path


# ---------------------------------------------------------------- in one process, explicit ranks
def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def _record(net, store, rank, n_steps, **kw):
    x = torch.randn(7, 4, generator=torch.Generator().manual_seed(3))
    kw = {"probe": x, "every": 1, "rank": rank, "world_size": 2, **kw}
    with Recorder(net, layers=["0"], store=store, **kw) as rec:
        for _ in range(n_steps):
            rec.step(loss=1.0)
    return x


def test_ranks_with_different_commits_merge_on_common_steps(tmp_path):
    net, store = _net(), tmp_path / "r.zarr"
    x = _record(net, store, 0, 3, final_snapshot=False)
    assert probe.open_run(store).n_snapshots == 0  # rank 1 has not started: no merged snapshot
    _record(net, store, 1, 1, final_snapshot=False)
    run = probe.open_run(store)
    np.testing.assert_array_equal(run.rank(0).steps, [0, 1, 2, 3])
    np.testing.assert_array_equal(run.steps, [0, 1])  # committed on every rank
    with torch.no_grad():
        np.testing.assert_allclose(run.acts("0", 1), net[0](x).numpy(), rtol=1e-6)
    assert run.acts("0").shape == (2, 7, 8)
    assert run.info()["ranks"][1]["last_step"] == 1
    # resume: rank 1 continues from the furthest step of any rank (rank 0's metrics at 3)
    with Recorder(net, layers=["0"], store=store, probe=x, rank=1, world_size=2, resume=True) as r:
        assert r.step_ == 3
        r.step()  # step 4, snapshotted on close
    np.testing.assert_array_equal(probe.open_run(store).steps, [0, 1])
    with Recorder(net, layers=["0"], store=store, probe=x, rank=0, world_size=2, resume=True) as r:
        assert r.step_ == 4  # rank 1's snapshot is now the furthest step
    np.testing.assert_array_equal(probe.open_run(store).steps, [0, 1, 4])
    assert list(probe.open_run(store).metrics()["step"]) == [1, 2, 3]


def test_all_ranks_metrics_and_not_per_sample_arrays(tmp_path):
    class Pool(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)
            self.pool = nn.Identity()

        def forward(self, x):
            self.pool(x.sum(0, keepdim=True))  # one row per batch, not per sample
            return self.lin(x)

    store = tmp_path / "r.zarr"
    for rank in (0, 1):
        torch.manual_seed(0)
        net = Pool()
        kw = {"log_all_ranks": True, "probe": torch.randn(6, 4), "rank": rank, "world_size": 2}
        with Recorder(net, layers=["lin", "pool"], store=store, **kw) as rec:
            rec.step(loss=float(rank))
    run = probe.open_run(store)
    m = run.metrics(all_ranks=True)
    assert list(m.columns) == ["step", "epoch", "rank", "loss"]
    assert list(m["rank"]) == [0, 1] and list(m["loss"]) == [0.0, 1.0]
    assert run.acts("lin", -1).shape == (6, 3)
    with pytest.raises(LayerNotInRunError, match="no sample dimension and differs between ranks"):
        run.acts("pool", -1)
    assert "layers/pool/acts" not in run.to_xarray()
    with pytest.raises(RunNotFoundError, match="rank must be an int in \\[0, 2\\)"):
        run.rank(2)
    single = tmp_path / "one.zarr"
    with Recorder(net, layers="lin", store=single, probe=torch.randn(6, 4)) as rec:
        rec.step(loss=1.0)
    one = probe.open_run(single)
    assert one.rank(0) is one and one.world_size == 1
    assert list(one.metrics(all_ranks=True)["rank"]) == [0]
    assert one.info()["world_size"] == 1


def test_rank_arguments_errors(tmp_path):
    net, store = _net(), tmp_path / "r.zarr"
    x = torch.randn(7, 4)
    with pytest.raises(RecorderConfigError, match="must be given together"):
        Recorder(net, layers="0", store=store, rank=1)
    with pytest.raises(RecorderConfigError, match="'rank' an int in \\[0, world_size\\)"):
        Recorder(net, layers="0", store=store, rank=2, world_size=2)
    with pytest.raises(RecorderConfigError, match="'world_size' must be a positive int"):
        Recorder(net, layers="0", store=store, rank=0, world_size=True)
    with pytest.raises(ProbeInputError, match="at least one sample per rank \\(8\\); got 7"):
        Recorder(net, layers="0", store=store, probe=x, rank=0, world_size=8)
    with pytest.raises(RecorderConfigError, match="overwrite=True on rank 1"):
        Recorder(net, layers="0", store=store, rank=1, world_size=2, overwrite=True)
    assert not store.exists()


def test_rank_waits_for_rank_0_then_times_out(tmp_path, monkeypatch):
    monkeypatch.setattr(hooks._ranks, "ROOT_WAIT_S", 0.2)
    with pytest.raises(RecorderConfigError, match="rank 1 waited 0.2 s for rank 0"):
        Recorder(_net(), layers="0", store=tmp_path / "r.zarr", rank=1, world_size=2)


def test_rank_settings_must_match_the_run(tmp_path):
    net, store = _net(), tmp_path / "r.zarr"
    x = _record(net, store, 0, 1)
    with pytest.raises(RecorderConfigError, match="rank 1 has n_samples=6 but the run"):
        Recorder(net, layers="0", store=store, probe=x[:6], rank=1, world_size=2)
    with pytest.raises(ResumeMismatchError, match="world_size to match; the store has 2, this"):
        Recorder(net, layers="0", store=store, probe=x, rank=0, world_size=3, resume=True)
    with pytest.raises(ResumeMismatchError, match="rank 1 has world_size=3 but the run"):
        Recorder(net, layers="0", store=store, probe=x, rank=1, world_size=3, resume=True)
    with pytest.raises(ResumeMismatchError, match="world_size to match; the store has 2, this"):
        Recorder(net, layers="0", store=store, probe=x, resume=True)
    _record(net, store, 1, 1)
    with pytest.raises(StoreExistsError, match="already holds a run"):
        _record(net, store, 1, 1)


def test_explicit_ranks_must_match_torch_distributed(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        with pytest.raises(RecorderConfigError, match="must match the initialised"):
            Recorder(_net(), layers="0", store=tmp_path / "r.zarr", rank=0, world_size=2)
        with Recorder(_net(), layers="0", store=tmp_path / "r.zarr", rank=0, world_size=1) as r:
            assert r.ranks_.world_size == 1 and not r.ranks_.distributed
    finally:
        dist.destroy_process_group()
    assert "world_size" not in probe.open_run(tmp_path / "r.zarr").attrs  # single-process layout


def test_corrupt_rank_groups_are_reported(tmp_path):
    net, store = _net(), tmp_path / "r.zarr"
    for rank in (0, 1):
        _record(net, store, rank, 1)
    index = zarr.open_array(str(store / "ranks/1/probe/index"), mode="r+")
    good = index[...]
    index[...] = np.full_like(good, 2)  # valid checksums; position 2 is rank 0's too
    with pytest.raises(CorruptRunError, match="rank 1's probe/index must be distinct positions"):
        probe.open_run(store)
    index[...] = good
    ids = zarr.open_array(str(store / "ranks/1/probe/sample_id"), mode="r+")
    ids[0] = 99
    with pytest.raises(CorruptRunError, match="rank 1's probe/sample_id must equal"):
        probe.open_run(store)
    ids[0] = 1
    for name in ("index", "sample_id"):  # rank 0 forgets its last sample
        zarr.open_array(str(store / f"ranks/0/probe/{name}"), mode="r+").resize((3,))
    with pytest.raises(CorruptRunError, match="must cover all 7 probe samples; 1 are missing"):
        probe.open_run(store)


def test_stream_only_ranks_and_rank_views(tmp_path):
    store = tmp_path / "r.zarr"
    net = _net()
    for rank in (0, 1):
        with Recorder(net, layers="0", store=store, rank=rank, world_size=2) as rec:
            with rec.watch(sample_id=[rank, rank + 10]):
                net(torch.randn(2, 4))
            rec.step()
    run = probe.open_run(store)
    assert run.n_snapshots == 0 and run.n_stream_rows == 4
    s = run.stream("0")
    np.testing.assert_array_equal(s.sample_id, [0, 10, 1, 11])
    np.testing.assert_array_equal(s.rank, [0, 0, 1, 1])
    one = run.rank(1)
    assert one.rank(1) is one and one.world_size == 2
    np.testing.assert_array_equal(one.stream("0").rank, [1, 1])
    with pytest.raises(RunNotFoundError, match="holds only rank 1's records; got rank 0"):
        one.rank(0)


def test_run_whose_ranks_are_all_missing(tmp_path):
    store = tmp_path / "r.zarr"
    _record(_net(), store, 0, 1)
    shutil.rmtree(store / "ranks" / "0")  # as if rank 0 had died before creating its group
    run = probe.open_run(store)
    assert run.n_snapshots == 0 and run.info()["ranks"][0]["state"] == "not started"
    with pytest.raises(LayerNotInRunError, match="no array 'outputs/acts' \\(no rank recorded"):
        run.outputs()
