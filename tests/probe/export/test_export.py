import argparse
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

import probe
from hooks import Recorder
from probe.analysis.embed import embed
from probe.cli.export import add_parser
from probe.errors import ConfigError, LayerNotInRunError, StepNotFoundError
from probe.export.formats import export_run
from probe.export.frames import (
    embed_run,
    probe_labels,
    save_acts,
    select_arrays,
    select_steps,
    write_table,
)


@pytest.fixture(scope="module")
def run_path(tmp_path_factory):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3))
    x, y = torch.randn(30, 6), torch.randint(0, 3, (30,))
    path = tmp_path_factory.mktemp("export") / "run.zarr"
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with Recorder(
        net, layers=["0", "2"], store=path, probe=(x, y, np.arange(100, 130)), every=5
    ) as rec:
        for _ in range(12):
            loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.step(loss=loss)
    return path


def cli(argv):
    parser = argparse.ArgumentParser(prog="probe")
    add_parser(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_embed_run_stacks_layers_in_one_table(run_path):
    run = probe.open_run(run_path)
    table, records = embed_run(run, steps=[0, -1], method="pca", fit="per_step")
    assert table.columns.tolist() == [
        *("run", "step", "layer", "sample_id", "label", "method", "x", "y")
    ]
    assert len(table) == 2 * 2 * 30 and set(table.run) == {str(run.path)}
    assert [r.layer for r in records] == ["0", "2"] and records[0].steps == (0, 12)
    one = table[(table.layer == "2") & (table.step == 12)]
    np.testing.assert_array_equal(one.sample_id, np.arange(100, 130))
    np.testing.assert_array_equal(one.label, run.targets)
    # the same numbers as embedding the arrays directly
    direct, _ = embed(run.acts("2")[[0, -1]], [0, 12], method="pca", fit="per_step")
    np.testing.assert_allclose(table.loc[table.layer == "2", ["x", "y"]], direct[["x", "y"]])
    named, _ = embed_run(run_path, ["0"], [5], run_name="A")
    assert set(named.run) == {"A"} and set(named.step) == {5}


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_table_round_trips_through_its_reader(run_path, tmp_path, fmt):
    table, records = embed_run(run_path, steps=[0, 5, 12], method="mds", n_components=3)
    written = write_table(table, tmp_path / f"sub/emb.{fmt}", embeddings=records)
    assert written == [tmp_path / f"sub/emb.{fmt}", tmp_path / "sub/emb.json"]
    if fmt == "parquet":
        back = pd.read_parquet(written[0])
        assert pq.read_table(written[0]).schema.names == table.columns.tolist()
    else:
        back = pd.read_csv(written[0], dtype={"run": str, "layer": str})
    pd.testing.assert_frame_equal(back, table)  # floats exactly, dtypes included
    docs = json.loads(written[1].read_text())
    assert docs == [r.to_dict() for r in records]
    assert docs[1]["layer"] == "2" and docs[1]["seed"] == 0 and docs[1]["settings"]["n_init"] == 1


def test_npz_round_trip(run_path, tmp_path):
    run = probe.open_run(run_path)
    path = save_acts(run, tmp_path / "acts", layers=["2", "0", "2"], steps=[-1, 5])
    assert path == tmp_path / "acts.npz"
    with np.load(path) as f:
        assert sorted(f.files) == ["acts/0", "acts/2", "sample_id", "steps", "targets"]
        np.testing.assert_array_equal(f["steps"], [5, 12])
        np.testing.assert_array_equal(f["acts/0"], run.acts("0")[[1, 3]])
        np.testing.assert_array_equal(f["acts/2"][1], run.acts("2", step=12))
        np.testing.assert_array_equal(f["sample_id"], run.sample_ids)
        np.testing.assert_array_equal(f["targets"], run.targets)
        assert f["acts/0"].dtype == np.float32


def test_export_run_names_files_by_tag_and_method(run_path, tmp_path):
    a = export_run(run_path, tmp_path, fmt="csv", layers=["0"], settings={"svd_solver": "full"})
    assert a == [tmp_path / "run_pca.csv", tmp_path / "run_pca.json"]
    b = export_run(run_path, tmp_path, fmt="npz", tag="r1")
    assert b == [tmp_path / "r1_acts.npz"]
    c = export_run(
        run_path, tmp_path, fmt="parquet", method="tsne", steps=[0], settings={"method": "exact"}
    )
    assert c[0].name == "run_tsne.parquet" and len(pd.read_parquet(c[0])) == 60


def test_cli_export(run_path, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["export", str(run_path), "--format", "csv", "--layers", "2", "--steps", "0", "-1"]
    assert (
        cli([*argv, "--fit", "per_step", "--seed", "3", "--set", "tol=0.0", "--out", str(out)]) == 0
    )
    assert capsys.readouterr().out.split() == [str(out / "run_pca.csv"), str(out / "run_pca.json")]
    table = pd.read_csv(out / "run_pca.csv", dtype={"run": str, "layer": str})
    assert set(table.step) == {0, 12} and set(table.layer) == {"2"}
    record = json.loads((out / "run_pca.json").read_text())[0]
    assert record["seed"] == 3 and record["fit"] == "per_step"
    assert record["settings"] == {"svd_solver": "full", "tol": 0.0}
    assert cli(["export", str(run_path), "--format", "npz", "--out", str(out)]) == 0
    assert (out / "run_acts.npz").is_file()
    with pytest.raises(ConfigError, match="--set must be KEY=VALUE"):
        cli([*argv, "--set", "tol"])
    with pytest.raises(ConfigError, match="--image-shape must be comma-separated ints"):
        cli([*argv, "--image-shape", "28x28"])


def test_selection_and_export_errors(run_path, tmp_path):
    run = probe.open_run(run_path)
    np.testing.assert_array_equal(select_steps(run, [12, 0, -1]), [0, 12])
    assert select_arrays(run, ["2", "2"]) == ["2"] and probe_labels(run).shape == (30,)
    with pytest.raises(ConfigError, match="layers must name at least one recorded layer"):
        select_arrays(run, [])
    with pytest.raises(LayerNotInRunError, match="No layer '1' in this run"):
        select_arrays(run, ["1"])
    with pytest.raises(StepNotFoundError, match="no snapshot at step 6"):
        select_steps(run, [6])
    with pytest.raises(ConfigError, match=r"fmt must be one of \['parquet', 'csv', 'npz'"):
        export_run(run, tmp_path, fmt="xlsx")
    with pytest.raises(
        ConfigError, match=r"npz holds raw activations; \['method', 'seed'\] apply only to parquet"
    ):
        export_run(run, tmp_path, fmt="npz", method="pca", seed=1)
    with pytest.raises(ConfigError, match="image_shape is for the tensorboard sprite"):
        export_run(run, tmp_path, fmt="csv", image_shape=(2, 3))
    with pytest.raises(ConfigError, match=r"tag must be a plain file-name prefix .*got '\.\.'"):
        export_run(run, tmp_path, tag="..")
    with pytest.raises(ConfigError, match="table path must end in .parquet or .csv"):
        write_table(pd.DataFrame(), tmp_path / "t.xlsx")


def test_run_without_snapshots(tmp_path):
    path = tmp_path / "empty.zarr"
    net = nn.Sequential(nn.Linear(2, 2))
    with Recorder(net, layers="0", store=path, probe=torch.ones(6, 2), final_snapshot=False):
        pass
    with pytest.raises(StepNotFoundError, match="has no committed snapshot to embed or export"):
        export_run(path, tmp_path, fmt="npz")
