"""Damaged stores: every read returns what was committed or raises; `probe verify` lists damage."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import probe
from hooks import Recorder
from hooks.errors import ResumeMismatchError, StoreCorruptError, WriterError
from probe.cli import main
from probe.errors import CorruptRunError, LayerNotInRunError, ProbeError
from probe.store.verify import verify_run


def _record(path: Path, *, weights: bool = False, steps: int = 5) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 8, generator=g), torch.randint(0, 4, (40,), generator=g)
    with Recorder(
        model, layers=["0", "2"], store=path, probe=(x, y), every=1, weights=weights
    ) as rec:
        for i in range(steps):
            with rec.watch(sample_id=np.arange(8)):
                model(x[:8])
            rec.step(loss=float(i))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    path = tmp_path_factory.mktemp("pristine") / "run.zarr"
    _record(path)
    return path


@pytest.fixture
def run_copy(pristine, tmp_path):
    path = tmp_path / "run.zarr"
    shutil.copytree(pristine, path)
    return path


def _flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset % len(raw)] ^= 0x10
    path.write_bytes(bytes(raw))


def _edit_json(path: Path, edit) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def test_an_intact_run_verifies(pristine, capsys):
    report = verify_run(pristine)
    assert report.ok and report.n_arrays == 16 and report.n_chunks >= 16, report
    assert main(["verify", str(pristine), "--quiet"]) == 0
    assert "intact" in capsys.readouterr().out
    assert main(["info", str(pristine)]) == 0
    assert f"`probe verify {pristine}` reads and checks every chunk" in capsys.readouterr().out


CASES = {
    "deleted acts chunk": (
        lambda p: (p / "layers/0/acts/c.0.0.0").unlink(),
        lambda run: run.acts("0", -1),
        r"chunk 'layers/0/acts/c\.0\.0\.0' of array 'layers/0/acts' .* is missing",
    ),
    "deleted step chunk": (
        lambda p: (p / "snapshots/step/c.0").unlink(),
        lambda run: run.steps,
        r"chunk 'snapshots/step/c\.0' of array 'snapshots/step' .* is missing",
    ),
    "deleted targets chunk": (
        lambda p: (p / "probe/targets/c.0").unlink(),
        lambda run: run.targets,
        r"chunk 'probe/targets/c\.0' of array 'probe/targets' .* is missing",
    ),
    "flipped byte": (
        lambda p: _flip(p / "layers/2/acts/c.0.0.0", 100),
        lambda run: run.acts("2", 0),
        r"'layers/2/acts' .* does not match its crc32c checksum",
    ),
    "dtype edit": (
        lambda p: _edit_json(
            p / "layers/2/acts/zarr.json", lambda d: d.update(data_type="float16")
        ),
        lambda run: run.acts("2", 0),
        r"metadata of array 'layers/2/acts' .* differs from what the writer created",
    ),
    "endianness edit": (
        lambda p: _edit_json(
            p / "layers/0/acts/zarr.json",
            lambda d: d["codecs"][0]["configuration"].update(endian="big"),
        ),
        lambda run: run.acts("0", 0),
        r"metadata of array 'layers/0/acts' .* differs from what the writer created",
    ),
    "lowered n_committed": (
        lambda p: _edit_json(p / "zarr.json", lambda d: d["attributes"].update(n_committed=3)),
        lambda run: run.steps,
        r"commit counters .* do not match their digest",
    ),
    "removed layer folder": (
        lambda p: shutil.rmtree(p / "layers/2"),
        lambda run: run.to_xarray(),
        r"lacks arrays its writer created: \['layers/2/acts'\]",
    ),
    "truncated metrics chunk": (
        lambda p: (p / "metrics/loss/c.0").write_bytes(b"\x00" * 7),
        lambda run: run.metrics(),
        r"'metrics/loss' .* does not match its crc32c checksum",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_damage_raises_on_read_and_is_listed_by_verify(run_copy, case, capsys):
    damage, read, match = CASES[case]
    damage(run_copy)
    with pytest.raises(CorruptRunError, match=match):
        read(probe.open_run(run_copy))
    report = verify_run(run_copy)
    assert not report.ok, case
    assert main(["verify", str(run_copy), "--quiet"]) == 1
    assert "problem" in capsys.readouterr().out


def test_resume_refuses_counters_that_contradict_the_data(run_copy):
    _edit_json(run_copy / "zarr.json", lambda d: d["attributes"].update(n_committed=2))
    with pytest.raises(StoreCorruptError, match="do not match their digest"):
        _record_resume(run_copy)
    assert verify_run(run_copy).problems  # nothing was trimmed: the damage is still visible


def test_resume_refuses_to_add_weights(tmp_path):
    path = tmp_path / "r.zarr"
    _record(path)
    with pytest.raises(ResumeMismatchError, match="needs the run's weights to match"):
        _record_resume(path, weights=True)


def _record_resume(path, **kw):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 8, generator=g), torch.randint(0, 4, (40,), generator=g)
    return Recorder(model, layers=["0", "2"], store=path, probe=(x, y), resume=True, **kw)


class Sometimes(nn.Module):
    """Runs its second layer only while ``on`` is set."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)
        self.on = False

    def forward(self, x):
        return self.b(self.a(x)) if self.on else self.a(x)


