import numpy as np
import pandas as pd
import pytest

from probe.analysis.similarity import linear_cka
from probe.serve import figures, views
from probe.serve.cache import RunCache
from probe.serve.catalog import RunEntry


def _cache(path):
    cache = RunCache(RunEntry(path.name, path))
    cache.update(budget_s=60)
    return cache


def test_cka_heatmaps_equal_linear_cka_of_the_stored_activations(sweep):
    cache = _cache(sweep / "runs" / "lr=0.2" / "run.zarr")
    run = cache.run
    steps, M = views.cka_steps(cache, "2")
    assert steps == run.steps.tolist()
    assert M[1, 4] == pytest.approx(linear_cka(run.acts("2", steps[1]), run.acts("2", steps[4])))
    L = views.cka_layers(cache, ["0", "2"], steps[-1])
    assert L[0, 1] == pytest.approx(linear_cka(run.acts("0", -1), run.acts("2", -1)))
    assert np.allclose(np.diag(L), 1)


def test_a_step_heatmap_fills_in_over_calls_newest_row_first(sweep):
    cache = _cache(sweep / "runs" / "lr=0.2" / "run.zarr")
    steps, M = views.cka_steps(cache, "0", budget_s=0.0)  # one pair per call
    assert np.isnan(M).sum() == 2 * (21 - 1) and not np.isnan(M[-1, 0])
    assert cache.pending == {("cka-steps", "0")}
    v1 = cache.version()
    cache.update()
    assert cache.version() != v1  # pending work: the page redraws at the next poll
    while cache.pending:
        steps, M = views.cka_steps(cache, "0", budget_s=0.0)
    assert not np.isnan(M).any()
    cache.update()
    v2 = cache.version()
    cache.update()
    assert cache.version() == v2


def test_heatmap_steps_are_capped_and_keep_the_last():
    picked = views.heatmap_steps(np.arange(0, 1000, 10))
    assert len(picked) <= views.MAX_HEATMAP_STEPS and picked[0] == 0 and picked[-1] == 990
    assert views.heatmap_steps(np.array([3, 5])) == [3, 5]


def test_an_embedding_frame_keeps_its_projection_when_snapshots_are_added(tmp_path, record):
    path = tmp_path / "r.zarr"
    rec = record(path, 3, close=False)
    rec.flush()
    cache = _cache(path)
    first = views.embedding_frame(cache, "2", 1).copy()
    for _ in range(2):
        rec.step(loss=0.0)
    rec.close()
    cache.update(budget_s=60)
    pd.testing.assert_frame_equal(views.embedding_frame(cache, "2", 1), first)
    cache.memo.clear()  # recomputed from the store with the same reference: the same frame
    cache.memo[("embed-ref", "2")] = 3
    pd.testing.assert_frame_equal(views.embedding_frame(cache, "2", 1), first)
    assert set(first["label"]) == {0, 1, 2} and len(first) == 60


def test_geometry_nfa_and_the_two_point_note(sweep):
    cache = _cache(sweep / "runs" / "lr=0.1" / "run.zarr")
    table = views.geometry_table(cache, ["0", "2"], 2)
    assert list(table.columns) == ["0", "2"] and "silhouette" in table.index
    assert views.nfa_layers(cache) == ["0", "2"]
    nfa = views.nfa_table(cache, "0")
    assert set(nfa["step"]) == set(cache.run.steps.tolist())
    assert views.two_point_why(cache.run) == "applies to a regression probe of exactly 2 samples"
    fig = figures.nfa_figure(nfa, "0")
    assert len(fig["data"]) == 4


def test_sparkline_is_an_svg_data_uri_and_empty_for_too_few_values():
    uri = figures.sparkline([3.0, 2.0, float("nan"), 1.0])
    assert uri.startswith("data:image/svg+xml;base64,")
    assert figures.sparkline([1.0]) == ""


def test_the_two_point_fit_applies_to_a_two_sample_regression_probe(tmp_path):
    import torch
    from torch import nn

    from hooks import Recorder

    torch.manual_seed(0)
    x, y = torch.randn(2, 3), torch.tensor([[1.0], [-1.0]])
    net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    path = tmp_path / "tp.zarr"
    with Recorder(net, ["1"], path, (x, y), every=1) as rec:
        for _ in range(8):
            loss = 0.5 * ((net(x) - y) ** 2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.step(loss=loss.detach())
    cache = _cache(path)
    assert views.two_point_why(cache.run) == ""
    traces, fit = views.two_point(cache, "1")
    assert len(traces.t) == cache.run.n_snapshots
    fig = figures.two_point_figure(traces, fit, "1")
    assert len(fig["data"]) == (3 if isinstance(fit, str) else 6)
    assert "two-point fit, 1:" in fig["layout"]["title"]["text"]
