import io
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from google.protobuf import text_format
from PIL import Image
from tensorboard.plugins.projector import projector_config_pb2
from torch import nn
from werkzeug.test import Client

import probe
import probe.export.projector as projector_mod
from hooks import Recorder
from probe.errors import ConfigError, InvalidArrayError, ProjectorConfigError, ShapeMismatchError
from probe.export.formats import export_run
from probe.export.projector import CONFIG_NAME, export_projector, make_sprite, write_projector

N = 25  # probe images of 8x8 pixels: a 5x5 sprite of 40x40 px


@pytest.fixture(scope="module")
def run_path(tmp_path_factory):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))
    x, y = torch.rand(N, 1, 8, 8), torch.randint(0, 3, (N,))
    path = tmp_path_factory.mktemp("projector") / "digits.zarr"
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with Recorder(net, layers=["1", "3"], store=path, probe=(x, y), every=3) as rec:
        for _ in range(6):
            loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.step(loss=loss)
    return path


def read_config(logdir):
    config = projector_config_pb2.ProjectorConfig()
    text_format.Parse((logdir / CONFIG_NAME).read_text(), config)
    return config


class NoRuns:
    """The data provider of a log directory with no event files."""

    def list_runs(self, ctx, experiment_id):
        return []


def tensorboard_plugin(logdir):
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.projector.projector_plugin import ProjectorPlugin

    return ProjectorPlugin(base_plugin.TBContext(logdir=str(logdir), data_provider=NoRuns()))


def test_two_exports_to_one_folder_are_all_listed(run_path, tmp_path):
    run = probe.open_run(run_path)
    first = export_projector(run, tmp_path, layers=["1"], steps=[0, 3])
    second = export_run(run, tmp_path, fmt="tensorboard", layers=["3"], steps=[-1], method="pca")
    export_projector(run, tmp_path, layers=["1"], steps=[0])  # re-export replaces, no duplicate
    names = [e.tensor_name for e in read_config(tmp_path).embeddings]
    assert names == ["digits/1/step_3", "digits/3/step_6/pca", "digits/1/step_0"]
    assert first[-1] == second[-1] == tmp_path / CONFIG_NAME
    assert (tmp_path / "digits/3/pca.json").is_file()
    for e in read_config(tmp_path).embeddings:
        tensor = np.loadtxt(tmp_path / e.tensor_path, delimiter="\t", ndmin=2)
        meta = pd.read_csv(tmp_path / e.metadata_path, sep="\t")
        assert tensor.shape == tuple(e.tensor_shape) and len(meta) == tensor.shape[0] == N
        assert meta.columns.tolist() == ["sample_id", "label"]
        np.testing.assert_array_equal(meta.label, run.targets)
        assert (tmp_path / e.sprite.image_path).is_file()
        assert list(e.sprite.single_image_dim) == [8, 8]
    step3 = np.loadtxt(tmp_path / "digits/1/step_3/tensors.tsv", delimiter="\t", dtype=np.float32)
    np.testing.assert_array_equal(step3, run.acts("1", step=3))  # float32 kept exactly


def test_tensorboard_plugin_serves_every_entry(run_path, tmp_path):
    run = probe.open_run(run_path)
    export_projector(run, tmp_path, steps=[0, 6])
    export_projector(run, tmp_path, layers=["1"], method="mds")
    plugin = tensorboard_plugin(tmp_path)
    config = Client(plugin._serve_config).get("/?run=.").get_json()
    names = [e["tensorName"] for e in config["embeddings"]]
    assert names == [
        *("digits/1/step_0", "digits/1/step_6", "digits/3/step_0", "digits/3/step_6"),
        *("digits/1/step_0/mds", "digits/1/step_3/mds", "digits/1/step_6/mds"),
    ]
    for entry in config["embeddings"]:
        query = f"/?run=.&name={entry['tensorName']}"
        shape = [int(s) for s in entry["tensorShape"]]
        got = Client(plugin._serve_tensor).get(query)
        assert got.status_code == 200
        tensor = np.frombuffer(got.data, dtype=np.float32).reshape(shape)
        meta = Client(plugin._serve_metadata).get(query)
        assert meta.status_code == 200
        assert len(meta.get_data(as_text=True).splitlines()) == shape[0] + 1  # header row
        layer, step = entry["tensorName"].split("/")[1:3]
        if not entry["tensorName"].endswith("mds"):
            np.testing.assert_array_equal(tensor, run.acts(layer, step=int(step[5:])))
        else:
            assert shape == [N, 2]
    sprite = Client(plugin._serve_sprite_image).get("/?run=.&name=digits/3/step_6")
    assert sprite.status_code == 200 and sprite.mimetype == "image/png"
    image = np.asarray(Image.open(io.BytesIO(sprite.data)))
    np.testing.assert_array_equal(image, make_sprite(run.probe_inputs)[0])


