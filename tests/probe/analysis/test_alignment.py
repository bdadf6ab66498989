import numpy as np
import pytest
import torch
from torch import nn

import probe
from hooks import Recorder
from probe.analysis.alignment import (
    alignment,
    alignment_over_steps,
    misalignment,
    output_correlation,
    prediction_agreement,
    prediction_sq_distances,
)
from probe.errors import InvalidArrayError, MissingTargetsError, ShapeMismatchError


def setup(seed, n=40, d=3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal((n, d)), rng.integers(0, n, (25, 2))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_point_quantities_match_reference(seed):
    Yhat, Y, pairs = setup(seed)
    dyh = np.array([Yhat[j] - Yhat[i] for i, j in pairs])
    dy = np.array([Y[j] - Y[i] for i, j in pairs])
    y = prediction_sq_distances(Yhat, pairs)
    w = misalignment(Yhat, Y, pairs)
    a = alignment(Yhat, Y, pairs)
    np.testing.assert_allclose(y, (dyh**2).sum(1), rtol=1e-12)
    np.testing.assert_allclose(w, (dyh**2).sum(1) - (dy * dyh).sum(1), atol=1e-12)
    np.testing.assert_allclose(a, (dy * dyh).sum(1), atol=1e-12)
    np.testing.assert_allclose(a, y - w, atol=1e-12)
    # w = 0 at the solution
    np.testing.assert_allclose(misalignment(Y, Y, pairs), 0.0, atol=1e-12)
    # 1-D outputs read as (n, 1)
    np.testing.assert_allclose(
        alignment(Yhat[:, 0], Y[:, 0], pairs), alignment(Yhat[:, :1], Y[:, :1], pairs), atol=0
    )


def test_two_point_errors():
    Yhat, Y, pairs = setup(0)
    with pytest.raises(
        ShapeMismatchError, match=r"Yhat and Y must have the same shape; got Yhat.shape=\(40, 3\)"
    ):
        misalignment(Yhat, Y[:, :2], pairs)
    with pytest.raises(ShapeMismatchError, match="Yhat and Y must have the same shape"):
        alignment(Yhat, Y[:30], pairs)
    with pytest.raises(InvalidArrayError, match="Yhat must be finite"):
        prediction_sq_distances(np.full((3, 2), np.inf), [[0, 1]])
    with pytest.raises(InvalidArrayError, match="Y must be a real numeric array"):
        alignment(Yhat, Y.astype(str), pairs)


def test_prediction_agreement():
    P = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.0, 0.1, 0.9], [0.5, 0.4, 0.1]])
    Q = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0], [0.0, 0.0, 1.0], [0.0, 5.0, 0.0]])
    assert prediction_agreement(P, Q) == 0.5
    assert prediction_agreement(P, P) == 1.0
    assert prediction_agreement(P.astype(np.float32), P[::-1]) == 0.5  # argmax 0,1,2,0 vs 0,2,1,0
    with pytest.raises(
        ShapeMismatchError,
        match=r"P and Q must have the same shape; got P.shape=\(4, 3\), Q.shape=\(4, 2\)",
    ):
        prediction_agreement(P, Q[:, :2])
    with pytest.raises(
        InvalidArrayError, match=r"P must have at least 2 dimensions; got shape \(3,\)"
    ):
        prediction_agreement(P[0], Q[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_output_correlation(seed):
    rng = np.random.default_rng(seed)
    P, Q = rng.standard_normal((20, 4)), rng.standard_normal((20, 4))
    assert output_correlation(P, Q) == pytest.approx(
        np.corrcoef(P.ravel(), Q.ravel())[0, 1], abs=1e-12
    )
    assert output_correlation(P, 3 * P + 1) == pytest.approx(1.0, abs=1e-12)
    assert output_correlation(P, -P) == pytest.approx(-1.0, abs=1e-12)
    assert output_correlation([1.0, 2.0, 3.0, 4.0], [1.0, 0.0, 0.0, 1.0]) == 0.0


def test_output_correlation_errors():
    with pytest.raises(
        InvalidArrayError, match=r"Q must vary; got 4 equal values \(zero variance\)"
    ):
        output_correlation([1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 2.0])
    with pytest.raises(ShapeMismatchError, match="P and Q must have the same shape"):
        output_correlation(np.zeros((2, 3)), np.zeros((3, 2)))


# ------------------------------------------------------------------ run helper
def make_run(path, y):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3))
    x = torch.randn(30, 6)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with Recorder(net, layers=["0"], store=path, probe=(x, y), every=2) as rec:
        for _ in range(4):
            loss = net(x).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.step(loss=loss)
    return probe.open_run(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("align")
    torch.manual_seed(1)
    return {
        "labels": make_run(root / "labels.zarr", torch.randint(0, 3, (30,))),
        "values": make_run(root / "values.zarr", torch.randn(30, 3)),
        "bad_labels": make_run(root / "bad.zarr", torch.arange(30)),
        "none": make_run(root / "none.zarr", None),
    }


def test_alignment_over_steps_matches_direct(runs):
    pairs = np.array([[0, 1], [2, 5], [7, 3], [4, 4]])
    for name in ("labels", "values"):
        run = runs[name]
        res = alignment_over_steps(run, pairs)
        outs = run.outputs()
        Y = np.eye(3)[run.targets] if name == "labels" else run.targets
        assert res["y"].shape == res["w"].shape == res["a"].shape == (len(run.steps), 4)
        np.testing.assert_array_equal(res["steps"], run.steps)
        for s in range(len(run.steps)):
            np.testing.assert_allclose(
                res["y"][s], prediction_sq_distances(outs[s], pairs), atol=1e-12
            )
            np.testing.assert_allclose(res["w"][s], misalignment(outs[s], Y, pairs), atol=1e-12)
            np.testing.assert_allclose(res["a"][s], alignment(outs[s], Y, pairs), atol=1e-12)
        np.testing.assert_allclose(res["a"], res["y"] - res["w"], atol=1e-12)


def test_alignment_over_steps_errors(runs):
    assert runs["none"].targets is None  # recorded with probe=(x, None)
    with pytest.raises(
        MissingTargetsError, match="run.targets must be stored to compute w and a; got None"
    ):
        alignment_over_steps(runs["none"], [[0, 1]])
    with pytest.raises(
        InvalidArrayError,
        match=r"integer targets must be class labels in \[0, 3\) .*got labels in \[0, 29\]",
    ):
        alignment_over_steps(runs["bad_labels"], [[0, 1]])


def test_alignment_over_steps_shape_error():
    class FakeRun:
        steps = np.array([0, 1])
        targets = np.zeros((5, 2))

        def outputs(self, step=None, *, key="acts"):
            return np.zeros((2, 5, 3))

    with pytest.raises(
        ShapeMismatchError,
        match=r"run targets must match the outputs' \(n_samples, d_out\)"
        r".*got targets \(5, 2\), outputs \(5, 3\)",
    ):
        alignment_over_steps(FakeRun(), [[0, 1]])
