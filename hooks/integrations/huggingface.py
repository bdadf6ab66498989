"""`ProbeTrainerCallback`: record a Hugging Face ``Trainer.train`` with a `hooks.Recorder`.

Needs ``transformers`` (``pip install transformers``); imported only when this module is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from hooks._steps import storable_metric_name
from hooks.errors import IntegrationImportError
from hooks.integrations import _open_recorder
from hooks.recorder import Recorder
from hooks.schedule import Schedule

try:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
except ImportError as err:
    msg = (
        f"hooks.integrations.huggingface needs transformers ({err}); "
        "install it with `pip install transformers`."
    )
    raise IntegrationImportError(msg) from err

__all__ = ["ProbeTrainerCallback"]

_RESERVED = ("step", "epoch")  # columns of the metrics table, not metrics


def _is_scalar(value: object) -> bool:
    """Return whether a log entry is a number (not a bool) or a one-element tensor."""
    if isinstance(value, torch.Tensor):
        return value.numel() == 1
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def _epoch(state: TrainerState) -> int:
    """Return the 0-based epoch of the last step (``state.epoch`` is 1.0 after epoch 0's end)."""
    return max(0, math.ceil(state.epoch or 0) - 1)


class ProbeTrainerCallback(TrainerCallback):
    """``transformers.Trainer`` callback that records the model's layers during ``train``.

    Steps are ``state.global_step`` (optimizer steps). After every step the probe set is
    snapshotted when due; every numeric entry of the Trainer's logs (``loss``, ``grad_norm``,
    ``learning_rate``, ``eval_*``, ``train_*`` ...) is logged as a metric at the step it belongs
    to, so ``logging_steps=1`` gives a loss per step. The run is closed (final snapshot
    included) at the end of training.

    Parameters
    ----------
    layers : str, type, callable or a list of them
        Layer selectors, as dotted paths inside the model (see `hooks.Recorder`).
    store : str or path
        Folder of the run store.
    probe : tensor, or tuple (x, y) or (x, y, sample_id), optional
        Fixed probe inputs of shape (n_samples, ...), passed as the model's first positional
        argument (``model(x)``).
    every : int, list of int or callable, optional
        Snapshot schedule over global steps (see `hooks.Recorder`).
    **recorder_kwargs
        Any other `hooks.Recorder` argument (``weights``, ``dtype``, ``resume`` ...).

    Attributes
    ----------
    recorder : Recorder or None
        The Recorder, built in ``on_train_begin`` (None before, and on every process but the
        world's first under distributed training: only that process records).

    Notes
    -----
    * The Trainer has no exception hook: if ``train`` raises, the run stays open until
      ``callback.recorder.close()`` or interpreter exit (every committed snapshot is kept
      either way, and the model carries no hook outside a snapshot).
    * ``epoch`` is the 0-based epoch a step belongs to, ``ceil(state.epoch) - 1``.
    * Metric names have ``/`` replaced by ``.`` (a ``/`` would nest zarr groups). Logs after
      training (a later ``trainer.evaluate()``) are not recorded: the run is closed by then.

    Raises
    ------
    IntegrationError
        At train begin, when the Trainer hands over no ``nn.Module``.

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(64, 8)
    >>> cb = ProbeTrainerCallback(["0", "2"], "artifacts/run.zarr", x, every=100)
    >>> cb.recorder is None  # built when Trainer(..., callbacks=[cb]).train() begins
    True
    """

    def __init__(
        self,
        layers: Any,
        store: Any,
        probe: object = None,
        *,
        every: int | Iterable[int] | Schedule | None = None,
        **recorder_kwargs: Any,
    ) -> None:
        self.layers = layers
        self.store = store
        self.probe = probe
        self.every = every
        self.recorder_kwargs: Mapping[str, Any] = recorder_kwargs
        self.recorder: Recorder | None = None
        self._live = False

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: object = None,
        **kwargs: Any,
    ) -> None:
        """Build the Recorder on ``model`` (world process zero only)."""
        if not state.is_world_process_zero:
            return
        self.recorder = _open_recorder(
            model,
            state.global_step,
            _epoch(state),
            self.layers,
            self.store,
            self.probe,
            self.every,
            dict(self.recorder_kwargs),
            "ProbeTrainerCallback",
        )
        self._live = True

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Count the optimizer step and snapshot when due."""
        rec = self.recorder
        if self._live and rec is not None and state.global_step > rec.step_:
            rec.step(step=state.global_step, epoch=_epoch(state))

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Log the numeric entries of ``logs`` at the current step."""
        rec = self.recorder
        # A step the resumed store already held was skipped: its logs would land on a later step.
        if not self._live or rec is None or state.global_step != rec.step_:
            return
        metrics = {  # the Trainer's names made storable: "eval/top 5" -> "eval.top_5"
            storable_metric_name(name): float(value)
            for name, value in (logs or {}).items()
            if name not in _RESERVED and _is_scalar(value) and storable_metric_name(name)
        }
        if metrics:
            rec.log(**metrics)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Close the run: final snapshot if due, flush, stop the writer."""
        if self._live and self.recorder is not None:
            self._live = False
            self.recorder.close()
