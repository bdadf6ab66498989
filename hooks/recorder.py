"""`Recorder`: attach to a training loop, snapshot a fixed probe set, stream training batches.

Hooks exist only while the Recorder itself forwards the probe set (`snapshot`) or while the user's
forward runs inside `watch`; otherwise the model carries no hook at all, and `close` (also on error)
removes every handle it registered.
"""

from __future__ import annotations

import atexit
import contextlib
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any

import numpy as np
import torch
from torch import nn

from hooks import schema
from hooks._hookset import HookSet
from hooks._options import parse_compressors, parse_dtype, toolkit_version
from hooks._probe_set import ProbeSet, make_probe_set
from hooks._store import (
    create_run,
    last_epoch,
    last_metric_step,
    last_snapshot_step,
    probe_digest,
    reopen_run,
    store_path,
)
from hooks.agop import agop_arrays, agop_layers
from hooks.capture import to_host
from hooks.errors import (
    ProbeInputError,
    RecorderClosedError,
    RecorderConfigError,
    StepOrderError,
    WriterError,
)
from hooks.layers import LayerSelector, resolve_layers, unwrap_model
from hooks.schedule import Schedule, as_schedule
from hooks.writer import MetricRecord, RunWriter, Snapshot, StreamBatch

__all__ = ["Recorder"]


_WEIGHTED = (nn.Linear, nn.modules.conv._ConvNd)


