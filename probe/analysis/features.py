"""Neural Feature Ansatz (docs/features.md §1): the NFM ``WᵀW`` against the AGOP, and FACT.

`nfm`, `matrix_power_psd`, `rho_pearson`, `rho_cos`, `rho_offdiag`, `compare` (all measures per
AGOP power with init baselines), `fact_matrix`, `fact_residual`, `nfa_over_steps` (figure:
`probe.plots.features.plot_nfa`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from probe.errors import (
    AGOPNotRecordedError,
    ConfigError,
    InvalidArrayError,
    ShapeMismatchError,
)
from probe.validation import as_float_array, check_positive

if TYPE_CHECKING:
    from probe.store import Run

__all__ = [
    "MEASURES",
    "NFAComparison",
    "compare",
    "fact_matrix",
    "fact_residual",
    "matrix_power_psd",
    "nfa_over_steps",
    "nfm",
    "rho_cos",
    "rho_offdiag",
    "rho_pearson",
]

F64 = npt.NDArray[np.float64]
FRAME_COLUMNS = ("layer", "step", "measure", "power", "value", "init", "nfm_change")


def _weight(W: npt.ArrayLike, name: str) -> F64:
    """Return ``W`` as float64 (out, in*kh*kw): conv filters flattened in (c, row, col) order."""
    arr = as_float_array(W, name, min_ndim=2)
    return arr.reshape(arr.shape[0], -1)


def nfm(
    W: npt.ArrayLike,
    W0: npt.ArrayLike | None = None,
    *,
    subtract_init: bool = False,
    scale: float | Literal["out"] | None = None,
) -> F64:
    """Return the Neural Feature Matrix ``WᵀW`` (input-side Gram, float64 (in, in)) of a layer.

    Parameters
    ----------
    W : array_like of shape (out, in) or (out, in, kh, kw)
        Weight in torch convention; conv filters are flattened to (out, in*kh*kw).
    W0, subtract_init
        Initial weight of W's shape, used (and required) only with ``subtract_init=True``,
        which returns ``(W - W0)ᵀ(W - W0)`` (``remove_init`` of the Science-paper code; C-NFA).
    scale : float, "out" or None
        Divide by this number; ``"out"``: by the output width m, as the authors' code does.
        None: no scaling (correlations do not depend on it).

    Raises
    ------
    InvalidArrayError, ShapeMismatchError
        ``W`` is not finite numeric with >= 2 dimensions, or ``W0`` differs from it in shape.
    ConfigError
        ``subtract_init`` and ``W0`` do not go together, or ``scale`` is not positive.

    Examples
    --------
    >>> nfm([[1.0, 2.0], [0.0, 1.0]])
    array([[1., 2.],
           [2., 5.]])
    """
    Wf = _weight(W, "W")
    if subtract_init != (W0 is not None):
        msg = (
            "subtract_init=True needs W0, and W0 is used only with subtract_init=True; "
            f"got subtract_init={subtract_init!r}, W0 {'given' if W0 is not None else 'None'}."
        )
        raise ConfigError(msg)
    if W0 is not None:
        W0f = _weight(W0, "W0")
        if W0f.shape != Wf.shape:
            msg = f"W0 must have the shape of W; got W0 {W0f.shape}, W {Wf.shape} (flattened)."
            raise ShapeMismatchError(msg)
        Wf = Wf - W0f
    div = (
        Wf.shape[0] if scale == "out" else 1.0 if scale is None else check_positive(scale, "scale")
    )
    return Wf.T @ Wf / div


def matrix_power_psd(G: npt.ArrayLike, p: float) -> F64:
    """Return ``G^p = V diag(max(λ, 0)^p) Vᵀ`` of symmetric PSD matrices ``G`` (..., d, d).

    ``p`` > 0 (1/2: Science-paper NFA; 1/L: depth-L linear nets); float64, symmetric. Negative
    eigenvalues (round-off) are clipped to 0 as ``matrix_sqrt`` in the authors'
    ``rnns/shakespeare/utils.py`` (docs/features.md §1.3); their MLP code's SVD agrees for PSD
    input.
    Raises `ConfigError` for ``p`` <= 0 and `InvalidArrayError` unless ``G`` is finite, square
    and symmetric (relative tolerance 1e-5).

    Examples
    --------
    >>> matrix_power_psd([[4.0, 0.0], [0.0, 9.0]], 0.5)
    array([[2., 0.],
           [0., 3.]])
    """
    p = check_positive(p, "power p")
    A = _square(G, "G", stack=True)
    At = np.swapaxes(A, -1, -2)
    asym = np.linalg.norm(A - At, axis=(-2, -1))
    if np.any(asym > 1e-5 * np.linalg.norm(A, axis=(-2, -1))):
        msg = f"G must be symmetric; got relative asymmetry {float(np.max(asym)):.3g}."
        raise InvalidArrayError(msg)
    lam, V = np.linalg.eigh(0.5 * (A + At))
    out = (V * np.clip(lam, 0.0, None)[..., None, :] ** p) @ np.swapaxes(V, -1, -2)
    return 0.5 * (out + np.swapaxes(out, -1, -2))


def _square(A: npt.ArrayLike, name: str, *, stack: bool = False) -> F64:
    """Return ``A`` as a float64 (d, d) matrix, or a (..., d, d) stack when ``stack``."""
    arr = as_float_array(A, name, min_ndim=2)
    if arr.shape[-1] != arr.shape[-2] or (not stack and arr.ndim != 2):
        msg = f"{name} must have shape {'(..., d, d)' if stack else '(d, d)'}; got {arr.shape}."
        raise InvalidArrayError(msg)
    return arr


def _pair(A: npt.ArrayLike, B: npt.ArrayLike, names: str = "A, B") -> tuple[F64, F64]:
    """Return two float64 (d, d) matrices of the same shape."""
    na, nb = names.split(", ")
    a, b = _square(A, na), _square(B, nb)
    if a.shape != b.shape:
        msg = f"{na} and {nb} must have the same shape; got {a.shape} and {b.shape}."
        raise ShapeMismatchError(msg)
    return a, b


def _corr(a: F64, b: F64, centre: bool, what: str) -> float:
    """Return the cosine of the flattened ``a``, ``b`` (mean-removed first if ``centre``)."""
    if centre:
        a, b = a - a.mean(), b - b.mean()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        msg = f"{what} is undefined: {'A' if na == 0 else 'B'} is a constant or zero matrix."
        raise InvalidArrayError(msg)
    return float(np.clip(np.vdot(a, b) / (na * nb), -1.0, 1.0))


def rho_pearson(A: npt.ArrayLike, B: npt.ArrayLike) -> float:
    """Return the Pearson correlation over all entries of two (d, d) matrices ``A``, ``B``.

    ``<A - ā, B - b̄>_F / (||A - ā||_F ||B - b̄||_F)``, ā the mean of all d² entries (the
    Science-era code's ``correlate``, docs/features.md §1.5); float64, in [-1, 1]. Raises
    `InvalidArrayError` for a non-square or constant matrix, `ShapeMismatchError` when the
    shapes differ.

    Examples
    --------
    >>> rho_pearson([[1.0, 0.0], [0.0, 1.0]], [[3.0, 1.0], [1.0, 3.0]])
    1.0
    """
    return _corr(*_pair(A, B), True, "rho_pearson")


def rho_cos(A: npt.ArrayLike, B: npt.ArrayLike) -> float:
    """Return the uncentred cosine ``<A, B>_F / (||A||_F ||B||_F)`` of two (d, d) matrices.

    "AGOP alignment" of Mallinar et al. and the arXiv-era NFA code (docs/features.md §1.5); in [0,
    1] for PSD matrices. Raises `InvalidArrayError` for a non-square or zero matrix,
    `ShapeMismatchError` when the shapes differ.

    Examples
    --------
    >>> rho_cos([[1.0, 0.0], [0.0, 1.0]], [[3.0, 1.0], [1.0, 3.0]])
    0.9486832980505138
    """
    return _corr(*_pair(A, B), False, "rho_cos")


def rho_offdiag(A: npt.ArrayLike, B: npt.ArrayLike) -> float:
    """Return the Pearson correlation over the off-diagonal entries of two (d, d) matrices.

    Free of the diagonal dominance that makes `rho_pearson` of near-isotropic matrices high
    (docs/features.md §1.8). Raises `InvalidArrayError` for d < 2, a non-square matrix or a constant
    off-diagonal, `ShapeMismatchError` when the shapes differ.

    Examples
    --------
    >>> rho_offdiag([[0.0, 1.0], [2.0, 0.0]], [[9.0, 2.0], [5.0, 9.0]])
    1.0
    """
    a, b = _pair(A, B)
    if a.shape[0] < 2:
        msg = f"rho_offdiag needs matrices of size d >= 2; got shape {a.shape}."
        raise InvalidArrayError(msg)
    off = ~np.eye(a.shape[0], dtype=bool)
    return _corr(a[off], b[off], True, "rho_offdiag")


# The measures `compare` and `nfa_over_steps` report, by name.
MEASURES = {"pearson": rho_pearson, "cosine": rho_cos, "offdiag": rho_offdiag}


@dataclass(frozen=True)
class NFAComparison:
    """Agreement of an NFM ``M`` with powers ``G^p`` of an AGOP, with the baselines of §1.8.

    ``value[measure][p] = measure(M, G^p)`` for each measure of `MEASURES` and power in
    ``powers``; ``init[measure][p] = measure(M0, G0^p)``; ``nfm_change[measure] =
    measure(M, M0)``, near 1 when the NFM barely moved (lazy training). NaN: undefined.
    """

    powers: tuple[float, ...]
    value: dict[str, dict[float, float]]
    init: dict[str, dict[float, float]] | None
    nfm_change: dict[str, float] | None

    def to_frame(self) -> pd.DataFrame:
        """Return one row per (measure, power): ``measure, power, value, init, nfm_change``."""
        nan = float("nan")
        rows = [
            (m, p, v[p], self.init[m][p] if self.init else nan, (self.nfm_change or {}).get(m, nan))
            for m, v in self.value.items()
            for p in self.powers
        ]
        return pd.DataFrame(rows, columns=list(FRAME_COLUMNS[2:]))


def compare(
    M: npt.ArrayLike,
    G: npt.ArrayLike,
    *,
    powers: Sequence[float] = (1, 0.5),
    M0: npt.ArrayLike | None = None,
    G0: npt.ArrayLike | None = None,
) -> NFAComparison:
    """Compare an NFM with powers of an AGOP by every measure, with the honest baselines.

    Report ``init`` and ``nfm_change`` with the value (docs/features.md §1.8): Pearson of
    near-isotropic matrices is high already at initialisation, and ``AGOP = Wᵀ K W`` shares ``W``
    with the NFM.

    Parameters
    ----------
    M, G : array_like of shape (d, d)
        NFM (`nfm`, optionally of ``W - W0``) and AGOP w.r.t. the same layer's input.
    powers : sequence of float
        AGOP powers p > 0 (1: arXiv-era ansatz; 1/2: Science paper; 1/L: depth-L linear).
    M0, G0 : array_like of shape (d, d), optional
        NFM and AGOP at initialisation: ``M0`` gives ``nfm_change``, both give ``init``.

    Returns
    -------
    NFAComparison
        NaN where a measure is undefined (``offdiag`` of a diagonal matrix, say).

    Raises
    ------
    ConfigError
        ``powers`` is empty or not positive, or ``G0`` is given without ``M0``.
    InvalidArrayError, ShapeMismatchError
        A matrix is not finite, square (symmetric for ``G``) or of the shape of ``M``.

    Examples
    --------
    >>> M = [[2.0, 1.0], [1.0, 2.0]]
    >>> round(compare(M, matrix_power_psd(M, 2.0)).value["pearson"][0.5], 12)
    1.0
    """
    Mf, Gf = _pair(M, G, "M, G")
    if not len(powers) or (G0 is not None and M0 is None):
        msg = f"compare needs >= 1 power and M0 whenever G0 is given; got powers={powers!r}."
        raise ConfigError(msg)
    Gp = {float(p): matrix_power_psd(Gf, p) for p in powers}
    value = {m: {p: _rho_or_nan(m, Mf, Gp[p]) for p in Gp} for m in MEASURES}
    init = change = None
    if M0 is not None:
        M0f = _pair(Mf, M0, "M, M0")[1]
        change = {m: _rho_or_nan(m, Mf, M0f) for m in MEASURES}
        if G0 is not None:
            G0p = {p: matrix_power_psd(_pair(Gf, G0, "G, G0")[1], p) for p in Gp}
            init = {m: {p: _rho_or_nan(m, M0f, G0p[p]) for p in Gp} for m in MEASURES}
    return NFAComparison(tuple(Gp), value, init, change)


def fact_matrix(
    grad_h_loss: npt.ArrayLike, h: npt.ArrayLike, lam: float, *, n_samples: int | None = None
) -> F64:
    """Return the FACT matrix ``F = -(1/(n λ)) Σ_i ∇_h ℓ_i h_iᵀ`` of one layer (§1.4).

    ``grad_h_loss`` (n_rows, d): ``∂ℓ_i/∂h`` of each sample's own loss ℓ_i (not the batch
    mean) w.r.t. the layer input; ``h`` (n_rows, d): that input; ``lam``: λ > 0 of the objective
    ``L = (1/n) Σ ℓ_i + (λ/2) Σ_l ||W_l||_F²``; ``n_samples``: n (default n_rows; for conv
    layers pass patches as rows and the number of images). Returns float64 (d, d), equal to
    ``WᵀW`` at any stationary point of L (Boix-Adsera et al. 2025). Raises `InvalidArrayError`
    or `ShapeMismatchError` for non-finite or mismatched inputs, `ConfigError` for λ or n <= 0.
    At any point ``WᵀW - F = Wᵀ ∇_W L / λ`` exactly: the residual scales as ``||∇_W L|| /
    (λ ||W||)``, so report the gradient norm with it.
    """
    g = as_float_array(grad_h_loss, "grad_h_loss", min_ndim=2)
    H = as_float_array(h, "h", min_ndim=2)
    g, H = g.reshape(g.shape[0], -1), H.reshape(H.shape[0], -1)
    if g.shape != H.shape:
        msg = f"grad_h_loss and h must have the same shape; got {g.shape} and {H.shape}."
        raise ShapeMismatchError(msg)
    n = g.shape[0] if n_samples is None else check_positive(n_samples, "n_samples")
    return -(g.T @ H) / (n * check_positive(lam, "lam"))


def fact_residual(
    W: npt.ArrayLike,
    grad_h_loss: npt.ArrayLike,
    h: npt.ArrayLike,
    lam: float,
    *,
    n_samples: int | None = None,
) -> float:
    """Return the relative FACT residual ``||WᵀW - F||_F / ||WᵀW||_F`` (F: `fact_matrix`).

    ``W`` is the layer's (out, d) weight; the other arguments are those of `fact_matrix`, whose
    errors it raises, plus `ShapeMismatchError` when ``h`` is not d wide and
    `InvalidArrayError` when ``W`` is zero. 0 at a stationary point.
    """
    M = nfm(W)
    F = fact_matrix(grad_h_loss, h, lam, n_samples=n_samples)
    if F.shape != M.shape:
        msg = f"h must have W's input width {M.shape[0]} per row; got {F.shape[0]}."
        raise ShapeMismatchError(msg)
    norm = np.linalg.norm(M)
    if norm == 0:
        msg = "W must not be zero: the relative FACT residual divides by ||WᵀW||."
        raise InvalidArrayError(msg)
    return float(np.linalg.norm(M - F) / norm)


def _rho_or_nan(measure: str, A: F64, B: F64) -> float:
    """Return ``MEASURES[measure](A, B)``, or NaN where a matrix is constant."""
    try:
        return MEASURES[measure](A, B)
    except InvalidArrayError:
        return float("nan")


def nfa_over_steps(
    run: Run,
    layer: str,
    *,
    powers: Sequence[float] = (1, 0.5),
    subtract_init: bool = False,
    steps: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Return the NFA measures of one layer at every committed snapshot of a run.

    Parameters
    ----------
    run : Run
        Recorded with ``Recorder(..., weights=True, agop=True)``.
    layer : str
        A recorded Linear/Conv layer.
    powers, subtract_init
        AGOP powers (`compare`); use ``(W_t - W_0)ᵀ(W_t - W_0)`` as the NFM (NaN at t = 0).
    steps : sequence of int, optional
        Only these snapshot steps (default: all). Their rows equal those of the full call, so a
        live view computes only the snapshots committed since its last call.

    Returns
    -------
    pandas.DataFrame
        One row per (step, measure, power); columns ``layer, step, measure, power, value, init,
        nfm_change``: ``measure(M_t, G_t^p)``, ``measure(W_0ᵀW_0, G_0^p)`` (NaN with
        ``subtract_init``) and ``measure(W_tᵀW_t, W_0ᵀW_0)``. Empty before the first commit
        or for no ``steps``. Init is the first snapshot (a `UserWarning` says so when it is not
        step 0).

    Raises
    ------
    LayerNotInRunError
        Unknown layer, no weights, or (`AGOPNotRecordedError`) no AGOP recorded for it.
    ShapeMismatchError
        The stored AGOP is not (in, in) for the stored weight's input width.
    StepNotFoundError
        A step of ``steps`` has no snapshot.
    """
    keys = run.keys(layer)  # raises LayerNotInRunError for an unknown layer
    if not run.n_snapshots or (steps is not None and not len(steps)):
        return pd.DataFrame({c: [] for c in FRAME_COLUMNS})
    if "agop" not in keys:
        msg = f"the run recorded no AGOP for layer {layer!r}; record with Recorder(..., agop=True)."
        raise AGOPNotRecordedError(msg)
    first = int(run.steps[0])
    W0, G0 = run.weights(layer, first), run.agop(layer, first)
    d = W0.shape[-1]
    if G0.shape != (d, d):
        msg = f"the AGOP of layer {layer!r} must be ({d}, {d}) per snapshot; got {G0.shape}."
        raise ShapeMismatchError(msg)
    if first != 0:
        msg = f"the first snapshot of {layer!r} is step {first}, not 0; it serves as init."
        warnings.warn(msg, UserWarning, stacklevel=2)
    if steps is None:  # one read of each array rather than one per snapshot
        chosen, W, G = [int(s) for s in run.steps], run.weights(layer), run.agop(layer)
    else:
        chosen = [int(s) for s in steps]
        W = np.stack([run.weights(layer, s) for s in chosen])
        G = np.stack([run.agop(layer, s) for s in chosen])
    # The init baseline is computed once: each AGOP power is an eigendecomposition (d x d).
    M0 = nfm(W0)
    init = np.nan if subtract_init else compare(M0, G0, powers=powers).to_frame()["value"]
    frames = []
    for t, step in enumerate(chosen):
        Mt = nfm(W[t])
        M = nfm(W[t], W0, subtract_init=True) if subtract_init else Mt
        df = compare(M, G[t], powers=powers).to_frame()
        change = {m: _rho_or_nan(m, Mt, M0) for m in MEASURES}
        df["init"] = init
        df["nfm_change"] = df["measure"].map(change)
        frames.append(df.assign(layer=layer, step=int(step)))
    return pd.concat(frames, ignore_index=True)[list(FRAME_COLUMNS)]
