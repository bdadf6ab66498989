import json
import warnings

import numpy as np
import pytest
import torch
from scipy.stats import ortho_group
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from torch import nn

import probe
from hooks import Recorder
from probe.analysis.embed import FITS, METHODS, embed
from probe.errors import ConfigError, InvalidArrayError, ShapeMismatchError, StepNotFoundError


def frames(seed, n=40, d=6, steps=3):
    """Clustered data at ``steps`` steps; the last step is a rotated copy of the middle one."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    X[: n // 2] += 3.0
    Q = ortho_group.rvs(d, random_state=seed)
    noisy = [X + 0.5 * rng.standard_normal(X.shape) for _ in range(steps - 2)]
    return np.stack([*noisy, X, X @ Q + 7.0])


def frame(table, step):
    return table.loc[table.step == step, ["x", "y"]].to_numpy()


def rel_diff(A, B):
    return np.linalg.norm(A - B) / np.linalg.norm(B - B.mean(axis=0))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pca_reference_is_one_fit_applied_to_every_step(seed):
    A = frames(seed)
    labels = np.arange(40) % 3
    table, emb = embed(A, [0, 10, 20], sample_ids=np.arange(100, 140), labels=labels, reference=10)
    pca = PCA(2, svd_solver="full").fit(A[1])
    for step, X in zip([0, 10, 20], A, strict=True):
        np.testing.assert_allclose(frame(table, step), pca.transform(X), atol=1e-10)
    assert emb.method == "pca" and emb.fit == "reference" and emb.align is False
    assert emb.reference_step == 10 and emb.steps == (0, 10, 20) and emb.seed == 0
    assert emb.pre_pca is None and emb.settings == {"svd_solver": "full"}
    np.testing.assert_allclose(emb.explained_variance_ratio, pca.explained_variance_ratio_)
    assert table.columns.tolist() == [
        *("run", "step", "layer", "sample_id", "label", "method", "x", "y")
    ]
    np.testing.assert_array_equal(table.step, np.repeat([0, 10, 20], 40))
    np.testing.assert_array_equal(table.sample_id, np.tile(np.arange(100, 140), 3))
    np.testing.assert_array_equal(table.label, np.tile(labels, 3))
    assert set(table.method) == {"pca"} and set(table.run) == {""}
    by_position, emb2 = embed(A, [0, 10, 20], reference=-2)  # negative: a frame position
    assert emb2.reference_step == 10 and np.array_equal(by_position[["x", "y"]], table[["x", "y"]])


def test_pca_joint_and_3d():
    A = frames(0)
    table, emb = embed(A, method="pca", fit="joint", n_components=3, run="r", layer="fc")
    pca = PCA(3, svd_solver="full").fit(A.reshape(-1, 6))
    coords = table[["x", "y", "z"]].to_numpy()
    np.testing.assert_allclose(coords, pca.transform(A.reshape(-1, 6)), atol=1e-10)
    assert emb.reference_step == 2 and emb.fit == "joint"
    assert set(table.run) == {"r"} and set(table.layer) == {"fc"} and table.label.isna().all()
    assert json.loads(json.dumps(emb.to_dict()))["layer"] == "fc"


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("method", "d"), [("pca", 6), ("mds", 6), ("mds", 60)])
def test_rotated_copy_maps_to_the_same_frame(method, d, seed):
    A = frames(seed, d=d)  # step 2 = step 1 rotated (and shifted) in feature space
    table, emb = embed(A, method=method, fit="per_step", reference=1, seed=seed)
    np.testing.assert_allclose(frame(table, 2), frame(table, 1), atol=1e-8)
    assert emb.align is True and emb.pre_pca == (50 if d == 60 else None)
    # a fixed projection is not rotation invariant: it shows the change of neuron basis
    if method == "pca":
        fixed, _ = embed(A, method="pca", reference=1)
        assert rel_diff(frame(fixed, 2), frame(fixed, 1)) > 0.1


def test_alignment_is_rigid_procrustes():
    A = frames(3)
    aligned, _ = embed(A, fit="per_step", reference=1)
    raw, _ = embed(A, fit="per_step", reference=1, align=False)
    for step in (0, 2):
        Y, Z = frame(raw, step), frame(aligned, step)
        Yc, Zc = Y - Y.mean(0), Z - Z.mean(0)
        R = np.linalg.lstsq(Yc, Zc, rcond=None)[0]
        np.testing.assert_allclose(R.T @ R, np.eye(2), atol=1e-10)  # orthogonal, no scaling
        np.testing.assert_allclose(Z.mean(0), frame(aligned, 1).mean(0), atol=1e-10)
    np.testing.assert_allclose(frame(raw, 1), frame(aligned, 1), atol=1e-12)
    forced, emb = embed(A, reference=1, align=True)
    assert emb.align is True and np.linalg.norm(frame(forced, 0) - frame(aligned, 0)) > 0


def test_tsne_chain_keeps_frames_comparable():
    A = frames(0, n=30)
    table, emb = embed(A, method="tsne", reference=1, seed=3, settings={"method": "exact"})
    assert emb.fit == "per_step" and emb.align is True and emb.settings["perplexity"] == 29 / 3
    # the recorded seed and settings reproduce the reference frame
    ref = TSNE(n_components=2, random_state=3, **emb.settings).fit_transform(A[1])
    np.testing.assert_allclose(frame(table, 1), ref)
    # the rotated copy starts from the reference frame and stays close to it (t-SNE drifts
    # along flat directions of its loss: 0.35 here), unlike an independent fit of that step
    chained = rel_diff(frame(table, 2), frame(table, 1))
    alone = TSNE(2, random_state=4, init="random", perplexity=29 / 3, method="exact")
    assert chained < 0.5 and 2 * chained < rel_diff(alone.fit_transform(A[2]), frame(table, 1))


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"method": "ica"}, ConfigError, r"method must be one of \['pca', 'mds', 'umap', 'tsne'\]"),
        ({"method": "tsne", "fit": "reference"}, ConfigError, r"fit for method 'tsne' must be"),
        ({"n_components": 4}, ConfigError, "n_components must be 2 or 3"),
        ({"seed": -1}, ConfigError, "seed must be an int >= 0; got -1"),
        ({"pre_pca": 1}, ConfigError, "pre_pca must be None, 0 or >= n_components=2; got 1"),
        ({"steps": [0, 1]}, ShapeMismatchError, r"steps must have one entry per frame \(3\)"),
        ({"sample_ids": np.arange(39)}, ShapeMismatchError, r"per sample \(40\); got shape"),
        ({"labels": np.zeros((40, 2))}, ShapeMismatchError, r"labels must have one entry per"),
        ({"reference": 7}, StepNotFoundError, r"reference must be one of .* \[0, 1, 2\]"),
        (
            {"method": "tsne", "settings": {"perplexty": 5}},
            ConfigError,
            "unknown setting 'perplexty' for tsne .*closest: 'perplexity'",
        ),
        (
            {"method": "mds", "settings": {"random_state": 1}},
            ConfigError,
            "unknown setting 'random_state' for mds .*set by n_components= and seed=",
        ),
    ],
)
def test_embed_option_errors(kwargs, err, match):
    with pytest.raises(err, match=match):
        embed(frames(0), **kwargs)


def test_embed_array_errors():
    A = frames(0)
    with pytest.raises(ConfigError, match="fit='aligned' relates consecutive steps"):
        embed(A[:1], method="umap", fit="aligned")
    with pytest.raises(InvalidArrayError, match="at least n_components=3 features; got 2"):
        embed(A[..., :2], n_components=3)
    with pytest.raises(InvalidArrayError, match=r"at least 5 samples \(rows\) per step"):
        embed(A[:, :4])
    with pytest.raises(InvalidArrayError, match="frames must have at least 3 dimensions"):
        embed(A[0])
    with pytest.raises(InvalidArrayError, match="frames must be finite; got 1 NaN"):
        embed(np.where(np.arange(A.size).reshape(A.shape) == 5, np.nan, A))
    assert set(FITS) == set(METHODS)


# ------------------------------------------------------------------ UMAP (numba: compiles once)
@pytest.fixture(scope="module")
def umap_frames():
    A = frames(0, n=40, d=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ref = embed(A, method="umap", reference=1, seed=5, settings={"n_epochs": 100})
        aligned = embed(
            A, method="umap", fit="aligned", reference=1, seed=5, settings={"n_epochs": 100}
        )
    noise = [
        str(w.message)
        for w in caught
        if "n_jobs" in str(w.message) or "Tensorflow" in str(w.message)
    ]
    assert noise == []  # handled inside embed
    return A, ref, aligned


@pytest.mark.slow
def test_umap_reference_fit_is_applied_with_transform(umap_frames):
    import umap

    A, (table, emb), _ = umap_frames
    assert emb.fit == "reference" and emb.settings["n_neighbors"] == 15
    assert emb.versions["umap-learn"] == umap.__version__
    model = umap.UMAP(n_components=2, random_state=5, **emb.settings).fit(A[1])
    np.testing.assert_allclose(frame(table, 1), model.embedding_)  # reproduced from the record
    np.testing.assert_allclose(frame(table, 0), model.transform(A[0]), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_aligned_umap_keeps_a_rotated_copy_in_place(umap_frames):
    _, _, (table, emb) = umap_frames
    assert emb.fit == "aligned" and emb.align is False
    assert rel_diff(frame(table, 2), frame(table, 1)) < 0.3
    assert rel_diff(frame(table, 0), frame(table, 1)) < 1.0


# ------------------------------------------------------------------ from a recorded run
def test_embed_a_recorded_layer(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3))
    x, y = torch.randn(30, 6), torch.randint(0, 3, (30,))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with Recorder(net, layers=["0"], store=tmp_path / "run.zarr", probe=(x, y), every=4) as rec:
        for _ in range(8):
            loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.step(loss=loss)
    run = probe.open_run(tmp_path / "run.zarr")
    table, emb = embed(run.acts("0"), run.steps, labels=run.targets, method="mds")
    assert emb.steps == (0, 4, 8) and len(table) == 90
    np.testing.assert_array_equal(table.label[:30], y.numpy())