def test_rows_a_layer_did_not_fire_are_marked_and_refused(tmp_path):
    model, path = Sometimes(), tmp_path / "r.zarr"
    with Recorder(model, layers=["a", "b"], store=path, probe=torch.randn(10, 4), every=1) as rec:
        rec.step(loss=1.0)  # step 1: b did not run (its array does not exist yet)
        model.on = True
        rec.step(loss=0.5)  # step 2: b runs; its array starts with two absent rows
        model.on = False
        rec.step(loss=0.2, acc=0.9)  # step 3: b did not run; acc is logged from here on
    run = probe.open_run(path)
    # a metric logged late is NaN before (the metrics table's convention), not "absent"
    assert run.info()["absent_rows"] == {"layers/b/acts": [[0, 2], [3, 4]]}
    np.testing.assert_array_equal(run.metrics()["acc"], [np.nan, np.nan, 0.9])
    assert np.isfinite(run.acts("b", 2)).all()
    for step in (0, 1, 3):
        with pytest.raises(LayerNotInRunError, match=f"not recorded at step {step}"):
            run.acts("b", step)
    assert verify_run(path).ok


def test_metrics_commit_with_their_snapshot(tmp_path):
    """A crash right after a snapshot commit never leaves it without its learning curve."""
    from hooks._appender import RunAppender
    from hooks.writer import MetricRecord, Snapshot

    path = str(tmp_path / "g.zarr")
    root = zarr.open_group(path, mode="w")
    root.attrs.update({"n_committed": 0})
    app = RunAppender(root, metrics_interval_s=1e9)  # metrics would otherwise wait
    app.add_metrics([MetricRecord(1, 0, {"loss": 1.0}), MetricRecord(2, 0, {"loss": 0.5})])
    app.write_metrics_if_due()
    assert zarr.open_group(path, mode="r").attrs.get("n_metric_records", 0) == 0  # buffered
    acts = {"layers/x/acts": np.ones((3, 2), np.float32)}
    app.write_snapshots([Snapshot(2, 0, 0.0, acts, {"layers/x/acts": ("sample", "f")})])
    attrs = zarr.open_group(path, mode="r").attrs
    assert (attrs["n_committed"], attrs["last_step"], attrs["n_metric_records"]) == (1, 2, 2)


