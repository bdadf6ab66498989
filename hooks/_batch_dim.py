"""Find the batch dimension of a recorded tensor: by rule, by option, or from the batch sizes.

A recorded array is stored batch first, ``(snapshot, sample, ...)``, whatever the module's own
layout. The batch dimension of each output element is decided once, at the first forward that
records it (in a snapshot: from every probe batch of that snapshot), and kept for the
Recorder's lifetime:

1. ``batch_dim={"selector": dim}`` given to the Recorder (``None``: the output has no batch
   dimension);
2. a rule for modules whose layout is known: ``nn.RNN``/``nn.LSTM``/``nn.GRU`` (the output from
   ``batch_first``, ``h_n``/``c_n`` at dim 1), ``nn.MultiheadAttention`` and the
   ``nn.Transformer*`` modules (from ``batch_first``; attention weights at dim 0);
3. otherwise the one dimension whose size equals the batch size in every forward seen: the two
   discovery forwards of 2 and 3 samples (`hooks._discover`), else the recorded forwards; none:
   a batch-less output (stored once per snapshot); several: `BatchDimError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from hooks.errors import BatchDimError, RecorderConfigError
from hooks.layers import select_recorded

__all__ = ["Layout", "decide_layout", "is_state", "resolve_batch_dims", "rule_batch_dim"]

_TRANSFORMERS = (
    nn.Transformer,
    nn.TransformerEncoder,
    nn.TransformerDecoder,
    nn.TransformerEncoderLayer,
    nn.TransformerDecoderLayer,
)


@dataclass(frozen=True)
class Layout:
    """Where the batch sits in a recorded tensor, and how that was decided.

    Attributes
    ----------
    batch_dim : int or None
        The batch dimension of the module's tensor (None: the tensor has no batch dimension).
    source : {"option", "rule", "inferred", "batch-less"}
        What decided it.
    shape : tuple of int
        The tensor's shape, in the module's own layout, in the first forward that decided the
        layout (usually the 2-sample discovery forward of `hooks._discover`).
    """

    batch_dim: int | None
    source: str
    shape: tuple[int, ...]

    def attrs(self) -> dict[str, Any]:
        """Return the layout as zarr array attributes (JSON)."""
        return {
            "batch_dim": self.batch_dim,
            "batch_dim_source": self.source,
            "source_shape": list(self.shape),
        }


def _batch_first(module: nn.Module) -> bool:
    if isinstance(module, nn.TransformerEncoder):
        first = module.layers[0] if len(module.layers) else None
        return bool(getattr(getattr(first, "self_attn", None), "batch_first", False))
    if isinstance(module, nn.TransformerDecoder):
        first = module.layers[0] if len(module.layers) else None
        return bool(getattr(getattr(first, "self_attn", None), "batch_first", False))
    return bool(getattr(module, "batch_first", False))


def rule_batch_dim(module: nn.Module, path: Sequence[str], kind: str = "acts") -> int | None:
    """Return the batch dimension a known module's output (or input) element has, or None.

    Parameters
    ----------
    module : nn.Module
        The module whose output (``kind="acts"``) or input (``kind="inputs"``) it is.
    path : sequence of str
        The element's key path in the output (``()`` a plain tensor, ``("1", "0")`` an LSTM's
        ``h_n``); for inputs, the positional index or keyword.
    kind : {"acts", "inputs"}
        Output or input element.

    Returns
    -------
    int or None
        None when no rule applies (the option or inference decides).
    """
    seq = 0 if _batch_first(module) else 1
    first = path[0] if path else "0"
    if isinstance(module, nn.RNNBase):
        return 1 if first in ("1", "hx") else seq  # h_n, c_n (and h_0, c_0): (layers, N, H)
    if isinstance(module, nn.MultiheadAttention):
        if kind == "acts":
            return 0 if first == "1" else seq  # attention weights: (N, L, S)
        return seq if first in ("0", "1", "2", "query", "key", "value") else None
    if isinstance(module, _TRANSFORMERS):
        if kind == "inputs" and first not in ("0", "1", "src", "tgt", "memory"):
            return None
        return seq
    return None


def is_state(module: nn.Module, path: Sequence[str]) -> bool:
    """Return whether an element of an RNN's output or input is its state (h_n, c_n, h_0, c_0)."""
    return isinstance(module, nn.RNNBase) and bool(path) and path[0] in ("1", "hx")


