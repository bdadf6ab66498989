"""`ProbeCallback`: record a PyTorch Lightning ``fit`` with a `hooks.Recorder`.

Needs ``lightning`` (``pip install lightning``); imported only when this module is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from hooks.errors import IntegrationImportError
from hooks.integrations import _open_recorder
from hooks.recorder import Recorder
from hooks.schedule import Schedule

try:
    import lightning.pytorch as pl
except ImportError as err:
    msg = (
        f"hooks.integrations.lightning needs PyTorch Lightning ({err}); "
        "install it with `pip install lightning`."
    )
    raise IntegrationImportError(msg) from err

__all__ = ["ProbeCallback"]


class ProbeCallback(pl.Callback):
    """Lightning callback that records the LightningModule's layers during ``trainer.fit``.

    Steps are ``trainer.global_step`` (optimizer steps, as in a plain loop's ``rec.step()``);
    after every step the loss is logged as the metric ``loss`` and the probe set is snapshotted
    when due. The run is closed (final snapshot included) at the end of ``fit``, and closed
    without it, keeping every committed snapshot, when ``fit`` raises.

    Parameters
    ----------
    layers : str, type, callable or a list of them
        Layer selectors, as dotted paths inside the LightningModule (``"net.0"``); see
        `hooks.Recorder`.
    store : str or path
        Folder of the run store.
    probe : tensor, or tuple (x, y) or (x, y, sample_id), optional
        Fixed probe inputs of shape (n_samples, ...), fed to the LightningModule's ``forward``.
    every : int, list of int or callable, optional
        Snapshot schedule over global steps (see `hooks.Recorder`).
    **recorder_kwargs
        Any other `hooks.Recorder` argument (``weights``, ``dtype``, ``resume`` ...).

    Attributes
    ----------
    recorder : Recorder or None
        The Recorder, built when training starts (None before, and on every rank but the
        global zero under distributed training: only that rank records).

    Notes
    -----
    * The Recorder is built in ``on_train_start`` rather than ``on_fit_start``: only then has
      Lightning restored a checkpoint's global step (``fit(ckpt_path=...)``). Hence bad
      Recorder arguments surface when training starts, not at construction.
    * ``loss`` is the sum over the step's batches of ``outputs["loss"]`` (or ``outputs`` when
      ``training_step`` returns a tensor). Lightning divides it by ``accumulate_grad_batches``,
      so the sum is the mean loss over the accumulated batches; with no accumulation it is the
      batch loss. Batches whose ``training_step`` returned None add nothing.

    Examples
    --------
    >>> import torch
    >>> x, y = torch.randn(64, 8), torch.randint(0, 4, (64,))
    >>> cb = ProbeCallback(["net.0", "net.2"], "artifacts/run.zarr", (x, y), every=100)
    >>> cb.recorder is None  # built when trainer.fit(..., callbacks=[cb]) starts training
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
        super().__init__()
        self.layers = layers
        self.store = store
        self.probe = probe
        self.every = every
        self.recorder_kwargs: Mapping[str, Any] = recorder_kwargs
        self.recorder: Recorder | None = None
        self._live = False
        self._seen_step = 0
        self._loss: torch.Tensor | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Build the Recorder on the LightningModule (global rank 0 only)."""
        if not trainer.is_global_zero:
            return
        self.recorder = _open_recorder(
            trainer.lightning_module,
            trainer.global_step,
            trainer.current_epoch,
            self.layers,
            self.store,
            self.probe,
            self.every,
            dict(self.recorder_kwargs),
            "ProbeCallback",
        )
        self._live = True
        self._seen_step = trainer.global_step
        self._loss = None

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Add the batch's loss; when an optimizer step completed, record it."""
        if not self._live or self.recorder is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            loss = loss.detach()
            self._loss = loss if self._loss is None else self._loss + loss
        step = trainer.global_step
        if step == self._seen_step:  # accumulating gradients: no optimizer step yet
            return
        self._seen_step = step
        metrics = {} if self._loss is None else {"loss": self._loss}
        self._loss = None
        if step > self.recorder.step_:  # else the resumed store already holds this step
            self.recorder.step(step=step, epoch=trainer.current_epoch, **metrics)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Close the run: final snapshot if due, flush, stop the writer."""
        if self._live and self.recorder is not None:
            self._live = False
            self.recorder.close()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Close the run without a final snapshot; committed snapshots stay readable."""
        if self._live and self.recorder is not None:
            self._live = False
            self.recorder.__exit__(type(exception), exception, exception.__traceback__)
