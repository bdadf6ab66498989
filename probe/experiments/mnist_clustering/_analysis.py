"""Analysis of the nets' run stores: divergence, per-net r over training, CIs and net averages.

`read_net` loads what one net's store holds; `per_net_table` compares every net's matrix with the
prediction at every snapshot; `trajectory_table` gives the mean over the averaged nets with a
percentile-bootstrap CI at every snapshot; `averaged_table` compares the mean matrix of those
nets (raw and scaled) with the prediction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from probe.analysis.similarity import pairwise_sq_distances
from probe.analysis.stats.paired import bootstrap_ci
from probe.errors import InvalidArrayError
from probe.store import open_run
from probe.theory.cluster_theory import (
    between_class_correlation,
    matrix_correlation,
    within_between_sq_distance,
)

__all__ = [
    "VARIANTS",
    "NetRecord",
    "averaged_table",
    "compare",
    "per_net_table",
    "read_net",
    "trajectory_table",
]

F64 = npt.NDArray[np.float64]

#: The four correlations: over all entries or different-class entries, raw or normalised prediction.
VARIANTS = ("r_all", "r_between", "r_all_normalised", "r_between_normalised")


def _or_nan(fn: Callable[..., Any], *args: Any) -> Any:
    # r is undefined for a non-finite (diverged) or constant (dead layer) matrix: NaN, not a crash
    try:
        return fn(*args)
    except InvalidArrayError:
        return math.nan


def compare(measured: F64, pred: F64, norm: F64, labels: npt.NDArray[Any]) -> dict[str, float]:
    """Return the four r of `VARIANTS` and the within/between mean squared distances.

    Parameters
    ----------
    measured : ndarray of shape (n, n)
        Measured squared distances (NaN entries give NaN everywhere).
    pred, norm : ndarray of shape (n, n)
        Raw and class-size-normalised prediction.
    labels : ndarray of shape (n,)
        Probe labels.

    Returns
    -------
    dict of str to float
        `VARIANTS`, ``within_sq_distance``, ``between_sq_distance``, ``between_over_within``;
        NaN where undefined (a non-finite or constant matrix).
    """
    wb = _or_nan(within_between_sq_distance, measured, labels)
    within, between = wb if isinstance(wb, tuple) else (math.nan, math.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(np.float64(between) / np.float64(within))
    return {
        "r_all": _or_nan(matrix_correlation, measured, pred),
        "r_between": _or_nan(between_class_correlation, measured, pred, labels),
        "r_all_normalised": _or_nan(matrix_correlation, measured, norm),
        "r_between_normalised": _or_nan(between_class_correlation, measured, norm, labels),
        "within_sq_distance": within,
        "between_sq_distance": between,
        "between_over_within": ratio,
    }


@dataclass(frozen=True)
class NetRecord:
    """What one net's run store holds, read by `read_net`.

    Attributes
    ----------
    config : dict
        The settings the net was trained with (the store's config).
    steps : ndarray of int64 of shape (n_snapshots,)
        Snapshot steps.
    dists : ndarray of float64 of shape (n_snapshots, n, n)
        Squared distances of the probe images at each snapshot (NaN where activations are not
        finite).
    labels : ndarray of shape (n,)
        Probe labels.
    loss_steps, losses : ndarray of shape (n_batches,)
        Step and batch loss of every optimizer step.
    accuracy_steps, accuracies : ndarray of shape (n_epochs,)
        Step and test accuracy at every epoch end.
    """

    config: dict[str, Any]
    steps: npt.NDArray[np.int64]
    dists: F64
    labels: npt.NDArray[Any]
    loss_steps: npt.NDArray[np.int64]
    losses: F64
    accuracy_steps: npt.NDArray[np.int64]
    accuracies: F64

    @property
    def test_accuracy(self) -> float:
        """Test accuracy at the end of the last epoch (NaN if none was logged)."""
        return float(self.accuracies[-1]) if len(self.accuracies) else math.nan


def _sq_distances(acts: Any) -> F64:
    a = np.asarray(acts)
    if not np.isfinite(a).all():
        return np.full((a.shape[0], a.shape[0]), np.nan)
    return pairwise_sq_distances(a)


def read_net(store: str | Path, layer: str) -> NetRecord:
    """Read one net's snapshots, batch losses and final test accuracy from its run store.

    Parameters
    ----------
    store : str or path
        A ``net-XX/run.zarr`` written by `run_mnist_clustering`.
    layer : str
        Recorded layer, e.g. ``"hidden.2"``.

    Returns
    -------
    NetRecord
    """
    run = open_run(store)
    table = run.metrics()
    # rec.step logs the loss alone, rec.log the test accuracy alone: a row without accuracy is
    # a batch (its loss may be NaN after a blow-up)
    batches = table[table["test_accuracy"].isna()]
    epochs = table[table["test_accuracy"].notna()]
    return NetRecord(
        config=dict(run.attrs.get("config", {})),
        steps=np.asarray(run.steps, dtype=np.int64),
        dists=np.stack([_sq_distances(a) for a in run.acts(layer)]),
        labels=np.asarray(run.targets),
        loss_steps=batches["step"].to_numpy(np.int64),
        losses=batches["loss"].to_numpy(np.float64),
        accuracy_steps=epochs["step"].to_numpy(np.int64),
        accuracies=epochs["test_accuracy"].to_numpy(np.float64),
    )


def per_net_table(
    dists: F64, steps: npt.NDArray[np.int64], pred: F64, norm: F64, labels: npt.NDArray[Any]
) -> pd.DataFrame:
    """Compare every net's matrix with the prediction at every snapshot.

    Parameters
    ----------
    dists : ndarray of shape (n_nets, n_snapshots, n, n)
        Squared distances per net and snapshot.
    steps : ndarray of shape (n_snapshots,)
        Snapshot steps (the same for every net).
    pred, norm, labels : ndarray
        Predictions and probe labels, as in `compare`.

    Returns
    -------
    pandas.DataFrame
        One row per (net, step): ``net``, ``step`` and the columns of `compare`.
    """
    rows = [
        {"net": i, "step": int(s), **compare(m, pred, norm, labels)}
        for i, net in enumerate(dists)
        for s, m in zip(steps, net, strict=True)
    ]
    return pd.DataFrame(rows)


def trajectory_table(
    per_net: pd.DataFrame, chosen: pd.Series, *, n_resamples: int, level: float, seed: int
) -> pd.DataFrame:
    """Return the mean of each r over the chosen rows with its percentile-bootstrap CI per step.

    Parameters
    ----------
    per_net : pandas.DataFrame
        `per_net_table`.
    chosen : pandas.Series of bool
        Which rows of ``per_net`` enter the mean (e.g. those of the kept nets).
    n_resamples, level, seed : int, float, int
        Bootstrap settings (`probe.analysis.stats.paired.bootstrap_ci`, statistic ``mean``;
        the same seed at every step draws the same resampled sets of nets).

    Returns
    -------
    pandas.DataFrame
        One row per (step, variant): ``step``, ``variant``, ``n_nets`` (nets with a finite r),
        ``mean``, ``ci_low``, ``ci_high`` (NaN when no net has a finite r).
    """
    rows = []
    for step in np.unique(per_net["step"]):  # every step, also when no net is averaged
        part = per_net[chosen & (per_net["step"] == step)]
        for variant in VARIANTS:
            values = part[variant].to_numpy(np.float64)
            values = values[np.isfinite(values)]
            low = high = mean = math.nan
            if values.size:
                mean = float(values.mean())
                low, high = bootstrap_ci(
                    values, statistic="mean", n_resamples=n_resamples, level=level, seed=seed
                )
            rows.append(
                {"step": int(step), "variant": variant, "n_nets": int(values.size),
                 "mean": mean, "ci_low": low, "ci_high": high}
            )  # fmt: skip
    return pd.DataFrame(rows)


def averaged_table(
    dists: F64, steps: npt.NDArray[np.int64], pred: F64, norm: F64, labels: npt.NDArray[Any]
) -> tuple[pd.DataFrame, dict[str, F64]]:
    """Compare the mean matrix of the given nets, raw and scaled, with the prediction.

    Parameters
    ----------
    dists : ndarray of shape (n_averaged, n_snapshots, n, n)
        The averaged nets' squared distances (may be empty: every r is then NaN).
    steps, pred, norm, labels
        As `per_net_table`.

    Returns
    -------
    table : pandas.DataFrame
        One row per (average, step): ``average`` (``raw``: mean of the matrices, the authors'
        protocol; ``scaled``: mean after dividing each matrix by its mean entry, so that one
        net whose representations grew by orders of magnitude does not dominate), ``step`` and
        the columns of `compare`.
    matrices : dict of str to ndarray of shape (n, n)
        Final ``measured`` and ``measured_scaled`` means.
    """
    n = len(labels)
    if len(dists):
        means = {
            "raw": dists.mean(axis=0),
            "scaled": (dists / dists.mean(axis=(2, 3), keepdims=True)).mean(axis=0),
        }
    else:
        means = {k: np.full((len(steps), n, n), np.nan) for k in ("raw", "scaled")}
    rows = [
        {"average": name, "step": int(s), **compare(m, pred, norm, labels)}
        for name, mean in means.items()
        for s, m in zip(steps, mean, strict=True)
    ]
    final = {"measured": means["raw"][-1], "measured_scaled": means["scaled"][-1]}
    return pd.DataFrame(rows), final
