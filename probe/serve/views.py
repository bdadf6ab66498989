"""Views of one run computed on demand and memoised in its `probe.serve.cache.RunCache`.

Each function reuses an analysis of `probe.analysis` or `probe.theory` and keeps what it
computed, so a redraw after a new snapshot computes only what the snapshot adds:

* `embedding_frame`: PCA of a layer fitted once on a reference step (the last one when first
  asked for) and applied to every step (`probe.analysis.embed.embed`, ``fit="reference"``), so
  the axes are shared by all steps and motion is change.
* `cka_steps`: a layer's linear CKA between snapshots (step x step), each pair computed once.
* `cka_layers`: linear CKA between every pair of layers at one step.
* `geometry_table`: `probe.analysis.clusters.geometry` of every layer at one step.
* `nfa_table`: `probe.analysis.features.nfa_over_steps` of a layer with recorded AGOPs.
* `two_point`: the two-point effective-theory fit (`probe.theory.effective_fit`), where the run
  is a two-sample regression probe.

Memory stays bounded on a long live run: per-step entries (embedding frames, CKA between layers)
keep the `MAX_MEMO_STEPS` most recently used steps of each layer (or layer set), and the NFA
table and two-point fit keep one entry per layer, extended or replaced as snapshots arrive.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from probe.analysis import clusters, embed, features, similarity
from probe.errors import ProbeError
from probe.serve.cache import RunCache
from probe.store import Run
from probe.theory import effective_fit

__all__ = [
    "HEATMAP_BUDGET_S",
    "MAX_HEATMAP_STEPS",
    "MAX_MEMO_STEPS",
    "MAX_POINTS",
    "cka_layers",
    "cka_steps",
    "embedding_frame",
    "geometry_table",
    "heatmap_steps",
    "nfa_layers",
    "nfa_table",
    "two_point",
    "two_point_why",
]

#: Points drawn per embedding frame (an evenly spaced subset of the probe set).
MAX_POINTS = 1000
#: Snapshots in a step x step heatmap (every k-th, and the last).
MAX_HEATMAP_STEPS = 40
#: Seconds of CKA pairs per heatmap redraw; the rest follow at the next polls.
HEATMAP_BUDGET_S = 0.5
#: Steps whose embedding frame (or layer CKA matrix) stays memoised per layer (per layer set).
MAX_MEMO_STEPS = 64


def _run(cache: RunCache) -> Run:
    run = cache.run
    assert run is not None  # callers draw an error card instead
    return run


def _recall(cache: RunCache, key: tuple[Any, ...]) -> Any:
    """Return ``cache.memo[key]`` marked most recently used, or None when it is not there."""
    if key not in cache.memo:
        return None
    cache.memo[key] = value = cache.memo.pop(key)  # dicts keep insertion order: moved last
    return value


def _keep(cache: RunCache, key: tuple[Any, ...], value: Any) -> Any:
    """Memoise a per-step ``value`` under ``key``; evict the least recently used steps.

    Entries sharing ``key[:2]`` (kind and layer) are one group of at most `MAX_MEMO_STEPS`.
    """
    cache.memo[key] = value
    # list(dict) copies the keys in one step (no bytecode runs), so a view that inserts into
    # the memo from another thread meanwhile cannot break the scan.
    group = [k for k in list(cache.memo) if k[:2] == key[:2]]  # oldest use first
    for old in group[: max(len(group) - MAX_MEMO_STEPS, 0)]:
        cache.memo.pop(old, None)
    return value


def embedding_frame(cache: RunCache, layer: str, step: int) -> pd.DataFrame:
    """Return the 2-D PCA coordinates of ``layer`` at ``step``.

    The projection is fitted on the reference step chosen at the first call for this layer and
    is reused for every later step, including steps committed later.

    Returns
    -------
    DataFrame
        At most `MAX_POINTS` rows (an evenly spaced subset of the probe set); columns
        ``sample_id, label, target, x, y``: ``label`` is the integer class of a sample (NaN
        unless the probe targets are 1-D integers), ``target`` its float target (NaN unless
        they are 1-D floats, as for a regression probe).
    """
    run = _run(cache)
    ref_key = ("embed-ref", layer)
    if ref_key not in cache.memo:
        cache.memo[ref_key] = int(run.steps[-1])
    ref = cache.memo[ref_key]
    key = ("embed", layer, ref, int(step))
    frame = _recall(cache, key)
    if frame is not None:
        return frame
    steps = [ref] if step == ref else [ref, int(step)]
    frames = np.stack([run.acts(layer, s) for s in steps])
    n = frames.shape[1]
    keep = np.arange(0, n, -(-n // MAX_POINTS))
    y = run.targets
    one_d = y is not None and y.ndim == 1
    # covariance_eigh: an eigendecomposition of the (d, d) covariance, ~10x faster than a
    # full SVD of the (n_samples, d) frame, and it is refitted for every new step.
    table, _ = embed.embed(
        frames, steps, labels=y if one_d else None, reference=ref, layer=layer,
        settings={"svd_solver": "covariance_eigh"},
    )
    table = table[table["step"] == int(step)].iloc[keep].reset_index(drop=True)
    classes = one_d and y is not None and y.dtype.kind in "biu"
    nan = np.full(len(table), np.nan)
    frame = pd.DataFrame({
        "sample_id": table["sample_id"],
        "label": table["label"] if classes else nan,
        "target": table["label"].astype(float) if one_d and not classes else nan,
        "x": table["x"],
        "y": table["y"],
    })
    return _keep(cache, key, frame)


def heatmap_steps(steps: npt.NDArray[np.int64]) -> list[int]:
    """Return at most `MAX_HEATMAP_STEPS` of ``steps``: every k-th, the last pick being the last.

    ``k`` is a power of two, so as snapshots arrive the picked steps stay the same until ``k``
    doubles, and then the new picks are a subset of the old: their CKA pairs are computed
    already and only the newest step's row is new.

    Examples
    --------
    >>> picked = heatmap_steps(np.arange(0, 1000, 10))
    >>> len(picked), picked[:3], picked[-1]
    (25, [0, 40, 80], 990)
    """
    stride = 1
    while len(steps) > stride * MAX_HEATMAP_STEPS:
        stride *= 2
    picked = [int(s) for s in steps[::stride]]
    if len(steps) and picked[-1] != int(steps[-1]):
        picked[-1] = int(steps[-1])
    return picked


def cka_steps(
    cache: RunCache, layer: str, budget_s: float = HEATMAP_BUDGET_S
) -> tuple[list[int], npt.NDArray[np.float64]]:
    """Return the heatmap steps and ``M[i, j] = linear_cka(acts at step i, acts at step j)``.

    Pairs not computed yet are NaN: each call computes new pairs for about ``budget_s``
    seconds, the newest step's first, and marks the heatmap pending in ``cache.pending`` until
    it is complete, so the page's next poll redraws it (a long run's first view stays fast).
    """
    run = _run(cache)
    steps = heatmap_steps(run.steps)
    pairs = cache.memo.setdefault(("cka-pairs", layer), {})
    acts: dict[int, Any] = {}

    def get(s: int) -> Any:
        if s not in acts:
            acts[s] = run.acts(layer, s)
        return acts[s]

    start, computed, complete = time.perf_counter(), 0, True
    M = np.eye(len(steps))
    for i in reversed(range(len(steps))):
        for j in range(i):
            a, b = steps[i], steps[j]
            if (b, a) not in pairs:
                if computed and time.perf_counter() - start > budget_s:
                    complete = False
                    M[i, j] = M[j, i] = np.nan
                    continue
                pairs[(b, a)] = _cka_or_nan(get(b), get(a))
                computed += 1
            M[i, j] = M[j, i] = pairs[(b, a)]
    # Only the layer shown continues: a heatmap left half-drawn for another layer would keep the
    # run's version changing at every poll, so every page of the run would redraw for good.
    cache.pending -= {p for p in cache.pending if p[0] == "cka-steps"}
    if not complete:
        cache.pending.add(("cka-steps", layer))
    return steps, M


def _cka_or_nan(X: Any, Y: Any) -> float:
    try:
        return similarity.linear_cka(X, Y)
    except ProbeError:  # constant activations (a dead layer): CKA undefined
        return float("nan")


def cka_layers(cache: RunCache, layers: list[str], step: int) -> npt.NDArray[np.float64]:
    """Return the linear CKA between every pair of ``layers`` at ``step``."""
    key = ("cka-layers", tuple(layers), int(step))
    M = _recall(cache, key)
    if M is not None:
        return M
    run = _run(cache)
    acts = [run.acts(name, step) for name in layers]
    # Pairwise linear_cka (its feature-space form, O(n d²)) rather than cka_matrix's n x n
    # Gram matrices, which cost O(n² d) per layer on a 2,000-sample probe set.
    M = np.eye(len(layers))
    for i in range(len(layers)):
        for j in range(i):
            M[i, j] = M[j, i] = _cka_or_nan(acts[i], acts[j])
    return _keep(cache, key, M)


def geometry_table(cache: RunCache, layers: list[str], step: int) -> pd.DataFrame:
    """Return `probe.analysis.clusters.geometry` per layer at ``step`` (one column per layer).

    Seconds per layer (silhouette, kNN and linear-probe accuracies), so the page computes it on
    request; the run's lock is held only while reading, so live updates go on meanwhile.
    """
    key = ("geometry", tuple(layers), int(step))
    if key not in cache.memo:
        with cache.lock:
            run = _run(cache)
            y = run.targets
            if y is not None and (y.ndim != 1 or y.dtype.kind not in "biu"):
                y = None
            acts = {name: run.acts(name, step) for name in layers} if y is not None else {}
        columns: dict[str, dict[str, Any]] = {}
        for name in layers:
            if y is None:
                columns[name] = {"note": "needs integer class labels as probe targets"}
                continue
            try:
                columns[name] = clusters.geometry(acts[name], y, sample_size=1000, cv=3)
            except ProbeError as err:
                columns[name] = {"note": str(err)}
        with cache.lock:  # `_keep` iterates the memo under the lock: never insert beside it
            cache.memo[key] = pd.DataFrame(columns)
    return cache.memo[key]


def nfa_layers(cache: RunCache) -> list[str]:
    """Return the layers for which the run recorded weights and AGOPs."""
    run = _run(cache)
    return [name for name in run.layers if {"agop", "weight"} <= set(run.keys(name))]


def nfa_table(cache: RunCache, layer: str) -> pd.DataFrame:
    """Return `probe.analysis.features.nfa_over_steps` of ``layer`` at every snapshot.

    One table per layer, extended by the rows of the snapshots committed since the last call
    (a step's row depends only on that step and the first one), so a live run's new snapshot
    costs one step's work rather than all of them.
    """
    run = _run(cache)
    key = ("nfa", layer)
    n_done, table = cache.memo.get(key, (0, None))
    if table is None or n_done != run.n_snapshots:
        new = [int(s) for s in run.steps[n_done:]]
        if table is None or n_done > run.n_snapshots:  # first call, or a rewritten run
            table = features.nfa_over_steps(run, layer)
        elif new:
            table = pd.concat([table, features.nfa_over_steps(run, layer, steps=new)],
                              ignore_index=True)
        cache.memo[key] = (run.n_snapshots, table)
    return table


def two_point_why(run: Run) -> str:
    """Return why the two-point fit does not apply to ``run``, or "" when it does."""
    y = run.targets
    if run.sample_ids.shape[0] != 2 or y is None or y.dtype.kind != "f":
        return "applies to a regression probe of exactly 2 samples"
    if run.probe_inputs is None:
        return "needs the probe inputs, which the run did not store"
    if run.n_snapshots < 3:
        return f"needs at least 3 snapshots; the run has {run.n_snapshots}"
    return ""


def two_point(cache: RunCache, layer: str) -> tuple[Any, Any]:
    """Return the measured traces and the fit (`TwoPointFit`, or the error text) of ``layer``."""
    run = _run(cache)
    key = ("two-point", layer)  # one entry per layer, replaced when the run has new snapshots
    n_done, traces_fit = cache.memo.get(key, (-1, None))
    if n_done != run.n_snapshots:
        inputs, targets = run.probe_inputs, run.targets
        assert inputs is not None  # checked by two_point_why
        assert targets is not None
        tr = effective_fit.two_point_traces(
            run.acts(layer), run.outputs(), inputs, targets, run.steps
        )
        try:
            fit: Any = effective_fit.fit_two_point(tr)
        except ProbeError as err:
            fit = f"not fitted: {err}"
        traces_fit = (tr, fit)
        cache.memo[key] = (run.n_snapshots, traces_fit)
    return traces_fit
