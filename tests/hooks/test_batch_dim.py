"""Batch dimension of recorded tensors: module rules, the batch_dim option, inference, errors."""

import numpy as np
import pytest
import torch
import zarr
from torch import nn

import probe
from hooks import BatchDimError, BatchlessOutputError, Recorder, RecorderConfigError


class SeqFirst(nn.Module):
    """A sequence-first model: (batch, time, feature) in, time-major inside."""

    def __init__(self, cell: type[nn.RNNBase] = nn.LSTM, batch_first: bool = False) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.rnn = cell(3, 5, num_layers=2, batch_first=batch_first)
        self.mix = nn.Linear(5, 4)
        self.pos = nn.Embedding(7, 4)

    def forward(self, x):
        out = self.rnn(x if self.batch_first else x.transpose(0, 1))[0]
        h = self.mix(out)  # (T, B, 4) when time-major: found by inference
        p = self.pos(torch.arange(7))  # (7, 4): a batch-less position table
        h = h if self.batch_first else h.transpose(0, 1)
        return (h + p).mean(1)


def _record(model, x, tmp_path, **kw):
    store = tmp_path / "r.zarr"
    with Recorder(model, layers=["rnn", "mix", "pos"], store=store, probe=x, batch_size=4, **kw):
        pass
    return probe.open_run(store)


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU])
@pytest.mark.parametrize("batch_first", [False, True])
def test_rnn_outputs_and_states_are_stored_batch_first(tmp_path, cell, batch_first):
    torch.manual_seed(0)
    model, x = SeqFirst(cell, batch_first), torch.randn(10, 7, 3)  # batches of 4, 4, 2
    run = _record(model, x, tmp_path)
    with torch.no_grad():
        out, state = model.rnn(x if batch_first else x.transpose(0, 1))
    want = {"acts.0": out if batch_first else out.transpose(0, 1)}
    states = state if cell is nn.LSTM else (state,)
    keys = ["acts.1.0", "acts.1.1"] if cell is nn.LSTM else ["acts.1"]
    want.update({k: s.transpose(0, 1) for k, s in zip(keys, states, strict=True)})
    assert run.keys("rnn") == sorted(want)
    for key, w in want.items():
        np.testing.assert_allclose(run.acts("rnn", 0, key=key), w.numpy(), atol=1e-6)
        attrs = zarr.open_array(tmp_path / "r.zarr" / "layers/rnn" / key, mode="r").attrs
        assert attrs["batch_dim"] == (0 if batch_first and key == "acts.0" else 1)
        assert attrs["batch_dim_source"] == "rule"
    mix = zarr.open_array(tmp_path / "r.zarr/layers/mix/acts", mode="r").attrs
    assert (mix["batch_dim"], mix["batch_dim_source"]) == (0 if batch_first else 1, "inferred")
    assert run.acts("mix", 0).shape == (10, 7, 4)
    ds = run.to_xarray()
    assert ds["layers/pos/acts"].dims == ("snapshot", "layers.pos.acts_f0", "layers.pos.acts_f1")
    np.testing.assert_array_equal(ds["layers/pos/acts"][0], model.pos.weight.detach().numpy())


def test_batch_dim_option_overrides_inference_and_marks_batchless(tmp_path):
    torch.manual_seed(0)
    model, x = SeqFirst(), torch.randn(10, 7, 3)
    run = _record(model, x, tmp_path, batch_dim={"mix": 1, "pos": None})
    assert run.acts("mix", 0).shape == (10, 7, 4)
    assert run.acts("pos").shape == (1, 7, 4)
    attrs = zarr.open_array(tmp_path / "r.zarr/layers/pos/acts", mode="r").attrs
    assert (attrs["batch_dim"], attrs["batch_dim_source"]) == (None, "option")


class Gram(nn.Module):
    """Outputs (batch, batch): no dimension can be told from the other."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.gram = nn.Identity()

    def forward(self, x):
        h = self.lin(x)
        return self.gram(h @ h.T)


def test_ambiguous_or_wrong_batch_dims_stop_the_snapshot(tmp_path):
    x = torch.randn(10, 3)
    with pytest.raises(BatchDimError, match="'gram', output 'acts' of shape \\(2, 2\\): dim"):
        Recorder(Gram(), layers="gram", store=tmp_path / "a.zarr", probe=x, every=1)
    with pytest.raises(BatchDimError, match="batch dimension 1 \\(by option\\) does not have"):
        Recorder(
            Gram(), layers="lin", store=tmp_path / "b.zarr", probe=x, every=1, batch_dim={"lin": 1}
        )
    with pytest.raises(BatchDimError, match="batch dimension 5 \\(by option\\)"):
        Recorder(
            Gram(), layers="lin", store=tmp_path / "c.zarr", probe=x, every=1, batch_dim={"lin": 5}
        )


class Noisy(nn.Module):
    """A batch-less output that is not the same in every batch."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Identity()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        self.table(torch.full((2, 5), float(self.calls)))
        return x


