"""Per-layer gradient Gram K_l and AGOP_l = W^T K_l W of Linear and Conv2d layers on a probe set.

`gradient_grams` gets K_l for every selected layer at once from c backward passes per batch (one per
model output), through forward hooks on the layers; `agop` turns them into input-side AGOPs;
`agop_layers` and `agop_arrays` serve the Recorder's ``agop=`` option.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from hooks import schema
from hooks.errors import AgopError, AgopLayerError, RecorderConfigError
from hooks.layers import LayerSelector, resolve_layers, unwrap_model

__all__ = ["agop", "agop_arrays", "agop_layers", "gradient_grams"]


def _check_layer(name: str, module: nn.Module) -> None:
    """Raise unless ``module`` is a layer whose AGOP is W^T K W (Linear, Conv2d with groups=1)."""
    if isinstance(module, nn.Conv2d) and module.groups != 1:
        msg = (
            f"AGOP of layer {name!r} needs a Conv2d with groups=1; got groups={module.groups} "
            "(each group sees other input channels, so no single W^T K W exists). "
            "Leave this layer out of the AGOP layers."
        )
        raise AgopLayerError(msg)
    if not isinstance(module, (nn.Linear, nn.Conv2d)):
        msg = (
            f"AGOP layers must be nn.Linear or nn.Conv2d; got {name!r} of type "
            f"{type(module).__name__}. Select only those layers (e.g. layers=nn.Linear)."
        )
        raise AgopLayerError(msg)


def _check_args(inputs: object, batch_size: object) -> torch.Tensor:
    if not isinstance(inputs, torch.Tensor) or inputs.ndim == 0 or inputs.shape[0] == 0:
        got = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        msg = (
            "inputs must be a torch.Tensor of shape (n_samples, ...) with n_samples >= 1; "
            f"got {got}."
        )
        raise AgopError(msg)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        msg = f"'batch_size' must be a positive int; got {batch_size!r}."
        raise AgopError(msg)
    return inputs


@contextlib.contextmanager
def _eval_mode(root: nn.Module, device: torch.device) -> Iterator[None]:
    """Eval mode with grad enabled and a forked RNG; restore every module's training flag."""
    flags = [(m, m.training) for m in root.modules()]
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        root.eval()
        with torch.enable_grad(), torch.random.fork_rng(devices=devices):
            yield
    finally:
        for m, flag in flags:
            m.training = flag