def test_make_sprite_layout():
    images = np.arange(5 * 2 * 3, dtype=float).reshape(5, 2, 3)  # 5 images of 2x3: 3x3 grid
    sprite, dim = make_sprite(images)
    assert sprite.shape == (6, 9) and dim == (2, 3) and sprite.dtype == np.uint8
    scaled = np.round(images / images.max() * 255)
    np.testing.assert_array_equal(sprite[0:2, 3:6], scaled[1])  # row 0, column 1
    np.testing.assert_array_equal(sprite[2:4, 3:6], scaled[4])  # row 1, column 1
    np.testing.assert_array_equal(sprite[4:6], 0)  # unused cells stay black
    rgb = np.random.default_rng(0).random((4, 3, 5, 5))
    nchw, _ = make_sprite(rgb)
    nhwc, _ = make_sprite(rgb.transpose(0, 2, 3, 1))
    assert nchw.shape == (10, 10, 3) and np.array_equal(nchw, nhwc)
    flat, dim = make_sprite(images.reshape(5, 6), image_shape=(2, 3))
    assert np.array_equal(flat, sprite) and dim == (2, 3)
    assert make_sprite(np.ones((2, 3, 3)))[0].max() == 0  # constant images: black
    with pytest.raises(ShapeMismatchError, match=r"image_shape must hold the 6 features"):
        make_sprite(images.reshape(5, 6), image_shape=(28, 28))
    with pytest.raises(InvalidArrayError, match=r"Pass image_shape=\(h, w\) for flat rows"):
        make_sprite(images.reshape(5, 6))


def test_flat_inputs_get_a_sprite_with_image_shape(tmp_path):
    path = tmp_path / "flat.zarr"
    net = nn.Sequential(nn.Linear(16, 4))
    with Recorder(net, layers="0", store=path, probe=torch.rand(6, 16)) as rec:
        rec.snapshot()
    export_projector(path, tmp_path / "a")
    assert not read_config(tmp_path / "a").embeddings[0].sprite.image_path  # not images
    export_projector(path, tmp_path / "b", image_shape=(4, 4))
    entry = read_config(tmp_path / "b").embeddings[0]
    assert list(entry.sprite.single_image_dim) == [4, 4]
    assert pd.read_csv(tmp_path / "b" / entry.metadata_path, sep="\t").label.isna().all()
    # flat digits recorded by probe's experiments: the run's config names the dataset
    digits = tmp_path / "digits.zarr"
    net = nn.Sequential(nn.Linear(64, 4))
    x = torch.rand(6, 64)
    with Recorder(net, layers="0", store=digits, probe=x, config={"dataset": "digits"}) as rec:
        rec.snapshot()
    export_projector(digits, tmp_path / "c")
    entry = read_config(tmp_path / "c").embeddings[0]
    assert list(entry.sprite.single_image_dim) == [8, 8]
    sprite = np.asarray(Image.open(tmp_path / "c" / entry.sprite.image_path))
    np.testing.assert_array_equal(sprite, make_sprite(x.numpy(), (8, 8))[0])


def test_oversized_sprite_is_skipped_with_a_warning(run_path, tmp_path, monkeypatch):
    monkeypatch.setattr(projector_mod, "MAX_SPRITE_PX", 32)
    with pytest.warns(UserWarning, match=r"would be 40x40 px, over the projector's 32 px limit"):
        export_projector(run_path, tmp_path, layers=["3"], steps=[0])
    assert not read_config(tmp_path).embeddings[0].sprite.image_path


def test_projector_errors(run_path, tmp_path, monkeypatch):
    meta = pd.DataFrame({"sample_id": np.arange(3), "label": 0})
    with pytest.raises(ConfigError, match=r"tensor name parts must be non-empty.*'a/\.\./b'"):
        write_projector(tmp_path, {"a/../b": np.zeros((3, 2))}, meta)
    with pytest.raises(ConfigError, match="metadata must have at least 2 columns"):
        write_projector(tmp_path, {"a": np.zeros((3, 2))}, meta[["label"]])
    with pytest.raises(ShapeMismatchError, match=r"tensor 'a' must have 3 rows like metadata"):
        write_projector(tmp_path, {"a": np.zeros((4, 2))}, meta)
    with pytest.raises(ConfigError, match=r"embedding options \['seed'\] need a method"):
        export_projector(run_path, tmp_path, seed=1)
    (tmp_path / CONFIG_NAME).write_text("embeddings { tensor_name: ")
    with pytest.raises(ProjectorConfigError, match="is not a projector config"):
        write_projector(tmp_path, {"a": np.zeros((3, 2))}, meta)
    monkeypatch.setitem(sys.modules, "tensorboard.plugins.projector", None)
    with pytest.raises(ImportError, match="the projector export needs tensorboard"):
        write_projector(tmp_path / "new", {"a": np.zeros((3, 2))}, meta)
