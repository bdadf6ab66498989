import json

import numpy as np
import pandas as pd
import pytest
import torch
import zarr
from torch import nn

import probe
from hooks import Recorder
from probe.cli.app import main as cli_main
from probe.errors import ConfigError


@pytest.fixture
def run_path(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3))
    x, y = torch.randn(30, 6), torch.randint(0, 3, (30,))
    path = tmp_path / "run.zarr"
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with Recorder(
        net,
        layers=["0", "2"],
        store=path,
        probe=(x, y, np.arange(100, 130)),
        every=5,
        weights=True,
        config={"lr": 0.1},
        seed=7,
    ) as rec:
        for step in range(12):
            with rec.watch(sample_id=np.arange(8)):
                loss = nn.functional.cross_entropy(net(x[:8]), y[:8])
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.step(epoch=step // 6, loss=loss)
    return path


def test_run_accessors(run_path):
    run = probe.open_run(run_path)
    np.testing.assert_array_equal(run.steps, [0, 5, 10, 12])
    np.testing.assert_array_equal(run.epochs, [0, 0, 1, 1])
    assert run.acts("0", step=5).shape == (30, 12)
    np.testing.assert_array_equal(run.acts("0", step=-1), run.acts("0")[-1])
    np.testing.assert_array_equal(run.acts("0", step=12), run.acts("0", step=-1))
    assert run.weights("2").shape == (4, 3, 12)
    assert run.outputs(step=0).shape == (30, 3)
    np.testing.assert_array_equal(run.sample_ids, np.arange(100, 130))
    assert run.metrics().shape == (12, 3)
    assert run.stream("2").acts.shape == (96, 3)
    assert run.keys("0") == ["acts", "weight"]
    assert "Run(" in repr(run)
    info = run.info()
    assert info["n_snapshots"] == 4 and info["state"] == "closed" and info["config"] == {"lr": 0.1}
    assert info["arrays"]["layers/0/acts"] == (4, 30, 12) and info["seed"] == 7


def test_run_lookup_errors(run_path):
    run = probe.open_run(run_path)
    with pytest.raises(probe.LayerNotInRunError, match=r"No layer '1' in this run; .*\['0', '2'\]"):
        run.acts("1")
    with pytest.raises(KeyError):
        run.acts("1")
    with pytest.raises(
        probe.LayerNotInRunError, match=r"has no array 'acts.0'; recorded: \['acts', 'weight'\]"
    ):
        run.acts("0", key="acts.0")
    with pytest.raises(
        probe.StepNotFoundError,
        match=r"no snapshot at step 6; nearest recorded steps: 5 and 10 \(4 snapshots\)",
    ):
        run.acts("0", step=6)
    with pytest.raises(probe.StepNotFoundError, match="counts back past the first of 4"):
        run.acts("0", step=-5)
    with pytest.raises(probe.StepNotFoundError, match="step must be an int"):
        run.acts("0", step=1.5)
    with pytest.raises(probe.LayerNotInRunError, match="no stream 'acts.1'"):
        run.stream("0", key="acts.1")
    with pytest.raises(probe.LayerNotInRunError, match="the run has no array 'outputs/acts.9'"):
        run.outputs(key="acts.9")


def test_weights_missing(tmp_path):
    path = tmp_path / "r.zarr"
    with Recorder(
        nn.Sequential(nn.Linear(2, 2)), layers="0", store=path, probe=torch.ones(3, 2)
    ) as rec:
        rec.step()
    with pytest.raises(probe.LayerNotInRunError, match="weights=True"):
        probe.open_run(path).weights("0")
    with pytest.raises(probe.LayerNotInRunError, match="agop=True"):
        probe.open_run(path).agop("0")
    assert probe.open_run(path).targets is None


def test_agop_reader(tmp_path):
    from hooks.agop import agop

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(6, 3)
    path = tmp_path / "r.zarr"
    with Recorder(net, layers=["0", "2"], store=path, probe=x, every=1, agop=True) as rec:
        rec.step()
    run = probe.open_run(path)
    assert run.agop("0").shape == (2, 3, 3) and run.agop("2", step=1).shape == (4, 4)
    np.testing.assert_allclose(run.agop("0", step=-1), agop(net, x, ["0"])["0"].numpy(), rtol=1e-5)


def test_open_run_errors(tmp_path, run_path):
    with pytest.raises(probe.RunNotFoundError, match="does not exist"):
        probe.open_run(tmp_path / "missing.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(probe.NotARunError, match="no zarr.json"):
        probe.open_run(tmp_path / "plain")
    zarr.open_group(str(tmp_path / "z.zarr"), mode="w")
    with pytest.raises(probe.NotARunError, match="is a zarr store but not a probe run"):
        probe.open_run(tmp_path / "z.zarr")
    meta = run_path / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["schema_version"] = 2
    meta.write_text(json.dumps(doc))
    with pytest.raises(probe.SchemaVersionError, match="schema_version must be 1; got 2"):
        probe.open_run(run_path)
    doc["attributes"]["schema_version"] = 1
    doc["attributes"]["n_committed"] = -1
    meta.write_text(json.dumps(doc))
    with pytest.raises(probe.CorruptRunError, match="n_committed must be a non-negative int"):
        probe.open_run(run_path)
    doc["attributes"]["n_committed"] = 50
    meta.write_text(json.dumps(doc))
    with pytest.raises(probe.CorruptRunError, match="counters .* do not match their digest"):
        probe.open_run(run_path)
    del doc["attributes"]["commit_digest"]  # as a run written before the digest
    meta.write_text(json.dumps(doc))
    with pytest.raises(probe.CorruptRunError, match="has 4 rows but 50 are committed"):
        probe.open_run(run_path)
    meta.write_text("{")
    with pytest.raises(probe.CorruptRunError, match="cannot be parsed"):
        probe.open_run(run_path)


def test_corrupted_array_metadata(run_path):
    (run_path / "layers" / "0" / "acts" / "zarr.json").write_text("garbage")
    run = probe.open_run(run_path)
    with pytest.raises(probe.CorruptRunError, match="array 'layers/0/acts' .* cannot be opened"):
        run.acts("0")


def test_reader_sees_only_committed_and_refreshes(tmp_path):
    net = nn.Sequential(nn.Linear(2, 2))
    rec = Recorder(net, layers="0", store=tmp_path / "r.zarr", probe=torch.ones(3, 2), every=1)
    rec.flush()
    run = probe.open_run(tmp_path / "r.zarr")
    assert run.n_snapshots == 1 and run.info()["state"] == "live or interrupted"
    rec.step()
    rec.flush()
    assert run.acts("0").shape[0] == 1  # trimmed to what was committed when opened
    assert run.refresh().acts("0").shape[0] == 2
    rec.close()


def test_to_xarray_and_open_zarr_named_dims(run_path):
    xr = pytest.importorskip("xarray")
    pytest.importorskip("dask")
    ds = probe.open_run(run_path).to_xarray()
    acts = ds["layers/0/acts"]
    assert acts.dims == ("snapshot", "sample", "layers.0.acts_f0")
    np.testing.assert_array_equal(ds["snapshot"], [0, 5, 10, 12])
    np.testing.assert_array_equal(ds["sample"], np.arange(100, 130))
    np.testing.assert_array_equal(
        acts.sel(snapshot=5).values, probe.open_run(run_path).acts("0", 5)
    )
    assert ds["metrics/loss"].dims == ("record",) and ds["stream/0/acts"].sizes["row"] == 96
    # Plain xarray, no toolkit: each group opens with named dims.
    raw = xr.open_zarr(run_path, group="layers/0", consolidated=False)
    assert raw["acts"].dims == ("snapshot", "sample", "layers.0.acts_f0")
    assert raw["weight"].dims == ("snapshot", "layers.0.weight_f0", "layers.0.weight_f1")
    np.testing.assert_array_equal(raw["acts"].values, probe.open_run(run_path).acts("0"))


def test_cli_info(run_path, capsys):
    assert cli_main(["info", str(run_path)]) == 0
    out = capsys.readouterr().out
    assert "snapshots    4 at steps [0, 5, 10, 12]" in out and "layers/0/acts" in out
    assert cli_main(["info", str(run_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_snapshots"] == 4
    assert cli_main(["info", str(run_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_help_on_every_verb(capsys):
    for argv in (
        ["--help"],
        ["info", "--help"],
        ["run", "--help"],
        ["run", "mnist", "--help"],
        ["run", "finetune-speed", "--help"],
        ["demo", "--help"],
    ):
        with pytest.raises(SystemExit) as exc:
            cli_main(argv)
        assert exc.value.code == 0
        assert "usage: probe" in capsys.readouterr().out


def test_to_xarray_without_xarray_names_the_install(run_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "xarray", None)
    with pytest.raises(ImportError, match=r"needs xarray: .*pip install 'repgeom-probe\[xarray\]'"):
        probe.open_run(run_path).to_xarray()


def test_world_size_attr_and_rank_accessors_of_a_single_process_run(run_path):
    run = probe.open_run(run_path)
    assert run.world_size == 1 and run.rank(0) is run and run.info()["world_size"] == 1
    np.testing.assert_array_equal(run.stream("0").rank, np.zeros(96, np.int64))
    assert list(run.metrics(all_ranks=True).columns[:3]) == ["step", "epoch", "rank"]
    with pytest.raises(probe.RunNotFoundError, match="holds only rank 0's records; got rank 1"):
        run.rank(1)
    meta = run_path / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["world_size"] = 0
    meta.write_text(json.dumps(doc))
    with pytest.raises(probe.CorruptRunError, match="world_size must be a positive int; got 0"):
        probe.open_run(run_path)


def test_cli_info_of_a_multi_process_run(tmp_path, capsys):
    store = tmp_path / "r.zarr"
    x = torch.randn(5, 2)
    for rank in (0, 1):
        net = nn.Sequential(nn.Linear(2, 3))
        with Recorder(net, layers="0", store=store, probe=x, rank=rank, world_size=2) as rec:
            rec.step(loss=1.0)
    assert cli_main(["info", str(store), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["world_size"] == 2 and info["arrays"]["layers/0/acts"] == [1, 5, 3]
    assert cli_main(["info", str(store)]) == 0
    assert "layers/0/acts" in capsys.readouterr().out


def test_metrics_from_a_record_on_are_the_rest_of_the_table(run_path):
    run = probe.open_run(run_path)
    whole = run.metrics()
    for start in (0, 5, 12, 20):
        rest = run.metrics(start=start)
        pd.testing.assert_frame_equal(rest, whole.iloc[start:].reset_index(drop=True))
    with pytest.raises(ConfigError, match="start must be an int >= 0"):
        run.metrics(start=-1)
    with pytest.raises(ConfigError, match="cannot be combined with all_ranks=True"):
        run.metrics(start=3, all_ranks=True)