def _capture(store: list[torch.Tensor]) -> Callable[[nn.Module, Any, torch.Tensor], torch.Tensor]:
    def hook(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        store.append(output)
        # Downstream in-place ops (ReLU(inplace=True)) would rebase z's history onto the
        # activation; the model continues on a copy so the captured z keeps its own.
        return output.clone()

    return hook


def _positions(name: str, module: nn.Module, g: torch.Tensor, n_batch: int) -> torch.Tensor:
    """Return ∂f_o/∂z of one call as (batch, positions, out): conv positions, extra Linear dims."""
    if g.ndim < 2 or g.shape[0] != n_batch or (isinstance(module, nn.Conv2d) and g.ndim != 4):
        msg = (
            f"layer {name!r} must output (batch, ...) with batch={n_batch} in the AGOP pass; got "
            f"shape {tuple(g.shape)}. Pass inputs batched as the model's forward expects."
        )
        raise AgopError(msg)
    if isinstance(module, nn.Conv2d):
        return g.flatten(2).transpose(1, 2)
    return g.reshape(n_batch, -1, g.shape[-1])


def _outputs(out: object, n_batch: int) -> torch.Tensor:
    """Return the model output as (batch, c); (n,) is one output, (n, ...) is flattened."""
    if not isinstance(out, torch.Tensor) or out.ndim == 0 or out.shape[0] != n_batch:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        msg = (
            f"AGOP needs the model output to be a tensor of shape (n,) or (n, c) with n={n_batch}; "
            f"got {got}. Wrap the model so that it returns the outputs to differentiate."
        )
        raise AgopError(msg)
    if not out.requires_grad:
        msg = "the model output does not depend on anything that requires grad; cannot take AGOP."
        raise AgopError(msg)
    return out.reshape(n_batch, -1)


def gradient_grams(
    model: nn.Module,
    inputs: torch.Tensor,
    layers: LayerSelector | Iterable[LayerSelector],
    *,
    batch_size: int = 256,
    center: bool = False,
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """Return the output-side gradient Gram K_l of every selected Linear/Conv2d layer.

    ``K_l = (1/n) Σ_p Σ_pos Σ_o ∇_z f_o ∇_z f_o^T`` with z the layer's output before any
    nonlinearity, summed over conv output positions (and extra leading dims of a Linear input).

    Parameters
    ----------
    model : nn.Module
        Any model built from the selected layers and other modules; run in eval mode.
    inputs : torch.Tensor of shape (n_samples, ...)
        The samples to average over (a batch the model accepts).
    layers : str, type, callable or a list of them
        Selectors as in `hooks.resolve_layers`; every match must be ``nn.Linear`` or
        ``nn.Conv2d`` with ``groups=1``.
    batch_size : int
        Samples per forward; c backward passes per batch keep its graph alive.
    center : bool
        Gradient covariance instead: subtract the mean gradient over samples (per position).
    device : torch.device or str, optional
        Where batches are sent (default: the device of the model's first parameter).

    Returns
    -------
    dict of str to torch.Tensor of shape (out, out)
        Float64 CPU tensors keyed by layer name, in module order.

    Raises
    ------
    AgopLayerError
        A selected layer is not Linear or an ungrouped Conv2d.
    AgopError
        Bad ``inputs`` or ``batch_size``; the model output is not (n,)/(n, c); a layer did not run
        in the forward, or its output does not take part in the autograd graph.

    Notes
    -----
    Beaglehole et al. (2024) `get_Ks` and docs/features.md §1.6: samples do not interact in eval
    mode, so one backward pass of ``Σ_batch f_o`` gives ∂f_o/∂z for every sample and every layer.
    Centred: ``K^c = K − Σ_o Σ_pos ḡ_{o,pos} ḡ_{o,pos}^T`` with ``ḡ`` the mean over samples,
    exactly the covariance of ∂f/∂z (f a function of all positions' patches; docs/features.md
    §1.3, §1.7).
    A module called several times per forward contributes each call like extra positions.
    Parameter ``.grad`` and the training flags are left untouched.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    >>> k = gradient_grams(net, torch.randn(8, 3, dtype=torch.float64), ["0", "2"])
    >>> torch.allclose(k["2"], torch.eye(2, dtype=torch.float64))  # ∂f/∂z of the head is I
    True
    """
    x = _check_args(inputs, batch_size)
    root = unwrap_model(model)
    mods = resolve_layers(root, layers)
    for name, module in mods.items():
        _check_layer(name, module)
    params = list(root.parameters())
    dev = torch.device(device) if device is not None else (params[0].device if params else x.device)
    calls: dict[str, list[torch.Tensor]] = {name: [] for name in mods}
    grams: dict[str, torch.Tensor] = {}
    sums: dict[str, torch.Tensor] = {}  # centred: Σ_p ∂f/∂z, (c, positions, out)
    handles = [m.register_forward_hook(_capture(calls[n])) for n, m in mods.items()]
    try:
        with _eval_mode(root, dev):
            for i in range(0, x.shape[0], batch_size):
                batch = x[i : i + batch_size].to(dev)
                if batch.is_floating_point():  # z then needs grad even with frozen parameters
                    batch = batch.detach().requires_grad_(True)
                for zs in calls.values():
                    zs.clear()
                out = _outputs(root(batch), batch.shape[0])
                _accumulate(mods, calls, out, grams, sums if center else None)
    finally:
        for h in handles:
            h.remove()
        for zs in calls.values():
            zs.clear()
    n = x.shape[0]
    result = {}
    for name, k in grams.items():
        k = k / n
        if center:
            s = sums[name] / n
            k = k - torch.einsum("opi,opj->ij", s, s)
        result[name] = k.cpu()
    return result


def _accumulate(
    mods: dict[str, nn.Module],
    calls: dict[str, list[torch.Tensor]],
    out: torch.Tensor,
    grams: dict[str, torch.Tensor],
    sums: dict[str, torch.Tensor] | None,
) -> None:
    """Add one batch's Σ_p Σ_pos Σ_o g g^T (and Σ_p g when centring) for every layer."""
    for name, zs in calls.items():
        if not zs or not all(z.requires_grad for z in zs):
            why = "did not run in the forward" if not zs else "has an output that needs no grad"
            msg = (
                f"layer {name!r} {why}; AGOP needs layers whose output reaches the model output "
                "through autograd. Select layers that the forward uses."
            )
            raise AgopError(msg)
    flat = [z for zs in calls.values() for z in zs]
    n_batch, n_out = out.shape
    for o in range(n_out):
        grads = torch.autograd.grad(
            out[:, o].sum(), flat, retain_graph=o < n_out - 1, allow_unused=True
        )
        it = iter(grads)
        for name, zs in calls.items():
            parts = []
            for z in zs:
                g = next(it)  # None: this call does not reach output o, a zero gradient
                parts.append(
                    _positions(name, mods[name], torch.zeros_like(z) if g is None else g, n_batch)
                )
            g = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
            flat_g = g.reshape(-1, g.shape[-1])
            gram = (flat_g.T @ flat_g).to(torch.float64)
            grams[name] = grams[name] + gram if name in grams else gram
            if sums is not None:
                s = g.sum(0, dtype=torch.float64)
                if name not in sums:
                    sums[name] = torch.zeros(
                        (n_out, *s.shape), dtype=torch.float64, device=s.device
                    )
                sums[name][o] += s


def agop(
    model: nn.Module,
    inputs: torch.Tensor,
    layers: LayerSelector | Iterable[LayerSelector],
    *,
    batch_size: int = 256,
    center: bool = False,
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """Return the AGOP w.r.t. the input (patches) of every selected Linear/Conv2d layer.

    ``AGOP_l = (1/n) Σ_p J_l(x_p)^T J_l(x_p) = W̃^T K_l W̃`` with ``J_l = ∂f/∂(layer input)``,
    ``W̃`` the weight as (out, in) and K_l from `gradient_grams`.

    Parameters
    ----------
    model : nn.Module
        Any model built from the selected layers and other modules; run in eval mode.
    inputs : torch.Tensor of shape (n_samples, ...)
        The samples to average over.
    layers : str, type, callable or a list of them
        Selectors as in `hooks.resolve_layers` (Linear or Conv2d with ``groups=1`` only).
    batch_size, center, device
        As in `gradient_grams`.

    Returns
    -------
    dict of str to torch.Tensor of shape (in, in)
        Float64 CPU tensors; for Conv2d ``in = C_in * kh * kw`` in (channel, row, col) order,
        the patch AGOP summed over output positions.

    Raises
    ------
    AgopLayerError
        A selected layer is not Linear or an ungrouped Conv2d.
    AgopError
        As in `gradient_grams`.

    Notes
    -----
    Radhakrishnan et al. (Science 2024) AGOP; convolutional patch AGOP of Beaglehole et al.
    (arXiv 2309.00570); docs/features.md §1.6-1.7. Not divided by the number of positions (as
    the VGG code).
    With ``center=True`` it is the gradient covariance ``(1/n) Σ_p (J_p − J̄)^T (J_p − J̄)``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 2, bias=False)).double()
    >>> g = agop(net, torch.randn(5, 3, dtype=torch.float64), "0")["0"]
    >>> w = net[0].weight.detach()
    >>> torch.allclose(g, w.T @ w)  # f linear: J = W for every sample
    True
    """
    grams = gradient_grams(
        model, inputs, layers, batch_size=batch_size, center=center, device=device
    )
    root = unwrap_model(model)
    mods = dict(root.named_modules())
    result = {}
    for name, k in grams.items():
        w = mods[name].weight.detach()
        w = w.reshape(w.shape[0], -1).to(device="cpu", dtype=torch.float64)
        result[name] = w.T @ k @ w
    return result


def agop_layers(
    root: nn.Module,
    recorded: dict[str, nn.Module],
    agop: bool | LayerSelector | Iterable[LayerSelector],
    *,
    has_probe: bool = True,
) -> dict[str, nn.Module]:
    """Resolve the Recorder's ``agop=`` option to the recorded layers to take the AGOP of.

    ``False``: none; ``True``: every recorded Linear/Conv2d (groups=1); selectors: those layers,
    each of which must be recorded and of such a type.

    Raises
    ------
    AgopLayerError
        ``True`` finds no such layer, or a selected layer has another type.
    RecorderConfigError
        A selected layer is not among the Recorder's ``layers``, or there is no probe set.
    """
    if agop is False:
        return {}
    if not has_probe:
        msg = "'agop' is computed on the probe set, so 'probe' must be given too."
        raise RecorderConfigError(msg)
    if agop is True:
        chosen: dict[str, nn.Module] = {
            n: m
            for n, m in recorded.items()
            if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)
        }
        if not chosen:
            msg = (
                "agop=True needs at least one recorded nn.Linear or nn.Conv2d layer; got "
                f"{ {n: type(m).__name__ for n, m in recorded.items()} }. Add such layers."
            )
            raise AgopLayerError(msg)
        return chosen
    chosen = resolve_layers(root, agop)
    for name, module in chosen.items():
        if name not in recorded:
            msg = (
                f"agop layer {name!r} must also be a recorded layer (its AGOP is stored under "
                f"layers/{name}/agop); got layers={list(recorded)}. Add it to layers=."
            )
            raise RecorderConfigError(msg)
        _check_layer(name, module)
    return chosen


def agop_arrays(
    root: nn.Module,
    inputs: torch.Tensor,
    layers: dict[str, nn.Module],
    batch_size: int,
    device: torch.device,
) -> tuple[dict[str, npt.NDArray[np.float32]], dict[str, tuple[str, ...]]]:
    """Return one snapshot's ``layers/<name>/agop`` arrays (float32, (in, in)) and their dims."""
    grams = agop(root, inputs, list(layers), batch_size=batch_size, device=device)
    keys = {name: f"{schema.layer_group(name)}/agop" for name in grams}
    arrays = {keys[n]: g.to(torch.float32).numpy() for n, g in grams.items()}
    return arrays, {k: schema.array_dims(k, (), 2) for k in arrays}
