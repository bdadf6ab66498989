"""Callbacks that attach a `hooks.Recorder` to the training loops people already use.

``ProbeCallback`` (PyTorch Lightning) and ``ProbeTrainerCallback`` (Hugging Face ``Trainer``) are
loaded on first access, so ``import hooks`` and ``import hooks.integrations`` need neither
framework; each is imported only when its callback is asked for. Both count steps with the
framework's global (optimizer) step, snapshot the probe set when ``every`` says so, log the loss,
and close the run at the end of training.

Resuming: both callbacks build their Recorder once the framework has restored a checkpoint's
step counter. Pass ``resume=True`` to continue the same store; steps the store already holds are
not recorded again. With a fresh store and a restored step ``s > 0``, the restored model is
recorded as step ``s`` (when due), never as step 0.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from torch import nn

from hooks.errors import IntegrationError
from hooks.recorder import Recorder
from hooks.schedule import Schedule, as_schedule

__all__ = ["ProbeCallback", "ProbeTrainerCallback"]

_LAZY = {
    "ProbeCallback": "hooks.integrations.lightning",
    "ProbeTrainerCallback": "hooks.integrations.huggingface",
}


def __getattr__(name: str) -> Any:
    """Import a callback's module (and its framework) on first access."""
    if name not in _LAZY:
        msg = f"module 'hooks.integrations' has no attribute {name!r}; it offers {sorted(_LAZY)}."
        raise AttributeError(msg)
    return getattr(importlib.import_module(_LAZY[name]), name)


def _open_recorder(
    model: object,
    start: int,
    epoch: int,
    layers: Any,
    store: Any,
    probe: object,
    every: int | Iterable[int] | Schedule | None,
    options: dict[str, Any],
    where: str,
) -> Recorder:
    """Build the Recorder of a callback whose training starts at optimizer step ``start``.

    The model is taken to be the state at ``start`` (in ``epoch``): recorded there when
    ``every`` says so, never as step 0.

    Raises
    ------
    IntegrationError
        ``model`` is not an ``nn.Module`` (the framework handed the callback no model).
    """
    if not isinstance(model, nn.Module):
        msg = (
            f"{where} needs the model being trained to record it; got {type(model).__name__}. "
            "Create the trainer with a torch nn.Module (for transformers, model= rather than "
            "only model_init=, or pass the model once it exists)."
        )
        raise IntegrationError(msg)
    if start > 0 and every is not None:
        # The model handed over at a restored step s is the state at s: never snapshot it as
        # step 0 (the Recorder's constructor would, for a fresh store).
        every = _from_step(start, as_schedule(every))
    rec = Recorder(model, layers, store, probe, every=every, **options)
    if start > rec.step_:
        rec.step(step=start, epoch=epoch)
    return rec


def _from_step(start: int, due: Schedule) -> Schedule:
    """Return ``due`` restricted to steps ``>= start``."""
    return lambda step: step >= start and due(step)
