"""Representations of two runs compared: CKA of a layer at matched snapshots, on shared samples.

Two runs of one net (seeds) or of two nets (e.g. the branches of ProductNet and SumNet) each
record a layer on a probe set; `cross_run_cka` pairs their snapshots (same epoch, or same
step), keeps the probe samples both recorded (by dataset index) in one order, and returns the
linear CKA of the two layers at each pair (Kornblith et al. 2019; `probe.analysis.similarity`).
"""

from __future__ import annotations

import os

import numpy as np
import numpy.typing as npt
import pandas as pd

from probe.analysis.similarity import linear_cka
from probe.errors import ConfigError, ShapeMismatchError, StepNotFoundError
from probe.store import Run, open_run

__all__ = ["MATCHES", "cross_run_cka", "matched_snapshots"]

#: How snapshots are paired: the last snapshot of each epoch both runs have, or equal steps.
MATCHES = ("epoch", "step")


def _as_run(run: Run | str | os.PathLike[str]) -> Run:
    return run if isinstance(run, Run) else open_run(run)


def _last_per_epoch(run: Run) -> dict[int, int]:
    """Return epoch -> step of the run's last snapshot of that epoch."""
    return {int(e): int(s) for s, e in zip(run.steps, run.epochs, strict=True)}


def matched_snapshots(a: Run, b: Run, match: str = "epoch") -> pd.DataFrame:
    """Return the snapshot pairs of two runs: columns ``epoch, step_a, step_b``.

    Parameters
    ----------
    a, b : Run
        The runs.
    match : {"epoch", "step"}
        ``"epoch"``: the last snapshot of every epoch both runs reached (runs of different
        lengths or logging rates); ``"step"``: snapshots at the same global step.

    Returns
    -------
    DataFrame
        One row per pair, in step order of ``a``.

    Raises
    ------
    ConfigError
        ``match`` is not one of `MATCHES`.
    StepNotFoundError
        The runs share no epoch (or no step).
    """
    if match not in MATCHES:
        msg = f"match must be one of {list(MATCHES)}; got {match!r}."
        raise ConfigError(msg)
    if match == "epoch":
        ea, eb = _last_per_epoch(a), _last_per_epoch(b)
        rows = [(e, ea[e], eb[e]) for e in sorted(set(ea) & set(eb))]
    else:
        epoch = dict(zip(a.steps.tolist(), a.epochs.tolist(), strict=True))
        rows = [(epoch[s], s, s) for s in sorted(set(a.steps.tolist()) & set(b.steps.tolist()))]
    if not rows:
        msg = (
            f"the runs share no {match}: {a.path} has {match}s {getattr(a, match + 's').tolist()}, "
            f"{b.path} has {getattr(b, match + 's').tolist()}. Compare runs of the same "
            "schedule, or match='epoch'."
        )
        raise StepNotFoundError(msg)
    return pd.DataFrame(rows, columns=["epoch", "step_a", "step_b"])


def _shared_samples(a: Run, b: Run) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Return the positions in ``a`` and ``b`` of the probe samples both recorded, aligned."""
    ids, ia, ib = np.intersect1d(a.sample_ids, b.sample_ids, return_indices=True)
    if len(ids) < 2:
        msg = (
            f"the runs share {len(ids)} probe samples (by dataset index; {len(a.sample_ids)} in "
            f"{a.path}, {len(b.sample_ids)} in {b.path}); CKA needs at least 2. Record both "
            "runs on the same probe set."
        )
        raise ShapeMismatchError(msg)
    return ia, ib


def cross_run_cka(
    run_a: Run | str | os.PathLike[str],
    run_b: Run | str | os.PathLike[str],
    layer: str,
    *,
    layer_b: str | None = None,
    match: str = "epoch",
    key: str = "acts",
    unbiased: bool = False,
) -> pd.DataFrame:
    """Return the linear CKA between a layer of two runs at each matched snapshot.

    Parameters
    ----------
    run_a, run_b : Run or path
        The runs (e.g. two seeds, or a ProductNet and a SumNet run).
    layer : str
        Layer of ``run_a`` (and of ``run_b`` unless ``layer_b``); activations of shape
        (n_samples, ...) per snapshot, flattened over the trailing axes.
    layer_b : str, optional
        Layer of ``run_b`` when named differently (e.g. another branch).
    match : {"epoch", "step"}
        How snapshots are paired (`matched_snapshots`).
    key : str
        Recorded array of the layers (``acts``, or e.g. ``acts.0`` for one output).
    unbiased : bool
        Unbiased HSIC estimator (`probe.analysis.similarity.linear_cka`).

    Returns
    -------
    DataFrame
        One row per pair: ``epoch, step_a, step_b, n_samples, cka``.

    Raises
    ------
    ConfigError, StepNotFoundError
        See `matched_snapshots`.
    ShapeMismatchError
        The runs share fewer than 2 probe samples.
    LayerNotInRunError
        A run did not record the layer.
    InvalidArrayError
        A representation is constant or not finite (see `linear_cka`).

    Examples
    --------
    Two seeds of ``probe run seq-mnist --dataset digits`` (same probe set)::

        cross_run_cka("seed0/run.zarr", "seed1/run.zarr", "rnn")
    """
    a, b = _as_run(run_a), _as_run(run_b)
    pairs = matched_snapshots(a, b, match)
    ia, ib = _shared_samples(a, b)
    values = []
    for sa, sb in zip(pairs["step_a"], pairs["step_b"], strict=True):
        xa = np.asarray(a.acts(layer, int(sa), key=key))[ia]
        xb = np.asarray(b.acts(layer_b or layer, int(sb), key=key))[ib]
        values.append(linear_cka(xa, xb, unbiased=unbiased))
    return pairs.assign(n_samples=len(ia), cka=values)
