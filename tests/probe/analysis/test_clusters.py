import numpy as np
import pytest
import torch
from sklearn.metrics import silhouette_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from torch import nn

import probe
from hooks import Recorder
from probe.analysis import collapse
from probe.analysis.cluster_sweep import sweep
from probe.analysis.clusters import (
    centroid_separation,
    geometry,
    output_margins,
    probe_accuracies,
    sklearn_scores,
)
from probe.errors import ConfigError, InvalidArrayError, MissingTargetsError, ShapeMismatchError
from probe.plots.clusters import plot_sweep

TOY_X = np.array([[0.0], [1.0], [10.0], [11.0]])
TOY_Y = np.array([0, 0, 1, 1])
BASE_KEYS = {
    "silhouette",
    "davies_bouldin",
    "calinski_harabasz",
    "nc1",
    "nc1_quotient",
    "nc2_equinorm",
    "nc2_equiangular",
    "nc2_max_angle",
    "nc2_etf_error",
    "cdnv",
    "participation_ratio",
    "effective_rank",
    "twonn",
    "knn_accuracy",
    "linear_probe_accuracy",
    "ncc_margin",
    "centroid_separation",
}


def blobs(seed, n_per_class=20, C=3, d=5, spread=1.0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(C), n_per_class)
    return rng.standard_normal((C, d))[y] * 6.0 + spread * rng.standard_normal((y.size, d)), y


# ------------------------------------------------------------------ known answers
def test_clustering_toy_known_answers():
    # docs/features.md §5: silhouette = mean(9.5/10.5, 8.5/9.5, 8.5/9.5, 9.5/10.5), DB = 0.1,
    # CH = 200.
    expected = {"silhouette": 0.899749, "davies_bouldin": 0.1, "calinski_harabasz": 200.0}
    for scores in (sklearn_scores(TOY_X, TOY_Y), geometry(TOY_X, TOY_Y)):
        for key, value in expected.items():
            assert abs(scores[key] - value) < 1e-6, key
    exact = np.mean([9.5 / 10.5, 8.5 / 9.5, 8.5 / 9.5, 9.5 / 10.5])
    assert abs(sklearn_scores(TOY_X, TOY_Y)["silhouette"] - exact) < 1e-12


def test_toy_geometry_other_values():
    g = geometry(TOY_X, TOY_Y)
    assert g.keys() == BASE_KEYS
    # Σ_W = 0.25, Σ_B = 25 (means 0.5 and 10.5): NC1 = 0.01 / 2, quotient = 0.01
    assert abs(g["nc1"] - 0.005) < 1e-12 and abs(g["nc1_quotient"] - 0.01) < 1e-12
    assert abs(g["centroid_separation"] - 10.0 / 0.5) < 1e-12
    assert g["participation_ratio"] == 1.0 and g["effective_rank"] == 1.0
    assert g["linear_probe_accuracy"] == 1.0
    # NCC margins: |x - other mean| - |x - own mean| = 10.5-0.5, 9.5-0.5, 9.5-0.5, 10.5-0.5
    assert abs(g["ncc_margin"] - 9.5) < 1e-12


def test_silhouette_subsample_is_seeded():
    X, y = blobs(0, n_per_class=100)
    full = sklearn_scores(X, y, sample_size=300)["silhouette"]
    assert abs(full - silhouette_score(X, y)) < 1e-12
    sub = sklearn_scores(X, y, sample_size=60, seed=3)["silhouette"]
    assert sub == silhouette_score(X, y, sample_size=60, random_state=3)
    assert sub == sklearn_scores(X, y, sample_size=60, seed=3)["silhouette"]
    assert abs(sub - full) < 0.1


def test_probe_accuracies_match_sklearn_cross_validation():
    X, y = blobs(1, spread=4.0)
    acc = probe_accuracies(X, y, seed=2)
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=2)
    ref = cross_val_score(KNeighborsClassifier(5), X, y, cv=folds).mean()
    assert acc["knn_accuracy"] == ref
    assert probe_accuracies(*blobs(2, spread=0.1)) == {
        "knn_accuracy": 1.0,
        "linear_probe_accuracy": 1.0,
    }


