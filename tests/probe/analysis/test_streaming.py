import numpy as np
import pytest
import torch
from scipy.stats import ortho_group
from torch import nn

import probe
from hooks import Recorder
from probe.analysis import collapse, dimension
from probe.analysis.clusters import centroid_separation
from probe.analysis.similarity import layer_cka_over_steps, linear_cka
from probe.analysis.streaming import (
    ClassMoments,
    CrossMoments,
    Moments,
    class_moments,
    consecutive_cka,
)
from probe.errors import (
    ConfigError,
    EmptyAccumulatorError,
    InvalidArrayError,
    LayerNotInRunError,
    ShapeMismatchError,
)

RTOL = 1e-10


def close(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    assert a.shape == b.shape
    assert np.max(np.abs(a - b)) <= RTOL * max(1.0, float(np.max(np.abs(b))))


def chunks(rng, n, k=4):
    """Random split points of range(n) into k non-empty chunks."""
    cuts = np.sort(rng.choice(np.arange(1, n), size=k - 1, replace=False))
    return np.split(np.arange(n), cuts)


def labelled(seed, n=90, d=6, C=3, offset=0.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    X = 3.0 * np.eye(C, d)[y] + rng.standard_normal((n, d)) + offset
    return rng, X, y


# ------------------------------------------------------------------ Moments
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_moments_equal_in_memory(seed, offset):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((80, 5)) * [1.0, 2.0, 0.1, 5.0, 1.0] + offset
    m = Moments()
    for idx in chunks(rng, 80):
        m.update(X[idx])
    Xc = X - X.mean(axis=0)
    assert m.n_samples_ == 80
    close(m.mean_, X.mean(axis=0))
    close(m.scatter_ / 79, np.cov(X, rowvar=False))
    close(m.scatter_, Xc.T @ Xc)


def test_moments_flatten_extra_axes_and_single_chunk():
    X = np.random.default_rng(3).standard_normal((10, 2, 3))
    m = Moments().update(X)
    Xf = X.reshape(10, 6)
    close(m.scatter_, (Xf - Xf.mean(0)).T @ (Xf - Xf.mean(0)))


def test_moments_rejects_a_chunk_of_another_width():
    m = Moments().update(np.ones((4, 3)))
    with pytest.raises(InvalidArrayError, match="must have 3 features .* got shape \\(4, 2\\)"):
        m.update(np.ones((4, 2)))


# ------------------------------------------------------------------ ClassMoments
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_class_moments_equal_collapse_metrics(seed, offset):
    rng, X, y = labelled(seed, offset=offset)
    order = np.argsort(y, kind="stable")  # chunks that see one class first, others later
    X, y = X[order], y[order]
    cm = ClassMoments()
    for idx in chunks(rng, X.shape[0], k=5):
        cm.update(X[idx], y[idx])
    stats = collapse.class_statistics(X, y)
    np.testing.assert_array_equal(cm.classes_, stats.classes)
    np.testing.assert_array_equal(cm.counts_, stats.counts)
    close(cm.means_, stats.means)
    close(cm.within_scatter_, stats.residuals.T @ stats.residuals)
    got = cm.metrics()
    want = {
        "nc1": collapse.nc1(X, y),
        "nc1_quotient": collapse.nc1_quotient(X, y),
        "cdnv": collapse.cdnv(X, y),
        "participation_ratio": dimension.participation_ratio(X),
        "centroid_separation": centroid_separation(X, y),
    }
    want.update({f"nc2_{k}": v for k, v in collapse.etf_measures(stats.centred_means).items()})
    assert set(got) == set(want)
    for key, value in want.items():
        close(got[key], value)


def test_class_moments_string_labels_and_collapsed_classes():
    X = np.array([[0.0, 1.0], [0.0, 1.0], [4.0, 1.0], [4.0, 1.0]])
    y = np.array(["b", "b", "a", "a"])
    cm = ClassMoments().update(X[:1], y[:1]).update(X[1:], y[1:])
    assert cm.classes_.tolist() == ["a", "b"]
    assert cm.nc1() == 0.0
    assert cm.metrics()["centroid_separation"] == float("inf")


def test_class_moments_errors():
    cm = ClassMoments()
    with pytest.raises(EmptyAccumulatorError, match="needs at least 2 accumulated samples; got 0"):
        cm.nc1()
    with pytest.raises(InvalidArrayError, match="y must be 1-D class labels"):
        cm.update(np.ones((4, 2)), np.zeros((4, 1)))
    with pytest.raises(ShapeMismatchError, match="X and y must have the same number"):
        cm.update(np.ones((4, 2)), np.zeros(3))
    cm.update(np.arange(8.0).reshape(4, 2), [0, 0, 0, 0])
    with pytest.raises(InvalidArrayError, match="at least 2 classes; got 1"):
        cm.nc1_quotient()
    with pytest.raises(InvalidArrayError, match="must have 2 features"):
        cm.update(np.ones((2, 3)), [0, 1])
    same = ClassMoments().update([[1.0], [3.0], [1.0], [3.0]], [0, 0, 1, 1])
    with pytest.raises(InvalidArrayError, match="class means must differ"):
        same.nc1()
    pair = ClassMoments().update([[0.0], [2.0], [0.0], [2.0], [5.0], [6.0]], [0, 0, 1, 1, 2, 2])
    with pytest.raises(InvalidArrayError, match="must be distinct for CDNV"):
        pair.cdnv()


# ------------------------------------------------------------------ CrossMoments
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cross_moments_equal_linear_cka(seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((70, 6)) + 50.0
    Y = np.tanh(X[:, :4] @ rng.standard_normal((4, 9))) + rng.standard_normal((70, 9))
    cm = CrossMoments()
    for idx in chunks(rng, 70, k=6):
        cm.update(X[idx], Y[idx])
    close(cm.linear_cka(), linear_cka(X, Y))


def test_cross_moments_rotation_gives_one():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((40, 5))
    Q = ortho_group.rvs(5, random_state=4)
    cm = CrossMoments().update(X[:13], 2.5 * X[:13] @ Q).update(X[13:], 2.5 * X[13:] @ Q)
    assert cm.linear_cka() == pytest.approx(1.0, abs=1e-12)


def test_cross_moments_errors():
    cm = CrossMoments()
    with pytest.raises(EmptyAccumulatorError, match="linear_cka needs at least 2"):
        cm.linear_cka()
    with pytest.raises(ShapeMismatchError, match="X and Y must have the same number"):
        cm.update(np.ones((3, 2)), np.ones((4, 2)))
    cm.update(np.ones((3, 2)), np.arange(6.0).reshape(3, 2))
    with pytest.raises(InvalidArrayError, match="Y must have 2 features"):
        cm.update(np.ones((3, 2)), np.ones((3, 5)))
    with pytest.raises(InvalidArrayError, match="X must vary across samples; got 3 identical"):
        cm.linear_cka()
    other = CrossMoments().update(np.arange(6.0).reshape(3, 2), np.ones((3, 2)))
    with pytest.raises(InvalidArrayError, match="Y must vary across samples"):
        other.linear_cka()


# ------------------------------------------------------------------ run helpers
def record(path, *, zero=False, n=50, steps=3, targets=True):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    if zero:
        nn.init.zeros_(net[0].weight)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 8, generator=g)
    y = torch.arange(n) % 3
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with Recorder(net, ["0", "2"], path, (x, y) if targets else x, every=1) as rec:
        for _ in range(steps):
            loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            if not zero:
                opt.step()
            rec.step(loss=loss)
    return probe.open_run(path)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return record(tmp_path_factory.mktemp("streaming") / "run.zarr")


def test_run_helpers_equal_in_memory(run):
    y = run.targets
    for layer in ("0", "2"):
        got = class_moments(run, layer, -1, chunk_rows=7).metrics()
        X = run.acts(layer, -1)
        close(got["nc1"], collapse.nc1(X, y))
        close(got["cdnv"], collapse.cdnv(X, y))
        want = np.diag(layer_cka_over_steps(run, layer), k=1)
        close(consecutive_cka(run, layer, chunk_rows=7), want)


def test_run_helper_errors(run, tmp_path):
    for bad in (0, True, 2.5):
        with pytest.raises(ConfigError, match="chunk_rows must be an int >= 1"):
            consecutive_cka(run, "0", chunk_rows=bad)
    with pytest.raises(LayerNotInRunError, match="layer '0' has no array 'acts.1'"):
        class_moments(run, "0", 0, key="acts.1")
    with pytest.raises(InvalidArrayError, match="at least 2 snapshots"):
        consecutive_cka(record(tmp_path / "one.zarr", steps=0), "0")
    flat = record(tmp_path / "flat.zarr", zero=True, targets=False)
    with pytest.raises(InvalidArrayError, match="run.targets must hold 1-D class labels"):
        class_moments(flat, "0", 0)
    with pytest.raises(InvalidArrayError, match="layer '0' between steps 0 and 1: X must vary"):
        consecutive_cka(flat, "0")
