"""Cluster geometry of class representations, for one array or over a run.

`geometry` gathers `sklearn_scores`, held-out `probe_accuracies`, neural collapse
(`probe.analysis.collapse`), dimension (`probe.analysis.dimension`) and margins
(`probe.analysis.margins`). Also importable from here: `centroid_separation`, `output_margins`
(`probe.analysis.margins`). Over a run's (layer, step) grid: `probe.analysis.cluster_sweep`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from probe.analysis import collapse, dimension
from probe.analysis.margins import centroid_separation, ncc_margins, output_margins
from probe.errors import InvalidArrayError
from probe.validation import as_float_array, as_samples_features, check_int

__all__ = [
    "centroid_separation",
    "geometry",
    "output_margins",
    "probe_accuracies",
    "sklearn_scores",
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
        Bad ``X`` or ``y`` (see `probe.analysis.collapse.class_statistics`) or a single-sample
        class.
    ConfigError
        ``sample_size`` is not an int >= 2.

    Examples
    --------
    >>> s = sklearn_scores([[0.0], [1.0], [10.0], [11.0]], [0, 0, 1, 1])
    >>> {k: round(v, 6) for k, v in s.items()}
    {'silhouette': 0.899749, 'davies_bouldin': 0.1, 'calinski_harabasz': 200.0}
    """
    Xf, labels = _labelled(X, y)
    size = check_int(sample_size, "sample_size", minimum=2)
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
        Bad ``X`` or ``y`` (see `probe.analysis.collapse.class_statistics`) or a single-sample
        class.
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
    k = check_int(n_neighbors, "n_neighbors")
    smallest_class = int(np.unique(labels, return_counts=True)[1].min())
    n_splits = min(check_int(cv, "cv", minimum=2), smallest_class)
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    n_train = Xf.shape[0] - -(-Xf.shape[0] // n_splits)  # smallest training fold
    knn = KNeighborsClassifier(n_neighbors=min(k, n_train))
    linear = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return {
        "knn_accuracy": float(cross_val_score(knn, Xf, labels, cv=folds).mean()),
        "linear_probe_accuracy": float(cross_val_score(linear, Xf, labels, cv=folds).mean()),
    }


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
        ``linear_probe_accuracy``; ``ncc_margin`` (mean of `probe.analysis.margins.ncc_margins`),
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
    out["ncc_margin"] = float(ncc_margins(Xf, labels).mean())
    out["centroid_separation"] = centroid_separation(Xf, labels)
    if W is not None:
        out["nc3"] = collapse.self_duality(Xf, labels, W)
        out["nc4"] = collapse.ncc_disagreement(Xf, labels, W, b)
        rows = as_float_array(W, "W", min_ndim=2)[np.unique(labels)]
        out.update({f"nc2_w_{k}": v for k, v in collapse.etf_measures(rows).items()})
    if logits is not None:
        out["output_margin"] = float(output_margins(logits, labels).mean())
    return out
