"""Turn a module's output (tensor, tuple, list, dict, dataclass, None) into named host copies.

The hook path does the least work possible: select tensors, detach, cast, copy to host. The copy
is made inside the hook, so an in-place op that runs after the hook cannot change what was recorded.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator, Mapping

import torch

from hooks.errors import UnrecordedOutputWarning

__all__ = ["flatten_output", "host_dtype", "to_host", "warn_unrecorded"]

_MAX_DEPTH = 8
_NUMBERS = (bool, int, float, complex)


def flatten_output(
    out: object,
    _path: tuple[str, ...] = (),
    _depth: int = 0,
    *,
    dropped: list[tuple[tuple[str, ...], str]] | None = None,
) -> Iterator[tuple[tuple[str, ...], torch.Tensor]]:
    """Yield ``(key path, tensor)`` for every tensor in a module output.

    A tensor yields the empty path; tuple/list elements add their index, mapping entries
    (Hugging Face ``ModelOutput`` included) and dataclass fields their key, recursively
    (``(("0",), h)``, ``(("hidden",), h)``). ``None`` and Python numbers yield nothing, so
    optional outputs simply do not appear; any other object (a string, a generator, a custom
    class) yields nothing either and is appended to ``dropped`` as ``(key path, type name)``.

    Examples
    --------
    >>> import torch
    >>> [k for k, _ in flatten_output((torch.zeros(1), {"h": torch.zeros(1), "n": None}))]
    [('0',), ('1', 'h')]
    """
    if isinstance(out, torch.Tensor):
        yield _path, out
    elif out is None or isinstance(out, _NUMBERS) or _depth >= _MAX_DEPTH:
        return
    elif isinstance(out, Mapping):
        for key, value in out.items():
            yield from flatten_output(value, (*_path, str(key)), _depth + 1, dropped=dropped)
    elif isinstance(out, (tuple, list)):
        for i, value in enumerate(out):
            yield from flatten_output(value, (*_path, str(i)), _depth + 1, dropped=dropped)
    elif dataclasses.is_dataclass(out) and not isinstance(out, type):
        for f in dataclasses.fields(out):
            value = getattr(out, f.name)
            yield from flatten_output(value, (*_path, f.name), _depth + 1, dropped=dropped)
    elif dropped is not None:
        dropped.append((_path, type(out).__name__))


def warn_unrecorded(layer: str, names: list[str], kinds: list[str]) -> None:
    """Warn that ``layer``'s output elements ``names`` (of types ``kinds``) are not recorded."""
    what = ", ".join(f"{n} ({k})" for n, k in zip(names, kinds, strict=True))
    where = f"layer {layer!r}" if layer else "the model"
    msg = (
        f"{where} outputs objects that are not tensors, not recorded: {what}. Only tensors "
        "(in tuples, lists, dicts or dataclasses) are recorded; record a submodule that "
        "returns the tensor you need instead."
    )
    warnings.warn(msg, UnrecordedOutputWarning, stacklevel=5)


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
