"""Read-out curves: held-out accuracy of a classifier reading labels from the states at each t.

`readout_curve` scores a kNN or logistic read-out at every time step of a recurrent net (or every
layer of a feed-forward one): the information-processing curve of docs/features.md §3.1 and §3.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from probe.errors import InvalidArrayError, ReadoutError
from probe.validation import as_float_array, as_samples_features, check_same_n_samples

__all__ = ["readout_curve"]

F64 = npt.NDArray[np.float64]


def readout_curve(
    H: npt.ArrayLike | Sequence[npt.ArrayLike],
    y: npt.ArrayLike,
    *,
    method: str = "knn",
    cv: int | str = 5,
    n_neighbors: int = 3,
    seed: int = 0,
) -> F64:
    """Return the cross-validated accuracy of a read-out of ``y`` from the states at each t.

    Parameters
    ----------
    H : array_like of shape (n_samples, T, n_features), or a sequence of T arrays
        Hidden states at each time step, or (feed-forward nets) a list of per-layer activations
        of shape (n_samples, n_features_t) with t = layer index (docs/features.md §3.5).
    y : array_like of shape (n_samples,)
        Class labels (at least 2 classes).
    method : {"knn", "linear"}
        ``KNeighborsClassifier(n_neighbors)`` on the raw states (Jiang & Dale's read-out), or
        standardised multinomial logistic regression.
    cv : int or "loo"
        Stratified k folds (shuffled with ``seed``; the same folds at every t), or leave-one-out.
    n_neighbors : int
        k of the kNN read-out.
    seed : int
        Seed of the fold assignment.

    Returns
    -------
    ndarray of float64 of shape (T,)
        Mean held-out accuracy over folds at each t.

    Raises
    ------
    InvalidArrayError, ShapeMismatchError
        ``H`` is malformed or its sample count differs from ``len(y)``.
    ReadoutError
        Unknown ``method`` or ``cv``, fewer than 2 classes, a class with fewer samples than
        folds, or ``n_neighbors`` larger than a training fold.

    Notes
    -----
    Jiang & Dale score a 3-NN read-out on the data it was fitted to (resubstitution); each point
    is then its own nearest neighbour, which inflates accuracy (pure noise scores about 0.75 for
    two balanced classes). Accuracy here is always on held-out samples.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import LeaveOneOut, StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    layers = _as_states(H)
    labels = np.asarray(y)
    check_same_n_samples(layers[0], labels, "H, y")
    classes, counts = np.unique(labels, return_counts=True)
    if labels.ndim != 1 or classes.size < 2:
        msg = f"y must be 1-d labels with at least 2 classes; got shape {labels.shape}, {classes}."
        raise ReadoutError(msg)
    if cv == "loo":
        splits = list(LeaveOneOut().split(layers[0]))
    elif isinstance(cv, (int, np.integer)) and 2 <= cv <= counts.min():
        kfold = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
        splits = list(kfold.split(layers[0], labels))
    else:
        msg = f"cv must be 'loo' or an int in [2, {counts.min()}] (smallest class); got {cv!r}."
        raise ReadoutError(msg)
    n_train = min(len(train) for train, _ in splits)
    if method not in ("knn", "linear") or not 1 <= n_neighbors <= n_train:
        msg = (
            f"method must be 'knn' or 'linear' and n_neighbors in [1, {n_train}] (smallest "
            f"training fold); got method={method!r}, n_neighbors={n_neighbors!r}."
        )
        raise ReadoutError(msg)
    estimator = (
        KNeighborsClassifier(n_neighbors=n_neighbors)
        if method == "knn"
        else make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    )
    return np.array([cross_val_score(estimator, X, labels, cv=splits).mean() for X in layers])


def _as_states(H: Any) -> list[F64]:
    """Split ``H`` into a list of T arrays of shape (n_samples, n_features_t)."""
    if isinstance(H, np.ndarray) or not isinstance(H, Sequence):
        arr = as_float_array(H, "H", min_ndim=3)
        return [arr[:, t].reshape(arr.shape[0], -1) for t in range(arr.shape[1])]
    layers = [as_samples_features(h, f"H[{t}]") for t, h in enumerate(H)]
    if not layers:
        msg = "H must hold at least one time step (layer); got an empty sequence."
        raise InvalidArrayError(msg)
    for t, h in enumerate(layers[1:], start=1):
        check_same_n_samples(layers[0], h, f"H[0], H[{t}]")
    return layers
