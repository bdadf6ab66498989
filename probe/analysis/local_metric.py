"""Static vs local metric (docs/features.md §2): per-sample pullback metrics against the NFM.

Per-sample pullback metrics `layer_pullback` (``Wᵀ D(x)² W``) and `output_pullback` (``JᵀJ``),
`per_sample_jacobians` (torch.func), `agop_from_jacobians`, `class_agop`, `local_sq_distances`,
the summary `static_vs_local` (figure: `probe.plots.local_metric.plot_static_vs_local`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch.func import jacrev, vmap

from probe.analysis.features import matrix_power_psd
from probe.analysis.similarity import pairwise_sq_distances
from probe.errors import ConfigError, InvalidArrayError, ShapeMismatchError
from probe.validation import as_float_array, as_samples_features, check_int

__all__ = [
    "DERIVATIVES",
    "StaticVsLocal",
    "agop_from_jacobians",
    "class_agop",
    "layer_pullback",
    "local_sq_distances",
    "output_pullback",
    "per_sample_jacobians",
    "static_vs_local",
]

F64 = npt.NDArray[np.float64]

# phi' by name; relu'(0) = 0 as in torch's autograd.
DERIVATIVES: dict[str, Callable[[F64], F64]] = {
    "relu": lambda z: (z > 0).astype(np.float64),
    "tanh": lambda z: 1.0 - np.tanh(z) ** 2,
    "identity": np.ones_like,
}


def _weight(W: npt.ArrayLike) -> F64:
    """Return ``W`` as float64 (out, in*kh*kw)."""
    arr = as_float_array(W, "W", min_ndim=2)
    return arr.reshape(arr.shape[0], -1)


def layer_pullback(
    W: npt.ArrayLike,
    z: npt.ArrayLike,
    phi_prime: str | Callable[[F64], F64],
    *,
    average: bool = False,
) -> F64:
    """Return the pullback metric ``g_h(x) = Wᵀ D(x)² W`` of one layer ``h = phi(W h_in + b)``.

    Parameters
    ----------
    W : array_like of shape (m, d)
        The layer's weight (torch convention).
    z : array_like of shape (n_samples, m)
        Pre-activations ``W h_in(x) + b`` of each sample.
    phi_prime : {"relu", "tanh", "identity"} or callable
        ``phi'`` by name (`DERIVATIVES`) or a function mapping z (n, m) to ``phi'(z)`` (n, m).
    average : bool
        Return the data average ``E_x g_h = Wᵀ diag(E phi'(z)²) W`` instead (O(m d²) memory).

    Returns
    -------
    ndarray of float64 of shape (n_samples, d, d), or (d, d) with ``average``

    Raises
    ------
    InvalidArrayError
        ``W`` or ``z`` is not finite numeric of at least 2 dimensions.
    ShapeMismatchError
        ``z`` is not m wide, or ``phi_prime(z)`` does not have the shape of ``z``.
    ConfigError
        Unknown ``phi_prime`` name.

    Notes
    -----
    ``"identity"`` (or ``D = I``) gives the static metric ``WᵀW`` = NFM of the pre-activation.
    For ReLU ``g_h(x) ⪯ WᵀW`` and, bias-free with inputs symmetric about 0,
    ``E_x g_h = WᵀW / 2`` (docs/features.md §2, target E5).

    Examples
    --------
    >>> layer_pullback([[1.0, 0.0], [0.0, 2.0]], [[1.0, -1.0]], "relu")
    array([[[1., 0.],
            [0., 0.]]])
    """
    Wf = _weight(W)
    Z = as_samples_features(z, "z")
    if Z.shape[1] != Wf.shape[0]:
        msg = f"z must have one column per output unit of W ({Wf.shape[0]}); got {Z.shape}."
        raise ShapeMismatchError(msg)
    if isinstance(phi_prime, str):
        if phi_prime not in DERIVATIVES:
            msg = (
                f"phi_prime must be one of {sorted(DERIVATIVES)} or a callable; got {phi_prime!r}."
            )
            raise ConfigError(msg)
        phi_prime = DERIVATIVES[phi_prime]
    D = np.asarray(phi_prime(Z), dtype=np.float64)
    if D.shape != Z.shape:
        msg = f"phi_prime(z) must have the shape of z {Z.shape}; got {D.shape}."
        raise ShapeMismatchError(msg)
    D2 = D**2
    if average:
        return Wf.T @ (D2.mean(axis=0)[:, None] * Wf)
    return np.einsum("nm,md,me->nde", D2, Wf, Wf, optimize=True)


def _jacobians(J: npt.ArrayLike) -> F64:
    """Return ``J`` as float64 (n, c, d), raising with a reshape hint otherwise."""
    arr = as_float_array(J, "J", min_ndim=3)
    if arr.ndim != 3 or arr.shape[0] == 0:
        msg = (
            f"J must have shape (n_samples, n_outputs, d); got {arr.shape}. "
            "Use J[:, None, :] for a scalar output and flatten feature axes into d."
        )
        raise InvalidArrayError(msg)
    return arr


def output_pullback(J: npt.ArrayLike) -> F64:
    """Return the pullback metric ``g_f(x_i) = J_iᵀ J_i`` of the downstream network per sample.

    ``J`` (n_samples, c, d) are the Jacobians ``∂f/∂h_l`` of the c outputs w.r.t. the layer
    input (`per_sample_jacobians`). Returns float64 (n_samples, d, d), each of rank <= c, so a
    single local metric cannot match a full-rank NFM; their mean is the AGOP (docs/features.md §2).
    Raises `InvalidArrayError` unless ``J`` is finite numeric of shape (n, c, d) with n >= 1.

    Examples
    --------
    >>> output_pullback([[[1.0, 2.0]]])
    array([[[1., 2.],
            [2., 4.]]])
    """
    Jf = _jacobians(J)
    return np.einsum("ncd,nce->nde", Jf, Jf)


def per_sample_jacobians(
    f: Callable[[torch.Tensor], torch.Tensor], h: Any, *, batch_size: int = 256
) -> F64:
    """Return the Jacobian of ``f`` at every sample, by ``vmap(jacrev(f))`` (torch.func).

    Parameters
    ----------
    f : callable
        Maps ONE sample of shape ``h.shape[1:]`` to its outputs (any shape, c entries; a scalar
        gives c = 1); e.g. the sub-network after a layer, in eval mode (no batch statistics).
    h : tensor or array_like of shape (n_samples, ...)
        Points at which to differentiate, in ``f``'s dtype (float64 for reference values).
    batch_size : int
        Samples per vmap call (memory).

    Returns
    -------
    ndarray of float64 of shape (n_samples, c, d)
        ``J[i] = ∂f/∂h`` at ``h[i]``, input axes flattened to d.

    Raises
    ------
    InvalidArrayError
        ``h`` is not floating with at least 2 dimensions and 1 sample.
    ConfigError
        ``batch_size`` is not a positive int.
    """
    x = h if isinstance(h, torch.Tensor) else torch.as_tensor(np.asarray(h))
    if x.ndim < 2 or x.shape[0] == 0 or not x.is_floating_point():
        msg = f"h must be floating of shape (n_samples, ...) with n >= 1; got {tuple(x.shape)}."
        raise InvalidArrayError(msg)
    check_int(batch_size, "batch_size")
    jac = vmap(jacrev(f))
    out = []
    with torch.no_grad():  # torch.func still differentiates; no graph to the parameters
        for chunk in torch.split(x.detach(), batch_size):
            J = jac(chunk).reshape(chunk.shape[0], -1, chunk[0].numel())
            out.append(J.to(torch.float64).cpu().numpy())
    return np.concatenate(out)


def agop_from_jacobians(J: npt.ArrayLike, *, centered: bool = False) -> F64:
    """Return the AGOP ``(1/n) Σ_i J_iᵀ J_i`` from per-sample Jacobians ``J`` (n, c, d).

    With ``centered``, the gradient covariance ``(1/n) Σ_i (J_i - J̄)ᵀ(J_i - J̄)`` (the authors'
    ``centering=True``; biased, divides by n). Returns float64 (d, d); raises as
    `output_pullback`.

    Examples
    --------
    >>> agop_from_jacobians([[[1.0, 0.0]], [[0.0, 1.0]]])
    array([[0.5, 0. ],
           [0. , 0.5]])
    """
    Jf = _jacobians(J)
    if centered:
        Jf = Jf - Jf.mean(axis=0)
    return np.einsum("ncd,nce->de", Jf, Jf) / Jf.shape[0]


def class_agop(
    J: npt.ArrayLike, labels: npt.ArrayLike, *, centered: bool = False
) -> tuple[npt.NDArray[Any], F64]:
    """Return the AGOP restricted to each class: ``(1/n_c) Σ_{i: y_i = c} J_iᵀ J_i``.

    ``J`` (n, c, d) per-sample Jacobians, ``labels`` (n,) class of each sample; ``centered``
    as `agop_from_jacobians`, per class. Returns the sorted classes (C,) and float64
    (C, d, d). Weighted by the class shares ``n_c / n``, the uncentred class AGOPs sum to the
    AGOP. Raises as `output_pullback`, and `ShapeMismatchError` unless ``labels`` is (n,).
    """
    Jf = _jacobians(J)
    y = np.asarray(labels)
    if y.shape != Jf.shape[:1]:
        msg = f"labels must have shape ({Jf.shape[0]},), one per row of J; got {y.shape}."
        raise ShapeMismatchError(msg)
    classes = np.unique(y)
    return classes, np.stack([agop_from_jacobians(Jf[y == c], centered=centered) for c in classes])


def _metrics(metrics: npt.ArrayLike, n: int, d: int) -> F64:
    """Return local metrics as float64 (n, d, d), symmetrised (quadratic forms see only that)."""
    G = as_float_array(metrics, "metrics", min_ndim=3)
    if G.shape != (n, d, d):
        msg = f"metrics must have shape (n_samples, d, d) = ({n}, {d}, {d}); got {G.shape}."
        raise ShapeMismatchError(msg)
    return 0.5 * (G + np.swapaxes(G, 1, 2))


def local_sq_distances(X: npt.ArrayLike, metrics: npt.ArrayLike) -> F64:
    """Return squared distances between samples under their local metrics, symmetrised.

    Parameters
    ----------
    X : array_like of shape (n_samples, d, ...)
        The points (layer inputs ``h_l``); extra feature axes are flattened.
    metrics : array_like of shape (n_samples, d, d)
        The metric ``g(x_i)`` at each point (`layer_pullback`, `output_pullback`).

    Returns
    -------
    ndarray of float64 of shape (n_samples, n_samples)
        ``D[i, j] = ½ [Δᵀ g(x_i) Δ + Δᵀ g(x_j) Δ]``, ``Δ = x_j - x_i``; zero diagonal.

    Raises
    ------
    InvalidArrayError
        An input is not finite numeric.
    ShapeMismatchError
        ``metrics`` is not (n_samples, d, d).

    Notes
    -----
    ``Δᵀ g(x_i) Δ`` is the squared tangent-space length of the step from x_i under the metric
    at x_i; it is not symmetric, so both endpoints are averaged: the trapezoid rule for the
    energy ``∫₀¹ Δᵀ g(x_i + tΔ) Δ dt`` of the straight segment (an upper bound of the squared
    geodesic distance). Trust it for near neighbours. Time O(n² d²), memory O(n d²).
    """
    Xf = as_samples_features(X, "X")
    n, d = Xf.shape
    G = _metrics(metrics, n, d)
    Xc = Xf - Xf.mean(axis=0)  # distances do not change; less cancellation
    outer = (Xc[:, :, None] * Xc[:, None, :]).reshape(n, d * d)
    far = G.reshape(n, d * d) @ outer.T  # x_jᵀ g_i x_j
    gx = np.einsum("nde,ne->nd", G, Xc)  # g_i x_i
    Q = far - 2.0 * gx @ Xc.T + np.einsum("nd,nd->n", gx, Xc)[:, None]
    D = np.maximum(0.5 * (Q + Q.T), 0.0)
    np.fill_diagonal(D, 0.0)
    return D


@dataclass(frozen=True)
class StaticVsLocal:
    """Summary of how well a static metric ``M`` (the NFM) stands in for local metrics ``g(x)``.

    Attributes
    ----------
    corr, cos : ndarray of float64 of shape (n_samples,)
        ``rho_pearson(g(x_i)^p, M)`` and the uncentred cosine; NaN where ``g(x_i)`` is constant.
    rank : ndarray of int of shape (n_samples,)
        Numerical rank of each ``g(x_i)`` (numpy's default tolerance; <= c for output pullbacks).
    rank_static : int
        Numerical rank of ``M``.
    mean_corr : float
        ``rho_pearson((mean_i g(x_i))^p, M)``: the NFA with output pullbacks and p = 1/2.
    knn : dict of str to float
        Mean overlap |N_A(i) ∩ N_B(i)| / k of the k-nearest-neighbour sets under two distances,
        for ``"euclidean~nfm"``, ``"euclidean~local"`` and ``"nfm~local"``.
    chance : float
        ``k / (n - 1)``, the expected overlap of unrelated neighbour sets.
    k : int
    power : float
        The power p applied to the local metrics.
    """

    corr: F64
    cos: F64
    rank: npt.NDArray[np.int64]
    rank_static: int
    mean_corr: float
    knn: dict[str, float]
    chance: float
    k: int
    power: float


def _row_corr(flat: F64, m: F64, *, centre: bool) -> F64:
    """Return the cosine of each row of ``flat`` with ``m`` (Pearson if ``centre``); NaN at 0."""
    if centre:
        flat, m = flat - flat.mean(axis=1, keepdims=True), m - m.mean()
    norms = np.linalg.norm(flat, axis=1) * np.linalg.norm(m)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, np.clip(flat @ m / norms, -1.0, 1.0), np.nan)


def _knn_mask(D: F64, k: int) -> npt.NDArray[np.bool_]:
    """Return the (n, n) membership mask of each row's k nearest others (ties: lower index)."""
    D = D.copy()
    np.fill_diagonal(D, np.inf)
    mask = np.zeros(D.shape, dtype=bool)
    np.put_along_axis(mask, np.argsort(D, axis=1, kind="stable")[:, :k], True, axis=1)
    return mask


def static_vs_local(
    M: npt.ArrayLike, metrics: npt.ArrayLike, X: npt.ArrayLike, *, k: int = 10, power: float = 1.0
) -> StaticVsLocal:
    """Summarise whether the static NFM ``M`` stands in for the per-sample local metrics.

    Parameters
    ----------
    M : array_like of shape (d, d)
        Static metric: the NFM ``WᵀW`` of the layer (`probe.analysis.features.nfm`).
    metrics : array_like of shape (n_samples, d, d)
        Local metric at each probe point: `layer_pullback` or `output_pullback`.
    X : array_like of shape (n_samples, d, ...)
        The probe points (the layer input) for the neighbour comparison.
    k : int
        Neighbours per point, in [1, n_samples - 1].
    power : float
        Compare ``g(x_i)^power`` with ``M`` (and measure local distances with it): 1 for layer
        pullbacks, 1/2 for output pullbacks (the NFA ``M ≈ AGOP^{1/2}``).

    Returns
    -------
    StaticVsLocal

    Raises
    ------
    InvalidArrayError, ShapeMismatchError
        ``M`` is not a finite non-constant (d, d) matrix, or the shapes do not agree.
    ConfigError
        ``k`` is out of range or ``power`` is not positive.

    Notes
    -----
    Distances: Euclidean; static ``(x_i - x_j)ᵀ M (x_i - x_j)``; local as `local_sq_distances`
    (metric at each endpoint, averaged). Neighbour ties go to the lower index.
    """
    Mf = as_float_array(M, "M", min_ndim=2)
    Xf = as_samples_features(X, "X")
    n, d = Xf.shape
    if Mf.shape != (d, d):
        msg = f"M must be ({d}, {d}) for X of {d} features; got {Mf.shape}."
        raise ShapeMismatchError(msg)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n - 1:
        msg = f"k must be an int in [1, n_samples - 1 = {n - 1}]; got {k!r}."
        raise ConfigError(msg)
    m = Mf.reshape(-1)
    if np.ptp(m) == 0:
        msg = "M must not be constant: its correlation with any metric is undefined."
        raise InvalidArrayError(msg)
    G = _metrics(metrics, n, d)
    mean_p = matrix_power_psd(G.mean(axis=0), power)  # also validates power
    Gp = G if power == 1 else matrix_power_psd(G, power)
    flat = Gp.reshape(n, -1)
    masks = {
        "euclidean": _knn_mask(pairwise_sq_distances(Xf), k),
        "nfm": _knn_mask(pairwise_sq_distances(Xf @ matrix_power_psd(Mf, 0.5)), k),
        "local": _knn_mask(local_sq_distances(Xf, Gp), k),
    }
    pairs = [("euclidean", "nfm"), ("euclidean", "local"), ("nfm", "local")]
    knn = {f"{a}~{b}": float((masks[a] & masks[b]).sum() / (n * k)) for a, b in pairs}
    return StaticVsLocal(
        corr=_row_corr(flat, m, centre=True),
        cos=_row_corr(flat, m, centre=False),
        # rank(g^p) = rank(g), but p < 1 lifts round-off eigenvalues (1e-16 -> 1e-8): use g.
        rank=np.linalg.matrix_rank(G, hermitian=True).astype(np.int64),
        rank_static=int(np.linalg.matrix_rank(Mf, hermitian=True)),
        mean_corr=float(_row_corr(mean_p.reshape(1, -1), m, centre=True)[0]),
        knn=knn,
        chance=k / (n - 1),
        k=k,
        power=float(power),
    )
