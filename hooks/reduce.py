"""Token reductions: store less of a sequence model's activations, on the hook path.

``Recorder(..., reduce={"h.*": "mean", "wte": RandomProjection(k=64, seed=0)})`` reduces each
per-sample array of the selected layers right after its batch dimension is moved first, before it
is copied into the snapshot. Conventions, on the batch-first tensor of shape
``(batch, tokens, ..., features)``:

- the token dimension is dim 1 (what was time/sequence in the module's own layout, whatever its
  position there); `TokenMean`, `LastToken` and `Positions` need at least 3 dimensions;
- the feature dimension is the last one (`RandomProjection`);
- a mask is given for the whole probe set, shape ``(n_samples, tokens)``, 1 (or True) for a real
  token and 0 for padding (a Hugging Face ``attention_mask``); it is sliced per probe batch, so it
  applies to snapshots only, not to `Recorder.watch` streams;
- outputs with no batch dimension, and the states of ``nn.RNN``/``nn.LSTM``/``nn.GRU``
  (``h_n``, ``c_n``, ``h_0``, ``c_0``: not sequences), are stored whole;
- a tuple applies its reductions left to right: ``("mean", RandomProjection(k=64))``.

The reduction and its parameters are kept in the array's attributes (``reduce``), so a reader can
tell; `RandomProjection.matrix` rebuilds the projection from its seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from hooks.errors import RecorderConfigError, ReduceError
from hooks.layers import select_recorded

__all__ = [
    "LastToken",
    "Positions",
    "RandomProjection",
    "Reducer",
    "Reduction",
    "TokenMean",
]


class Reduction(Protocol):
    """A reduction of a batch-first tensor: rows ``offset:offset + batch`` of the probe set."""

    def __call__(self, t: torch.Tensor, offset: int | None) -> torch.Tensor:
        """Return the reduced ``t``; ``offset``: its first probe row (None: a watched batch)."""

    def attrs(self) -> dict[str, Any]:
        """Return the reduction's name and parameters (JSON), stored in the array's attrs."""


def _tokens(t: torch.Tensor, what: str) -> None:
    if t.ndim < 3:
        msg = (
            f"{what} reduces the token dimension (dim 1 of (batch, tokens, ..., features)); got "
            f"a batch-first tensor of shape {tuple(t.shape)}. Reduce only sequence layers."
        )
        raise ReduceError(msg)


def _mask_rows(mask: torch.Tensor, t: torch.Tensor, offset: int | None) -> torch.Tensor:
    if offset is None:
        msg = "a reduction mask covers the probe set, so it applies to snapshots, not to watch()."
        raise ReduceError(msg)
    rows = mask[offset : offset + t.shape[0]]
    if rows.shape != t.shape[:2]:
        msg = (
            f"the reduction mask must be (n_samples, tokens) = (n_samples, {t.shape[1]}); its "
            f"rows for this batch have shape {tuple(rows.shape)}."
        )
        raise ReduceError(msg)
    return rows.to(device=t.device, dtype=t.dtype if t.is_floating_point() else torch.float32)


@dataclass(frozen=True)
class TokenMean:
    """The mean over tokens (dim 1), over the real tokens of ``mask`` when given.

    Parameters
    ----------
    mask : tensor of shape (n_samples, tokens), optional
        1 for a real token, 0 for padding, for every probe sample.
    """

    mask: torch.Tensor | None = field(default=None, repr=False)

    def __call__(self, t: torch.Tensor, offset: int | None) -> torch.Tensor:
        """Reduce the batch-first ``t`` (see `Reduction`)."""
        _tokens(t, "'mean'")
        if self.mask is None:
            return t.mean(1)
        m = _mask_rows(self.mask, t, offset)
        m = m.reshape(*m.shape, *([1] * (t.ndim - 2)))
        return (t * m).sum(1) / m.sum(1).clamp_min(1)

    def attrs(self) -> dict[str, Any]:
        """Return the reduction's name and parameters (see `Reduction`)."""
        return {"name": "mean", "masked": self.mask is not None}


@dataclass(frozen=True)
class LastToken:
    """The last token (dim 1), or each sample's last real token of ``mask`` when given."""

    mask: torch.Tensor | None = field(default=None, repr=False)

    def __call__(self, t: torch.Tensor, offset: int | None) -> torch.Tensor:
        """Reduce the batch-first ``t`` (see `Reduction`)."""
        _tokens(t, "'last'")
        if self.mask is None:
            return t[:, -1]
        last = (_mask_rows(self.mask, t, offset).sum(1).long() - 1).clamp_min(0)
        return t[torch.arange(t.shape[0], device=t.device), last]

    def attrs(self) -> dict[str, Any]:
        """Return the reduction's name and parameters (see `Reduction`)."""
        return {"name": "last", "masked": self.mask is not None}


@dataclass(frozen=True)
class Positions:
    """The tokens at ``positions`` (dim 1; negative counts from the end): (batch, P, ...)."""

    positions: Sequence[int]

    def __post_init__(self) -> None:
        ok = all(isinstance(p, int) and not isinstance(p, bool) for p in self.positions)
        if not ok or not self.positions:
            msg = f"Positions needs a non-empty list of ints; got {self.positions!r}."
            raise RecorderConfigError(msg)

    def __call__(self, t: torch.Tensor, offset: int | None) -> torch.Tensor:
        """Reduce the batch-first ``t`` (see `Reduction`)."""
        _tokens(t, "Positions")
        n = t.shape[1]
        if any(not -n <= p < n for p in self.positions):
            msg = f"Positions {list(self.positions)} out of range for {n} tokens."
            raise ReduceError(msg)
        return t[:, list(self.positions)]

    def attrs(self) -> dict[str, Any]:
        """Return the reduction's name and parameters (see `Reduction`)."""
        return {"name": "positions", "positions": list(self.positions)}