def _reads(path: Path) -> dict:
    run = probe.open_run(path)
    out = {"steps": run.steps, "targets": run.targets, "ids": run.sample_ids}
    for layer in run.layers:
        out[f"acts {layer}"] = run.acts(layer)
    out["outputs"] = run.outputs()
    out["metrics"] = run.metrics().to_numpy()
    out["stream"] = run.stream("0").acts
    ds = run.to_xarray().load()
    for name in ds.data_vars:
        out[f"xr {name}"] = ds[name].to_numpy()
    return out


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    pick=st.integers(0, 10**6),
    offset=st.integers(0, 10**6),
    how=st.sampled_from(["flip", "truncate", "delete", "append", "zero"]),
)
def test_random_damage_never_reads_back_wrong(pristine, tmp_path_factory, pick, offset, how):
    """Damage one random file; each read equals the pristine value exactly or raises typed."""
    expected = _reads(pristine)
    path = tmp_path_factory.mktemp("fuzz") / "run.zarr"
    shutil.copytree(pristine, path)
    files = sorted(p for p in path.rglob("*") if p.is_file())
    target = files[pick % len(files)]
    raw = target.read_bytes()
    if how == "flip":
        _flip(target, offset)
    elif how == "truncate":
        target.write_bytes(raw[: offset % max(1, len(raw))])
    elif how == "delete":
        target.unlink()
    elif how == "append":
        target.write_bytes(raw + b"\x00\x01")
    else:
        target.write_bytes(b"\x00" * len(raw))
    try:
        got = _reads(path)
    except ProbeError:
        return  # typed: fine
    except (ValueError, KeyError, OSError) as err:
        pytest.fail(f"{how} {target.relative_to(path)}: untyped {type(err).__name__}: {err}")
    for key, want in expected.items():
        np.testing.assert_array_equal(
            got[key], want, err_msg=f"{how} of {target.relative_to(path)}: {key} read back wrong"
        )


def test_an_array_created_but_never_committed_is_redone_on_resume(tmp_path, monkeypatch):
    """A crash between a new layer's first rows and their commit: resume must not keep them."""
    import hooks._appender as appender

    model, path, x = Sometimes(), tmp_path / "r.zarr", torch.randn(10, 4)
    real = appender.update_attributes

    def crash_on_second_snapshot(group, updates):
        if updates.get("n_committed") == 2:
            msg = "killed (simulated)"
            raise OSError(msg)
        real(group, updates)

    monkeypatch.setattr(appender, "update_attributes", crash_on_second_snapshot)
    rec = Recorder(model, layers=["a", "b"], store=path, probe=x, every=1)  # snapshot 0: a only
    rec.flush()  # snapshot 0 commits alone: the writer may otherwise commit it with snapshot 1
    model.on = True
    rec.step()  # snapshot 1 creates layers/b/acts (one fill row + data), then the commit fails
    with pytest.raises(WriterError, match="killed"):
        rec.close()
    monkeypatch.undo()
    assert (path / "layers/b/acts").is_dir()  # on disk, but not in the manifest
    model.on = False
    with Recorder(model, layers=["a", "b"], store=path, probe=x, every=1, resume=True) as rec:
        rec.step()  # b does not run
    run = probe.open_run(path)
    assert run.n_snapshots == 2 and "layers/b/acts" not in run.info()["arrays"]
    with pytest.raises(LayerNotInRunError, match="layer 'b' has no array 'acts'"):
        run.acts("b", 0)
    assert verify_run(path).ok


def test_a_run_written_before_manifests_keeps_listing_its_arrays_after_resume(tmp_path):
    path = tmp_path / "r.zarr"
    _record(path, steps=2)
    root = zarr.open_group(str(path), mode="r+")
    for key in ("arrays", "commit_digest"):  # as the toolkit before 0.2 wrote it
        del root.attrs[key]
    with _record_resume(path) as rec:
        rec.step(loss=1.0)
    run = probe.open_run(path)
    assert "arrays" not in run.attrs  # no partial manifest that would hide the old arrays
    assert {"layers/0/acts", "layers/2/acts", "snapshots/step"} <= set(run.info()["arrays"])
    assert run.acts("0").shape[0] == run.n_snapshots == 4
