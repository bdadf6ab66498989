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
    rec = Recorder(net, ["1"], path, (x, y), every=1)

    def train(n_steps):
        for _ in range(n_steps):
            loss = 0.5 * ((net(x) - y) ** 2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.step(loss=loss.detach())

    train(4)
    rec.flush()
    cache = _cache(path)
    assert len(views.two_point(cache, "1")[0].t) == cache.run.n_snapshots
    train(4)
    rec.close()
    cache.update(budget_s=60)
    assert views.two_point_why(cache.run) == ""
    traces, fit = views.two_point(cache, "1")
    assert len(traces.t) == cache.run.n_snapshots == 9
    assert [k for k in cache.memo if k[0] == "two-point"] == [("two-point", "1")]
    fig = figures.two_point_figure(traces, fit, "1")
    assert len(fig["data"]) == (3 if isinstance(fit, str) else 6)
    assert "two-point fit, 1:" in fig["layout"]["title"]["text"]


def test_a_heatmap_left_half_drawn_for_another_layer_stops_the_redraws(sweep):
    cache = _cache(sweep / "runs" / "lr=0.2" / "run.zarr")
    views.cka_steps(cache, "0", budget_s=0.0)  # layer 0 partly drawn, then the user picks 2
    assert cache.pending == {("cka-steps", "0")}
    views.cka_steps(cache, "2", budget_s=60)
    assert cache.pending == set()
    cache.update()
    v = cache.version()
    cache.update()
    assert cache.version() == v  # no pending work: polls stop redrawing the page
    views.cka_steps(cache, "0", budget_s=60)  # back on layer 0: its pairs were kept
    assert ("cka-steps", "0") not in cache.pending


def test_the_embedding_is_a_pca_fitted_on_the_reference_step_and_applied_to_the_shown(sweep):
    from sklearn.decomposition import PCA

    cache = _cache(sweep / "runs" / "lr=0.2" / "run.zarr")
    run = cache.run
    ref, shown = int(run.steps[-1]), int(run.steps[1])
    frame = views.embedding_frame(cache, "0", shown)
    assert cache.memo[("embed-ref", "0")] == ref
    want = PCA(2).fit(run.acts("0", ref)).transform(run.acts("0", shown))
    for axis, col in enumerate(["x", "y"]):
        sign = np.sign(np.dot(frame[col], want[:, axis]))  # PCA axes are defined up to sign
        np.testing.assert_allclose(frame[col], sign * want[:, axis], atol=1e-4)
    own = PCA(2).fit_transform(run.acts("0", shown))  # fitted on the shown step: other axes
    assert not np.allclose(np.abs(frame[["x", "y"]].to_numpy()), np.abs(own), atol=1e-2)


def _regression_run(path, y):
    import torch
    from torch import nn

    from hooks import Recorder

    torch.manual_seed(0)
    x = torch.randn(40, 6)
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 1))
    with Recorder(net, ["1"], path, x if y is None else (x, y), every=1) as rec:
        for _ in range(2):
            rec.step(loss=net(x).pow(2).mean().detach())
    return _cache(path)


def test_float_targets_colour_one_trace_on_a_scale_and_no_targets_draw_no_colour(tmp_path):
    import torch

    y = torch.linspace(-1, 1, 40)[torch.randperm(40, generator=torch.Generator().manual_seed(0))]
    cache = _regression_run(tmp_path / "reg.zarr", y)
    frame = views.embedding_frame(cache, "1", 1)
    assert frame["label"].isna().all()
    np.testing.assert_allclose(frame["target"], cache.run.targets[frame["sample_id"]])
    fig = figures.embedding_figure(frame, 1, "1", 1.0)
    (trace,) = fig["data"]  # one trace, not one per distinct target value
    np.testing.assert_allclose(trace["marker"]["color"], frame["target"])
    assert trace["marker"]["colorbar"]["title"]["text"] == "target"

    cache = _regression_run(tmp_path / "none.zarr", None)
    frame = views.embedding_frame(cache, "1", 1)
    assert frame[["label", "target"]].isna().all().all()
    (trace,) = figures.embedding_figure(frame, 1, "1", 1.0)["data"]
    assert trace["name"] == "samples" and "color" not in trace["marker"]


