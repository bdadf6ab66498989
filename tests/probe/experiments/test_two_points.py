"""Two-point experiments: every settings row at tiny sizes, layer selection, config errors."""

import pytest
import torch

from probe.errors import ConfigError
from probe.experiments.two_points.config import SETTINGS, TwoPointsConfig
from probe.experiments.two_points.experiment import run_two_points, torch_threads
from probe.store import open_run


def tiny(setting: str, **kw) -> TwoPointsConfig:
    """The row at a tiny size: widths of 8 (the CNN needs width > 10 (depth + 1)), 2-3 layers."""
    arch = SETTINGS[setting][0]
    size = {
        "CNN": {"width": 40, "depth": 2, "hooked": 2},
        "Dropout": {"width": 8, "depth": 2, "hooked": 3},
    }.get(arch, {"width": 8, "depth": min(SETTINGS[setting][5], 3), "hooked": 0})
    return TwoPointsConfig(setting=setting, seeds=1, **(size | {"epochs": 6} | kw))


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_every_row_trains_and_records_only_the_hooked_layer(setting, tmp_path):
    cfg = tiny(setting, fit=False)
    res = run_two_points(cfg, tmp_path, progress=False)
    run = open_run(res.runs[0])
    assert run.layers == [f"hidden.{cfg.hooked}"]
    assert list(run.steps) == list(range(7))
    assert run.info()["config"]["architecture"] == SETTINGS[setting][0]


@pytest.mark.parametrize(
    ("setting", "starts"), [("skip", "wide"), ("cnn", "authors"), ("dropout", "authors")]
)
def test_new_architectures_fit(setting, starts, tmp_path):
    cfg = tiny(setting, epochs=30, lr=0.05, fit_starts=starts)
    res = run_two_points(cfg, tmp_path, progress=False)
    row = res.table.iloc[0]
    assert row["fit_error"] == "" and row["eta_h"] > 0 and row["eta_y"] > 0
    assert 0 <= row["rel_err_h"] < 1 and res.figures[0].is_file()


def test_layers_all_and_list_with_every(tmp_path):
    cfg = tiny("default", layers="all", every=2, epochs=8)
    res = run_two_points(cfg, tmp_path / "all", progress=False)
    assert sorted(res.table["index"]) == [0, 1, 2]
    assert list(open_run(res.runs[0]).steps) == [0, 2, 4, 6, 8]
    assert any(p.name == "sse_by_layer.png" for p in res.figures)
    assert TwoPointsConfig(layers="3, 1").resolved().layer_indices() == [1, 3, 10]


def test_halve_lr_and_speedup_scale_lr_and_epochs():
    r = TwoPointsConfig(setting="default").resolved()
    assert (r.lr, r.epochs) == (0.005, 6000)
    r = TwoPointsConfig(setting="default", halve_lr=False, speedup=2.0).resolved()
    assert (r.lr, r.epochs) == (0.02, 1500)


def test_torch_threads_restores():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"architecture": "RNN"}, "architecture must be one of"),
        ({"speedup": 0.0}, "speedup must be a finite number > 0"),
        ({"threads": 0}, "threads"),
        ({"every": 0}, "every"),
        ({"setting": "dropout", "hooked": 21}, r"hooked must be a hidden-layer index in 0 \.\. 20"),
        ({"setting": "cnn", "layers": "12"}, r"comma-separated hidden-layer indices in 0 \.\. 11"),
        ({"layers": "1,x"}, "layers must be 'all' or comma-separated"),
        ({"layers": ""}, "layers must be 'all' or comma-separated"),
        ({"fit_starts": "random"}, "fit_starts must be one of"),
    ],
)
def test_config_errors(kw, match):
    with pytest.raises(ConfigError, match=match):
        TwoPointsConfig(**kw).resolved()


def test_activation_count_of_an_unresolved_architecture():
    with pytest.raises(ConfigError, match="architecture must be one of"):
        TwoPointsConfig(architecture="GRU", depth=3).n_activations()
