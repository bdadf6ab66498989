"""One snapshot of the probe set: its forward through the capture hooks, plus weights and AGOPs."""

from __future__ import annotations

import time

import torch
from torch import nn

from hooks._extras import snapshot_extras
from hooks._hookset import HookSet
from hooks._items import Snapshot
from hooks._probe_forward import probe_mode


def capture_snapshot(
    root: nn.Module,
    hooks: HookSet,
    x: torch.Tensor,
    *,
    step: int,
    epoch: int,
    batch_size: int,
    device: torch.device,
    layers: dict[str, nn.Module],
    agop_layers: dict[str, nn.Module],
    weights: bool,
) -> Snapshot:
    """Forward the probe inputs ``x`` (n_samples, ...) in batches and return the `Snapshot`.

    The forward runs in eval mode without gradients and with a forked RNG (`probe_mode`), so
    the training trajectory is unchanged; the recorded arrays are batch first. Weights and
    AGOPs (`hooks._extras`) are taken after it, since the AGOP needs a backward pass.

    Raises
    ------
    BatchDimError, BatchlessOutputError
        A recorded output's layout cannot be told, or a batch-less output differs between
        probe batches.
    """
    with probe_mode(root, device), hooks.attached("probe", n_rows=x.shape[0]):
        for i in range(0, x.shape[0], batch_size):
            batch = x[i : i + batch_size]
            hooks.begin_batch(i, batch.shape[0])
            root(batch.to(device, non_blocking=True))
    ready, arrays = hooks.ready(), hooks.take()
    dims = {k: hooks.layouts.dims(k, a.ndim) for k, a in arrays.items()}
    attrs = hooks.array_attrs(arrays)
    more, more_dims = snapshot_extras(
        root, layers, agop_layers, x, weights=weights, batch_size=batch_size, device=device
    )
    arrays.update(more)
    dims.update(more_dims)
    return Snapshot(step, epoch, time.time(), arrays, dims, ready, attrs)
