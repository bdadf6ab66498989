"""Low-dimensional views of activations across training steps, drawn in one comparable frame.

`embed` projects stacked activations with PCA, MDS, UMAP or t-SNE so that every step's frame
shares its axes, and returns a tidy table plus an `Embedding` record of the method, seed and
settings. Fit modes per method are in `FITS`.
"""

from __future__ import annotations

import difflib
import inspect
import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.linalg import orthogonal_procrustes

from probe.errors import ConfigError, InvalidArrayError, ShapeMismatchError, StepNotFoundError
from probe.validation import as_float_array, check_int, check_min_samples

__all__ = ["FITS", "METHODS", "Embedding", "embed"]

F64 = npt.NDArray[np.float64]
METHODS = ("pca", "mds", "umap", "tsne")
#: Fit modes per method; the first is the default.
FITS = {
    "pca": ("reference", "joint", "per_step"),
    "mds": ("per_step", "joint"),
    "umap": ("reference", "aligned", "joint"),
    "tsne": ("per_step", "joint"),
}
_MIN_SAMPLES = 5


@dataclass(frozen=True)
class Embedding:
    """How an embedding was made: enough to reproduce its frames.

    Attributes
    ----------
    method, fit : str
        Projection (`METHODS`) and how it was fitted across steps (`FITS`).
    align : bool
        Whether each frame was Procrustes-aligned (rotation/reflection + translation).
    n_components, seed : int
        Output dimensions (2 or 3) and the ``random_state`` given to every estimator.
    steps : tuple of int
        The embedded steps, in frame order.
    reference_step : int
        The step whose frame the others are fitted on or aligned to.
    pre_pca : int or None
        Target dimensions of the PCA applied before the method (capped at the fitted rows - 1),
        None when not applied.
    settings : dict
        Keyword arguments of the estimator (defaults filled in).
    versions : dict
        Versions of the libraries that computed it.
    explained_variance_ratio : tuple of float or None
        PCA only: the fitted components' share of variance (reference step for ``per_step``).
    run, layer : str
        What was embedded (the ``run`` and ``layer`` columns of the table).
    """

    method: str
    fit: str
    align: bool
    n_components: int
    seed: int
    steps: tuple[int, ...]
    reference_step: int
    pre_pca: int | None
    settings: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    explained_variance_ratio: tuple[float, ...] | None = None
    run: str = ""
    layer: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the record as a JSON-ready dict (numpy values in settings become lists)."""
        return json.loads(json.dumps(asdict(self), default=_jsonable))


def embed(
    frames: npt.ArrayLike,
    steps: Sequence[int] | None = None,
    *,
    sample_ids: npt.ArrayLike | None = None,
    labels: npt.ArrayLike | None = None,
    method: str = "pca",
    fit: str | None = None,
    reference: int | None = None,
    n_components: int = 2,
    seed: int = 0,
    pre_pca: int | None = 50,
    align: bool | None = None,
    run: str = "",
    layer: str = "",
    settings: Mapping[str, Any] | None = None,
) -> tuple[pd.DataFrame, Embedding]:
    """Project every step's activations into one frame shared by all steps.

    Parameters
    ----------
    frames : array_like of shape (n_steps, n_samples, n_features, ...)
        The same samples at each step (``Run.acts(layer)``); extra feature axes are flattened.
    steps : sequence of int of length n_steps, optional
        Step of each frame (default ``0 .. n_steps-1``).
    sample_ids : array_like of int of shape (n_samples,), optional
        Sample ids (default ``0 .. n_samples-1``).
    labels : array_like of shape (n_samples,), optional
        Class or target of each sample (the ``label`` column; NaN when None).
    method : {"pca", "mds", "umap", "tsne"}
        The projection.
    fit : str, optional
        ``reference``: fit on the reference step, apply to every step (PCA, UMAP ``transform``).
        ``joint``: one fit on the samples of all steps stacked. ``per_step``: one fit per step,
        Procrustes-aligned to the reference frame (PCA, MDS) or, for t-SNE, initialised from the
        neighbouring frame. ``aligned``: `umap.AlignedUMAP`, each sample related to itself.
        Default: the first of ``FITS[method]``.
    reference : int, optional
        Step of the reference frame; negative values count frames from the end (default last).
    n_components : {2, 3}
        Output dimensions.
    seed : int
        ``random_state`` of every estimator.
    pre_pca : int or None
        For MDS, UMAP and t-SNE, first reduce to this many PCA dimensions when there are more
        features (fitted on the same rows as the method). None or 0: never.
    align : bool, optional
        Procrustes-align each frame (default: only for ``per_step``).
    run, layer : str
        Written in the table's ``run`` and ``layer`` columns and in the record.
    settings : mapping, optional
        Keyword arguments of the estimator (`sklearn.decomposition.PCA`, `sklearn.manifold.MDS`,
        `umap.UMAP` / `umap.AlignedUMAP`, `sklearn.manifold.TSNE`) overriding the defaults.

    Returns
    -------
    table : DataFrame
        Columns ``run, step, layer, sample_id, label, method, x, y[, z]``; ``n_steps *
        n_samples`` rows ordered by step, then sample.
    embedding : Embedding

    Raises
    ------
    ConfigError
        Unknown method, fit, setting, or a bad ``n_components``, ``seed`` or ``pre_pca``.
        Also ``fit="aligned"`` with a single step.
    InvalidArrayError
        ``frames`` is not finite numeric of 3+ dimensions, has fewer than 5 samples or fewer
        features than ``n_components``.
    ShapeMismatchError
        ``steps``, ``sample_ids`` or ``labels`` do not have one entry per frame or sample.
    StepNotFoundError
        ``reference`` is not one of ``steps``.

    Notes
    -----
    Alignment is orthogonal Procrustes with translation and without scaling: a frame ``Y`` becomes
    ``(Y - mean Y) R + mean Y_ref`` with ``R`` orthogonal minimising ``||(Y - mean Y) R - (Y_ref -
    mean Y_ref)||_F``. Rotations and reflections are arbitrary in per-step fits; keeping the scale
    keeps the spread of each cloud meaningful. A rotated copy of a step therefore gets exactly the
    reference frame under per-step PCA and MDS (classical-MDS init). t-SNE has no ``transform``: the
    reference step is fitted first (PCA init), then steps outward from it, each initialised from
    its neighbour's frame with ``early_exaggeration=1`` (the layout exists already) and aligned to
    it; t-SNE drifts along flat directions of its loss, so this is close, not exact. With
    ``reference`` and ``joint`` fits one map is applied to every step, so motion between frames
    is change of the activations themselves, rotations of the neuron basis included.

    Defaults (recorded in ``Embedding.settings``): PCA ``svd_solver="full"``; MDS ``n_init=1``,
    classical-MDS init; UMAP ``n_neighbors=min(15, n_samples - 1)``, ``min_dist=0.1``,
    ``transform_seed=seed``; t-SNE ``perplexity=min(30, (n_samples - 1) / 3)``, PCA init.

    Examples
    --------
    >>> A = np.random.default_rng(0).standard_normal((2, 8, 4))
    >>> table, emb = embed(A, steps=[0, 100])
    >>> table.shape, emb.fit, emb.reference_step
    ((16, 8), 'reference', 100)
    """
    A = as_float_array(frames, "frames", min_ndim=3)
    A = A.reshape(A.shape[0], A.shape[1], -1)
    n_steps, n_samples, n_features = A.shape
    check_min_samples(A[0], _MIN_SAMPLES, "frames", "per step to embed them")
    fit = _check_options(method, fit, n_components, seed, pre_pca, A.shape)
    step_arr = _as_column(np.arange(n_steps) if steps is None else steps, n_steps, "steps")
    ids = _as_column(
        np.arange(n_samples) if sample_ids is None else sample_ids, n_samples, "sample_ids"
    )
    label = None if labels is None else _as_column(labels, n_samples, "labels", dtype=None)
    ref = _reference_index(step_arr, reference)
    align = fit == "per_step" if align is None else bool(align)
    pre = pre_pca if pre_pca and method != "pca" and n_features > pre_pca else None
    cls = _estimator_class(method, fit)
    settings = dict(settings or {})
    _check_settings(method, cls, settings)
    params = {**_default_settings(method, cls, n_samples, seed), **settings}
    make = _maker(cls, n_components, seed, params)
    coords, evr = _project(A, method, fit, ref, make, pre, align)
    if align and not (method == "tsne" and fit == "per_step"):
        coords = np.stack([_procrustes(Y, coords[ref]) for Y in coords])
    emb = Embedding(
        method=method,
        fit=fit,
        align=align,
        n_components=n_components,
        seed=int(seed),
        steps=tuple(int(s) for s in step_arr),
        reference_step=int(step_arr[ref]),
        pre_pca=pre,
        settings=params,
        versions=_versions(method),
        explained_variance_ratio=evr,
        run=run,
        layer=layer,
    )
    return _tidy(coords, step_arr, ids, label, emb), emb


def _as_column(values: Any, n: int, name: str, dtype: Any = np.int64) -> npt.NDArray[Any]:
    """Return ``values`` as an array of shape (n,) or raise `ShapeMismatchError`."""
    arr = np.asarray(values, dtype=dtype)
    if arr.shape != (n,):
        what = "frame" if name == "steps" else "sample"
        msg = f"{name} must have one entry per {what} ({n}); got shape {arr.shape}."
        raise ShapeMismatchError(msg)
    return arr


def _tidy(
    coords: F64,
    steps: npt.NDArray[np.int64],
    ids: npt.NDArray[np.int64],
    labels: npt.NDArray[Any] | None,
    emb: Embedding,
) -> pd.DataFrame:
    """Return the long table of ``coords`` (n_steps, n_samples, k), built without Python loops."""
    n_steps, n_samples, k = coords.shape
    rows = n_steps * n_samples
    table = {
        "run": np.full(rows, emb.run, dtype=object),
        "step": np.repeat(steps, n_samples),
        "layer": np.full(rows, emb.layer, dtype=object),
        "sample_id": np.tile(ids, n_steps),
        "label": np.full(rows, np.nan) if labels is None else np.tile(labels, n_steps),
        "method": np.full(rows, emb.method, dtype=object),
    }
    table.update({axis: coords[..., i].ravel() for i, axis in enumerate("xyz"[:k])})
    return pd.DataFrame(table)


def _check_options(
    method: str,
    fit: str | None,
    n_components: int,
    seed: int,
    pre_pca: int | None,
    shape: tuple[int, ...],
) -> str:
    """Validate the options against frames of ``shape``; return the fit (default filled in)."""
    if method not in FITS:
        msg = f"method must be one of {list(METHODS)}; got {method!r}."
        raise ConfigError(msg)
    fit = FITS[method][0] if fit is None else fit
    if fit not in FITS[method]:
        msg = f"fit for method {method!r} must be one of {list(FITS[method])}; got {fit!r}."
        raise ConfigError(msg)
    if n_components not in (2, 3) or isinstance(n_components, bool):
        msg = f"n_components must be 2 or 3 (x, y[, z]); got {n_components!r}."
        raise ConfigError(msg)
    check_int(seed, "seed", minimum=0)
    if pre_pca and pre_pca < n_components:
        msg = f"pre_pca must be None, 0 or >= n_components={n_components}; got {pre_pca!r}."
        raise ConfigError(msg)
    if fit == "aligned" and shape[0] < 2:
        msg = f"fit='aligned' relates consecutive steps, so it needs 2 or more; got {shape[0]}."
        raise ConfigError(msg)
    if shape[2] < n_components:
        msg = (
            f"frames must have at least n_components={n_components} features; "
            f"got {shape[2]}. Use n_components=2 or a wider layer."
        )
        raise InvalidArrayError(msg)
    return fit


def _reference_index(steps: npt.NDArray[np.int64], reference: int | None) -> int:
    """Return the frame position of ``reference`` (a step; negative counts from the end)."""
    n = len(steps)
    if reference is None:
        return n - 1
    if reference < 0 and -reference <= n:
        return n + int(reference)
    hits = np.flatnonzero(steps == reference)
    if not hits.size:
        msg = (
            f"reference must be one of the embedded steps {steps.tolist()} or a negative "
            f"position; got {reference!r}. Add it to the steps or pick one of them."
        )
        raise StepNotFoundError(msg)
    return int(hits[0])


def _estimator_class(method: str, fit: str) -> type:
    """Return the estimator class of ``method`` (umap imported only when used: numba is slow)."""
    if method == "umap":
        with warnings.catch_warnings():  # umap warns on import that TensorFlow is missing
            warnings.simplefilter("ignore", ImportWarning)
            import umap

        return umap.AlignedUMAP if fit == "aligned" else umap.UMAP
    from sklearn.decomposition import PCA
    from sklearn.manifold import MDS, TSNE

    return {"pca": PCA, "mds": MDS, "tsne": TSNE}[method]


def _default_settings(method: str, cls: type, n_samples: int, seed: int) -> dict[str, Any]:
    """Return the defaults of ``method``, capped so that small probe sets work."""
    if method == "pca":
        return {"svd_solver": "full"}  # deterministic: no randomised SVD
    if method == "umap":
        base = {"n_neighbors": min(15, n_samples - 1), "min_dist": 0.1, "transform_seed": seed}
        # Seeded UMAP is single-threaded anyway; saying so avoids its n_jobs warning.
        return base if cls.__name__ == "AlignedUMAP" else {**base, "n_jobs": 1}
    if method == "tsne":
        return {"perplexity": min(30.0, (n_samples - 1) / 3), "init": "pca"}
    # Classical-MDS init makes per-step MDS equivariant to rotations of the features.
    init = {"init": "classical_mds"} if "init" in inspect.signature(cls).parameters else {}
    return {"n_init": 1, **init}


def _check_settings(method: str, cls: type, settings: dict[str, Any]) -> None:
    """Raise `ConfigError` for a setting that ``cls`` does not take (or that we set)."""
    valid = sorted(set(inspect.signature(cls).parameters) - {"n_components", "random_state"})
    for name in settings:
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
            msg = (
                f"unknown setting {name!r} for {method} ({cls.__name__}); closest: "
                f"{', '.join(map(repr, close)) or 'none'}. n_components and random_state are set "
                f"by n_components= and seed=; valid settings: {valid}."
            )
            raise ConfigError(msg)


def _maker(cls: type, k: int, seed: int, params: dict[str, Any]) -> Callable[..., Any]:
    """Return ``make(**overrides)`` building a fresh estimator with the resolved settings."""

    def make(**overrides: Any) -> Any:
        return cls(n_components=k, random_state=seed, **{**params, **overrides})

    return make


def _pre_pca(rows: F64, dims: int | None) -> Callable[[F64], F64]:
    """Return a map reducing rows to ``dims`` PCA dimensions fitted on ``rows`` (or identity)."""
    if dims is None:
        return lambda X: X
    from sklearn.decomposition import PCA

    # Centred rows span at most n_rows - 1 dimensions; more would only add zero columns.
    k = min(dims, rows.shape[0] - 1, rows.shape[1])
    return PCA(n_components=k, svd_solver="full").fit(rows).transform


def _project(
    A: F64, method: str, fit: str, ref: int, make: Callable[..., Any], pre: int | None, align: bool
) -> tuple[F64, tuple[float, ...] | None]:
    """Return the frames (n_steps, n_samples, k) and PCA's explained variance ratio."""
    n_steps, n_samples, n_features = A.shape
    evr = None
    if fit == "joint":
        stacked = A.reshape(-1, n_features)
        est = make()
        flat = est.fit_transform(_pre_pca(stacked, pre)(stacked))
        coords = flat.reshape(n_steps, n_samples, -1)
        est_ref = est
    elif fit == "reference":
        reduce = _pre_pca(A[ref], pre)
        est_ref = make().fit(reduce(A[ref]))
        coords = np.stack([est_ref.transform(reduce(X)) for X in A])
        if method == "umap":  # the fitted layout itself, not a re-projection of its own points
            coords[ref] = est_ref.embedding_
    elif fit == "aligned":
        relations = [{i: i for i in range(n_samples)}] * (n_steps - 1)
        with warnings.catch_warnings():
            # AlignedUMAP builds seeded UMAPs without n_jobs=1 and each one warns about it.
            warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
            est_ref = make().fit([_pre_pca(X, pre)(X) for X in A], relations=relations)
        coords = np.stack(est_ref.embeddings_)
    elif method == "tsne":
        return _tsne_chain(A, ref, make, pre, align), None
    else:
        fits = [make() for _ in A]
        coords = np.stack(
            [est.fit_transform(_pre_pca(X, pre)(X)) for est, X in zip(fits, A, strict=True)]
        )
        est_ref = fits[ref]
    if method == "pca":
        evr = tuple(float(v) for v in est_ref.explained_variance_ratio_)
    return np.asarray(coords, dtype=np.float64), evr


