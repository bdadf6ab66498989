import numpy as np
import pytest
import torch
from torch import nn

import probe
from hooks import (
    BatchlessOutputError,
    NonFiniteWarning,
    ProbeInputError,
    Recorder,
    RecorderClosedError,
    RecorderConfigError,
    StepOrderError,
    StreamShapeError,
    log_schedule,
)


def _no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def _expected(model, x, names):
    """Reference: plain forward hooks with clone, in eval mode, no grad."""
    got = {}
    mods = dict(model.named_modules())
    handles = [
        mods[n].register_forward_hook(lambda m, a, o, n=n: got.setdefault(n, o.detach().clone()))
        for n in names
    ]
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(x)
    model.train(was)
    for h in handles:
        h.remove()
    return got, out


def test_roundtrip_snapshots_equal_module_outputs(tmp_path, tiny_mlp, probe_xy):
    x, y = probe_xy
    opt = torch.optim.SGD(tiny_mlp.parameters(), lr=0.1)
    expected = {}
    with Recorder(
        tiny_mlp, layers=["0", "2"], store=tmp_path / "r.zarr", probe=(x, y), every=3, batch_size=7
    ) as rec:
        expected[0] = _expected(tiny_mlp, x, ["0", "2"])
        for step in range(1, 10):
            loss = nn.functional.cross_entropy(tiny_mlp(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.step(loss=loss)
            if step % 3 == 0:
                expected[step] = _expected(tiny_mlp, x, ["0", "2"])
    run = probe.open_run(tmp_path / "r.zarr")
    assert run.layers == ["0", "2"]
    np.testing.assert_array_equal(run.steps, [0, 3, 6, 9])
    for step, (acts, out) in expected.items():
        np.testing.assert_array_equal(run.acts("0", step=step), acts["0"].numpy())
        np.testing.assert_array_equal(run.acts("2", step=step), acts["2"].numpy())
        np.testing.assert_array_equal(run.outputs(step=step), out.numpy())
    np.testing.assert_array_equal(run.targets, y.numpy())
    np.testing.assert_array_equal(run.sample_ids, np.arange(40))
    np.testing.assert_array_equal(run.probe_inputs, x.numpy())
    assert run.acts("0").shape == (4, 40, 16)
    m = run.metrics()
    assert list(m["step"]) == list(range(1, 10)) and m["loss"].notna().all()


def test_output_kinds_in_place_and_repeated_calls(tmp_path, branchy):
    x = torch.randn(10, 8)
    layers = ["enc", "split", "heads", "shared"]
    captured = {}

    def grab(name):
        def hook(m, a, o):
            captured.setdefault(name, []).append(
                tuple(t.detach().clone() for t in o)
                if isinstance(o, tuple)
                else {k: v.detach().clone() for k, v in o.items() if torch.is_tensor(v)}
                if isinstance(o, dict)
                else o.detach().clone()
            )

        return hook

    hs = [getattr(branchy, n).register_forward_hook(grab(n)) for n in layers]
    with torch.no_grad():
        branchy.eval()
        out = branchy(x)
        branchy.train()
    for h in hs:
        h.remove()
    with Recorder(
        branchy, layers=layers, store=tmp_path / "r.zarr", probe=x, every=None, final_snapshot=False
    ) as rec:
        rec.snapshot()
    run = probe.open_run(tmp_path / "r.zarr")
    # enc is followed by an in-place ReLU: the recorded value must be pre-activation.
    assert (captured["enc"][0] < 0).any()
    np.testing.assert_array_equal(run.acts("enc", -1), captured["enc"][0].numpy())
    assert run.keys("split") == ["acts.0", "acts.1"]
    np.testing.assert_array_equal(
        run.acts("split", -1, key="acts.1"), captured["split"][0][1].numpy()
    )
    assert run.keys("heads") == ["acts.h"]  # None and int entries are skipped
    assert run.keys("shared") == ["acts", "acts.call1"]
    np.testing.assert_array_equal(
        run.acts("shared", -1, key="acts.call1"), captured["shared"][1].numpy()
    )
    np.testing.assert_array_equal(run.outputs(-1, key="acts.0"), out[0].numpy())
    np.testing.assert_array_equal(run.outputs(-1, key="acts.1"), out[1].numpy())


def test_hooks_removed_after_close_and_after_error(tmp_path, tiny_mlp, probe_xy):
    tiny_mlp[0].eval()  # a user's own per-module flag must survive snapshots
    with Recorder(
        tiny_mlp, layers=nn.Linear, store=tmp_path / "a.zarr", probe=probe_xy[0], every=1
    ) as rec:
        rec.step()
        assert _no_hooks(tiny_mlp)  # hooks only exist while the recorder forwards
        with rec.watch():
            assert not _no_hooks(tiny_mlp)
            tiny_mlp(probe_xy[0])
    assert _no_hooks(tiny_mlp)
    assert tiny_mlp.training and not tiny_mlp[0].training

    def _fail_while_watching():
        with Recorder(
            tiny_mlp, layers=nn.Linear, store=tmp_path / "b.zarr", probe=probe_xy[0], every=1
        ) as rec:
            with rec.watch():
                tiny_mlp(probe_xy[0])
                raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        _fail_while_watching()
    assert _no_hooks(tiny_mlp)
    run = probe.open_run(tmp_path / "b.zarr")
    assert run.n_snapshots == 1  # the step-0 snapshot survived the error


def _train(seed, store=None, every=1, watch=True):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 4))
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(64, 8, generator=g), torch.randint(0, 4, (64,), generator=g)
    rec = (
        Recorder(net, layers=["0", "2"], store=store, probe=x[:20], every=every) if store else None
    )
    losses = []
    for _ in range(25):
        idx = torch.randint(0, 64, (16,))
        ctx = rec.watch(sample_id=idx) if rec and watch else _null()
        with ctx:
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if rec:
            rec.step(loss=loss)
    if rec:
        rec.close()
    return losses, [p.detach().clone() for p in net.parameters()]


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_training_trajectory_bit_identical(tmp_path):
    plain_losses, plain_params = _train(3)
    rec_losses, rec_params = _train(3, store=tmp_path / "r.zarr")
    assert plain_losses == rec_losses  # exact equality, dropout included
    for a, b in zip(plain_params, rec_params, strict=True):
        assert torch.equal(a, b)
    run = probe.open_run(tmp_path / "r.zarr")
    assert run.n_snapshots == 26 and run.n_stream_rows == 25 * 16