def test_batchless_outputs_must_repeat_across_batches(tmp_path):
    x = torch.randn(10, 3)
    rec = Recorder(Noisy(), layers="table", store=tmp_path / "r.zarr", probe=x, batch_size=4)
    with pytest.raises(BatchlessOutputError, match="differs between probe batches"):
        rec.snapshot()


class Flip(nn.Module):
    """Time-major only for batches of more than three samples."""

    def __init__(self) -> None:
        super().__init__()
        self.out = nn.Identity()

    def forward(self, x):
        return self.out(x.transpose(0, 1) if x.shape[0] > 3 else x)


def test_a_layout_that_changes_between_forwards_is_an_error(tmp_path):
    x = torch.randn(10, 6)
    rec = Recorder(Flip(), layers="out", store=tmp_path / "r.zarr", probe=x, final_snapshot=False)
    with pytest.raises(BatchDimError, match="Its layout must not change between forwards"):
        rec.snapshot()
    rec.close()


def test_stream_mode_stores_time_major_outputs_batch_first(tmp_path):
    torch.manual_seed(0)
    model, x = SeqFirst(nn.GRU), torch.randn(6, 7, 3)
    with Recorder(model, layers=["rnn", "mix"], store=tmp_path / "r.zarr") as rec, rec.watch():
        model(x)
    s = probe.open_run(tmp_path / "r.zarr").stream("mix")
    with torch.no_grad():
        want = model.mix(model.rnn(x.transpose(0, 1))[0]).transpose(0, 1)
    np.testing.assert_allclose(s.acts, want.numpy(), atol=1e-6)


def test_batch_dim_option_errors(tmp_path):
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    with pytest.raises(RecorderConfigError, match="'batch_dim' must map layer selectors"):
        Recorder(net, layers="0", store=tmp_path / "a.zarr", batch_dim=1)
    with pytest.raises(RecorderConfigError, match="batch_dim\\['0'\\] must be an int or None"):
        Recorder(net, layers="0", store=tmp_path / "b.zarr", batch_dim={"0": "1"})
    with pytest.raises(
        RecorderConfigError,
        match="'batch_dim' selects no recorded layer \\(it matches \\['1'\\]\\)",
    ):
        Recorder(net, layers="0", store=tmp_path / "c.zarr", batch_dim={"1": 0})


class NeedsFour(nn.Module):
    """Refuses batches under 4 samples: the layout discovery (2 and 3 samples) fails."""

    def __init__(self, width: int = 5) -> None:
        super().__init__()
        self.lin = nn.Linear(5, width)

    def forward(self, x):
        if x.shape[0] < 4:
            msg = "batches of at least 4 samples"
            raise ValueError(msg)
        return self.lin(x)


def test_a_model_that_fails_the_discovery_is_laid_out_by_its_own_forward(tmp_path):
    model, x = NeedsFour(), torch.randn(6, 5)
    with Recorder(model, layers="lin", store=tmp_path / "r.zarr") as rec, rec.watch():
        out = model(x)
    run = probe.open_run(tmp_path / "r.zarr")
    np.testing.assert_allclose(run.stream("lin").acts, out.detach().numpy(), atol=1e-6)
    wide = NeedsFour(width=6)  # (6, 6) for a batch of 6: only a smaller batch could tell
    with Recorder(wide, layers="lin", store=tmp_path / "w.zarr") as rec:
        with pytest.raises(BatchDimError, match="dimensions \\[0, 1\\] all have the batch"):
            with rec.watch():
                wide(x)


def test_the_writer_process_stores_the_same_batch_first_arrays(tmp_path):
    torch.manual_seed(0)
    model, x = SeqFirst(nn.GRU), torch.randn(10, 7, 3)
    runs = [_record(model, x, tmp_path / w, writer=w) for w in ("thread", "process")]
    for layer in ("rnn", "mix", "pos"):
        for key in runs[0].keys(layer):
            a, b = (r.acts(layer, key=key) for r in runs)
            np.testing.assert_array_equal(a, b)
            path = f"layers/{layer}/{key}"
            layouts = [dict(r.open_array(path).attrs) for r in runs]
            assert layouts[0] == layouts[1] and "batch_dim" in layouts[0], (path, layouts)