def _tsne_chain(A: F64, ref: int, make: Callable[..., Any], pre: int | None, align: bool) -> F64:
    """Return per-step t-SNE frames, each initialised from (and aligned to) its neighbour's."""
    first = make().fit_transform(_pre_pca(A[ref], pre)(A[ref]))
    out = np.empty((A.shape[0], *first.shape))
    out[ref] = first
    order = [(p, p - 1) for p in range(ref + 1, len(A))] + [(p, p + 1) for p in range(ref)[::-1]]
    for p, q in order:
        est = make(init=out[q].copy(), early_exaggeration=1.0)
        Y = est.fit_transform(_pre_pca(A[p], pre)(A[p]))
        out[p] = _procrustes(Y, out[q]) if align else Y
    return out


def _procrustes(Y: F64, target: F64) -> F64:
    """Return ``Y`` rotated/reflected and translated onto ``target`` (no scaling)."""
    mu_y, mu_t = Y.mean(axis=0), target.mean(axis=0)
    R, _ = orthogonal_procrustes(Y - mu_y, target - mu_t)
    return (Y - mu_y) @ R + mu_t


def _versions(method: str) -> dict[str, str]:
    """Return the versions of the libraries that computed the embedding."""
    from importlib.metadata import version

    names = ["numpy", "scikit-learn"] + (["umap-learn"] if method == "umap" else [])
    return {name: version(name) for name in names}


def _jsonable(value: Any) -> Any:
    """Return a JSON-ready stand-in for a numpy value (or the repr of anything else)."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return repr(value)
