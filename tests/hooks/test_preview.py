"""`hooks.list_layers`: the selection preview, its table, and the README's selectors on GPT-2."""

import re
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from hooks import LayerInfo, LayerTable, ProbeInputError, list_layers, resolve_layers

README = Path(__file__).resolve().parents[2] / "README.md"


class PosTable(nn.Module):
    """Returns a batch-less (4, 2) table: stored once per snapshot, not per sample."""

    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(torch.randn(4, 2))

    def forward(self, x):
        return self.table * 1.0


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.5), nn.Linear(16, 16))
        self.pos = PosTable()
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        h = self.encoder(x)
        return self.head(h), self.pos(x)


def test_without_probe_names_and_types():
    table = list_layers(Net(), "encoder.*")
    assert isinstance(table, LayerTable)
    assert table.names == ["encoder.0", "encoder.1", "encoder.2"]
    assert table[1] == LayerInfo("encoder.1", "Dropout")
    assert str(table).splitlines() == [
        "layer      type",
        "encoder.0  Linear",
        "encoder.1  Dropout",
        "encoder.2  Linear",
    ]


def test_with_probe_shapes_and_bytes_per_sample():
    torch.manual_seed(0)
    net = Net().train()
    x = torch.randn(10, 8)
    state = torch.random.get_rng_state()
    table = list_layers(net, ["encoder.0", "pos", nn.Linear], (x, torch.zeros(10)))
    assert torch.equal(torch.random.get_rng_state(), state)  # RNG state restored
    assert net.training and net.encoder[1].training  # train mode restored
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())
    rows = {r.name: r for r in table}
    assert rows["encoder.0"].outputs == {"acts": (16,)}
    assert rows["encoder.0"].bytes_per_sample == 16 * 4
    assert rows["head"].bytes_per_sample == 4 * 4
    assert rows["pos"].outputs == {"acts": (4, 2)}  # batch-less: the whole table
    assert (rows["pos"].bytes_per_sample, rows["pos"].bytes_fixed) == (0, 32)
    lines = str(table).splitlines()
    assert lines[0].split() == ["layer", "type", "stored", "per", "sample", "bytes/sample"]
    assert lines[1].split() == ["encoder.0", "Linear", "acts", "16", "64", "B"]
    assert "pos" in lines[3] and "acts 4x2" in lines[3] and "0 B (+32 B fixed)" in lines[3]
    assert lines[-1] == "4 layers, 144 B per probe sample"
    half = list_layers(net, "encoder.0", x, dtype="float16")
    assert half[0].bytes_per_sample == 16 * 2


def test_preview_errors():
    with pytest.raises(ProbeInputError, match="forward failed on probe inputs of shape \\(3, 5\\)"):
        list_layers(Net(), "head", torch.randn(3, 5))
    with pytest.raises(ProbeInputError, match="probe inputs must have shape \\(n_samples, ...\\)"):
        list_layers(Net(), "head", torch.randn(0, 8))


def gpt2_lm():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(
        n_layer=2, n_embd=16, n_head=2, vocab_size=50, n_positions=16, use_cache=False
    )
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(cfg)


#: What every glob in the README selects on a tiny GPT-2 (``transformer.*``) or on an
#: ``encoder``/``head`` model like `Net`. A glob added to the README must be added here.
README_GLOBS = {
    "transformer.h.*": ["transformer.h.0", "transformer.h.1"],
    "**.mlp.c_fc": ["transformer.h.0.mlp.c_fc", "transformer.h.1.mlp.c_fc"],
    "encoder.*": ["encoder.0", "encoder.1", "encoder.2"],
    "encoder.**": ["encoder", "encoder.0", "encoder.1", "encoder.2"],
    "**.mlp": ["transformer.h.0.mlp", "transformer.h.1.mlp"],
}


def test_readme_globs_select_what_the_readme_says():
    text = README.read_text(encoding="utf-8")
    found = set(re.findall(r"""["']([\w.]*\*[\w.*]*)["']""", text))
    assert found == set(README_GLOBS)
    gpt, net = gpt2_lm(), Net()
    for glob, expected in README_GLOBS.items():
        model = gpt if expected[0].startswith("transformer") else net
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "encoder.**" nests: it warns, as documented
            assert list(resolve_layers(model, glob)) == expected, glob
    # fnmatch's '*' crossed dots: the same selector took every sublayer of every block
    with pytest.warns(UserWarning, match="'transformer.h.\\*\\*' matches 27 modules at 4 depths"):
        assert len(list_layers(gpt, "transformer.h.**")) == 27


def test_gpt2_blocks_only_with_shapes():
    gpt = gpt2_lm()
    table = list_layers(gpt, ["transformer.h.*", "lm_head"], torch.randint(0, 50, (5, 12)))
    assert table.names == ["transformer.h.0", "transformer.h.1", "lm_head"]
    assert [r.outputs for r in table] == [
        {"acts": (12, 16)},
        {"acts": (12, 16)},
        {"acts": (12, 50)},
    ]
    assert [r.bytes_per_sample for r in table] == [12 * 16 * 4, 12 * 16 * 4, 12 * 50 * 4]
