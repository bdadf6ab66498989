"""Cluster geometry of class representations, for one array or over a run.

`geometry` gathers `sklearn_scores`, held-out `probe_accuracies`, neural collapse and NCC
margins (`probe.collapse`), dimension (`probe.dimension`), `centroid_separation` and
`output_margins`. `sweep` runs it over a run's (layer, step) grid; `plot_sweep` draws it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.spatial.distance import pdist
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from probe import collapse, dimension
from probe._validation import (
    InvalidArrayError,
    MissingTargetsError,
    ShapeMismatchError,
    as_float_array,
    as_samples_features,
)
from probe.errors import ConfigError

if TYPE_CHECKING:
    from probe.store import Run

__all__ = [
    "centroid_separation",
    "geometry",
    "output_margins",
    "plot_sweep",
    "probe_accuracies",
    "sklearn_scores",
    "sweep",
]

F64 = npt.NDArray[np.float64]


def _labelled(X: Any, y: Any) -> tuple[F64, npt.NDArray[Any]]:
    """(n, d) features and 1-D labels of at least 2 classes with at least 2 samples each."""
    Xf = as_samples_features(X, "X")
    stats = collapse.class_statistics(Xf, y)  # checks y: 1-D, same length, >= 2 classes
    if stats.counts.min() < 2:
        small = stats.classes[stats.counts < 2].tolist()[:10]
        msg = (
            f"every class must have at least 2 samples for silhouette and cross-validation; "
            f"got 1 sample for classes {small}. Use a larger or stratified probe set."
        )
        raise InvalidArrayError(msg)
    return Xf, np.asarray(y)


def _check_int(value: Any, name: str, low: int) -> int:
    """Return ``value`` when it is an int >= ``low``, else raise `ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        msg = f"{name!r} must be an int >= {low}; got {value!r}."
        raise ConfigError(msg)
    return int(value)


def sklearn_scores(
    X: npt.ArrayLike, y: npt.ArrayLike, *, sample_size: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Return the silhouette, Davies-Bouldin and Calinski-Harabasz indices of labelled clusters.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features, ...)
        Representations; extra feature axes are flattened.
    y : array_like of shape (n_samples,)
        Class labels, used as the cluster assignment (scikit-learn's indices, Euclidean).
    sample_size : int
        Above this many samples the O(n²) silhouette uses a seeded uniform subsample of this
        size; Davies-Bouldin and Calinski-Harabasz always use every sample.
    seed : int
        Seed of that subsample.

    Returns
    -------
    dict of str to float
        ``"silhouette"`` (in [-1, 1], higher is better), ``"davies_bouldin"`` (>= 0, lower is
        better), ``"calinski_harabasz"`` (>= 0, higher is better).

    Raises
    ------
    InvalidArrayError, ShapeMismatchError
        Bad ``X`` or ``y`` (see `probe.collapse.class_statistics`) or a single-sample class.
    ConfigError
        ``sample_size`` is not an int >= 2.

    Examples
    --------
    >>> s = sklearn_scores([[0.0], [1.0], [10.0], [11.0]], [0, 0, 1, 1])
    >>> {k: round(v, 6) for k, v in s.items()}
    {'silhouette': 0.899749, 'davies_bouldin': 0.1, 'calinski_harabasz': 200.0}
    """
    Xf, labels = _labelled(X, y)
    size = _check_int(sample_size, "sample_size", 2)
    sub = size if Xf.shape[0] > size else None
    return {
        "silhouette": float(silhouette_score(Xf, labels, sample_size=sub, random_state=seed)),
        "davies_bouldin": float(davies_bouldin_score(Xf, labels)),
        "calinski_harabasz": float(calinski_harabasz_score(Xf, labels)),
    }


def probe_accuracies(
    X: npt.ArrayLike, y: npt.ArrayLike, *, n_neighbors: int = 5, cv: int = 5, seed: int = 0
) -> dict[str, float]:
    """Return cross-validated kNN and linear-probe accuracies of predicting ``y`` from ``X``.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features, ...)
        Representations; extra feature axes are flattened.
    y : array_like of shape (n_samples,)
        Class labels.
    n_neighbors : int
        k of the kNN classifier.
    cv : int
        Number of stratified folds (reduced to the smallest class size when that is smaller).
    seed : int
        Seed of the fold shuffle.

    Returns
    -------
    dict of str to float
        ``"knn_accuracy"`` and ``"linear_probe_accuracy"``: mean held-out accuracy over folds.

    Raises
    ------
    InvalidArrayError, ShapeMismatchError
        Bad ``X`` or ``y`` (see `probe.collapse.class_statistics`) or a single-sample class.
    ConfigError
        ``n_neighbors`` < 1 or ``cv`` < 2.

    Notes
    -----
    Held out by shuffled `StratifiedKFold` cross-validation (each sample is tested once). kNN:
    `KNeighborsClassifier` on the raw features (uniform, Euclidean), ``k = min(n_neighbors,
    training-fold size)``. Linear probe: `StandardScaler` then `LogisticRegression` (L2, C = 1,
    lbfgs, ``max_iter=1000`` instead of 100), both fitted on each training fold only.
    """
    Xf, labels = _labelled(X, y)
    k = _check_int(n_neighbors, "n_neighbors", 1)
    n_splits = min(_check_int(cv, "cv", 2), int(np.unique(labels, return_counts=True)[1].min()))
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    n_train = Xf.shape[0] - -(-Xf.shape[0] // n_splits)  # smallest training fold
    knn = KNeighborsClassifier(n_neighbors=min(k, n_train))
    linear = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return {
        "knn_accuracy": float(cross_val_score(knn, Xf, labels, cv=folds).mean()),
        "linear_probe_accuracy": float(cross_val_score(linear, Xf, labels, cv=folds).mean()),
    }


def output_margins(logits: npt.ArrayLike, y: npt.ArrayLike) -> F64:
    """Return each sample's output margin ``f_y(x) - max_{j≠y} f_j(x)``.

    Parameters
    ----------
    logits : array_like of shape (n_samples, n_out)
        Model outputs; column ``c`` scores class ``c``.
    y : array_like of int of shape (n_samples,)
        Class labels in [0, n_out).

    Returns
    -------
    ndarray of float64 of shape (n_samples,)
        Positive where the sample is classified correctly.

    Raises
    ------
    InvalidArrayError
        ``logits`` is not a finite (n_samples, n_out >= 2) array, or ``y`` is not integer
        labels in [0, n_out).
    ShapeMismatchError
        ``logits`` and ``y`` have different numbers of samples.

    Examples
    --------
    >>> output_margins([[2.0, 0.5, 1.0], [0.0, 3.0, 4.0]], [0, 1])
    array([ 1., -1.])
    """
    F = as_float_array(logits, "logits", min_ndim=2)
    labels = np.asarray(y)
    if F.ndim != 2 or F.shape[1] < 2:
        msg = f"logits must have shape (n_samples, n_out) with n_out >= 2; got {F.shape}."
        raise InvalidArrayError(msg)
    if labels.shape != (F.shape[0],):
        msg = f"y must have shape ({F.shape[0]},) to match logits; got {labels.shape}."
        raise ShapeMismatchError(msg)
    if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= F.shape[1]:
        msg = f"y must be integer labels in [0, {F.shape[1]}) indexing logits' columns."
        raise InvalidArrayError(msg)
    rows = np.arange(F.shape[0])
    own = F[rows, labels]  # advanced indexing copies
    F = F.copy()
    F[rows, labels] = -np.inf
    return own - F.max(axis=1)


def centroid_separation(X: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Return ``min_{c≠c'} ‖μ_c - μ_c'‖ / sqrt(tr Σ_W)``, the closest class pair in noise units.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features, ...)
        Representations; extra feature axes are flattened.
    y : array_like of shape (n_samples,)
        Class labels.

    Returns
    -------
    float
        Non-negative; ``inf`` when every class is collapsed to its mean (``Σ_W = 0``).
        ``Σ_W`` is divided by the total number of samples, as in `probe.collapse.nc1`.

    Raises
    ------
    InvalidArrayError, ShapeMismatchError
        Bad ``X`` or ``y`` (see `probe.collapse.class_statistics`).

    Examples
    --------
    >>> round(centroid_separation([[-1.1], [-0.9], [0.9], [1.1]], [0, 0, 1, 1]), 6)
    20.0
    """
    stats = collapse.class_statistics(X, y)
    gap = float(np.min(pdist(stats.means)))
    noise = np.sqrt(stats.within_trace)
    return float(gap / noise) if noise > 0 else float("inf")


def geometry(
    X: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    W: npt.ArrayLike | None = None,
    b: npt.ArrayLike | None = None,
    logits: npt.ArrayLike | None = None,
    sample_size: int = 2000,
    n_neighbors: int = 5,
    cv: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """Return the cluster-geometry metrics of labelled representations as one flat dict.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features, ...)
        Representations (one layer at one step); extra feature axes are flattened.
    y : array_like of shape (n_samples,)
        Class labels (integers in [0, n_out) when ``W`` or ``logits`` is given).
    W : array_like of shape (n_out, n_features), optional
        Classifier acting on ``X`` (``Linear.weight``); adds NC3, NC4 and NC2 of its rows.
    b : array_like of shape (n_out,), optional
        Classifier bias, used by NC4.
    logits : array_like of shape (n_samples, n_out), optional
        Model outputs on the same samples; adds the mean output margin.
    sample_size, n_neighbors, cv, seed : int
        Silhouette subsample size (`sklearn_scores`), kNN k and folds (`probe_accuracies`),
        and the seed of both.

    Returns
    -------
    dict of str to float
        ``silhouette``, ``davies_bouldin``, ``calinski_harabasz``; ``nc1`` (`collapse.nc1`),
        ``nc1_quotient``, ``nc2_equinorm``, ``nc2_equiangular``, ``nc2_max_angle``,
        ``nc2_etf_error`` (`collapse.etf_measures` of ``μ_c - μ_G``), ``cdnv``;
        ``participation_ratio``, ``effective_rank``, ``twonn`` (fit variant); ``knn_accuracy``,
        ``linear_probe_accuracy``; ``ncc_margin`` (mean of `collapse.ncc_margins`),
        ``centroid_separation``. With ``W``: ``nc3`` (`collapse.self_duality`), ``nc4``
        (`collapse.ncc_disagreement`), ``nc2_w_equinorm``, ``nc2_w_equiangular``,
        ``nc2_w_max_angle``, ``nc2_w_etf_error`` (rows of ``W`` for the classes in ``y``). With
        ``logits``: ``output_margin`` (mean of `output_margins`).

    Raises
    ------
    InvalidArrayError, ShapeMismatchError, ConfigError
        As the functions it calls (bad inputs or settings, single-sample classes, equal means).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = np.repeat(np.eye(3) * 5, 10, axis=0) + rng.standard_normal((30, 3))
    >>> g = geometry(X, np.repeat([0, 1, 2], 10))
    >>> g["knn_accuracy"], g["nc1"] < 0.2
    (1.0, True)
    """
    Xf, labels = _labelled(X, y)
    out = sklearn_scores(Xf, labels, sample_size=sample_size, seed=seed)
    out["nc1"] = collapse.nc1(Xf, labels)
    out["nc1_quotient"] = collapse.nc1_quotient(Xf, labels)
    centred = collapse.class_statistics(Xf, labels).centred_means
    out.update({f"nc2_{k}": v for k, v in collapse.etf_measures(centred).items()})
    out["cdnv"] = collapse.cdnv(Xf, labels)
    out["participation_ratio"] = dimension.participation_ratio(Xf)
    out["effective_rank"] = dimension.effective_rank(Xf)
    out["twonn"] = dimension.twonn(Xf)
    out.update(probe_accuracies(Xf, labels, n_neighbors=n_neighbors, cv=cv, seed=seed))
    out["ncc_margin"] = float(collapse.ncc_margins(Xf, labels).mean())
    out["centroid_separation"] = centroid_separation(Xf, labels)
    if W is not None:
        out["nc3"] = collapse.self_duality(Xf, labels, W)
        out["nc4"] = collapse.ncc_disagreement(Xf, labels, W, b)
        rows = as_float_array(W, "W", min_ndim=2)[np.unique(labels)]
        out.update({f"nc2_w_{k}": v for k, v in collapse.etf_measures(rows).items()})
    if logits is not None:
        out["output_margin"] = float(output_margins(logits, labels).mean())
    return out


def sweep(
    run: Run,
    layers: Sequence[str] | None = None,
    steps: Sequence[int] | None = None,
    *,
    progress: bool = True,
    **kw: Any,
) -> pd.DataFrame:
    """Return `geometry` of every (layer, step) of a run as a tidy table.

    Parameters
    ----------
    run : Run
        An opened run (`probe.open_run`) that stored integer class labels as probe targets.
        Activations ``run.acts(layer, step)`` of shape (n_samples, ...) are flattened.
    layers : sequence of str, optional
        Recorded layers (default: all, ``run.layers``).
    steps : sequence of int, optional
        Steps with a snapshot; negative values count from the end (default: all, ``run.steps``).
    progress : bool
        Show a tqdm progress bar over the (layer, step) pairs.
    **kw
        Passed to `geometry` (``sample_size``, ``n_neighbors``, ``cv``, ``seed``).

    Returns
    -------
    pandas.DataFrame
        Columns ``layer``, ``step`` (the recorded step), ``metric``, ``value`` (float): one row
        per metric per (layer, step).

    Raises
    ------
    MissingTargetsError
        The run stored no probe targets.
    InvalidArrayError
        The targets are not 1-D integer labels, or `geometry` rejects a snapshot (the message
        names the layer and step).
    LayerNotInRunError, StepNotFoundError
        Unknown layer, or no snapshot at a requested step.
    """
    targets = run.targets
    if targets is None:
        msg = "run.targets must hold class labels; got None. Record with Recorder(probe=(x, y))."
        raise MissingTargetsError(msg)
    y = np.asarray(targets)
    if y.ndim != 1 or y.dtype.kind not in "iub":
        msg = (
            "run.targets must be integer class labels of shape (n_samples,); "
            f"got dtype {y.dtype}, shape {y.shape}."
        )
        raise InvalidArrayError(msg)
    layers = list(run.layers if layers is None else layers)
    steps = [int(s) for s in (run.steps if steps is None else steps)]
    rows: list[tuple[str, int, str, float]] = []
    with tqdm(total=len(layers) * len(steps), desc="cluster geometry", disable=not progress) as bar:
        for layer in layers:
            for step in steps:
                acts = run.acts(layer, step)
                recorded = int(run.steps[run.snapshot_index(step)])
                try:
                    g = geometry(acts.reshape(acts.shape[0], -1), y, **kw)
                except InvalidArrayError as err:
                    msg = f"layer {layer!r} at step {recorded}: {err}"
                    raise InvalidArrayError(msg) from err
                rows += [(layer, recorded, k, v) for k, v in g.items()]
                bar.update()
    return pd.DataFrame(rows, columns=["layer", "step", "metric", "value"])


def plot_sweep(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Draw each metric of a `sweep` table against step, one line per layer, and save it.

    One panel per metric, four per row, drawn on an Agg canvas without pyplot's global state.

    Parameters
    ----------
    df : pandas.DataFrame
        A `sweep` table (columns ``layer``, ``step``, ``metric``, ``value``).
    path : str or path
        Image file to write (format from the suffix, e.g. ``.png``); parents are created.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    InvalidArrayError
        ``df`` lacks one of the columns or has no rows.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    missing = [c for c in ("layer", "step", "metric", "value") if c not in df.columns]
    if missing or df.empty:
        msg = (
            f"df must be a non-empty sweep() table with columns layer, step, metric, value; "
            f"got {len(df)} rows, missing columns {missing}."
        )
        raise InvalidArrayError(msg)
    metrics = list(dict.fromkeys(df["metric"]))
    ncols, nrows = min(4, len(metrics)), -(-len(metrics) // 4)
    fig = Figure(figsize=(3.6 * ncols, 2.8 * nrows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    fig.subplots_adjust(wspace=0.3, hspace=0.55)  # fixed spacing: constrained layout is slow
    for ax, metric in zip(axes, metrics, strict=False):
        part = df[df["metric"] == metric]
        for layer, rows in part.groupby("layer", sort=False):
            rows = rows.sort_values("step")
            ax.plot(rows["step"], rows["value"], marker="o", ms=3, label=str(layer))
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7, title="layer", title_fontsize=7)
    out = Path(os.fspath(path))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out
