import pytest
import torch
from torch import nn

from hooks import (
    LayerNotFoundError,
    NoLayersError,
    RecorderConfigError,
    list_layers,
    resolve_layers,
    unwrap_model,
)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8))
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.encoder(x))


def test_list_layers_names_every_submodule():
    assert list_layers(Net()) == ["encoder", "encoder.0", "encoder.1", "encoder.2", "head"]


def test_selectors_name_glob_type_predicate():
    net = Net()
    assert list(resolve_layers(net, "head")) == ["head"]
    assert list(resolve_layers(net, ["encoder.*", "head"])) == [
        "encoder.0",
        "encoder.1",
        "encoder.2",
        "head",
    ]
    assert list(resolve_layers(net, nn.Linear)) == ["encoder.0", "encoder.2", "head"]
    assert list(resolve_layers(net, lambda n, m: n.endswith("2"))) == ["encoder.2"]
    # duplicates across selectors collapse, order follows the model
    assert list(resolve_layers(net, ["head", nn.Linear])) == ["encoder.0", "encoder.2", "head"]


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
    assert list_layers(torch.compile(net, backend="eager"))[0] == "encoder"


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