def test_probe_accuracies_near_chance_for_random_labels():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((120, 4)), np.arange(120) % 2
    acc = probe_accuracies(X, y)
    assert 0.3 < acc["knn_accuracy"] < 0.7 and 0.3 < acc["linear_probe_accuracy"] < 0.7


def test_probe_accuracies_with_small_classes():
    # folds drop to the smallest class size (2) and k to the training-fold size (3 of 6)
    X = np.array([[0.0], [0.1], [5.0], [5.1], [9.0], [9.1]])
    acc = probe_accuracies(X, [0, 0, 1, 1, 2, 2], n_neighbors=50)
    assert 0.0 <= acc["knn_accuracy"] <= 1.0 and acc["linear_probe_accuracy"] == 1.0


def test_output_margins_and_centroid_separation():
    logits = np.array([[3.0, 1.0, 2.5], [0.0, -1.0, 2.0]])
    np.testing.assert_allclose(output_margins(logits, [0, 1]), [0.5, -3.0])
    assert centroid_separation(np.repeat([[0.0], [3.0]], 3, axis=0), [0, 0, 0, 1, 1, 1]) == np.inf
    X, y = blobs(3)
    means = np.stack([X[y == c].mean(0) for c in range(3)])
    gap = min(np.linalg.norm(means[i] - means[j]) for i in range(3) for j in range(i + 1, 3))
    within = np.sum((X - means[y]) ** 2) / len(y)
    assert abs(centroid_separation(X, y) - gap / np.sqrt(within)) < 1e-12


def test_geometry_with_classifier_and_logits():
    X, y = blobs(4)
    rng = np.random.default_rng(4)
    W, b = rng.standard_normal((4, 5)), rng.standard_normal(4)  # an extra, unused class row
    logits = X @ W.T + b
    g = geometry(X, y, W=W, b=b, logits=logits, cv=2)
    extra = {"nc3", "nc4", "nc2_w_equinorm", "nc2_w_equiangular", "nc2_w_max_angle"}
    assert g.keys() == BASE_KEYS | extra | {"nc2_w_etf_error", "output_margin"}
    assert g["nc3"] == collapse.self_duality(X, y, W)
    assert g["nc4"] == collapse.ncc_disagreement(X, y, W, b)
    assert g["nc2_w_equinorm"] == collapse.etf_measures(W[:3])["equinorm"]
    assert abs(g["output_margin"] - output_margins(logits, y).mean()) < 1e-12
    assert abs(g["nc1"] - collapse.nc1(X, y)) < 1e-15
    assert g == geometry(X.reshape(60, 5, 1), y, W=W, b=b, logits=logits, cv=2)  # flattened


def test_collapsed_blobs_have_collapse_signature():
    X, y = blobs(5, spread=1e-3)
    g = geometry(X, y)
    assert g["nc1"] < 1e-5 and g["cdnv"] < 1e-5 and g["silhouette"] > 0.99
    assert g["knn_accuracy"] == 1.0 and g["ncc_margin"] > 1.0


# ------------------------------------------------------------------ sweep over a real run
def record(path, targets="labels", zero_layer=False):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3))
    if zero_layer:
        with torch.no_grad():
            net[0].weight.zero_()
            net[0].bias.fill_(-1.0)  # layer "1" (ReLU) outputs all zeros
    y = torch.arange(30) % 3
    x = torch.randn(30, 6) + 2.0 * nn.functional.one_hot(y, 6).float()
    probe_set = {"labels": (x, y), "none": x, "float": (x, torch.randn(30))}[targets]
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    layers = ["1"] if zero_layer else ["0", "2"]
    with Recorder(net, layers=layers, store=path, probe=probe_set, every=6) as rec:
        for _ in range(12):
            loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.step(loss=loss)
    return probe.open_run(path)


