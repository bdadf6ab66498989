"""Token reductions on the hook path: mean (masked), last, positions, random projections."""

import numpy as np
import pytest
import torch
import zarr
from torch import nn

import probe
from hooks import (
    LastToken,
    Positions,
    RandomProjection,
    Recorder,
    RecorderConfigError,
    ReduceError,
    TokenMean,
)


class TimeMajor(nn.Module):
    """(batch, tokens, 3) in; a sequence-first GRU, then a per-token linear map."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(3, 6)
        self.proj = nn.Linear(6, 5)

    def forward(self, x):
        return self.proj(self.gru(x.transpose(0, 1))[0]).transpose(0, 1)


def _record(tmp_path, reduce, x, name="r.zarr"):
    torch.manual_seed(0)
    model = TimeMajor()
    with Recorder(model, ["gru", "proj"], tmp_path / name, x, batch_size=4, reduce=reduce) as rec:
        rec.snapshot()
    with torch.no_grad():
        full = model.gru(x.transpose(0, 1))[0].transpose(0, 1)
    return probe.open_run(tmp_path / name), full


def test_reductions_equal_reducing_the_full_batch_first_activations(tmp_path):
    x = torch.randn(10, 7, 3)
    mask = (torch.arange(7) < torch.tensor([7, 3, 5, 1, 7, 2, 6, 7, 4, 7])[:, None]).float()
    rp = RandomProjection(k=3, seed=5)
    reduce = {"gru": (TokenMean(mask=mask), rp), "proj": Positions([0, -1])}
    run, full = _record(tmp_path, reduce, x)
    want = (full * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    np.testing.assert_allclose(
        run.acts("gru", 0, key="acts.0"), (want @ rp.matrix(6)).numpy(), atol=1e-5
    )
    h_n = run.acts("gru", 0, key="acts.1")  # a state, not a sequence: batch first, not reduced
    np.testing.assert_allclose(h_n[:, 0], full[:, -1].numpy(), atol=1e-6)
    assert run.acts("proj", 0).shape == (10, 2, 5)
    attrs = zarr.open_array(tmp_path / "r.zarr/layers/gru/acts.0", mode="r").attrs.asdict()
    assert attrs["reduce"] == [
        {"name": "mean", "masked": True},
        {"name": "random_projection", "k": 3, "seed": 5},
    ]
    assert attrs["batch_dim"] == 1


def test_last_and_mean_by_name_and_last_real_token(tmp_path):
    x = torch.randn(9, 6, 3)
    run, full = _record(tmp_path, {"gru": "last"}, x)
    np.testing.assert_allclose(run.acts("gru", 0, key="acts.0"), full[:, -1].numpy(), atol=1e-6)
    lengths = torch.tensor([6, 1, 3, 2, 6, 4, 5, 6, 2])
    mask = torch.arange(6) < lengths[:, None]
    run, full = _record(tmp_path, {"gru": LastToken(mask=mask)}, x, "m.zarr")
    np.testing.assert_allclose(
        run.acts("gru", 0, key="acts.0"), full[torch.arange(9), lengths - 1].numpy(), atol=1e-6
    )
    run, full = _record(tmp_path, {"gru": "mean"}, x, "mean.zarr")
    np.testing.assert_allclose(run.acts("gru", 0, key="acts.0"), full.mean(1).numpy(), atol=1e-6)


def test_random_projection_is_seeded():
    a, b = RandomProjection(k=4, seed=1).matrix(8), RandomProjection(k=4, seed=1).matrix(8)
    np.testing.assert_array_equal(a, b)
    assert not torch.equal(a, RandomProjection(k=4, seed=2).matrix(8))


def test_reductions_that_do_not_fit_stop_the_snapshot(tmp_path):
    net = nn.Sequential(nn.Linear(3, 4))
    # The pre-flight forward of 3 probe samples meets it at construction, before any store.
    with pytest.raises(ReduceError, match="'mean' reduces the token dimension .* shape \\(3, 4\\)"):
        Recorder(net, "0", tmp_path / "a.zarr", torch.randn(9, 3), reduce={"0": "mean"})
    assert not (tmp_path / "a.zarr").exists()
    assert not net[0]._forward_hooks
    x = torch.randn(9, 5, 3)
    with pytest.raises(ReduceError, match="the reduction mask must be \\(n_samples, tokens\\)"):
        _record(tmp_path, {"proj": TokenMean(mask=torch.ones(9, 4))}, x, "b.zarr")
    with pytest.raises(ReduceError, match="Positions \\[7\\] out of range for 5 tokens"):
        _record(tmp_path, {"proj": Positions([7])}, x, "c.zarr")
    model = TimeMajor()
    with Recorder(
        model, "proj", tmp_path / "d.zarr", reduce={"proj": LastToken(mask=torch.ones(9, 5))}
    ) as rec:
        with pytest.raises(ReduceError, match="applies to snapshots, not to watch"), rec.watch():
            model(x)


def test_reduce_option_errors(tmp_path):
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    with pytest.raises(RecorderConfigError, match="'reduce' must map layer selectors"):
        Recorder(net, "0", tmp_path / "a.zarr", reduce="mean")
    with pytest.raises(RecorderConfigError, match="reduce values must be 'mean', 'last'"):
        Recorder(net, "0", tmp_path / "b.zarr", reduce={"0": "median"})
    with pytest.raises(RecorderConfigError, match="'reduce' selects no recorded layer"):
        Recorder(net, "0", tmp_path / "c.zarr", reduce={"1": "mean"})
    with pytest.raises(RecorderConfigError, match="Positions needs a non-empty list of ints"):
        Positions([])
    with pytest.raises(RecorderConfigError, match="RandomProjection 'k' must be a positive int"):
        RandomProjection(k=0)
    with pytest.raises(RecorderConfigError, match="RandomProjection 'seed' must be a non-negative"):
        RandomProjection(k=2, seed=-1)