def test_watch_stream_rows_steps_and_ids(tmp_path, tiny_mlp):
    x = torch.randn(96, 8)
    with Recorder(tiny_mlp, layers=["0", "1"], store=tmp_path / "r.zarr") as rec:
        for step in range(6):
            ids = torch.arange(step * 16, step * 16 + 16)
            with rec.watch(sample_id=ids):
                tiny_mlp(x[ids])
            rec.step()
    run = probe.open_run(tmp_path / "r.zarr")
    s = run.stream("0")
    assert s.acts.shape == (96, 16)
    np.testing.assert_array_equal(s.sample_id, np.arange(96))
    np.testing.assert_array_equal(s.step, np.repeat(np.arange(6), 16))
    with torch.no_grad():
        np.testing.assert_allclose(s.acts, tiny_mlp[0](x).numpy(), rtol=1e-6, atol=1e-6)
    assert run.n_snapshots == 0


def test_schedules_and_float16_and_weights(tmp_path, probe_xy):
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Unflatten(1, (2, 2, 2)), nn.Conv2d(2, 3, 2), nn.Flatten(), nn.Linear(3, 4)
    )
    sched = log_schedule(20, 5)
    with Recorder(
        net,
        layers=["1", "3"],
        store=tmp_path / "r.zarr",
        probe=probe_xy[0],
        every=sched,
        dtype="float16",
        weights=True,
    ) as rec:
        for _ in range(20):
            rec.step()
    run = probe.open_run(tmp_path / "r.zarr")
    np.testing.assert_array_equal(run.steps, sched)
    assert run.acts("3", -1).dtype == np.float16
    assert run.weights("1", -1).shape == (3, 2 * 2 * 2)  # conv flattened to (out, in*kh*kw)
    np.testing.assert_array_equal(run.weights("3", 0), net[3].weight.detach().numpy())
    with Recorder(
        net, layers="3", store=tmp_path / "c.zarr", probe=probe_xy[0], every=lambda s: s in (2, 5)
    ) as rec:
        for _ in range(6):
            rec.step()
    np.testing.assert_array_equal(probe.open_run(tmp_path / "c.zarr").steps, [2, 5, 6])