class Recorder:
    """Record hidden activations of ``model`` on a fixed probe set into a step-indexed zarr run.

    Parameters
    ----------
    model : nn.Module
        Any module; `torch.compile` and DDP wrappers are seen through (hooks go on the wrapped
        module).
    layers : str, type, callable or a list of them
        Dotted names, globs (``"encoder.*"``), module types (``nn.Linear``) or predicates
        ``f(name, module) -> bool``; see `hooks.list_layers`. Resolved here, before training starts.
    store : str or path
        Folder of the run store (zarr v3), created if missing.
    probe : tensor, or tuple (x, y) or (x, y, sample_id), optional
        Fixed probe inputs of shape (n_samples, ...) with optional targets and dataset indices.
        Needed for snapshots; without it only `step` metrics and `watch` streams are recorded.
    every : int, list of int or callable, optional
        Snapshot schedule over optimizer steps: every N steps (step 0 included), the listed steps
        (e.g. `hooks.log_schedule`), or a predicate ``step -> bool``. None: only explicit
        `snapshot`.
    sample_id : array of int, optional
        Dataset indices of the probe samples (default ``arange(n_samples)``).
    weights : bool
        Also record the weight of every selected Linear/Conv layer, as (out, in[*kh*kw]).
    agop : bool, str, type, callable or a list of them
        Also record, at every snapshot, the AGOP w.r.t. the layer input (`hooks.agop.agop`, on
        the probe set, eval mode, float32) of every recorded Linear/Conv2d layer (True) or of the
        selected recorded ones, as ``layers/<name>/agop`` (in, in). Costs one backward pass per
        model output per probe batch; parameter ``.grad`` and the training RNG are untouched.
    dtype : {"float32", "float16"} or torch.dtype
        Storage dtype of floating activations.
    batch_size : int
        Probe samples per forward pass in a snapshot.
    device : torch.device or str, optional
        Where probe batches are sent (default: the device of the model's first parameter).
    resume : bool
        Continue an existing run at ``store`` (same layers, probe inputs and dtype); creates it if
        missing. Rows a killed writer left uncommitted are discarded; the step counter continues
        from the last recorded step (`step_`), and no snapshot is taken at construction.
    overwrite : bool
        Replace an existing run at ``store``.
    final_snapshot : bool
        On a clean exit, snapshot the last step if it is not snapshotted yet.
    compressors : {None, "zstd", "blosc"} or zarr codecs, optional
        Compression of recorded arrays (default None: raw bytes; dense float data barely
        compresses).
    max_queue_bytes : int
        Memory budget of arrays waiting for the writer; beyond it the training thread waits.
    config : mapping, optional
        Experiment settings saved as JSON in the run's attrs (``config``).
    seed : int, optional
        Saved in the run's attrs.
    store_probe_inputs : int
        Save the probe inputs in ``probe/inputs`` when they take at most this many bytes.

    Examples
    --------
    >>> import torch, tempfile, os
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> x = torch.randn(16, 4)
    >>> path = os.path.join(tempfile.mkdtemp(), "run.zarr")
    >>> with Recorder(net, layers=["0", "2"], store=path, probe=x, every=2) as rec:
    ...     for _ in range(4):
    ...         rec.step(loss=1.0)
    >>> rec.n_snapshots
    3
    """

    def __init__(
        self,
        model: nn.Module,
        layers: LayerSelector | Iterable[LayerSelector],
        store: str | Any,
        probe: object = None,
        *,
        every: int | Iterable[int] | Schedule | None = None,
        sample_id: object = None,
        weights: bool = False,
        agop: bool | LayerSelector | Iterable[LayerSelector] = False,
        dtype: str | torch.dtype = "float32",
        batch_size: int = 1024,
        device: torch.device | str | None = None,
        resume: bool = False,
        overwrite: bool = False,
        final_snapshot: bool = True,
        compressors: object = None,
        max_queue_bytes: int = 256 << 20,
        config: Mapping[str, Any] | None = None,
        seed: int | None = None,
        store_probe_inputs: int = 64 << 20,
    ) -> None:
        self.model = model
        self.root_ = unwrap_model(model)
        self.layers_ = resolve_layers(self.root_, layers)
        self._due = as_schedule(every)
        self.dtype = parse_dtype(dtype)
        parse_compressors(compressors)  # fail before anything touches the disk
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            msg = f"'batch_size' must be a positive int; got {batch_size!r}."
            raise RecorderConfigError(msg)
        self.batch_size = batch_size
        self.weights = bool(weights)
        self.agop_layers_ = agop_layers(self.root_, self.layers_, agop, has_probe=probe is not None)
        self.final_snapshot = final_snapshot
        params = list(self.root_.parameters())
        self.device = (
            torch.device(device)
            if device is not None
            else (params[0].device if params else torch.device("cpu"))
        )
        param_dtype = next((p.dtype for p in params if p.is_floating_point()), None)
        self.probe_: ProbeSet | None = None
        if probe is not None:
            self.probe_ = make_probe_set(probe, sample_id, param_dtype)
            self._trial_forward(self.probe_.inputs)
        elif every is not None:
            msg = "'every' schedules snapshots of the probe set, so 'probe' must be given too."
            raise RecorderConfigError(msg)

        self.path = store_path(store)
        self.step_ = 0
        self.epoch = 0
        self._closed = False
        self._hooks = HookSet(self.root_, self.layers_, self.dtype)

        attrs = self._root_attrs(config, seed)
        resumed = resume and self.path.exists()
        if resumed:
            root = reopen_run(self.path, attrs)
            self.step_ = max(last_snapshot_step(root) or 0, last_metric_step(root))
            self.epoch = last_epoch(root)
        else:
            root = create_run(
                self.path, attrs, self._probe_arrays(store_probe_inputs), overwrite=overwrite
            )
        self.writer_ = RunWriter(
            root, max_bytes=max_queue_bytes, compressors=parse_compressors(compressors)
        )
        self._last_snapshot_step: int | None = self.writer_.last_step
        atexit.register(self._atexit)
        # A fresh run snapshots its initial state when due; a resumed one does not, because the
        # model it is handed (e.g. from a checkpoint) need not be the state at the last step.
        if self.probe_ is not None and not resumed and self._due(self.step_):
            self.snapshot()

    # ------------------------------------------------------------------ public API
    @property
    def n_snapshots(self) -> int:
        """Snapshots committed to the store so far (call `flush` first for an exact count)."""
        return self.writer_.n_committed

    def step(self, *, step: int | None = None, epoch: int | None = None, **metrics: Any) -> None:
        """Count one optimizer step, log scalar ``metrics`` at it, and snapshot when due.

        Parameters
        ----------
        step : int, optional
            Set the step explicitly (e.g. a global step after a restart); must increase.
        epoch : int, optional
            The current epoch, saved with metrics and snapshots from now on.
        **metrics : float or 0-d tensor
            Scalars such as ``loss=loss`` (tensors are converted off the training thread).

        Raises
        ------
        StepOrderError
            ``step`` is not larger than the last step.
        RecorderConfigError
            A metric value is not a number or a one-element tensor.
        WriterError
            The background writer failed earlier (e.g. disk full).
        """
        self._check_open()
        metrics = self._validated(metrics)
        if step is None:
            self.step_ += 1
        else:
            if (
                not isinstance(step, (int, np.integer))
                or isinstance(step, bool)
                or step <= self.step_
            ):
                msg = (
                    f"step must be an int larger than the last step {self.step_}; got {step!r}. "
                    "Steps count optimizer updates and never go backwards "
                    "(use a new store to restart)."
                )
                raise StepOrderError(msg)
            self.step_ = int(step)
        if epoch is not None:
            self.epoch = int(epoch)
        self._put_metrics(metrics)
        if self.probe_ is not None and self._due(self.step_):
            self.snapshot()

    def log(self, **metrics: Any) -> None:
        """Log scalar metrics at the current step without advancing it (e.g. test accuracy).

        Raises
        ------
        RecorderConfigError
            A metric value is not a number or a one-element tensor, or its name is reserved.
        """
        self._check_open()
        self._put_metrics(self._validated(metrics))

    def _put_metrics(self, metrics: dict[str, Any]) -> None:
        if metrics:
            self.writer_.put(MetricRecord(self.step_, self.epoch, metrics), 64 * len(metrics))

    @staticmethod
    def _validated(metrics: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for name, value in metrics.items():
            if name in ("step", "epoch"):
                msg = f"metric name {name!r} is reserved (it is a column of the metrics table)."
                raise RecorderConfigError(msg)
            ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
            if isinstance(value, torch.Tensor):
                ok = value.numel() == 1
                value = value.detach()
            if not ok:
                msg = f"metric {name!r} must be a number or a one-element tensor; got {value!r}."
                raise RecorderConfigError(msg)
            out[name] = value
        return out

    def snapshot(self) -> None:
        """Forward the probe set in eval mode without gradients and record the selected layers.

        Every module's train/eval flag and the RNG state are restored afterwards, so the training
        trajectory is unchanged. A second snapshot at the same step is skipped.

        Raises
        ------
        RecorderConfigError
            The Recorder was created without a probe set.
        """
        self._check_open()
        if self.probe_ is None:
            msg = "snapshot() needs a probe set; create the Recorder with probe=(x, y)."
            raise RecorderConfigError(msg)
        if self._last_snapshot_step == self.step_:
            return
        x = self.probe_.inputs
        with self._probe_mode(), self._hooks.attached("probe", n_rows=x.shape[0]):
            for i in range(0, x.shape[0], self.batch_size):
                batch = x[i : i + self.batch_size]
                self._hooks.begin_batch(i, batch.shape[0])
                self.root_(batch.to(self.device, non_blocking=True))
        arrays = self._hooks.take()
        dims = {k: schema.array_dims(k, ("sample",), a.ndim - 1) for k, a in arrays.items()}
        if self.weights:
            for name, module in self.layers_.items():
                w = getattr(module, "weight", None)
                if isinstance(module, _WEIGHTED) and isinstance(w, torch.Tensor):
                    key = f"{schema.layer_group(name)}/weight"
                    arrays[key] = to_host(w, torch.float32).reshape(w.shape[0], -1).numpy()
                    dims[key] = schema.array_dims(key, (), 2)
        if self.agop_layers_:  # after the no-grad probe mode: AGOP needs backward passes
            more = agop_arrays(self.root_, x, self.agop_layers_, self.batch_size, self.device)
            arrays.update(more[0])
            dims.update(more[1])
        snap = Snapshot(self.step_, self.epoch, time.time(), arrays, dims)
        self.writer_.put(snap, sum(a.nbytes for a in arrays.values()))
        self._last_snapshot_step = self.step_

    @contextlib.contextmanager
    def watch(self, sample_id: object = None) -> Iterator[Recorder]:
        """Record the selected layers during the user's own forward passes (stream mode).

        Each forward of the model inside the block appends one row per batch sample to
        ``stream/<layer>/acts``, with ``stream/step`` (optimizer steps done before the forward)
        and ``stream/sample_id`` (given here, e.g. from the loader, else -1).

        Parameters
        ----------
        sample_id : array of int of shape (batch,), optional
            Dataset indices of the batch's samples.

        Raises
        ------
        StreamShapeError
            A watched output's first dimension is not the batch, or ``sample_id`` has another
            length.
        """
        self._check_open()
        ids = (
            None
            if sample_id is None
            else np.asarray(
                sample_id.detach().cpu() if isinstance(sample_id, torch.Tensor) else sample_id
            )
            .astype(np.int64)
            .reshape(-1)
        )
        with self._hooks.attached("stream", self._put_stream_batch, ids):
            yield self

    def _put_stream_batch(self, arrays: dict[str, np.ndarray], ids: np.ndarray) -> None:
        self.writer_.put(
            StreamBatch(self.step_, ids, arrays), sum(a.nbytes for a in arrays.values())
        )

    def flush(self) -> None:
        """Block until everything recorded so far is written and committed."""
        self._check_open()
        self.writer_.flush()

    def close(self) -> None:
        """Take the final snapshot if due, flush, stop the writer, remove all hooks (idempotent)."""
        if self._closed:
            return
        try:
            if (
                self.final_snapshot
                and self.probe_ is not None
                and self.writer_.error is None
                and self._last_snapshot_step != self.step_
            ):
                self.snapshot()
        finally:
            self._close_quietly()
        self.writer_.check()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        # The loop raised: keep what is committed, never mask the user's exception.
        self._close_quietly()
        if self.writer_.error is not None:
            warnings.warn(f"the run's writer also failed: {self.writer_.error}", stacklevel=2)

    # ------------------------------------------------------------------ helpers
    @contextlib.contextmanager
    def _probe_mode(self) -> Iterator[None]:
        """Eval mode, no grad, forked RNG; restore every module's training flag afterwards."""
        flags = [(m, m.training) for m in self.root_.modules()]
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        try:
            self.root_.eval()
            with torch.no_grad(), torch.random.fork_rng(devices=devices):
                yield
        finally:
            for m, flag in flags:
                m.training = flag

    def _trial_forward(self, x: torch.Tensor) -> None:
        """Forward two probe samples now, so a shape error surfaces before training starts."""
        try:
            with self._probe_mode():
                self.root_(x[:2].to(self.device))
        except Exception as err:
            msg = (
                f"the model's forward failed on probe inputs of shape {tuple(x.shape)} "
                f"and dtype {x.dtype}: {err}. probe inputs must be a batch the model "
                "accepts, of shape (n_samples, ...)."
            )
            raise ProbeInputError(msg) from err

    def _probe_arrays(self, max_bytes: int) -> dict[str, np.ndarray]:
        if self.probe_ is None:
            return {}
        out: dict[str, np.ndarray] = {"sample_id": self.probe_.sample_id}
        x = self.probe_.inputs.detach().cpu()
        if x.numel() * x.element_size() <= max_bytes:
            out["inputs"] = x.numpy()
        if self.probe_.targets is not None:
            out["targets"] = self.probe_.targets
        return out

    def _root_attrs(self, config: Mapping[str, Any] | None, seed: int | None) -> dict[str, Any]:
        p = self.probe_
        return {
            "schema": schema.SCHEMA,
            "schema_version": schema.SCHEMA_VERSION,
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "toolkit_version": toolkit_version(),
            "torch_version": torch.__version__,
            "model_class": type(self.root_).__name__,
            "config": dict(config or {}),
            "seed": seed,
            "layers": list(self.layers_),
            "n_samples": p.n_samples if p else 0,
            "dtype": str(self.dtype).removeprefix("torch."),
            "weights": self.weights,
            "agop": list(self.agop_layers_),
            "probe_sha256": probe_digest(p.inputs.detach().cpu().numpy()) if p else None,
            schema.N_COMMITTED: 0,
            schema.N_METRIC_RECORDS: 0,
            schema.N_STREAM_ROWS: 0,
        }

    def _check_open(self) -> None:
        if self._closed:
            msg = (
                "this Recorder is closed; reopen the run with "
                f"Recorder(..., store={str(self.path)!r}, resume=True)."
            )
            raise RecorderClosedError(msg)
        self.writer_.check()

    def _close_quietly(self) -> None:
        self._hooks.detach()
        self._closed = True
        atexit.unregister(self._atexit)
        with contextlib.suppress(WriterError):
            self.writer_.close()

    def _atexit(self) -> None:
        with contextlib.suppress(Exception):
            self._close_quietly()
