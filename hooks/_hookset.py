"""The capture hooks of one Recorder: registered for a snapshot or a watch block, then removed.

In ``probe`` mode the selected layers and the root output are collected across the probe
batches; in ``stream`` mode each top-level forward is handed to a callback as one batch.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from hooks import schema
from hooks.capture import flatten_output, host_dtype, to_host
from hooks.errors import RecorderConfigError, StreamShapeError

StreamCallback = Callable[
    [dict[str, npt.NDArray[Any]], npt.NDArray[np.int64], "torch.cuda.Event | None"], None
]


class HookSet:
    """Forward hooks on ``layers`` and ``root`` that copy outputs to host, keyed by store path."""

    def __init__(self, root: nn.Module, layers: dict[str, nn.Module], dtype: torch.dtype) -> None:
        self.root = root
        self.layers = layers
        self.dtype = dtype
        self._handles: list[RemovableHandle] = []
        self._mode: str | None = None
        self._buf: dict[str, list[torch.Tensor]] = defaultdict(list)
        self._calls: Counter[str] = Counter()
        self._out: dict[str, torch.Tensor] = {}  # probe mode: preallocated (n_rows, ...) buffers
        self._filled: Counter[str] = Counter()
        self._n_rows = 0
        self._offset = self._batch = 0
        self._on_batch: StreamCallback | None = None
        self._ids: npt.NDArray[np.int64] | None = None
        self._batch_rows = 0
        self._device_copies: torch.device | None = None  # a non-blocking copy is in flight

    @contextlib.contextmanager
    def attached(
        self,
        mode: str,
        on_batch: StreamCallback | None = None,
        sample_id: npt.NDArray[np.int64] | None = None,
        n_rows: int = 0,
    ) -> Iterator[None]:
        """Register every hook for ``mode`` ("probe" or "stream") for the duration of the block.

        In probe mode, batch-first outputs are copied straight into ``(n_rows, ...)`` buffers
        (one copy, no concatenation); call `begin_batch` before each probe batch.
        """
        if self._handles:
            msg = "Recorder.watch() and snapshot() cannot be nested; leave the watch block first."
            raise RecorderConfigError(msg)
        self._mode, self._on_batch, self._ids = mode, on_batch, sample_id
        self._buf.clear()
        self._out.clear()
        self._filled.clear()
        self._n_rows = n_rows
        self._handles.append(self.root.register_forward_pre_hook(self._root_pre_hook))
        for name, module in self.layers.items():
            self._handles.append(module.register_forward_hook(self._layer_hook(name)))
        self._handles.append(self.root.register_forward_hook(self._root_hook))
        try:
            yield
        finally:
            self.detach()

    def detach(self) -> None:
        """Remove every registered hook (idempotent)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._mode = None

    def begin_batch(self, offset: int, size: int) -> None:
        """Announce the rows ``offset:offset + size`` of the probe set about to be forwarded."""
        self._offset, self._batch = offset, size

    def ready(self) -> torch.cuda.Event | None:
        """Return an event after the outputs' non-blocking copies (None: they are complete).

        Batch-first outputs of a CUDA module are copied into pinned host buffers without
        blocking, so the forward goes on while they land; whoever reads the arrays of `take`
        (the writer thread) synchronises on this event first.
        """
        device, self._device_copies = self._device_copies, None
        if device is None:
            return None
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(device))
        return event

    def take(self) -> dict[str, npt.NDArray[Any]]:
        """Return the collected outputs (complete over the probe set) and clear them.

        An output that did not fire in every probe batch is left out, with a warning: the
        writer then stores a fill-valued row for it, so nothing is silently misaligned. With
        CUDA outputs the arrays are complete only once `ready` is synchronised.
        """
        arrays = {k: torch.cat(v).numpy() for k, v in self._buf.items()}
        for key, out in self._out.items():
            if self._filled[key] == out.shape[0]:
                arrays[key] = out.numpy()
            else:
                msg = (
                    f"{key} fired for {self._filled[key]} of {out.shape[0]} probe samples; "
                    "not recorded at this snapshot (stored as fill values)."
                )
                warnings.warn(msg, UserWarning, stacklevel=3)
        self._buf.clear()
        self._out.clear()
        self._filled.clear()
        return arrays

    def _keep(self, key: str, t: torch.Tensor) -> None:
        out = self._out.get(key)
        batch_first = self._n_rows and t.ndim and t.shape[0] == self._batch
        if batch_first and key not in self._buf:
            if out is None:
                shape = (self._n_rows, *t.shape[1:])
                out = torch.empty(shape, dtype=host_dtype(t, self.dtype), pin_memory=t.is_cuda)
                self._out[key] = out
            if out.shape[1:] == t.shape[1:]:
                out[self._offset : self._offset + self._batch].copy_(
                    t.detach(), non_blocking=t.is_cuda
                )
                if t.is_cuda:
                    self._device_copies = t.device
                self._filled[key] += self._batch
                return
        if out is not None:  # shape changed between batches: concatenate instead
            if self._device_copies is not None:  # rows must land before torch.cat reads them
                torch.cuda.synchronize(self._device_copies)
            self._buf[key].append(out[: self._filled.pop(key, 0)])
            del self._out[key]
        self._buf[key].append(to_host(t, self.dtype))

    def _layer_hook(self, name: str) -> Callable[[nn.Module, Any, Any], None]:
        group = schema.layer_group(name)

        def hook(module: nn.Module, args: Any, output: Any) -> None:
            k = self._calls[name]
            self._calls[name] = k + 1
            call = (f"call{k}",) if k else ()  # a module called twice per forward
            for path, t in flatten_output(output):
                if self._mode == "stream" and (t.ndim == 0 or t.shape[0] != self._batch_rows):
                    msg = (
                        f"watched layer {name!r} must output (batch, ...) with batch="
                        f"{self._batch_rows}; got shape {tuple(t.shape)}. Record it with snapshots "
                        "instead, or watch other layers."
                    )
                    raise StreamShapeError(msg)
                self._keep(f"{group}/{schema.element_name(call + path)}", t)

        return hook

    def _root_pre_hook(self, module: nn.Module, args: Any) -> None:
        self._calls.clear()
        if self._mode != "stream":
            return
        first = next((a for a in args if isinstance(a, torch.Tensor)), None)
        if first is None or first.ndim == 0:
            msg = "watch() needs the model's first positional argument to be the batch tensor."
            raise StreamShapeError(msg)
        self._batch_rows = int(first.shape[0])
        if self._ids is not None and self._ids.shape[0] != self._batch_rows:
            msg = (
                f"sample_id must have one entry per batch sample ({self._batch_rows}); "
                f"got {self._ids.shape[0]}."
            )
            raise StreamShapeError(msg)

    def _root_hook(self, module: nn.Module, args: Any, output: Any) -> None:
        if self._mode == "probe":
            for path, t in flatten_output(output):
                self._keep(f"{schema.OUTPUTS}/{schema.element_name(path)}", t)
        elif self._on_batch is not None:
            arrays = {f"{schema.STREAM}/{k.split('/', 1)[1]}": a for k, a in self.take().items()}
            ids = self._ids if self._ids is not None else np.full(self._batch_rows, -1, np.int64)
            self._on_batch(arrays, ids, self.ready())