def test_class_labels_draw_one_trace_per_class_up_to_a_cap():
    rng = np.random.default_rng(0)
    n = 4 * figures.MAX_CLASS_TRACES
    frame = pd.DataFrame({"sample_id": np.arange(n), "label": np.arange(n) % 3 * 1.0,
                          "target": np.nan, "x": rng.normal(size=n), "y": rng.normal(size=n)})
    fig = figures.embedding_figure(frame, 0, "0", 3.0)
    assert [d["name"] for d in fig["data"]] == ["0", "1", "2"]
    many = frame.assign(label=np.arange(n) % (figures.MAX_CLASS_TRACES + 1) * 1.0)
    (trace,) = figures.embedding_figure(many, 0, "0", 3.0)["data"]
    assert trace["name"] == "class" and len(trace["marker"]["color"]) == n


def test_embedding_frames_and_layer_cka_keep_the_most_recently_used_steps(sweep, monkeypatch):
    monkeypatch.setattr(views, "MAX_MEMO_STEPS", 3)
    cache = _cache(sweep / "runs" / "lr=0.2" / "run.zarr")
    steps = cache.run.steps.tolist()

    def kept(kind):
        return [k[-1] for k in cache.memo if k[0] == kind]

    for s in steps[:4]:
        views.embedding_frame(cache, "0", s)
        views.cka_layers(cache, ["0", "2"], s)
    views.embedding_frame(cache, "2", steps[0])  # another layer: a group of its own
    assert kept("embed") == [*steps[1:4], steps[0]]
    assert kept("cka-layers") == steps[1:4]
    first = views.embedding_frame(cache, "0", steps[2])  # used again: now the most recent
    views.embedding_frame(cache, "0", steps[4])
    assert [k[-1] for k in cache.memo if k[:2] == ("embed", "0")] == [steps[3], steps[2], steps[4]]
    assert views.embedding_frame(cache, "0", steps[2]) is first


def test_the_nfa_table_is_one_per_layer_extended_by_new_snapshots(tmp_path, record, monkeypatch):
    from probe.analysis import features

    path = tmp_path / "live.zarr"
    rec = record(path, 3, close=False, agop=True)
    rec.flush()
    cache = _cache(path)
    views.nfa_table(cache, "0")
    asked = []
    full = features.nfa_over_steps

    def spy(run, layer, **kw):
        asked.append(kw.get("steps"))
        return full(run, layer, **kw)

    monkeypatch.setattr(features, "nfa_over_steps", spy)
    for _ in range(2):
        rec.step(loss=0.0)
    rec.close()
    cache.update(budget_s=60)
    table = views.nfa_table(cache, "0")
    assert asked == [cache.run.steps[-2:].tolist()]  # only the new snapshots computed
    pd.testing.assert_frame_equal(table, full(cache.run, "0"))
    assert [k for k in cache.memo if k[0] == "nfa"] == [("nfa", "0")]
    assert views.nfa_table(cache, "0") is table and len(asked) == 1


def test_learning_curves_are_thinned_to_a_bound_keeping_ends_and_spikes():
    n = 100_000
    loss = np.linspace(2.0, 0.1, n)
    loss[31_337] = 50.0  # a spike a stride would skip
    metrics = pd.DataFrame({"step": np.arange(n), "epoch": 0, "loss": loss,
                            "acc": np.r_[np.full(n - 10, np.nan), np.arange(10.0)]})
    fig = figures.curves_figure(metrics)
    curve, acc = fig["data"]
    assert len(curve["x"]) <= figures.MAX_CURVE_POINTS
    assert curve["x"][0] == 0 and curve["x"][-1] == n - 1 and 31_337 in curve["x"]
    assert curve["y"].max() == 50.0 and curve["y"].min() == loss[-1]
    np.testing.assert_array_equal(acc["y"], np.arange(10.0))  # a short curve is unchanged
    np.testing.assert_array_equal(acc["x"], np.arange(n - 10, n))
    assert (curve["mode"], acc["mode"]) == ("lines", "lines+markers")  # a few points are marked
    short = metrics.iloc[:figures.MAX_CURVE_POINTS]
    np.testing.assert_array_equal(figures.curves_figure(short)["data"][0]["y"], loss[:2000])