def test_nan_activations_recorded_and_flagged(tmp_path, tiny_mlp, probe_xy):
    x = probe_xy[0].clone()
    x[3, 0] = float("nan")
    with (
        pytest.warns(NonFiniteWarning, match="NaN/Inf"),
        Recorder(tiny_mlp, layers="0", store=tmp_path / "r.zarr", probe=x, every=1) as rec,
    ):
        rec.step()
    run = probe.open_run(tmp_path / "r.zarr")
    assert np.isnan(run.acts("0", 0)[3]).all() and np.isfinite(run.acts("0", 0)[4]).all()
    info = run.info()
    assert info["nonfinite"]["layers/0/acts"][0] == [0, 16]


def test_explicit_steps_epochs_and_log(tmp_path, tiny_mlp, probe_xy):
    with Recorder(
        tiny_mlp, layers="0", store=tmp_path / "r.zarr", probe=probe_xy[0], every=100
    ) as rec:
        rec.step(step=100, epoch=1, loss=0.5)
        rec.log(test_accuracy=0.9)
        rec.step(step=250, loss=torch.tensor(0.25))
        with pytest.raises(StepOrderError, match="larger than the last step 250"):
            rec.step(step=250)
        with pytest.raises(RecorderConfigError, match="must be a number or a one-element tensor"):
            rec.step(loss="low")
        with pytest.raises(RecorderConfigError, match="reserved"):
            rec.log(epoch=3)
    run = probe.open_run(tmp_path / "r.zarr")
    m = run.metrics()
    assert list(m.columns) == ["step", "epoch", "loss", "test_accuracy"]
    assert list(m["step"]) == [100, 100, 250] and list(m["epoch"]) == [1, 1, 1]
    assert np.isnan(m["loss"][1]) and m["test_accuracy"][1] == pytest.approx(0.9)
    np.testing.assert_array_equal(run.steps, [0, 100, 250])
    np.testing.assert_array_equal(run.epochs, [0, 1, 1])


@pytest.mark.parametrize("wrapper", ["compile", "dataparallel"])
def test_wrapped_models_record_under_their_own_names(tmp_path, tiny_mlp, probe_xy, wrapper):
    x = probe_xy[0]
    model = (
        torch.compile(tiny_mlp, backend="eager")
        if wrapper == "compile"
        else nn.DataParallel(tiny_mlp)
    )
    with Recorder(model, layers=["0"], store=tmp_path / "r.zarr", probe=x, every=1) as rec:
        with rec.watch():
            model(x[:8])
        rec.step()
    run = probe.open_run(tmp_path / "r.zarr")
    with torch.no_grad():
        np.testing.assert_allclose(run.acts("0", 1), tiny_mlp[0](x).numpy(), rtol=1e-6)
    assert run.stream("0").acts.shape == (8, 16)


