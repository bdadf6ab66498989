"""Turn a module's output (tensor, tuple, list, dict, None) into named host copies.

The hook path does the least work possible: select tensors, detach, cast, copy to host. The copy
is made inside the hook, so an in-place op that runs after the hook cannot change what was recorded.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch

__all__ = ["flatten_output", "host_dtype", "to_host"]

_MAX_DEPTH = 8


def flatten_output(
    out: object, _path: tuple[str, ...] = (), _depth: int = 0
) -> Iterator[tuple[tuple[str, ...], torch.Tensor]]:
    """Yield ``(key path, tensor)`` for every tensor in a module output.

    A tensor yields the empty path; tuple/list elements add their index and mapping entries their
    key, recursively (``(("0",), h)``, ``(("hidden",), h)``). ``None`` and non-tensor leaves yield
    nothing, so optional outputs simply do not appear.

    Examples
    --------
    >>> import torch
    >>> [k for k, _ in flatten_output((torch.zeros(1), {"h": torch.zeros(1), "n": None}))]
    [('0',), ('1', 'h')]
    """
    if isinstance(out, torch.Tensor):
        yield _path, out
    elif _depth >= _MAX_DEPTH:
        return
    elif isinstance(out, Mapping):
        for key, value in out.items():
            yield from flatten_output(value, (*_path, str(key)), _depth + 1)
    elif isinstance(out, (tuple, list)):
        for i, value in enumerate(out):
            yield from flatten_output(value, (*_path, str(i)), _depth + 1)


def host_dtype(t: torch.Tensor, dtype: torch.dtype) -> torch.dtype:
    """Return the dtype ``t`` is stored with: ``dtype`` for floating tensors, else its own.

    bfloat16 kept as is becomes float32, since zarr 3.1 has no bfloat16 dtype.
    """
    target = dtype if t.is_floating_point() else t.dtype
    return torch.float32 if target == torch.bfloat16 else target


def to_host(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Return a detached CPU copy of ``t``; floating tensors are cast to ``dtype``.

    ``copy=True`` guarantees a fresh buffer even when ``t`` is already a CPU tensor of that dtype.
    """
    return t.detach().to(device="cpu", dtype=host_dtype(t, dtype), copy=True)
