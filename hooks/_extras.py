"""Snapshot extras beside the activations: layer weights (for the NFM) and AGOPs."""

from __future__ import annotations

from typing import Any

import numpy.typing as npt
import torch
from torch import nn

from hooks import schema
from hooks.agop import agop_arrays
from hooks.capture import to_host

_WEIGHTED = (nn.Linear, nn.modules.conv._ConvNd)


def weight_arrays(
    layers: dict[str, nn.Module],
) -> tuple[dict[str, npt.NDArray[Any]], dict[str, tuple[str, ...]]]:
    """Return the float32 weights of the Linear/Conv ``layers`` as (out, in[*kh*kw]), with dims."""
    arrays, dims = {}, {}
    for name, module in layers.items():
        w = getattr(module, "weight", None)
        if isinstance(module, _WEIGHTED) and isinstance(w, torch.Tensor):
            key = f"{schema.layer_group(name)}/weight"
            arrays[key] = to_host(w, torch.float32).reshape(w.shape[0], -1).numpy()
            dims[key] = schema.array_dims(key, (), 2)
    return arrays, dims


def snapshot_extras(
    root: nn.Module,
    layers: dict[str, nn.Module],
    agop_layers: dict[str, nn.Module],
    inputs: torch.Tensor,
    *,
    weights: bool,
    batch_size: int,
    device: torch.device,
) -> tuple[dict[str, npt.NDArray[Any]], dict[str, tuple[str, ...]]]:
    """Return one snapshot's extra arrays (weights, AGOPs on ``inputs``) keyed by store path.

    Call it outside the no-grad probe mode: the AGOP needs backward passes.
    """
    arrays, dims = weight_arrays(layers) if weights else ({}, {})
    if agop_layers:
        more = agop_arrays(root, inputs, agop_layers, batch_size, device)
        arrays.update(more[0])
        dims.update(more[1])
    return arrays, dims
