"""Streaming helpers on a run recorded by two processes read the merged view through `Run`."""

import numpy as np
import pytest
import torch
import zarr
from torch import nn

import probe
from hooks import Recorder
from probe.analysis.similarity import layer_cka_over_steps
from probe.analysis.streaming import class_moments, consecutive_cka
from probe.errors import CorruptRunError, InvalidArrayError, LayerNotInRunError


class WithTable(nn.Module):
    """An MLP beside a position-table-like output with no batch dimension."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        self.table = nn.Embedding(5, 2)

    def forward(self, x):
        self.table(torch.arange(5))
        return self.net(x)


def _two_ranks(store, x, y):
    torch.manual_seed(0)
    model = WithTable()
    for rank in (0, 1):
        with Recorder(
            model, ["net.0", "table"], store, (x, y), every=1, rank=rank, world_size=2
        ) as rec:
            for _ in range(2):
                with torch.no_grad():
                    model.net[0].weight.mul_(1.1)
                rec.step()
    return model


def test_streaming_helpers_and_batchless_arrays_of_a_two_rank_run(tmp_path):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(31, 4, generator=g), torch.arange(31) % 3
    model = _two_ranks(tmp_path / "r.zarr", x, y)
    run = probe.open_run(tmp_path / "r.zarr")
    assert run.world_size == 2 and run.n_snapshots == 3
    got = class_moments(run, "net.0", -1, chunk_rows=5).metrics()
    want = class_moments(run, "net.0", -1, chunk_rows=100).metrics()
    assert got == pytest.approx(want)
    nc1 = probe.analysis.collapse.nc1(run.acts("net.0", -1), y.numpy())
    assert got["nc1"] == pytest.approx(nc1)
    want_cka = np.diag(layer_cka_over_steps(run, "net.0"), k=1)
    np.testing.assert_allclose(consecutive_cka(run, "net.0", chunk_rows=4), want_cka, rtol=1e-6)
    table = run.acts("table")  # no batch dimension: rank 0's, once per snapshot
    np.testing.assert_array_equal(table[-1], model.table.weight.detach().numpy())
    assert run.to_xarray()["layers/table/acts"].shape == (3, 5, 2)


def test_streaming_helpers_refuse_arrays_without_samples(tmp_path):
    torch.manual_seed(0)
    model, x = WithTable(), torch.randn(9, 4)
    with Recorder(model, ["table"], tmp_path / "r.zarr", x, every=1) as rec:
        rec.step()
    run = probe.open_run(tmp_path / "r.zarr")
    with pytest.raises(InvalidArrayError, match="'acts' has no sample dimension"):
        consecutive_cka(run, "table")


def test_a_rank_whose_per_sample_array_lost_rows_is_reported(tmp_path):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(31, 4, generator=g), torch.arange(31) % 3
    _two_ranks(tmp_path / "r.zarr", x, y)
    arr = zarr.open_array(tmp_path / "r.zarr/ranks/1/layers/net.0/acts", mode="a")
    arr.resize((arr.shape[0], arr.shape[1] - 1, arr.shape[2]))  # a corrupted shard
    with pytest.raises(CorruptRunError, match="differs from what the writer created"):
        probe.open_run(tmp_path / "r.zarr").acts("net.0", -1)  # the rank's manifest tells
    rank = zarr.open_group(str(tmp_path / "r.zarr/ranks/1"), mode="r+")
    del rank.attrs["arrays"], rank.attrs["commit_digest"]  # as a run written before manifests
    with pytest.raises(LayerNotInRunError, match="is not one row per probe sample"):
        probe.open_run(tmp_path / "r.zarr").acts("net.0", -1)