@dataclass(frozen=True)
class RandomProjection:
    """A seeded Gaussian projection of the feature (last) dimension to ``k`` dims (JL lemma).

    ``x -> x @ P`` with ``P`` of shape (features, k), entries N(0, 1/k) drawn from
    ``torch.Generator().manual_seed(seed)``: pairwise distances and inner products of ``n``
    points are kept up to a factor ``1 ± eps`` with ``k ~ 8 ln(n) / eps²``. Projecting a
    per-sample token mean of GPT-2 width to k=64 moved a between-layer CKA from 0.95 to 0.70
    (k=256: 0.86); keep ``k`` in the thousands for CKA, or reduce tokens only.
    """

    k: int
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("k", "seed"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < (1 if name == "k" else 0):
                least = "positive" if name == "k" else "non-negative"
                msg = f"RandomProjection {name!r} must be a {least} int; got {v!r}."
                raise RecorderConfigError(msg)

    def matrix(self, features: int) -> torch.Tensor:
        """Return the float32 projection ``P`` of shape (features, k) (same seed, same matrix)."""
        g = torch.Generator().manual_seed(self.seed)
        return torch.randn(features, self.k, generator=g) / self.k**0.5

    def __call__(self, t: torch.Tensor, offset: int | None) -> torch.Tensor:
        """Project the last dimension of ``t`` (see `Reduction`)."""
        p = _cached_matrix(self, t.shape[-1]).to(device=t.device, dtype=t.dtype)
        return t @ p

    def attrs(self) -> dict[str, Any]:
        """Return the reduction's name and parameters (see `Reduction`)."""
        return {"name": "random_projection", "k": self.k, "seed": self.seed}


_MATRICES: dict[tuple[int, int, int], torch.Tensor] = {}


def _cached_matrix(rp: RandomProjection, features: int) -> torch.Tensor:
    key = (rp.k, rp.seed, features)
    if key not in _MATRICES:
        _MATRICES[key] = rp.matrix(features)
    return _MATRICES[key]


_NAMED: dict[str, type[TokenMean] | type[LastToken]] = {"mean": TokenMean, "last": LastToken}


def as_reductions(spec: object) -> tuple[Reduction, ...]:
    """Return the reductions of one ``reduce`` value ("mean", "last", a reduction or a tuple).

    Raises
    ------
    RecorderConfigError
        An unknown name or object.
    """
    items = spec if isinstance(spec, tuple) else (spec,)
    out: list[Reduction] = []
    for item in items:
        if isinstance(item, str) and item in _NAMED:
            out.append(_NAMED[item]())
        elif isinstance(item, (TokenMean, LastToken, Positions, RandomProjection)):
            out.append(item)
        else:
            msg = (
                f"reduce values must be 'mean', 'last', hooks.TokenMean(mask=...), "
                f"hooks.LastToken(mask=...), hooks.Positions([...]), "
                f"hooks.RandomProjection(k, seed) or a tuple of them; got {item!r}."
            )
            raise RecorderConfigError(msg)
    return tuple(out)


def resolve_reduce(
    root: nn.Module, recorded: dict[str, nn.Module], option: object
) -> dict[str, tuple[Reduction, ...]]:
    """Return ``{layer name: reductions}`` from the Recorder's ``reduce`` option.

    Raises
    ------
    RecorderConfigError
        ``option`` is not a mapping, a value is not a reduction, or a selected layer is not
        recorded.
    LayerNotFoundError
        A selector matches no module.
    """
    if option is None:
        return {}
    if not isinstance(option, Mapping):
        msg = (
            "'reduce' must map layer selectors to reductions, e.g. {'h.*': 'mean'}; got "
            f"{option!r}."
        )
        raise RecorderConfigError(msg)
    out: dict[str, tuple[Reduction, ...]] = {}
    for selector, spec in option.items():
        chain = as_reductions(spec)
        out.update(dict.fromkeys(select_recorded(root, recorded, selector, "reduce"), chain))
    return out


def reduce_attrs(chain: tuple[Reduction, ...]) -> dict[str, Any]:
    """Return the array attrs of a chain of reductions (``{"reduce": [...]}``)."""
    return {"reduce": [r.attrs() for r in chain]}


class Reducer:
    """Apply each layer's reductions to its per-sample arrays, and remember what was applied.

    Parameters
    ----------
    chains : dict of str to tuple of Reduction
        The reductions of each layer name (`resolve_reduce`).

    Attributes
    ----------
    states : set of str
        Store keys of RNN states (h_n, c_n, h_0, c_0), which are never reduced.
    """

    def __init__(self, chains: dict[str, tuple[Reduction, ...]]) -> None:
        self.chains = chains
        self.states: set[str] = set()
        self._applied: dict[str, dict[str, Any]] = {}  # key -> `reduce_attrs`

    def __call__(self, key: str, t: torch.Tensor, layer: str, offset: int | None) -> torch.Tensor:
        """Return ``layer``'s reductions of the batch-first ``t`` (probe rows from ``offset``)."""
        chain = () if key in self.states else self.chains.get(layer, ())
        for r in chain:
            t = r(t, offset)
        if chain and key not in self._applied:
            self._applied[key] = reduce_attrs(chain)
        return t

    def attrs(self, attrs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Return array ``attrs`` (by store key) with the reductions applied to each added."""
        return {k: {**a, **self._applied.get(k, {})} for k, a in attrs.items()}