def test_recorder_errors(tmp_path, tiny_mlp, probe_xy):
    x, y = probe_xy
    s = tmp_path / "r.zarr"
    with pytest.raises(ProbeInputError, match="forward failed on probe inputs of shape"):
        Recorder(tiny_mlp, layers="0", store=s, probe=torch.randn(5, 3))
    with pytest.raises(ProbeInputError, match="model's floating dtype torch.float32"):
        Recorder(tiny_mlp, layers="0", store=s, probe=x.double())
    with pytest.raises(ProbeInputError, match="meta device"):
        Recorder(tiny_mlp, layers="0", store=s, probe=torch.empty(4, 8, device="meta"))
    with pytest.raises(ProbeInputError, match="targets must have one row per probe input"):
        Recorder(tiny_mlp, layers="0", store=s, probe=(x, y[:-1]))
    with pytest.raises(ProbeInputError, match="n_samples >= 1"):
        Recorder(tiny_mlp, layers="0", store=s, probe=x[:0])
    with pytest.raises(ProbeInputError, match="torch.Tensor or numpy array"):
        Recorder(tiny_mlp, layers="0", store=s, probe=[[0.0] * 8])
    with pytest.raises(ProbeInputError, match="must be x, \\(x, y\\)"):
        Recorder(tiny_mlp, layers="0", store=s, probe=(x, y, None, None))
    with pytest.raises(ProbeInputError, match="sample ids must be unique"):
        Recorder(tiny_mlp, layers="0", store=s, probe=x, sample_id=np.zeros(40, int))
    with pytest.raises(ProbeInputError, match="sample ids must be 40 integers"):
        Recorder(tiny_mlp, layers="0", store=s, probe=x, sample_id=np.arange(3))
    with pytest.raises(ProbeInputError, match="given twice"):
        Recorder(
            tiny_mlp, layers="0", store=s, probe=(x, y, np.arange(40)), sample_id=np.arange(40)
        )
    with pytest.raises(ProbeInputError, match="tensor, numpy array or list"):
        Recorder(tiny_mlp, layers="0", store=s, probe=(x, "labels"))
    with pytest.raises(RecorderConfigError, match="'probe' must be given too"):
        Recorder(tiny_mlp, layers="0", store=s, every=10)
    with pytest.raises(RecorderConfigError, match="'every' must be a positive int"):
        Recorder(tiny_mlp, layers="0", store=s, probe=x, every=0)
    with pytest.raises(RecorderConfigError, match="'dtype' must be 'float32' or 'float16'"):
        Recorder(tiny_mlp, layers="0", store=s, probe=x, dtype="bfloat16")
    with pytest.raises(RecorderConfigError, match="'batch_size' must be a positive int"):
        Recorder(tiny_mlp, layers="0", store=s, probe=x, batch_size=0)
    with pytest.raises(RecorderConfigError, match="must be a torch.nn.Module"):
        Recorder("not a model", layers="0", store=s)
    assert not s.exists()  # nothing touched the disk before validation passed
    rec = Recorder(tiny_mlp, layers="0", store=s)
    with pytest.raises(RecorderConfigError, match="snapshot\\(\\) needs a probe set"):
        rec.snapshot()
    with rec.watch(), pytest.raises(RecorderConfigError, match="cannot be nested"):
        rec.watch().__enter__()
    with (
        pytest.raises(StreamShapeError, match="one entry per batch sample"),
        rec.watch(sample_id=[1, 2]),
    ):
        tiny_mlp(x[:5])
    rec.close()
    rec.close()  # idempotent
    with pytest.raises(RecorderClosedError, match="this Recorder is closed"):
        rec.step()
    assert _no_hooks(tiny_mlp)


