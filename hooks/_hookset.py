"""The capture hooks of one Recorder: registered for a snapshot or a watch block, then removed.

In ``probe`` mode the selected layers and the root output are collected across the probe
batches; in ``stream`` mode each top-level forward is handed to a callback as one batch.
"""

from __future__ import annotations

import contextlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from hooks import schema
from hooks._batch_dim import is_state, rule_batch_dim
from hooks._discover import discover_layouts
from hooks._layouts import Layouts, warn_partial
from hooks.capture import flatten_output, host_dtype, to_host, warn_unrecorded
from hooks.errors import RecorderConfigError, StreamShapeError
from hooks.reduce import Reducer, Reduction

StreamCallback = Callable[
    [
        dict[str, npt.NDArray[Any]],
        npt.NDArray[np.int64],
        "torch.cuda.Event | None",
        dict[str, dict[str, Any]],
    ],
    None,
]


class HookSet:
    """Forward hooks on ``layers`` and ``root`` that copy outputs to host, keyed by store path.

    Every output element is stored batch first (`hooks._batch_dim`): its layout is learnt once,
    from two small forwards before the first recorded one (`_discover`), or else from the
    first recorded forwards themselves, and kept in `layouts`; later forwards copy the
    batch-first view straight into the snapshot buffers. ``batch_dims`` holds the Recorder's
    ``batch_dim`` option per layer name.
    """

    def __init__(
        self,
        root: nn.Module,
        layers: dict[str, nn.Module],
        dtype: torch.dtype,
        batch_dims: dict[str, int | None] | None = None,
        inputs: Iterable[str] = (),
        reduce: dict[str, tuple[Reduction, ...]] | None = None,
    ) -> None:
        self.root = root
        self.layers = layers
        self.dtype = dtype
        self.layouts = Layouts(dtype, dict(batch_dims or {}))
        self.inputs = set(inputs)  # layers whose inputs are recorded too
        self._in_calls: Counter[str] = Counter()
        self.reducer = Reducer(dict(reduce or {}))
        self._discovered = self._discovering = False
        self._warned: set[str] = set()  # layers warned about outputs that are not tensors
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
        self._clear()
        self._n_rows = n_rows
        self._handles.append(
            self.root.register_forward_pre_hook(self._root_pre_hook, with_kwargs=True)
        )
        for name, module in self.layers.items():
            if name in self.inputs:
                hook = self._input_hook(name)
                self._handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
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
        self.layouts.batches.append(size)

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
        """Return the collected outputs (complete over the probe set), batch first, and clear them.

        An output that did not fire in every probe batch is left out, with a warning: the
        writer then stores a fill-valued row for it, so nothing is silently misaligned. With
        CUDA outputs the arrays are complete only once `ready` is synchronised.

        Raises
        ------
        BatchDimError
            An output's batch dimension is ambiguous (`hooks._batch_dim.decide_layout`).
        BatchlessOutputError
            An output with no batch dimension differs between probe batches.
        """
        arrays = {k: torch.cat(v).numpy() for k, v in self._buf.items()}
        stream = self._mode == "stream"
        held = self.layouts.resolve(self._n_rows, stream, self.reducer)
        arrays.update({k: v.numpy() for k, v in held.items()})
        for key, out in self._out.items():
            if self._filled[key] == out.shape[0]:
                arrays[key] = out.numpy()
            else:
                warn_partial(key, self._filled[key], out.shape[0])
        self._clear()
        return arrays

    def array_attrs(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Return the attrs of the arrays ``keys``: their layout and reductions, if any."""
        return self.reducer.attrs(self.layouts.attrs(keys))

    def _clear(self) -> None:
        self._buf.clear()
        self._out.clear()
        self._filled.clear()
        self.layouts.clear()

    def _keep(self, key: str, t: torch.Tensor, layer: str, rule: int | None) -> None:
        if key not in self.layouts.known:  # first forward: held until `take` decides
            self.layouts.hold(key, t, layer, rule, shape_only=self._discovering)
            return
        first = self.layouts.batch_first(key, t, layer, self._batch, self._mode == "stream")
        if first is None:
            return
        t = first
        if layer in self.reducer.chains:
            t = self.reducer(key, t, layer, self._offset if self._n_rows else None)
        out = self._out.get(key)
        if self._n_rows and key not in self._buf:
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
            self._keep_output(group, output, name, module, call)

        return hook

    def _keep_output(
        self, group: str, output: Any, layer: str, module: nn.Module, call: tuple[str, ...]
    ) -> None:
        """Keep every tensor of a module output; warn once per layer about other objects."""
        dropped: list[tuple[tuple[str, ...], str]] = []
        for path, t in flatten_output(output, dropped=dropped):
            key = f"{group}/{schema.element_name(call + path)}"
            self._keep_element(key, t, layer, module, path, "acts")
        if dropped and layer not in self._warned:
            self._warned.add(layer)
            names = [schema.element_name(call + p) for p, _ in dropped]
            warn_unrecorded(layer, names, [kind for _, kind in dropped])

    def _keep_element(
        self,
        key: str,
        t: torch.Tensor,
        layer: str,
        module: nn.Module,
        path: tuple[str, ...],
        kind: str,
    ) -> None:
        if is_state(module, path):
            self.reducer.states.add(key)
        self._keep(key, t, layer, rule_batch_dim(module, path, kind=kind))

    def _input_hook(self, name: str) -> Callable[[nn.Module, Any, Any], None]:
        group = schema.layer_group(name)

        def hook(module: nn.Module, args: Any, kwargs: Any) -> None:
            k = self._in_calls[name]
            self._in_calls[name] = k + 1
            call = (f"call{k}",) if k else ()
            lone = len(args) == 1 and isinstance(args[0], torch.Tensor) and not kwargs
            received = args[0] if lone else {**{str(i): a for i, a in enumerate(args)}, **kwargs}
            for path, t in flatten_output(received):
                key = f"{group}/{schema.element_name(call + path, 'inputs')}"
                self._keep_element(key, t, name, module, path, "inputs")

        return hook

    @contextlib.contextmanager
    def _shape_only(self, batch: int) -> Iterator[None]:
        """Let the hooks note only shapes, for a discovery forward of ``batch`` rows."""
        saved, self._batch, self._discovering = self._batch, batch, True
        try:
            yield
        finally:
            self._batch, self._discovering = saved, False

    def _root_pre_hook(self, module: nn.Module, args: Any, kwargs: Any) -> None:
        self._calls.clear()
        self._in_calls.clear()
        if self._discovering:
            return
        first = next((a for a in args if isinstance(a, torch.Tensor)), None)
        if self._mode == "stream":
            if first is None or first.ndim == 0:
                msg = "watch() needs the model's first positional argument to be the batch tensor."
                raise StreamShapeError(msg)
            self._batch_rows = self._batch = int(first.shape[0])
            self.layouts.batches.append(self._batch)
            if self._ids is not None and self._ids.shape[0] != self._batch_rows:
                msg = (
                    f"sample_id must have one entry per batch sample ({self._batch_rows}); "
                    f"got {self._ids.shape[0]}."
                )
                raise StreamShapeError(msg)
        if not self._discovered and first is not None and first.ndim:
            self._discovered = True
            n = int(first.shape[0])
            discover_layouts(self.root, self.layouts, args, kwargs, n, self._shape_only)
            self._calls.clear()
            self._in_calls.clear()

    def _root_hook(self, module: nn.Module, args: Any, output: Any) -> None:
        if self._mode == "probe" or self._discovering:
            self._keep_output(schema.OUTPUTS, output, "", module, ())
        elif self._on_batch is not None:
            taken = self.take()
            attrs = self.array_attrs(taken)
            arrays = {_stream_key(k): a for k, a in taken.items()}
            ids = self._ids if self._ids is not None else np.full(self._batch_rows, -1, np.int64)
            self._on_batch(arrays, ids, self.ready(), {_stream_key(k): a for k, a in attrs.items()})


def _stream_key(key: str) -> str:
    """Return the stream path of a layer array (``layers/fc/acts`` -> ``stream/fc/acts``)."""
    return f"{schema.STREAM}/{key.split('/', 1)[1]}"