def test_sweep_on_recorded_run(tmp_path):
    run = record(tmp_path / "run.zarr")
    df = sweep(run, progress=False, cv=2)  # 2 folds keep the logistic fits few
    assert list(df.columns) == ["layer", "step", "metric", "value"]
    assert len(df) == 2 * 3 * len(BASE_KEYS)
    assert sorted(set(df["step"])) == [0, 6, 12] and set(df["layer"]) == {"0", "2"}
    row = df[(df["layer"] == "2") & (df["step"] == 6)].set_index("metric")["value"]
    assert row.to_dict() == geometry(run.acts("2", 6), run.targets, cv=2)
    last = sweep(run, layers=["0"], steps=[-1], progress=False, cv=3, seed=1)
    assert set(last["step"]) == {12} and set(last["layer"]) == {"0"}
    ref = geometry(run.acts("0", 12), run.targets, cv=3, seed=1)
    assert last.set_index("metric")["value"].to_dict() == ref

    few = df[df["metric"].isin(["nc1", "silhouette", "twonn"])]  # fewer panels draw faster
    out = plot_sweep(few, tmp_path / "figs" / "sweep.png")
    assert out == tmp_path / "figs" / "sweep.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_errors(tmp_path):
    with pytest.raises(MissingTargetsError, match="run.targets must hold class labels; got None"):
        sweep(record(tmp_path / "a.zarr", targets="none"), progress=False)
    with pytest.raises(InvalidArrayError, match="run.targets must be integer class labels"):
        sweep(record(tmp_path / "b.zarr", targets="float"), progress=False)
    run = record(tmp_path / "c.zarr", zero_layer=True)
    with pytest.raises(InvalidArrayError, match="layer '1' at step 0: class means must differ"):
        sweep(run, progress=False)
    with pytest.raises(probe.LayerNotInRunError, match="No layer 'fc'"):
        sweep(run, layers=["fc"], progress=False)


# ------------------------------------------------------------------ errors
def test_setting_errors():
    for kw, name in [({"sample_size": 1}, "sample_size"), ({"sample_size": True}, "sample_size")]:
        with pytest.raises(ConfigError, match=f"{name} must be an int >= 2"):
            sklearn_scores(TOY_X, TOY_Y, **kw)
    with pytest.raises(ConfigError, match=r"n_neighbors must be an int >= 1; got 0"):
        probe_accuracies(TOY_X, TOY_Y, n_neighbors=0)
    with pytest.raises(ConfigError, match=r"cv must be an int >= 2; got 2.5"):
        geometry(TOY_X, TOY_Y, cv=2.5)


def test_single_sample_class_rejected():
    with pytest.raises(InvalidArrayError, match=r"at least 2 samples .* classes \[2\]"):
        geometry(np.arange(5.0)[:, None], [0, 0, 1, 1, 2])


def test_output_margin_errors():
    with pytest.raises(InvalidArrayError, match=r"n_out >= 2; got \(3, 1\)"):
        output_margins(np.ones((3, 1)), [0, 0, 0])
    with pytest.raises(InvalidArrayError, match="must have at least 2 dimensions"):
        output_margins(np.ones(3), [0, 0, 0])
    with pytest.raises(ShapeMismatchError, match=r"y must have shape \(2,\) to match logits"):
        output_margins(np.ones((2, 3)), [0, 1, 2])
    with pytest.raises(InvalidArrayError, match=r"integer labels in \[0, 3\) indexing logits"):
        output_margins(np.ones((2, 3)), [0, 3])
    with pytest.raises(InvalidArrayError, match=r"integer labels in \[0, 2\)"):
        output_margins(np.ones((4, 2)), TOY_Y.astype(float))


def test_moved_names_are_reexported():
    from probe.analysis import clusters, margins

    assert clusters.output_margins is margins.output_margins
    assert clusters.centroid_separation is margins.centroid_separation
