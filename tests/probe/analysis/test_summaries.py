"""Scalar summaries per snapshot, checked against closed forms, and their TensorBoard export."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from hooks import Recorder
from probe.analysis.summaries import SUMMARY_NAMES, summaries
from probe.errors import LayerNotInRunError
from probe.export.scalars import to_tensorboard
from probe.store import open_run

# Probe rows e1, -e1, e2, -e2 (already centred); classes {e1, e2} and {-e1, -e2}.
X = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
Y = torch.tensor([0, 1, 0, 1])
R = torch.tensor([[0.6, -0.8], [0.8, 0.6]])  # a rotation
# Weights of the one linear layer at steps 0..3: identity, rotation * 3, projection, zero.
WEIGHTS = [torch.eye(2), 3.0 * R, torch.diag(torch.tensor([1.0, 0.0])), torch.zeros(2, 2)]
# Closed forms (derivations in the test docstring).
CKA_PREV = [math.nan, 1.0, 1.0 / math.sqrt(2.0), math.nan]
EFFECTIVE_RANK = [2.0, 2.0, 1.0, math.nan]
SEPARATION = [2.0, 2.0, 2.0, math.inf]


def _record(path, targets=Y, weights=WEIGHTS):
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Identity())
    with torch.no_grad():
        net[0].weight.copy_(weights[0])
    with Recorder(net, ["0", "1"], path, (X, targets), every=1) as rec:
        for w in weights[1:]:
            with torch.no_grad():
                net[0].weight.copy_(w)
            rec.step()
    return path


@pytest.fixture
def run_path(tmp_path):
    return _record(tmp_path / "run.zarr")


def test_summaries_known_answers(run_path):
    """Activations H = X Wᵀ, with X = [e1, -e1, e2, -e2] (centred, XᵀX = 2I).

    * CKA is invariant to rotation and isotropic scaling: 1 from I to 3R. From 3R to
      P = diag(1, 0): CKA(X, XP) = ‖PᵀXᵀX‖²_F / (‖XᵀX‖_F ‖PXᵀXP‖_F) = 4 / (2√2 · 2) = 1/√2.
      Zero activations are constant: CKA and effective rank undefined (NaN).
    * Singular values: (√2, √2) for I, (3√2, 3√2) for 3R → effective rank 2; (√2, 0) for P → 1.
    * Class means ±(e1 + e2)/2 are √2 apart; tr Σ_W = 4 · ½ / 4 = ½, so separation √2/√½ = 2
      (scale and rotation free). Under P: means ±e1/2 (gap 1), tr Σ_W = 4 · ¼ / 4 = ¼ → 2.
      Zero activations: every class collapsed to one point → inf.
    """
    df = summaries(run_path)
    assert list(df.columns) == ["layer", "step", *SUMMARY_NAMES]
    assert df["layer"].tolist() == ["0"] * 4 + ["1"] * 4
    assert df["step"].tolist() == [0, 1, 2, 3] * 2
    for layer in ("0", "1"):  # nn.Identity records the same activations
        rows = df[df["layer"] == layer]
        np.testing.assert_allclose(rows["cka_prev"], CKA_PREV, atol=1e-7)
        np.testing.assert_allclose(rows["effective_rank"], EFFECTIVE_RANK, atol=1e-6)
        np.testing.assert_allclose(rows["centroid_separation"], SEPARATION, atol=1e-6)


def test_summaries_layers_key_and_path(run_path):
    run = open_run(run_path)
    df = summaries(run, layers=["1"])
    assert df["layer"].tolist() == ["1"] * 4
    assert df.equals(summaries(str(run_path), layers=["1"]))
    with pytest.raises(LayerNotInRunError, match="No layer 'head' in this run"):
        summaries(run, layers=["head"])
    assert summaries(run, key="acts.0").empty  # default layers: only those with the key


def test_summaries_without_class_labels(tmp_path):
    path = _record(tmp_path / "reg.zarr", targets=X.clone())  # regression targets (n, 2)
    df = summaries(path, layers=["0"])
    assert df["centroid_separation"].isna().all()
    np.testing.assert_allclose(df["effective_rank"], EFFECTIVE_RANK, atol=1e-6)


def test_summaries_of_a_run_without_snapshots(tmp_path):
    net = nn.Sequential(nn.Linear(2, 2))
    Recorder(net, ["0"], tmp_path / "empty.zarr", (X, Y), final_snapshot=False).close()
    df = summaries(tmp_path / "empty.zarr")
    assert df.empty
    assert list(df.columns) == ["layer", "step", *SUMMARY_NAMES]


def _scalars(logdir):
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {
        tag: ([e.step for e in acc.Scalars(tag)], [e.value for e in acc.Scalars(tag)])
        for tag in acc.Tags()["scalars"]
    }


def test_to_tensorboard_writes_finite_scalars(run_path, tmp_path):
    logdir = to_tensorboard(run_path, tmp_path / "tb", layers=["0"])
    assert logdir == tmp_path / "tb"
    got = _scalars(logdir)
    assert sorted(got) == [f"probe/0/{name}" for name in sorted(SUMMARY_NAMES)]
    steps, values = got["probe/0/cka_prev"]
    assert steps == [1, 2]  # NaN at 0 (no previous) and 3 (constant) are left out
    np.testing.assert_allclose(values, CKA_PREV[1:3], rtol=1e-6)
    steps, values = got["probe/0/effective_rank"]
    assert steps == [0, 1, 2]
    np.testing.assert_allclose(values, EFFECTIVE_RANK[:3], rtol=1e-6)
    steps, values = got["probe/0/centroid_separation"]
    assert steps == [0, 1, 2]  # inf at 3 left out
    np.testing.assert_allclose(values, SEPARATION[:3], rtol=1e-6)


def test_to_tensorboard_into_an_open_writer(run_path, tmp_path):
    writer = SummaryWriter(log_dir=str(tmp_path / "tb"))
    assert to_tensorboard(open_run(run_path), writer) == tmp_path / "tb"
    writer.add_scalar("after", 1.0, global_step=0)  # left open for the caller
    writer.close()
    got = _scalars(tmp_path / "tb")
    assert "after" in got
    assert got["probe/1/effective_rank"][0] == [0, 1, 2]