def _sizes(shape: tuple[int, ...], batch: int) -> set[int]:
    return {i for i, n in enumerate(shape) if n == batch}


def decide_layout(
    *,
    layer: str,
    key: str,
    shapes: Sequence[tuple[int, ...]],
    batches: Sequence[int],
    option: int | None | object,
    rule: int | None,
    unset: object,
) -> Layout:
    """Return the layout of one recorded element from its shapes in one or more forwards.

    Parameters
    ----------
    layer, key : str
        The layer (``""`` for the model output) and the array name, for error messages.
    shapes : sequence of tuple of int
        The element's shape in each forward, in the module's own layout.
    batches : sequence of int
        The batch size of each forward.
    option : int, None or ``unset``
        The user's ``batch_dim`` for this layer (None: no batch dimension); ``unset`` if none.
    rule : int or None
        `rule_batch_dim` of the module (None: no rule).
    unset : object
        The sentinel of an absent option.

    Raises
    ------
    BatchDimError
        The option or rule names a dimension whose size is not the batch size, or several
        dimensions match the batch size in every forward.
    """
    where = f"layer {layer!r}" if layer else "the model output"
    fix = f"Recorder(..., batch_dim={{{(layer or '<layer>')!r}: <dim or None>}})"
    first = tuple(shapes[0])
    given = option if option is not unset else rule
    source = "option" if option is not unset else "rule"
    if option is None:
        return Layout(None, "option", first)
    if given is not None:
        d = int(given)  # type: ignore[call-overload]
        bad = [s for s, b in zip(shapes, batches, strict=True) if not -len(s) <= d < len(s)]
        bad += [s for s, b in zip(shapes, batches, strict=True) if s not in bad and s[d] != b]
        if bad:
            msg = (
                f"{where}, output {key!r} of shape {tuple(bad[0])}: its batch dimension "
                f"{d} (by {source}) does not have the batch size ({list(batches)}). Give its "
                f"batch dimension with {fix}."
            )
            raise BatchDimError(msg)
        return Layout(d % len(first), source, first)
    common = set.intersection(*(_sizes(tuple(s), b) for s, b in zip(shapes, batches, strict=True)))
    if len(common) == 1:
        return Layout(common.pop(), "inferred", first)
    if not common:
        return Layout(None, "batch-less", first)
    msg = (
        f"{where}, output {key!r} of shape {first}: dimensions {sorted(common)} all have the "
        f"batch size {batches[0]}, so its batch dimension is ambiguous. Give it with {fix}, or "
        "choose a probe batch_size that differs from the other dimensions."
    )
    raise BatchDimError(msg)


def resolve_batch_dims(
    root: nn.Module, recorded: dict[str, nn.Module], option: object
) -> dict[str, int | None]:
    """Return ``{layer name: batch dim or None}`` from the Recorder's ``batch_dim`` option.

    Raises
    ------
    RecorderConfigError
        ``option`` is not a mapping of layer selectors to an int or None, or selects a layer
        that is not recorded.
    LayerNotFoundError
        A selector matches no module.
    """
    if option is None:
        return {}
    if not isinstance(option, Mapping):
        msg = (
            "'batch_dim' must map layer selectors to a dimension (int) or None; got "
            f"{type(option).__name__}, e.g. batch_dim={{'encoder.*': 1}}."
        )
        raise RecorderConfigError(msg)
    out: dict[str, int | None] = {}
    for selector, dim in option.items():
        if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool)):
            msg = f"batch_dim[{selector!r}] must be an int or None; got {dim!r}."
            raise RecorderConfigError(msg)
        out.update(dict.fromkeys(select_recorded(root, recorded, selector, "batch_dim"), dim))
    return out
