import warnings
from collections import OrderedDict

import pytest
import torch
from torch import nn

from hooks import (
    LayerNotFoundError,
    NoLayersError,
    Recorder,
    RecorderConfigError,
    list_layers,
    resolve_layers,
    unwrap_model,
)
from hooks.layers import match_glob


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8))
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.encoder(x))


class Deep(nn.Module):
    """encoder.<i>.{fc, act}, encoder.<i>.fc, head: two levels below ``encoder``."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.ModuleList(
            nn.Sequential(OrderedDict(fc=nn.Linear(4, 4), act=nn.ReLU())) for _ in range(2)
        )
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        for block in self.encoder:
            x = block(x)
        return self.head(x)


def test_list_layers_names_every_submodule():
    assert list_layers(Net()).names == ["encoder", "encoder.0", "encoder.1", "encoder.2", "head"]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("encoder.*", ["encoder.0", "encoder.1"]),  # one segment: the blocks only
        (
            "encoder.**",
            [
                "encoder",
                "encoder.0",
                "encoder.0.fc",
                "encoder.0.act",
                "encoder.1",
                "encoder.1.fc",
                "encoder.1.act",
            ],
        ),  # zero or more segments
        ("encoder.*.fc", ["encoder.0.fc", "encoder.1.fc"]),
        ("**.fc", ["encoder.0.fc", "encoder.1.fc"]),
        ("**.head", ["head"]),  # ** matches zero segments
        ("encoder.?", ["encoder.0", "encoder.1"]),
        ("encoder.[1].*", ["encoder.1.fc", "encoder.1.act"]),
        ("enc*", ["encoder"]),  # * stays within a segment
        ("*", ["encoder", "head"]),
        ("encoder.**.act", ["encoder.0.act", "encoder.1.act"]),
    ],
)
def test_glob_star_is_one_segment_double_star_any(pattern, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "encoder.**" warns: covered below
        assert list(resolve_layers(Deep(), pattern)) == expected


def test_match_glob_segments():
    assert match_glob("gpt.h.1", "gpt.h.*")
    assert not match_glob("gpt.h.1.mlp.c_fc", "gpt.h.*")  # fnmatch would say True
    assert match_glob("gpt.h.1.mlp.c_fc", "gpt.h.**")
    assert match_glob("gpt.h", "gpt.h.**")
    assert match_glob("gpt.h.11", "gpt.h.1*")
    assert not match_glob("gpt.h.1.x", "gpt.h.1*")
    assert match_glob("a.b", "a**.b")  # ** inside a segment acts as *
    assert not match_glob("a.x.b", "a**.b")


def test_glob_matching_nested_modules_warns_by_depth():
    with pytest.warns(
        UserWarning,
        match=r"layer selector 'encoder\.\*\*' matches 7 modules at 3 depths, 6 of them inside "
        r"another match, so their outputs are recorded twice \(depth 1: encoder; depth 2: "
        r"encoder\.0, encoder\.1; depth 3: encoder\.0\.fc, .*Use '\*' for one level \(e\.g\. "
        r"'encoder\.\*'\)",
    ):
        resolve_layers(Deep(), ["encoder.**", "head"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one level, several depths but none nested, options
        resolve_layers(Deep(), ["encoder.*", "**.fc", nn.Module])
        resolve_layers(Deep(), "encoder.**", warn_nested=False)


def test_option_selectors_follow_the_segment_rule(tmp_path):
    x = torch.randn(6, 4)
    net = Deep()
    with pytest.raises(RecorderConfigError, match="'inputs' selects no recorded layer"):
        Recorder(net, "encoder.*.fc", tmp_path / "a.zarr", x, inputs="encoder.*")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "**" nests, but an option records nothing twice
        with Recorder(net, "**.fc", tmp_path / "b.zarr", x, inputs="**", every=1) as rec:
            assert sorted(rec._hooks.inputs) == ["encoder.0.fc", "encoder.1.fc"]


def test_unknown_name_lists_closest_and_count():
    with pytest.raises(
        LayerNotFoundError,
        match=r"No layer 'encoder\.3' in Net; closest: 'encoder\.2', 'encoder\.1'.*"
        r"\(5 layers\)",
    ):
        resolve_layers(Net(), "encoder.3")
    with pytest.raises(KeyError):  # also a KeyError, for code that catches lookups
        resolve_layers(Net(), "haed")
    with pytest.raises(LayerNotFoundError, match="No layer 'decoder.\\*'"):
        resolve_layers(Net(), "decoder.*")
    with pytest.raises(LayerNotFoundError, match=r"No layer 'encoder\.\*\.weight' in Net"):
        resolve_layers(Net(), "encoder.*.weight")  # one segment deeper than any module
    with pytest.raises(LayerNotFoundError, match="No module of type Conv2d in Net"):
        resolve_layers(Net(), nn.Conv2d)


def test_empty_selection_and_bad_selector():
    with pytest.raises(NoLayersError, match="at least one module"):
        resolve_layers(Net(), [])
    with pytest.raises(NoLayersError, match="matched no module of Net"):
        resolve_layers(Net(), lambda n, m: False)
    with pytest.raises(RecorderConfigError, match="each layer selector must be a str"):
        resolve_layers(Net(), [3])


def test_unwrap_compiled_and_data_parallel():
    net = Net()
    assert unwrap_model(torch.compile(net, backend="eager")) is net
    assert unwrap_model(nn.DataParallel(net)) is net
    assert list_layers(torch.compile(net, backend="eager"))[0].name == "encoder"


def test_unwrap_ddp(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        net = Net()
        ddp = nn.parallel.DistributedDataParallel(net)
        assert unwrap_model(ddp) is net
        assert list(resolve_layers(ddp, "head")) == ["head"]
    finally:
        dist.destroy_process_group()
