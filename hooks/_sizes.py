"""Measure what a Recorder stores per probe sample: one small hooked forward of the probe inputs.

`measure` runs it (also learning the batch layouts, so the first snapshot does not repeat that)
and returns an `ArraySize` per recorded array; `format_bytes` prints byte counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from hooks._probe_forward import probe_mode
from hooks.errors import HooksError, ProbeInputError

if TYPE_CHECKING:
    from hooks._hookset import HookSet

__all__ = ["ArraySize", "format_bytes", "measure"]

#: Probe samples in the measuring forward: the layout-discovery forwards take 2 and 3 of them.
N_MEASURED = 3


@dataclass(frozen=True)
class ArraySize:
    """One recorded array's shape and bytes in the storage dtype, without the snapshot axis.

    ``per_sample``: ``shape`` and ``nbytes`` are one sample's; else the array is batch-less and
    they are the whole array's, stored once per snapshot.
    """

    key: str
    shape: tuple[int, ...]
    nbytes: int
    per_sample: bool


def measure(hs: HookSet, x: torch.Tensor, device: torch.device) -> list[ArraySize]:
    """Forward the first `N_MEASURED` probe inputs through ``hs``'s hooks; size every array.

    Eval mode, no grad, forked RNG (`probe_mode`); the hooks are removed afterwards. The arrays
    are what a snapshot stores: batch first, reduced, in the storage dtype.

    Parameters
    ----------
    hs : HookSet
        The Recorder's hooks (layers, storage dtype, batch dims, inputs, reductions).
    x : torch.Tensor of shape (n_samples, ...)
        The probe inputs.
    device : torch.device
        Where the model runs.

    Raises
    ------
    ProbeInputError
        The model's forward fails on the probe inputs.
    BatchDimError, BatchlessOutputError, ReduceError
        A recorded output does not fit its batch or reduction rules (raised now rather than at
        the first snapshot).
    """
    b = min(N_MEASURED, int(x.shape[0]))
    try:
        with probe_mode(hs.root, device), hs.attached("probe", n_rows=b):
            hs.begin_batch(0, b)
            hs.root(x[:b].to(device))
    except HooksError:
        raise
    except Exception as err:
        msg = (
            f"the model's forward failed on probe inputs of shape {tuple(x.shape)} "
            f"and dtype {x.dtype}: {err}. probe inputs must be a batch the model "
            "accepts, of shape (n_samples, ...)."
        )
        raise ProbeInputError(msg) from err
    event = hs.ready()
    arrays = hs.take()
    if event is not None:
        event.synchronize()
    out = []
    for key, a in arrays.items():
        layout = hs.layouts.known.get(key)
        if layout is not None and layout.batch_dim is None:
            out.append(ArraySize(key, tuple(a.shape), int(a.nbytes), per_sample=False))
        else:
            out.append(ArraySize(key, tuple(a.shape[1:]), int(a.nbytes) // b, per_sample=True))
    return out


def format_bytes(n: float) -> str:
    """Return ``n`` bytes in binary units, e.g. ``'1.5 GiB'``.

    Examples
    --------
    >>> format_bytes(512), format_bytes(3 << 19), format_bytes(10 << 30)
    ('512 B', '1.5 MiB', '10.0 GiB')
    """
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
