"""Streaming accumulators over sample chunks that equal the in-memory statistics.

`Moments` (count, mean, centred scatter; Chan et al. merge), `ClassMoments` (class means and
within-class scatter: NC1, NC1 quotient, CDNV, NC2, participation ratio, centroid separation),
`CrossMoments` (linear CKA of two representations from their joint scatter), and the run
helpers `class_moments` and `consecutive_cka`, which read a run store one chunk at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from scipy.linalg import helmert
from scipy.spatial.distance import pdist

from hooks import schema
from probe.analysis import collapse
from probe.errors import (
    EmptyAccumulatorError,
    InvalidArrayError,
    LayerNotInRunError,
)
from probe.validation import as_samples_features, check_int, check_same_n_samples

if TYPE_CHECKING:
    from probe.store import Run

__all__ = [
    "ClassMoments",
    "CrossMoments",
    "Moments",
    "class_moments",
    "consecutive_cka",
]

F64 = npt.NDArray[np.float64]


def _chunk(X: Any, name: str, d: int | None) -> F64:
    """(m, d) float64 chunk whose feature count matches the earlier chunks (``d``)."""
    Xf = as_samples_features(X, name)
    if d is not None and Xf.shape[1] != d:
        msg = (
            f"{name} must have {d} features (flattened) like the earlier chunks; "
            f"got shape {np.shape(X)}. Feed every chunk of one representation."
        )
        raise InvalidArrayError(msg)
    return Xf


def _need(n: int, n_min: int, what: str) -> None:
    if n < n_min:
        msg = f"{what} needs at least {n_min} accumulated samples; got {n}. Call update() first."
        raise EmptyAccumulatorError(msg)


class Moments:
    """Running count, mean and centred scatter of samples fed in chunks.

    Attributes
    ----------
    n_samples_ : int
        Samples seen so far.
    mean_ : ndarray of float64 of shape (d,)
        Their mean.
    scatter_ : ndarray of float64 of shape (d, d)
        ``Σ_i (x_i - mean)(x_i - mean)ᵀ``: the covariance is ``scatter_ / (n_samples_ - ddof)``.

    Notes
    -----
    Each chunk's mean and scatter are computed about its own mean and merged with the pairwise
    update of Chan, Golub & LeVeque (1979): ``S = S_a + S_b + n_a n_b / n · δ δᵀ`` with
    ``δ = mean_b - mean_a``, so no large raw sums cancel.

    Examples
    --------
    >>> m = Moments().update([[0.0], [2.0]]).update([[4.0]])
    >>> m.n_samples_, m.mean_.tolist(), (m.scatter_ / (m.n_samples_ - 1)).tolist()
    (3, [2.0], [[4.0]])
    """

    def __init__(self) -> None:
        self.n_samples_ = 0
        self.mean_: F64 = np.zeros(0)
        self.scatter_: F64 = np.zeros((0, 0))

    def update(self, X: npt.ArrayLike) -> Moments:
        """Add a chunk ``X`` of shape (m, d, ...) (extra axes flattened); return self.

        Raises
        ------
        InvalidArrayError
            ``X`` is not finite numeric with at least 1 row, or its width differs from before.
        """
        Xf = _chunk(X, "X", self.mean_.size if self.n_samples_ else None)
        n_b, mean_b = Xf.shape[0], Xf.mean(axis=0)
        R = Xf - mean_b
        if not self.n_samples_:
            self.n_samples_, self.mean_, self.scatter_ = n_b, mean_b, R.T @ R
            return self
        n = self.n_samples_ + n_b
        delta = mean_b - self.mean_
        self.scatter_ = (
            self.scatter_ + R.T @ R + np.outer(delta, delta) * (self.n_samples_ * n_b / n)
        )
        self.mean_ = self.mean_ + delta * (n_b / n)
        self.n_samples_ = n
        return self


class ClassMoments:
    """Running class counts, class means and within-class scatter of labelled chunks.

    Attributes
    ----------
    classes_, counts_ : ndarray of shape (C,)
        Sorted distinct labels seen so far and their sample counts.
    means_ : ndarray of float64 of shape (C, d)
        Class means ``μ_c``.
    within_scatter_ : ndarray of float64 of shape (d, d)
        ``Σ_i (h_i - μ_{y_i})(h_i - μ_{y_i})ᵀ``; ``Σ_W = within_scatter_ / n_samples``.
    class_sq_ : ndarray of float64 of shape (C,)
        ``Σ_{i∈c} ‖h_i - μ_c‖²`` per class (its trace share).

    Notes
    -----
    Per class, the chunk statistics merge as in `Moments` (Chan et al. 1979); summed over
    classes, ``S_W ← S_W + S_W,chunk + Σ_c n_a n_b / n · δ_c δ_cᵀ``. Conventions follow
    `probe.analysis.collapse`: ``μ_G`` is the unweighted mean of class means, ``Σ_W`` is divided by
    the total number of samples, ``Σ_B = (1/C) Σ_c (μ_c - μ_G)(μ_c - μ_G)ᵀ``, and the results
    equal `collapse.nc1`, `collapse.nc1_quotient`, `collapse.cdnv`,
    `clusters.centroid_separation` and `dimension.participation_ratio` of the whole array.

    Examples
    --------
    >>> cm = ClassMoments().update([[-1.1], [-0.9]], [0, 0]).update([[0.9], [1.1]], [1, 1])
    >>> round(cm.nc1(), 6), round(cm.cdnv(), 6)
    (0.005, 0.0025)
    """

    def __init__(self) -> None:
        self.classes_: npt.NDArray[Any] = np.zeros(0, np.int64)
        self.counts_ = np.zeros(0, np.int64)
        self.means_: F64 = np.zeros((0, 0))
        self.within_scatter_: F64 = np.zeros((0, 0))
        self.class_sq_: F64 = np.zeros(0)

    @property
    def n_samples(self) -> int:
        """Samples seen so far."""
        return int(self.counts_.sum())

    def update(self, X: npt.ArrayLike, y: npt.ArrayLike) -> ClassMoments:
        """Add features ``X`` of shape (m, d, ...) with labels ``y`` of shape (m,); return self.

        Raises
        ------
        InvalidArrayError
            ``X`` is not finite numeric, its width differs from before, or ``y`` is not 1-D.
        ShapeMismatchError
            ``X`` and ``y`` differ in length.
        """
        Xf = _chunk(X, "X", self.means_.shape[1] if self.n_samples else None)
        labels = np.asarray(y)
        if labels.ndim != 1:
            msg = f"y must be 1-D class labels of shape (n_samples,); got shape {labels.shape}."
            raise InvalidArrayError(msg)
        check_same_n_samples(Xf, labels, "X, y")
        cls, inv, n_b = np.unique(labels, return_inverse=True, return_counts=True)
        starts = np.concatenate(([0], np.cumsum(n_b)[:-1]))
        mean_b = np.add.reduceat(Xf[np.argsort(inv, kind="stable")], starts, axis=0) / n_b[:, None]
        R = Xf - mean_b[inv]
        sq_b = np.bincount(inv, np.einsum("ij,ij->i", R, R), minlength=cls.size).astype(
            np.float64, copy=False
        )  # float with weights (numpy's stub says int)
        if not self.n_samples:
            self.classes_, self.counts_, self.means_ = cls, n_b.astype(np.int64), mean_b
            self.within_scatter_, self.class_sq_ = R.T @ R, sq_b
            return self
        # Align the old classes and the chunk's on their union (new classes start empty).
        union = np.union1d(self.classes_, cls)
        old, new = np.searchsorted(union, self.classes_), np.searchsorted(union, cls)
        counts, means = np.zeros(union.size, np.int64), np.zeros((union.size, Xf.shape[1]))
        sq = np.zeros(union.size)
        counts[old], means[old], sq[old] = self.counts_, self.means_, self.class_sq_
        n_a, mean_a = counts[new], means[new]
        n = n_a + n_b
        delta = mean_b - mean_a
        w = n_a * n_b / n
        self.within_scatter_ = self.within_scatter_ + R.T @ R + (delta * w[:, None]).T @ delta
        sq[new] += sq_b + w * np.einsum("ij,ij->i", delta, delta)
        means[new] = mean_a + delta * (n_b / n)[:, None]
        counts[new] = n
        self.classes_, self.counts_, self.means_, self.class_sq_ = union, counts, means, sq
        return self

    def _check(self) -> F64:
        """Return the centred class means; raise unless >= 2 classes with distinct means."""
        _need(self.n_samples, 2, "a class statistic")
        if self.classes_.size < 2:
            msg = f"y must contain at least 2 classes; got {self.classes_.size}."
            raise InvalidArrayError(msg)
        centred = self.means_ - self.means_.mean(axis=0)
        if not np.any(centred):
            msg = f"class means must differ; got {self.classes_.size} identical ones (Σ_B = 0)."
            raise InvalidArrayError(msg)
        return centred

    def nc1(self) -> float:
        """Return NC1 ``Tr(Σ_W Σ_B⁺) / C``, as `probe.analysis.collapse.nc1` of all samples.

        Raises
        ------
        EmptyAccumulatorError, InvalidArrayError
            Fewer than 2 samples or classes seen, or all class means are equal.
        """
        centred = self._check()
        C = centred.shape[0]
        # The Helmert basis drops the round-off copy of the 1 direction (see collapse.nc1).
        U, s, _ = np.linalg.svd(centred.T @ helmert(C).T, full_matrices=False)
        keep = s > max(U.shape[0], C) * np.finfo(np.float64).eps * s[0]
        Uk = U[:, keep]
        within = np.einsum("dk,de,ek->k", Uk, self.within_scatter_, Uk) / self.n_samples
        return float(np.sum(within / s[keep] ** 2))

    def nc1_quotient(self) -> float:
        """Return ``tr Σ_W / tr Σ_B``, as `collapse.nc1_quotient` (same Raises as `nc1`)."""
        centred = self._check()
        within = np.trace(self.within_scatter_) / self.n_samples
        return float(within / (np.sum(centred**2) / centred.shape[0]))

    def cdnv(self) -> float:
        """Return ``mean_{c<c'} (Var_c + Var_c') / (2 ‖μ_c - μ_c'‖²)``, as `collapse.cdnv`.

        Raises
        ------
        EmptyAccumulatorError, InvalidArrayError
            As `nc1`, or two classes share the same mean.
        """
        self._check()
        var = self.class_sq_ / self.counts_
        dist2 = pdist(self.means_, "sqeuclidean")
        if np.any(dist2 == 0):
            msg = "class means must be distinct for CDNV; got two classes with the same mean."
            raise InvalidArrayError(msg)
        pair_var = (var[:, None] + var[None, :])[np.triu_indices(var.size, k=1)]
        return float(np.mean(pair_var / (2.0 * dist2)))

    def metrics(self) -> dict[str, float]:
        """Return the streamable cluster metrics under the names `clusters.geometry` uses.

        Returns ``nc1``, ``nc1_quotient``, ``nc2_*`` (`collapse.etf_measures` of the centred
        means), ``cdnv``, ``participation_ratio`` (``tr(S_T)² / tr(S_T²)`` of the total scatter)
        and ``centroid_separation``; raises as `cdnv`.
        """
        out = {"nc1": self.nc1(), "nc1_quotient": self.nc1_quotient()}
        etf = collapse.etf_measures(self.means_ - self.means_.mean(axis=0))
        out.update({f"nc2_{k}": v for k, v in etf.items()})
        out["cdnv"] = self.cdnv()
        # Total scatter S_T = S_W + Σ_c n_c (μ_c - μ)(μ_c - μ)ᵀ, μ the sample-weighted mean.
        D = self.means_ - self.counts_ @ self.means_ / self.n_samples
        S = self.within_scatter_ + (D * self.counts_[:, None]).T @ D
        S = S / np.abs(S).max()  # scale-free, as dimension.participation_ratio_from_spectrum
        out["participation_ratio"] = float(np.trace(S) ** 2 / np.sum(S * S))
        noise = np.sqrt(np.trace(self.within_scatter_) / self.n_samples)
        gap = float(np.min(pdist(self.means_)))
        out["centroid_separation"] = float(gap / noise) if noise > 0 else float("inf")
        return out


class CrossMoments:
    """Running joint moments of two representations of the same samples, for their linear CKA.

    Notes
    -----
    ``moments_`` (a `Moments`) holds the joint scatter of the rows ``[x_i, y_i]``, with blocks
    ``S_xx``, ``S_xy``, ``S_yy``: memory ``O((d_x + d_y)²)``, independent of ``n_samples``.
    Biased linear CKA (Kornblith et al. 2019, eq. 3) in feature space:
    ``tr(K̃ L̃) = ‖S_xy‖_F²`` for centred Grams ``K̃ = X̃ X̃ᵀ``, so
    ``CKA = ‖S_xy‖_F² / (‖S_xx‖_F ‖S_yy‖_F)``, equal to `probe.analysis.similarity.linear_cka`. The
    unbiased estimator needs fourth-order sums about the final mean, so it is left to
    `probe.analysis.similarity.linear_cka(..., unbiased=True)` on arrays in memory.

    Examples
    --------
    >>> X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0], [2.0, 1.0]])
    >>> cm = CrossMoments().update(X[:2], 2 * X[:2]).update(X[2:], 2 * X[2:])
    >>> round(cm.linear_cka(), 6)
    1.0
    """

    def __init__(self) -> None:
        self.moments_ = Moments()
        self._first: tuple[F64, F64] | None = None
        self._varies = [False, False]

    def update(self, X: npt.ArrayLike, Y: npt.ArrayLike) -> CrossMoments:
        """Add rows of ``X`` of shape (m, d_x, ...) and ``Y`` of shape (m, d_y, ...); return self.

        Raises
        ------
        InvalidArrayError
            An input is not finite numeric, or its width differs from the earlier chunks.
        ShapeMismatchError
            ``X`` and ``Y`` have different numbers of rows.
        """
        first = self._first
        Xf = _chunk(X, "X", None if first is None else first[0].size)
        Yf = _chunk(Y, "Y", None if first is None else first[1].size)
        check_same_n_samples(Xf, Yf)
        if first is None:
            first = self._first = (Xf[0].copy(), Yf[0].copy())
        # Exactly the in-memory test (`check_not_constant`): does any row differ from the first?
        self._varies[0] = self._varies[0] or bool(np.any(Xf != first[0]))
        self._varies[1] = self._varies[1] or bool(np.any(Yf != first[1]))
        self.moments_.update(np.hstack([Xf, Yf]))
        return self

    def linear_cka(self) -> float:
        """Return the (biased) linear CKA of all samples seen, as `similarity.linear_cka`.

        Returns
        -------
        float
            In [0, 1]; 1 for representations equal up to rotation and isotropic scaling.

        Raises
        ------
        EmptyAccumulatorError
            Fewer than 2 samples seen.
        InvalidArrayError
            A representation is constant across samples.
        """
        _need(self.moments_.n_samples_, 2, "linear_cka")
        for name, varies in zip("XY", self._varies, strict=True):
            if not varies:
                msg = (
                    f"{name} must vary across samples; got {self.moments_.n_samples_} identical "
                    "rows (its centred norm is 0, so CKA is undefined)."
                )
                raise InvalidArrayError(msg)
        dx = self._first[0].size if self._first is not None else 0
        S = self.moments_.scatter_
        Sxx, Sxy, Syy = S[:dx, :dx], S[:dx, dx:], S[dx:, dx:]
        return float(np.sum(Sxy * Sxy) / np.sqrt(np.sum(Sxx * Sxx) * np.sum(Syy * Syy)))


def _chunk_reader(
    run: Run, layer: str, key: str, chunk_rows: Any
) -> Callable[[int], Iterator[npt.NDArray[Any]]]:
    """Check the arguments; return ``read(i)`` yielding snapshot ``i`` in (m, ...) row chunks.

    A single-process run is read ``chunk_rows`` samples at a time from its zarr array (through
    the run's checked store: a damaged chunk raises `CorruptRunError`); a
    multi-process run through `Run.acts`, which merges the ranks' shards into probe order (one
    whole snapshot in memory at a time).
    """
    check_int(chunk_rows, "chunk_rows")
    if key not in run.keys(layer):  # keys() raises for an unknown layer
        msg = f"layer {layer!r} has no array {key!r}; recorded: {run.keys(layer)}."
        raise LayerNotInRunError(msg)
    rows = int(chunk_rows)
    if run.world_size > 1:

        def read_merged(i: int) -> Iterator[npt.NDArray[Any]]:
            X = run.acts(layer, int(run.steps[i]), key=key)
            return (X[lo : lo + rows] for lo in range(0, X.shape[0], rows))

        return read_merged
    arr = run.open_array(f"{schema.layer_group(layer)}/{key}")  # checked reads
    dims = getattr(arr.metadata, "dimension_names", None)
    if (dims or ())[1:2] != ("sample",):
        msg = (
            f"layer {layer!r} array {key!r} has no sample dimension (an output with no batch "
            f"dimension, dims {dims}); read it with Run.acts."
        )
        raise InvalidArrayError(msg)
    return lambda i: (np.asarray(arr[i, lo : lo + rows]) for lo in range(0, arr.shape[1], rows))


def class_moments(
    run: Run, layer: str, step: int, *, chunk_rows: int = 8192, key: str = "acts"
) -> ClassMoments:
    """Return the `ClassMoments` of a layer at one snapshot, read ``chunk_rows`` samples at a time.

    Parameters
    ----------
    run : Run
        An opened run (`probe.open_run`) with class labels as probe targets.
    layer, step : str, int
        A recorded layer and a step with a snapshot (negative: from the end).
    chunk_rows, key : int, str
        Probe samples per read (memory ``O(chunk_rows · d + d²)``) and which recorded array of
        the layer (see `Run.keys`).

    Returns
    -------
    ClassMoments

    Raises
    ------
    ConfigError
        ``chunk_rows`` is not a positive int.
    InvalidArrayError
        The run stored no 1-D probe targets.
    LayerNotInRunError, StepNotFoundError
        Unknown layer or key, or no snapshot at ``step``.
    """
    read = _chunk_reader(run, layer, key, chunk_rows)
    y = run.targets
    if y is None or y.ndim != 1:
        msg = "run.targets must hold 1-D class labels; record with Recorder(probe=(x, y))."
        raise InvalidArrayError(msg)
    cm, lo = ClassMoments(), 0
    for X in read(run.snapshot_index(step)):
        cm.update(X.reshape(X.shape[0], -1), y[lo : lo + X.shape[0]])
        lo += X.shape[0]
    return cm


def consecutive_cka(run: Run, layer: str, *, chunk_rows: int = 8192, key: str = "acts") -> F64:
    """Return the linear CKA of a layer between consecutive snapshots, streaming over samples.

    Parameters
    ----------
    run : Run
        An opened run (`probe.open_run`).
    layer : str
        A recorded layer.
    chunk_rows, key : int, str
        As in `class_moments`; memory is ``O(chunk_rows · d + d²)``, never ``n_samples²``.

    Returns
    -------
    ndarray of float64 of shape (n_snapshots - 1,)
        ``cka[t] = linear_cka(acts[t], acts[t + 1])`` (biased): the superdiagonal of
        `probe.analysis.similarity.layer_cka_over_steps`, whose memory grows as ``n_snapshots ·
        n²``.

    Raises
    ------
    ConfigError
        ``chunk_rows`` is not a positive int.
    InvalidArrayError
        Fewer than 2 snapshots, or a snapshot is constant across samples.
    LayerNotInRunError
        Unknown layer or key.
    """
    read = _chunk_reader(run, layer, key, chunk_rows)
    if run.n_snapshots < 2:
        msg = f"run must have at least 2 snapshots; got {run.n_snapshots}."
        raise InvalidArrayError(msg)
    out = np.empty(run.n_snapshots - 1)
    for t in range(run.n_snapshots - 1):
        cm = CrossMoments()
        for X, Y in zip(read(t), read(t + 1), strict=True):
            cm.update(X.reshape(X.shape[0], -1), Y.reshape(Y.shape[0], -1))
        try:
            out[t] = cm.linear_cka()
        except InvalidArrayError as err:
            msg = f"layer {layer!r} between steps {run.steps[t]} and {run.steps[t + 1]}: {err}"
            raise InvalidArrayError(msg) from err
    return out
