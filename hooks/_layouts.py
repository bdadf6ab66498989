"""The layouts of one Recorder's recorded elements, and the elements still waiting for theirs.

`Layouts` keeps, per store key, where the batch sits (`hooks._batch_dim.Layout`). An element
whose layout is not known yet is held in its own layout (host copies of each forward, or only
its shapes during the layout-discovery forwards) until `resolve` or `learn` decides it. Outputs
without a batch dimension are kept once per snapshot and checked to repeat in every batch.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch

from hooks import schema
from hooks._batch_dim import Layout, decide_layout
from hooks.capture import to_host
from hooks.errors import BatchDimError, BatchlessOutputError, StreamShapeError

__all__ = ["Layouts"]

_UNSET = object()  # no batch_dim option for a layer
Shapes = list[tuple[tuple[int, ...], int]]  # (shape, batch size) per forward
Finish = Callable[[str, torch.Tensor, str, "int | None"], torch.Tensor]


def _where(layer: str) -> str:
    return f"layer {layer!r}" if layer else "the model output"


def _name(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def warn_partial(key: str, filled: int, n: int) -> None:
    """Warn that ``key`` fired for only ``filled`` of ``n`` probe samples (not recorded)."""
    msg = (
        f"{key} fired for {filled} of {n} probe samples; "
        "not recorded at this snapshot (stored as fill values)."
    )
    warnings.warn(msg, UserWarning, stacklevel=5)


class Layouts:
    """Batch layouts by store key; ``batch_dims`` is the Recorder's option per layer name.

    Attributes
    ----------
    known : dict of str to Layout
        The decided layouts, kept for the Recorder's lifetime.
    batches : list of int
        The batch size of each forward collected since the last `clear`.
    """

    def __init__(self, dtype: torch.dtype, batch_dims: dict[str, int | None]) -> None:
        self.dtype = dtype
        self.batch_dims = batch_dims
        self.known: dict[str, Layout] = {}
        self.batches: list[int] = []
        self._of: dict[str, tuple[str, int | None]] = {}  # key -> (layer, rule dim)
        self._held: dict[str, list[tuple[int, torch.Tensor]]] = defaultdict(list)
        self._shapes: dict[str, Shapes] = defaultdict(list)
        self._batchless: dict[str, torch.Tensor] = {}

    def clear(self) -> None:
        """Forget the held elements, batch-less values and batch sizes of the last collection."""
        self._held.clear()
        self._batchless.clear()
        self.batches.clear()

    def hold(
        self, key: str, t: torch.Tensor, layer: str, rule: int | None, shape_only: bool
    ) -> None:
        """Keep an element of unknown layout (a host copy, or its shape only) until decided."""
        self._of[key] = (layer, rule)
        if shape_only:
            self._shapes[key].append((tuple(t.shape), self.batches[-1]))
        else:
            self._held[key].append((len(self.batches) - 1, to_host(t, self.dtype)))

    def learn(self) -> None:
        """Decide the layouts of the elements whose shapes `hold` kept (discovery forwards)."""
        shapes, self._shapes = self._shapes, defaultdict(list)
        for key, got in shapes.items():
            self._decide(key, got)

    def forget_shapes(self) -> None:
        """Drop the shapes of failed discovery forwards."""
        self._shapes.clear()

    def batch_first(
        self, key: str, t: torch.Tensor, layer: str, batch: int, stream: bool
    ) -> torch.Tensor | None:
        """Return ``t`` with its batch dimension first; None for a batch-less element (kept).

        Raises
        ------
        BatchDimError
            ``t`` lacks the batch at the dimension its layout says.
        BatchlessOutputError, StreamShapeError
            See `keep_batchless`.
        """
        layout = self.known[key]
        d = layout.batch_dim
        if d is None:
            self.keep_batchless(key, t, layer, stream)
            return None
        if t.ndim <= d or t.shape[d] != batch:
            msg = (
                f"{_where(layer)}, output {_name(key)!r}: shape {tuple(t.shape)} has no "
                f"batch ({batch}) at dimension {d}, where earlier forwards had it "
                f"({layout.shape}, by {layout.source}). Its layout must not change between "
                "forwards; record it into a new store."
            )
            raise BatchDimError(msg)
        return t.movedim(d, 0) if d else t

    def keep_batchless(self, key: str, t: torch.Tensor, layer: str, stream: bool) -> None:
        """Keep a batch-less element's value once per collection, checking it repeats.

        Raises
        ------
        StreamShapeError
            In stream mode, where every row is a sample.
        BatchlessOutputError
            The value differs from an earlier batch's.
        """
        if stream:
            msg = (
                f"watched {_where(layer)} output {_name(key)!r} of shape {tuple(t.shape)} has "
                f"no dimension of the batch size ({self.batches[-1]}); record it with "
                "snapshots instead, or give its batch dimension with "
                f"Recorder(..., batch_dim={{{layer!r}: <dim>}})."
            )
            raise StreamShapeError(msg)
        prev = self._batchless.get(key)
        if prev is None:
            self._batchless[key] = t if t.device.type == "cpu" else to_host(t, self.dtype)
        elif prev.shape != t.shape or not torch.equal(prev, to_host(t, self.dtype)):
            msg = (
                f"{_where(layer)}, output {_name(key)!r} of shape {tuple(t.shape)} has no "
                f"dimension of the batch size, but differs between probe batches (sizes "
                f"{self.batches}), so it is neither per-sample nor batch-less. Give its batch "
                f"dimension with Recorder(..., batch_dim={{{(layer or '<layer>')!r}: <dim>}}), "
                "or snapshot the probe set in one batch (batch_size >= the probe set)."
            )
            raise BatchlessOutputError(msg)

    def resolve(self, n_rows: int, stream: bool, finish: Finish) -> dict[str, torch.Tensor]:
        """Decide every held element's layout; return the batch-first and batch-less arrays.

        With ``n_rows`` (probe mode), an element that did not fire for every probe sample is
        left out with a warning. ``finish(key, t, layer, offset)`` maps each held batch, batch
        first, to what is stored (the layer's reductions; ``offset``: its first probe row, None
        in stream mode).
        """
        out = {}
        held, self._held = self._held, defaultdict(list)
        for key, parts in held.items():
            layout = self._decide(key, [(tuple(p.shape), self.batches[i]) for i, p in parts])
            if layout.batch_dim is None:
                for _, p in parts:
                    self.keep_batchless(key, p, self._of[key][0], stream)
                continue
            layer = self._of[key][0]
            starts = [sum(self.batches[:i]) if not stream else None for i, _ in parts]
            rows = torch.cat(
                [
                    finish(key, p.movedim(layout.batch_dim, 0), layer, start)
                    for (_, p), start in zip(parts, starts, strict=True)
                ]
            )
            if n_rows and rows.shape[0] != n_rows:
                warn_partial(key, rows.shape[0], n_rows)
                continue
            out[key] = rows
        out.update(self._batchless)
        return out

    def _decide(self, key: str, shapes: Shapes) -> Layout:
        layer, rule = self._of[key]
        layout = decide_layout(
            layer=layer,
            key=_name(key),
            shapes=[shape for shape, _ in shapes],
            batches=[b for _, b in shapes],
            option=self.batch_dims.get(layer, _UNSET) if layer else _UNSET,
            rule=rule,
            unset=_UNSET,
        )
        self.known[key] = layout
        return layout

    def dims(self, key: str, ndim: int) -> tuple[str, ...]:
        """Return the dimension names (after ``snapshot``/``row``) of an array of ``ndim``."""
        layout = self.known.get(key)
        if layout is not None and layout.batch_dim is None:
            return schema.array_dims(key, (), ndim)
        return schema.array_dims(key, ("sample",), ndim - 1)

    def attrs(self, keys: Any) -> dict[str, dict[str, Any]]:
        """Return the layout attrs (`Layout.attrs`) of the arrays ``keys``."""
        return {k: self.known[k].attrs() for k in keys if k in self.known}
