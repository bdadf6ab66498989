"""Learn the batch layout of every recorded element before the first recorded forward.

Two small forwards of the batch's first samples (2, then 3) run with the hooks in shape-only
mode: the dimension whose size follows the batch size is the batch dimension, whatever the other
sizes, so a batch of the size of another dimension (16 samples through a 16-wide layer, a
sequence as long as the batch) is not ambiguous. It runs once per Recorder, in eval mode without
gradients and with a forked RNG, so training is undisturbed.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn

from hooks._layouts import Layouts
from hooks._probe_forward import probe_mode


def _head(value: Any, b: int, n: int) -> Any:
    """Return the first ``b`` rows of a batch tensor of ``n`` rows; anything else as is."""
    if isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == n:
        return value[:b]
    return value


def discover_layouts(
    root: nn.Module,
    layouts: Layouts,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    n: int,
    shape_only: Callable[[int], AbstractContextManager[None]],
) -> None:
    """Forward the first 2 and 3 of the ``n`` rows of the root's arguments; learn the layouts.

    Tensors of ``n`` rows among ``args`` and ``kwargs`` are cut; everything else is passed as
    is. ``shape_only(b)`` puts the hooks in shape-only mode for a batch of ``b`` rows during a
    forward. A model that fails on the smaller batches leaves the layouts to the recorded
    forwards themselves (`hooks._layouts.Layouts.resolve`).
    """
    sizes = (2, 3) if n >= 3 else (1, 2) if n == 2 else ()
    if not sizes:
        return
    saved = list(layouts.batches)
    first = next(a for a in args if isinstance(a, torch.Tensor))
    try:
        with probe_mode(root, first.device):
            for b in sizes:
                layouts.batches.append(b)
                cut = [_head(a, b, n) for a in args]
                with shape_only(b):
                    root(*cut, **{k: _head(v, b, n) for k, v in kwargs.items()})
    except Exception:  # noqa: BLE001 - the recorded forwards decide instead
        layouts.forget_shapes()
    finally:
        layouts.batches[:] = saved
    layouts.learn()
