"""Two-point prediction quantities and output agreement (docs/dynamics.md §1.1).

Per pair of samples: `prediction_sq_distances` (y), `misalignment` (w), `alignment` (a = y - w);
over whole outputs: `prediction_agreement`, `output_correlation`; over a run:
`alignment_over_steps`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from probe.analysis.similarity import pair_sq_distances
from probe.errors import InvalidArrayError, MissingTargetsError, ShapeMismatchError
from probe.validation import as_float_array, as_pairs, as_samples_features, check_same_shape

if TYPE_CHECKING:
    from probe.store import Run

__all__ = [
    "alignment",
    "alignment_over_steps",
    "misalignment",
    "output_correlation",
    "prediction_agreement",
    "prediction_sq_distances",
    "target_matrix",
]

F64 = npt.NDArray[np.float64]


def _as_outputs(A: Any, name: str) -> F64:
    """Return outputs or targets as (n_samples, d_out) float64; 1-D becomes (n_samples, 1)."""
    arr = as_float_array(A, name)
    return as_samples_features(arr[:, None] if arr.ndim == 1 else arr, name)


def _pair_differences(Yhat: Any, Y: Any, pairs: Any) -> tuple[F64, F64]:
    """Validate and return ``(dyhat, dy)`` of shape (n_pairs, d_out), ``d = row j - row i``."""
    Yh = _as_outputs(Yhat, "Yhat")
    Yt = _as_outputs(Y, "Y")
    check_same_shape(Yh, Yt, "Yhat, Y")
    P = as_pairs(pairs, Yh.shape[0])
    return Yh[P[:, 1]] - Yh[P[:, 0]], Yt[P[:, 1]] - Yt[P[:, 0]]


def prediction_sq_distances(Yhat: npt.ArrayLike, pairs: npt.ArrayLike) -> F64:
    """Return the squared prediction distance y = ||dŷ||² of each pair of samples.

    Parameters
    ----------
    Yhat : array_like of shape (n_samples, d_out) or (n_samples,)
        Model outputs; 1-D outputs are read as (n_samples, 1).
    pairs : array_like of int of shape (n_pairs, 2)
        Row indices ``(i, j)``; ``dŷ = Yhat[j] - Yhat[i]``.

    Returns
    -------
    ndarray of float64 of shape (n_pairs,)

    Raises
    ------
    InvalidArrayError
        ``Yhat`` is not finite numeric or has no rows, or ``pairs`` is not integer.
    ShapeMismatchError
        ``pairs`` is not of shape (n_pairs, 2).
    PairIndexError
        A pair index is outside [0, n_samples).

    Examples
    --------
    >>> prediction_sq_distances([0.0, 1.0, 3.0], [[0, 2]])
    array([9.])
    """
    return pair_sq_distances(_as_outputs(Yhat, "Yhat"), pairs)


def misalignment(Yhat: npt.ArrayLike, Y: npt.ArrayLike, pairs: npt.ArrayLike) -> F64:
    """Return the misalignment w = dŷ·(dŷ - dy) of each pair of samples.

    Parameters
    ----------
    Yhat : array_like of shape (n_samples, d_out) or (n_samples,)
        Model outputs; 1-D outputs are read as (n_samples, 1).
    Y : array_like of shape (n_samples, d_out) or (n_samples,)
        Targets, in the same layout as ``Yhat``.
    pairs : array_like of int of shape (n_pairs, 2)
        Row indices ``(i, j)``; ``dŷ = Yhat[j] - Yhat[i]``, ``dy = Y[j] - Y[i]``.

    Returns
    -------
    ndarray of float64 of shape (n_pairs,)
        0 for a pair the model fits (``dŷ = dy``) and for a collapsed pair (``dŷ = 0``).

    Raises
    ------
    InvalidArrayError
        An input is not finite numeric or has no rows, or ``pairs`` is not integer.
    ShapeMismatchError
        ``Yhat`` and ``Y`` differ in shape, or ``pairs`` is not of shape (n_pairs, 2).
    PairIndexError
        A pair index is outside [0, n_samples).

    Notes
    -----
    ``w = ||dŷ||² - dy·dŷ`` (van Rossem & Saxe 2024; docs/dynamics.md §1.1); the sign of the
    difference (j - i or i - j) does not matter since w is quadratic in the pair differences.

    Examples
    --------
    >>> misalignment([0.0, 2.0], [0.0, 1.0], [[0, 1]])
    array([2.])
    """
    dyh, dy = _pair_differences(Yhat, Y, pairs)
    return np.einsum("pd,pd->p", dyh, dyh - dy)


def alignment(Yhat: npt.ArrayLike, Y: npt.ArrayLike, pairs: npt.ArrayLike) -> F64:
    """Return the alignment a = dy·dŷ of each pair of samples.

    Parameters
    ----------
    Yhat : array_like of shape (n_samples, d_out) or (n_samples,)
        Model outputs; 1-D outputs are read as (n_samples, 1).
    Y : array_like of shape (n_samples, d_out) or (n_samples,)
        Targets, in the same layout as ``Yhat``.
    pairs : array_like of int of shape (n_pairs, 2)
        Row indices ``(i, j)``; ``dŷ = Yhat[j] - Yhat[i]``, ``dy = Y[j] - Y[i]``.

    Returns
    -------
    ndarray of float64 of shape (n_pairs,)
        ``a = y - w`` (docs/dynamics.md §1.1).

    Raises
    ------
    InvalidArrayError
        An input is not finite numeric or has no rows, or ``pairs`` is not integer.
    ShapeMismatchError
        ``Yhat`` and ``Y`` differ in shape, or ``pairs`` is not of shape (n_pairs, 2).
    PairIndexError
        A pair index is outside [0, n_samples).

    Examples
    --------
    >>> alignment([0.0, 2.0], [0.0, 1.0], [[0, 1]])
    array([2.])
    """
    dyh, dy = _pair_differences(Yhat, Y, pairs)
    return np.einsum("pd,pd->p", dy, dyh)


def prediction_agreement(P: npt.ArrayLike, Q: npt.ArrayLike) -> float:
    """Return the fraction of samples whose two outputs have the same argmax (predicted class).

    Parameters
    ----------
    P : array_like of shape (n_samples, n_classes)
        Outputs (logits or probabilities) of one model; leading axes are all treated as samples.
    Q : array_like of shape (n_samples, n_classes)
        Outputs of the other model, same shape.

    Returns
    -------
    float
        In [0, 1]; 1 for identical predictions. Ties go to the first maximal class.

    Raises
    ------
    InvalidArrayError
        An input is not finite numeric of at least 2 dimensions.
    ShapeMismatchError
        ``P`` and ``Q`` differ in shape.

    Examples
    --------
    >>> prediction_agreement([[0.9, 0.1], [0.2, 0.8]], [[0.6, 0.4], [0.7, 0.3]])
    0.5
    """
    Pf = as_float_array(P, "P", min_ndim=2)
    Qf = as_float_array(Q, "Q", min_ndim=2)
    check_same_shape(Pf, Qf, "P, Q")
    return float(np.mean(Pf.argmax(axis=-1) == Qf.argmax(axis=-1)))


def output_correlation(P: npt.ArrayLike, Q: npt.ArrayLike) -> float:
    """Return the Pearson correlation between two flattened outputs.

    Parameters
    ----------
    P : array_like of shape (n_samples, ...)
        Outputs of one model.
    Q : array_like of shape (n_samples, ...)
        Outputs of the other model, same shape.

    Returns
    -------
    float
        In [-1, 1]; 1 for identical outputs (and for any positive affine map of them).

    Raises
    ------
    InvalidArrayError
        An input is not finite numeric, or is constant (zero variance).
    ShapeMismatchError
        ``P`` and ``Q`` differ in shape.

    Examples
    --------
    >>> output_correlation([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])
    1.0
    """
    p = as_float_array(P, "P")
    q = as_float_array(Q, "Q")
    check_same_shape(p, q, "P, Q")
    p, q = p.ravel() - p.mean(), q.ravel() - q.mean()
    for name, v in (("P", p), ("Q", q)):
        if not np.any(v):
            msg = f"{name} must vary; got {v.size} equal values (zero variance)."
            raise InvalidArrayError(msg)
    r = float(p @ q / np.sqrt((p @ p) * (q @ q)))
    return min(1.0, max(-1.0, r))


def target_matrix(targets: Any, d_out: int) -> F64:
    """Return a run's targets as (n_samples, d_out) float64, one-hot encoding class labels.

    Parameters
    ----------
    targets : array-like or None
        ``Run.targets``: integer class labels of shape (n_samples,), or regression targets.
    d_out : int
        Width of the model output the targets are compared with.

    Returns
    -------
    ndarray of float64 of shape (n_samples, d_out)

    Raises
    ------
    MissingTargetsError
        ``targets`` is None.
    InvalidArrayError
        Integer labels outside ``[0, d_out)``, or targets that are not finite numbers.
    """
    if targets is None:
        msg = (
            "run.targets must be stored to compute w and a; got None. "
            "Record with Recorder(..., probe=(x, y))."
        )
        raise MissingTargetsError(msg)
    t = np.asarray(targets)
    if t.ndim == 1 and t.dtype.kind in "iu" and d_out > 1:
        if t.size and (t.min() < 0 or t.max() >= d_out):
            msg = (
                f"integer targets must be class labels in [0, {d_out}) to one-hot encode to "
                f"the output width; got labels in [{t.min()}, {t.max()}]."
            )
            raise InvalidArrayError(msg)
        return np.eye(d_out)[t]
    return _as_outputs(t, "run.targets")


def alignment_over_steps(run: Run, pairs: npt.ArrayLike, *, key: str = "acts") -> dict[str, Any]:
    """Return y, w and a for each pair of probe samples at every snapshot of a run.

    Parameters
    ----------
    run : Run
        An opened run (`probe.open_run`) that stored probe targets.
    pairs : array_like of int of shape (n_pairs, 2)
        Probe-sample indices ``(i, j)``.
    key : str
        Which recorded output array (see `Run.outputs`).

    Returns
    -------
    dict
        ``"steps"``: int64 of shape (n_snapshots,); ``"y"``, ``"w"``, ``"a"``: float64 of shape
        (n_snapshots, n_pairs), as `prediction_sq_distances`, `misalignment` and `alignment`.

    Raises
    ------
    MissingTargetsError
        The run stored no targets.
    InvalidArrayError
        Integer targets fall outside [0, d_out), or outputs/targets are not finite numeric.
    ShapeMismatchError
        Targets and outputs differ in shape (after one-hot encoding), or bad ``pairs`` shape.
    PairIndexError
        A pair index is outside [0, n_samples).

    Notes
    -----
    Outputs of shape (n_snapshots, n_samples, ...) are flattened to (n_snapshots, n_samples,
    d_out). One-dimensional integer targets with ``d_out > 1`` are class labels and are
    one-hot encoded to width ``d_out`` (so dy compares one-hot vectors with the logits, as for
    an MSE-on-one-hot loss); other targets are used as values, 1-D as (n_samples, 1).
    """
    out = as_float_array(run.outputs(key=key), "run.outputs()", min_ndim=2)
    n_snap, n_samples = out.shape[0], out.shape[1]
    out = out.reshape(n_snap, n_samples, int(np.prod(out.shape[2:])))
    Yt = target_matrix(run.targets, out.shape[2])
    if Yt.shape != out.shape[1:]:
        msg = (
            "run targets must match the outputs' (n_samples, d_out) after one-hot encoding; "
            f"got targets {Yt.shape}, outputs {out.shape[1:]}."
        )
        raise ShapeMismatchError(msg)
    P = as_pairs(pairs, n_samples)
    dyh = out[:, P[:, 1]] - out[:, P[:, 0]]
    dy = Yt[P[:, 1]] - Yt[P[:, 0]]
    y = np.einsum("spd,spd->sp", dyh, dyh)
    a = np.einsum("spd,pd->sp", dyh, dy)
    return {"steps": np.asarray(run.steps, dtype=np.int64), "y": y, "w": y - a, "a": a}