def test_stream_shape_errors(tmp_path):
    class Pooled(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 5)
            self.pool = nn.Identity()

        def forward(self, x):
            return self.pool(self.lin(x).sum(0))  # (5,): no batch dimension

    model = Pooled()
    with Recorder(model, layers="pool", store=tmp_path / "r.zarr") as rec:
        with (
            pytest.raises(StreamShapeError, match="'pool' output 'acts' of shape \\(5,\\)"),
            rec.watch(),
        ):
            model(torch.randn(4, 3))

    class Kw(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def forward(self, *, x):
            return self.lin(x)

    kw = Kw()
    with Recorder(kw, layers="lin", store=tmp_path / "k.zarr") as rec:
        with pytest.raises(StreamShapeError, match="first positional argument"), rec.watch():
            kw(x=torch.randn(2, 3))


def test_log_schedule_and_errors():
    assert log_schedule(100, 5) == [0, 1, 3, 10, 32, 100]
    assert log_schedule(1000, 30, include_zero=False)[0] == 1
    with pytest.raises(RecorderConfigError, match="'n_points' must be a positive int"):
        log_schedule(10, 0)


class _Odd(nn.Module):
    """`gated` skips small batches; `pooled` outputs one row per batch, not per sample."""

    def __init__(self):
        super().__init__()
        self.gated = nn.Linear(3, 3)
        self.pooled = nn.Identity()

    def forward(self, x):
        h = self.gated(x) if x.shape[0] >= 4 else x
        self.pooled(h.sum(0, keepdim=True))
        return h


def test_outputs_that_are_not_per_sample_or_skip_batches(tmp_path):
    model = _Odd()
    x = torch.randn(10, 3)
    with (
        pytest.warns(UserWarning, match="fired for 8 of 10 probe samples"),
        Recorder(model, layers=["gated"], store=tmp_path / "r.zarr", probe=x, batch_size=4) as rec,
    ):
        rec.snapshot()
    run = probe.open_run(tmp_path / "r.zarr")
    assert run.keys("gated") == []  # fired for some samples only: not recorded, warned
    # `pooled` has no batch dimension and differs between batches: neither per-sample nor
    # batch-less, so the snapshot stops instead of storing batch sums as samples
    store = tmp_path / "p.zarr"
    rec = Recorder(model, layers="pooled", store=store, probe=x, batch_size=4, final_snapshot=False)
    with pytest.raises(BatchlessOutputError, match="'pooled', output 'acts' of shape \\(1, 3\\)"):
        rec.snapshot()
    rec.close()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_cuda_model_records_and_training_is_unchanged(tmp_path, dtype):
    """CUDA outputs go to pinned host buffers by non-blocking copies; the writer waits on an
    event before reading them, so what lands in the store is the finished forward."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 512), nn.ReLU(), nn.Linear(512, 4)).cuda()
    x = torch.randn(5000, 8)  # probe on the host: sent to the model's device per batch
    with Recorder(
        net,
        layers=["0", "2"],
        store=tmp_path / "r.zarr",
        probe=x,
        every=1,
        batch_size=512,
        dtype=dtype,
    ) as rec:
        for _ in range(3):
            with rec.watch():
                net(x[:10].cuda())
            rec.step()
    run = probe.open_run(tmp_path / "r.zarr")
    tol = 1e-5 if dtype == "float32" else 2e-3
    with torch.no_grad():
        expected = net(x.cuda()).cpu().numpy()
        np.testing.assert_allclose(run.acts("2", -1), expected, rtol=tol, atol=tol)
        h = net[0](x[:10].cuda()).cpu().numpy()
    assert run.stream("0").acts.shape == (30, 512)
    np.testing.assert_allclose(run.stream("0").acts[-10:], h, rtol=tol, atol=tol)


def test_single_process_run_keeps_its_layout(tmp_path, tiny_mlp, probe_xy):
    with Recorder(tiny_mlp, layers="0", store=tmp_path / "r.zarr", probe=probe_xy[0]) as rec:
        assert (rec.ranks_.rank, rec.ranks_.world_size, rec.ranks_.distributed) == (0, 1, False)
        rec.step(loss=1.0)
    attrs = probe.open_run(tmp_path / "r.zarr").attrs
    expected = {"schema", "schema_version", "layers", "n_samples", "dtype", "probe_sha256"}
    assert expected <= set(attrs) and not {"world_size", "rank"} & set(attrs)
    assert attrs["n_committed"] == 1 and attrs["n_metric_records"] == 1
    assert not (tmp_path / "r.zarr" / "ranks").exists()
