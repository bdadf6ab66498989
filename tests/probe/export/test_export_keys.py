"""Issue 20: exports and reports cover every recorded array (keyed outputs, inputs) and skip
batch-less ones with a one-line notice."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import probe
from hooks import Recorder
from probe.cli import main
from probe.errors import ConfigError, InvalidArrayError, LayerNotInRunError
from probe.export.formats import export_run
from probe.export.frames import embed_run, select_arrays
from probe.report.page import build_report


class TupleOut(nn.Module):
    def forward(self, h):
        return h * 2.0, h - 1.0


class DictOut(nn.Module):
    def forward(self, h):
        return {"h": torch.tanh(h), "none": None, "n": 3}


class Keyed(nn.Module):
    """A tensor, a tuple, a dict and a batch-less position table (as a transformer's wpe)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(8, 16)
        self.split = TupleOut()
        self.heads = DictOut()
        self.pos = nn.Embedding(4, 16)
        self.out = nn.Linear(16, 2)  # 2 features: too few for a 3-d embedding

    def forward(self, x):
        a, b = self.split(self.enc(x))
        table = self.pos(torch.arange(4))  # (4, 16): the same for every sample
        return self.out(self.heads(a + b)["h"] + table.mean(0))


ALL = ["enc", "split:acts.0", "split:acts.1", "heads:acts.h", "out"]
BATCHLESS = "skipped 'pos': a batch-less array"


@pytest.fixture(scope="module")
def run_path(tmp_path_factory):
    torch.manual_seed(0)
    net = Keyed()
    x, y = torch.randn(24, 8), torch.arange(24) % 2
    path = tmp_path_factory.mktemp("keys") / "run.zarr"
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with Recorder(
        net, layers=["enc", "split", "heads", "pos", "out"], store=path, probe=(x, y), every=2
    ) as rec:
        for _ in range(5):
            loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.step(loss=loss)
    return path


def test_default_selection_is_every_per_sample_array(run_path):
    run = probe.open_run(run_path)
    with pytest.warns(UserWarning, match=BATCHLESS):
        assert select_arrays(run) == ALL
    assert "sample" not in run.dims("pos") and run.dims("split:acts.0")[:2] == (
        "snapshot",
        "sample",
    )
    assert select_arrays(run, ["split:acts.1", "enc"]) == ["split:acts.1", "enc"]
    with pytest.warns(UserWarning, match=BATCHLESS):
        assert select_arrays(run, ["split", "pos"]) == ["split:acts.0", "split:acts.1"]
    assert select_arrays(run, ["split"], key="acts.1") == ["split:acts.1"]
    np.testing.assert_array_equal(run.acts("split:acts.0", -1), run.acts("split", -1, key="acts.0"))


def test_selection_errors(run_path):
    run = probe.open_run(run_path)
    with pytest.raises(LayerNotInRunError, match=r"layer 'split' has no array 'acts.9'"):
        select_arrays(run, ["split:acts.9"])
    with pytest.raises(LayerNotInRunError, match="No layer 'splt:acts.0' in this run; closest"):
        select_arrays(run, ["splt:acts.0"])
    with (
        pytest.warns(UserWarning, match=BATCHLESS),
        pytest.raises(ConfigError, match=r"no per-sample array to export among \['pos'\]"),
    ):
        select_arrays(run, ["pos"])


def test_embed_run_skips_what_cannot_be_embedded(run_path):
    table, embs = embed_run(run_path, ["enc", "split:acts.0"], method="pca")
    assert list(dict.fromkeys(table["layer"])) == ["enc", "split:acts.0"] == [e.layer for e in embs]
    with pytest.warns(UserWarning, match="skipped 'out': "):
        table, _ = embed_run(run_path, ["enc", "out"], method="pca", n_components=3)
    assert set(table["layer"]) == {"enc"}
    with (
        pytest.warns(UserWarning, match="skipped 'out': frames must have at least n_comp"),
        pytest.raises(InvalidArrayError, match="no array of the run could be embedded"),
    ):
        embed_run(run_path, ["out"], method="pca", n_components=3)


@pytest.mark.parametrize("fmt", ["csv", "npz"])
def test_cli_export_defaults_to_every_array(run_path, tmp_path, capsys, fmt):
    assert main(["export", str(run_path), "--format", fmt, "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert err.count("\n") == 1
    assert err.startswith(f"probe export: note: {BATCHLESS} (dims ('snapshot', 'layers.pos.acts")
    if fmt == "csv":
        table = pd.read_csv(tmp_path / "run_pca.csv", dtype={"layer": str})
        assert list(dict.fromkeys(table["layer"])) == ALL
    else:
        with np.load(tmp_path / "run_acts.npz") as npz:
            assert sorted(k for k in npz.files if k.startswith("acts/")) == sorted(
                f"acts/{name}" for name in ALL
            )
            assert npz["acts/heads:acts.h"].shape == (len(npz["steps"]), 24, 16)


def test_export_layer_key_entries(run_path, tmp_path):
    paths = export_run(run_path, tmp_path, fmt="npz", layers=["heads:acts.h"])
    with np.load(paths[0]) as npz:
        assert [k for k in npz.files if k.startswith("acts/")] == ["acts/heads:acts.h"]


def test_report_analyses_keyed_arrays_and_notes_batchless(run_path):
    html = build_report(run_path, sections=["summaries", "change"], progress=False)
    assert "split:acts.0" in html and "heads:acts.h" in html
    assert "not analysed" in html and "skipped &#x27;pos&#x27;: a batch-less array" in html
    assert "Not included" not in html
