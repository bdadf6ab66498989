"""Preview a layer selection before recording: `list_layers` and the table it returns.

Each selected module's name and type and, given a probe batch, the shape and bytes of what a
snapshot stores for it per probe sample (one hooked forward of three probe samples).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from hooks import schema
from hooks._hookset import HookSet
from hooks._options import parse_dtype
from hooks._probe_set import make_probe_set
from hooks._sizes import ArraySize, format_bytes, measure
from hooks.layers import LayerSelector, resolve_layers, unwrap_model

__all__ = ["LayerInfo", "LayerTable", "list_layers"]


@dataclass(frozen=True)
class LayerInfo:
    """One selected module: its name, type and, when measured, what a snapshot stores of it.

    Attributes
    ----------
    name : str
        The dotted ``named_modules()`` path.
    type : str
        The module's class name.
    outputs : dict of str to tuple of int
        Array name (``acts``, ``acts.0``, ``inputs``) to its shape per probe sample (batch-less
        arrays: the whole shape); empty when no probe batch was given.
    bytes_per_sample : int or None
        Bytes stored per probe sample per snapshot, in the storage dtype (None: not measured).
    bytes_fixed : int
        Bytes of batch-less arrays, stored once per snapshot whatever the probe set's size.
    """

    name: str
    type: str
    outputs: dict[str, tuple[int, ...]] = field(default_factory=dict)
    bytes_per_sample: int | None = None
    bytes_fixed: int = 0


class LayerTable(list[LayerInfo]):
    """A list of `LayerInfo` that prints as an aligned table; ``names`` gives the names alone."""

    @property
    def names(self) -> list[str]:
        """The dotted names of the rows, in the model's module order."""
        return [row.name for row in self]

    def __str__(self) -> str:
        measured = any(row.bytes_per_sample is not None for row in self)
        head = ["layer", "type"] + (["stored per sample", "bytes/sample"] if measured else [])
        rows = [head]
        for r in self:
            cells = [r.name, r.type]
            if measured:
                shapes = ", ".join(f"{k} {_shape(s)}" for k, s in r.outputs.items()) or "-"
                size = format_bytes(r.bytes_per_sample or 0)
                if r.bytes_fixed:
                    size += f" (+{format_bytes(r.bytes_fixed)} fixed)"
                cells += [shapes, size]
            rows.append(cells)
        widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
        ]
        if measured:
            total = sum(r.bytes_per_sample or 0 for r in self)
            lines.append(f"{len(self)} layers, {format_bytes(total)} per probe sample")
        return "\n".join(lines)


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape) if shape else "scalar"


def list_layers(
    model: nn.Module,
    selector: LayerSelector | Iterable[LayerSelector] | None = None,
    probe: object = None,
    *,
    dtype: str | torch.dtype = "float32",
) -> LayerTable:
    """Preview the modules a selector picks and, given probe inputs, what each one would store.

    Parameters
    ----------
    model : nn.Module
        The model (wrappers are unwrapped with `hooks.unwrap_model`).
    selector : str, type, callable or a list of them, optional
        As ``Recorder(layers=...)`` (`hooks.resolve_layers`); None: every submodule.
    probe : tensor or tuple (x, ...), optional
        Probe inputs of shape (n_samples, ...). Three of them are forwarded once (eval mode, no
        grad, RNG state restored, hooks removed after) to measure each module's outputs.
    dtype : {"float32", "float16"} or torch.dtype
        The storage dtype the bytes are counted in.

    Returns
    -------
    LayerTable
        One `LayerInfo` per selected module, in module order; ``print`` it for a table,
        ``.names`` for the names.

    Raises
    ------
    LayerNotFoundError, NoLayersError, RecorderConfigError
        See `hooks.resolve_layers`; also a bad ``dtype``.
    ProbeInputError
        ``probe`` is unusable, or the model's forward fails on it.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> list_layers(net).names
    ['0', '1', '2']
    >>> print(list_layers(net, nn.Linear, torch.randn(5, 4)))
    layer  type    stored per sample  bytes/sample
    0      Linear  acts 8             32 B
    2      Linear  acts 2             8 B
    2 layers, 40 B per probe sample
    """
    root = unwrap_model(model)
    if selector is None:
        chosen = {n: m for n, m in root.named_modules() if n}
    else:
        chosen = resolve_layers(root, selector)
    if probe is None:
        return LayerTable(LayerInfo(n, type(m).__name__) for n, m in chosen.items())
    params = list(root.parameters())
    param_dtype = next((p.dtype for p in params if p.is_floating_point()), None)
    x = make_probe_set(probe, None, param_dtype).inputs
    device = params[0].device if params else torch.device("cpu")
    sizes = measure(HookSet(root, chosen, parse_dtype(dtype)), x, device)
    return LayerTable(_row(n, m, sizes) for n, m in chosen.items())


def _row(name: str, module: nn.Module, sizes: list[ArraySize]) -> LayerInfo:
    """Return the `LayerInfo` of one layer from the measured arrays of its group."""
    prefix = f"{schema.layer_group(name)}/"
    mine = [s for s in sizes if s.key.startswith(prefix)]
    return LayerInfo(
        name,
        type(module).__name__,
        {s.key.removeprefix(prefix): s.shape for s in mine},
        sum(s.nbytes for s in mine if s.per_sample),
        sum(s.nbytes for s in mine if not s.per_sample),
    )
