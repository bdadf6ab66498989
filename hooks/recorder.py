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

import torch
from torch import nn

from hooks._batch_dim import resolve_batch_dims
from hooks._checks import check_int
from hooks._estimate import Estimate, check_estimate, estimate_run, planned_snapshots
from hooks._extras import snapshot_extras
from hooks._hookset import HookSet
from hooks._options import (
    check_flags,
    check_store_arg,
    parse_compressors,
    parse_device,
    parse_dtype,
    parse_writer,
)
from hooks._probe_forward import probe_mode
from hooks._probe_set import ProbeSet, make_probe_set
from hooks._ranks import group_specs, open_group, resolve_ranks, resume_point
from hooks._run_attrs import read_root_attrs, run_attrs
from hooks._sizes import measure
from hooks._steps import as_sample_ids, check_epoch, next_step, validated_metrics
from hooks._store import check_writable, store_path
from hooks._writer_process import make_writer
from hooks.agop import agop_layers
from hooks.errors import RecorderClosedError, RecorderConfigError, WriterError
from hooks.layers import LayerSelector, resolve_layers, select_recorded, unwrap_model
from hooks.reduce import resolve_reduce
from hooks.schedule import Schedule, as_schedule
from hooks.writer import MetricRecord, Snapshot, StreamBatch

__all__ = ["Recorder"]


class Recorder:
    """Record hidden activations of ``model`` on a fixed probe set into a step-indexed zarr run.

    Parameters
    ----------
    model : nn.Module
        Any module; `torch.compile` and DDP wrappers are seen through (hooks go on the wrapped
        module).
    layers : str, type, callable or a list of them
        Dotted names, globs (``"encoder.*"``: the children of ``encoder``; ``"encoder.**"``: it
        and every descendant), module types (``nn.Linear``) or predicates
        ``f(name, module) -> bool``; see `hooks.resolve_layers`, and `hooks.list_layers` to
        preview a selection. Resolved here, before training starts.
    store : str or path
        Folder of the run store (zarr v3), created if missing.
    probe : tensor, or tuple (x, y) or (x, y, sample_id), optional
        Fixed probe inputs of shape (n_samples, ...) with optional targets and dataset indices.
        Needed for snapshots; without it only `step` metrics and `watch` streams are recorded.
    every : int, list of int or callable, optional
        Snapshot schedule over optimizer steps: every N steps (step 0 included), the listed steps
        (e.g. `hooks.log_schedule`), or a predicate ``step -> bool``. None: only explicit
        `snapshot`.
    max_steps : int, optional
        The last step training will reach, for the size estimate: with an int ``every`` it makes
        the number of snapshots known (a list of steps is counted as given, up to it).
    check_space : bool
        Refuse to start (`StoreTooLargeError`) when the planned run is larger than the free
        space of the store's file system. Either way, a run planned over
        `hooks._estimate.WARN_BYTES` (10 GiB) gives one `UserWarning`.
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
        Continue an existing run at ``store`` (same layers, probe inputs, dtype, weights and
        agop); creates it if missing. Rows a killed writer left uncommitted are discarded, once
        the run's commit counters are checked against its data; the step counter continues
        from the last recorded step (`step_`; with several processes, the last step any rank
        recorded), and no snapshot is taken at construction.
    overwrite : bool
        Replace an existing run at ``store`` (never one that a live process still records).
    final_snapshot : bool
        On a clean exit, snapshot the last step if it is not snapshotted yet.
    compressors : {None, "zstd", "blosc"} or zarr codecs, optional
        Compression of recorded arrays (default None: raw bytes; dense float data barely
        compresses).
    max_queue_bytes : int
        Memory budget of arrays waiting for the writer; beyond it the training thread waits.
    writer : {"thread", "process"}
        Who writes the store. ``"thread"`` (default): a background thread of this process.
        ``"process"`` (Linux): a child process fed through shared memory, which shares no
        GIL with training: use it for CPU-bound training loops, where the thread's GIL
        hand-offs slow training (`benchmarks/capture_overhead.py`). It costs a process start
        (about 1 s) and a copy of each snapshot into shared memory.
    config : mapping, optional
        Experiment settings saved as JSON in the run's attrs (``config``).
    seed : int, optional
        Saved in the run's attrs.
    store_probe_inputs : int
        Save the probe inputs in ``probe/inputs`` when they take at most this many bytes.
    rank, world_size : int, optional
        This process's rank among ``world_size`` recording processes. Taken from
        `torch.distributed` when it is initialised, and then every rank must create its
        Recorder (the ranks synchronise once, here); give them (together) for other launchers,
        or ``rank=0, world_size=1`` to record from one process of a DDP job alone.
    log_all_ranks : bool
        With several processes, keep the metrics of every rank (each in its own group), not only
        rank 0's.
    batch_dim : mapping of layer selector to int or None, optional
        The batch dimension of the selected layers' outputs, e.g. ``{"encoder.*": 1}`` for a
        sequence-first encoder, None for an output with no batch dimension. Every recorded
        array is stored batch first, ``(snapshot, sample, ...)``: the batch dimension is this
        option, else a rule for ``nn.RNN``/``nn.LSTM``/``nn.GRU`` (``h_n``/``c_n`` at 1),
        ``nn.MultiheadAttention`` and ``nn.Transformer*`` (from ``batch_first``), else the one
        dimension that follows the batch size in two small forwards (2 and 3 samples) run
        once before the first recorded one. An output
        with no such dimension whose value every probe batch repeats (a position table) is
        stored once per snapshot, ``(snapshot, ...)``. The module's own layout is kept in the
        array's attributes (``batch_dim``, ``batch_dim_source``, ``source_shape``).
    inputs : bool, str, type, callable or a list of them
        Also record what the selected recorded layers receive (all of them: True), by the same
        batch rules, as ``layers/<name>/inputs`` (a lone positional tensor) or
        ``inputs.<position>`` and ``inputs.<keyword>``; read them with
        ``Run.acts(layer, key="inputs")``.
    reduce : mapping of layer selector to reduction, optional
        Store less of the selected layers' per-sample arrays (outputs and inputs), reduced on
        the hook path after the batch dimension is moved first: ``"mean"`` or
        ``hooks.TokenMean(mask=...)`` over tokens (dim 1), ``"last"`` or
        ``hooks.LastToken(mask=...)``, ``hooks.Positions([0, -1])``,
        ``hooks.RandomProjection(k=64, seed=0)`` of the feature (last) dimension, or a tuple
        applied left to right, e.g. ``{"h.*": ("mean", hooks.RandomProjection(k=64))}``.
        Masks are ``(n_samples, tokens)`` over the probe set (snapshots only). The reduction
        is kept in the array's attributes (``reduce``); see `hooks.reduce`.

    Attributes
    ----------
    estimate_ : Estimate or None
        The pre-flight size estimate (None without a probe set); see Notes.

    Raises
    ------
    StoreTooLargeError
        The planned run is larger than the free space (``check_space=True``).
    StoreLockedError
        Another live process records the run at ``store``.
    StoreExistsError
        ``store`` holds a run and neither ``resume`` nor ``overwrite`` is given.
    ResumeMismatchError
        ``resume=True`` with other layers, probe inputs, dtype, weights or agop than the run's.
    StoreCorruptError
        ``resume=True`` on a run whose commit counters contradict its data.
    RecorderConfigError, LayerNotFoundError, ProbeInputError
        An argument is invalid; the message says which and how to fix it.

    Notes
    -----
    Before creating the store, the Recorder forwards three probe samples with its hooks
    (eval mode, no grad, RNG restored; this forward also learns the batch layouts, and replaces
    the check that the model accepts the probe inputs) and sums what one snapshot stores:
    every recorded array in the storage dtype after ``reduce``, the model outputs, and weights
    and AGOPs when recorded. Times the snapshots planned (a list ``every``, or an int ``every``
    with ``max_steps``), it is compared with the free space of the store's file system. The
    estimate is in ``rec.estimate_`` and in the run's root attrs (``estimate``:
    ``bytes_per_snapshot``, ``snapshots_planned``, ``total``, ``free_bytes``).

    The Recorder holds the run's writer lock (an OS lock on its folder) from construction to
    `close`, so a second Recorder on the same store raises `StoreLockedError`; the lock dies
    with the process, so a crashed run can be resumed at once.

    With several processes (DDP), every rank records into its own group ``ranks/<r>`` of one
    run, laid out like a single-process run with its own commit counters, so no array has two
    writers. Every rank is given the same probe set and records its shard ``rank::world_size``
    (positions kept in ``probe/index``); weights are recorded by rank 0 (they are replicated),
    AGOPs per shard; each rank streams its own batches. Rank 0 creates the run's root (attrs and
    the full probe set). `probe.open_run` presents the merged view.

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
        writer: str = "thread",
        config: Mapping[str, Any] | None = None,
        seed: int | None = None,
        store_probe_inputs: int = 64 << 20,
        rank: int | None = None,
        world_size: int | None = None,
        log_all_ranks: bool = False,
        batch_dim: Mapping[LayerSelector, int | None] | None = None,
        inputs: bool | LayerSelector | Iterable[LayerSelector] = False,
        reduce: Mapping[LayerSelector, object] | None = None,
        max_steps: int | None = None,
        check_space: bool = True,
    ) -> None:
        self.model = model
        self.root_ = unwrap_model(model)
        self.layers_ = resolve_layers(self.root_, layers)
        check_store_arg(store)
        if isinstance(every, Iterator):
            every = list(every)  # read twice: by the schedule and by the size estimate
        self._due = as_schedule(every)
        self.dtype = parse_dtype(dtype)
        parse_compressors(compressors)  # fail before anything touches the disk
        writer = parse_writer(writer)
        self.batch_size = check_int(batch_size, "'batch_size'")
        max_queue_bytes = check_int(
            max_queue_bytes, "'max_queue_bytes'", hint="It is a byte budget, e.g. 256 << 20."
        )
        if seed is not None:
            seed = check_int(seed, "'seed'", minimum=0, hint="It is saved in the run's attrs.")
        check_int(store_probe_inputs, "'store_probe_inputs'", minimum=0, hint="It is in bytes.")
        if config is not None and not isinstance(config, Mapping):
            msg = f"'config' must be a mapping (e.g. a dict of settings) or None; got {config!r}."
            raise RecorderConfigError(msg)
        check_flags(
            weights=weights,
            resume=resume,
            overwrite=overwrite,
            final_snapshot=final_snapshot,
            log_all_ranks=log_all_ranks,
            check_space=check_space,
        )
        if max_steps is not None:
            max_steps = check_int(max_steps, "'max_steps'", minimum=0, hint="It is a step count.")
        self.ranks_ = resolve_ranks(rank, world_size)
        self.weights = bool(weights) and self.ranks_.rank == 0  # replicated across ranks
        self.agop_layers_ = agop_layers(self.root_, self.layers_, agop, has_probe=probe is not None)
        self.final_snapshot = final_snapshot
        self._log_metrics = self.ranks_.rank == 0 or log_all_ranks
        params = list(self.root_.parameters())
        self.device = (
            parse_device(device)
            if device is not None
            else (params[0].device if params else torch.device("cpu"))
        )
        param_dtype = next((p.dtype for p in params if p.is_floating_point()), None)
        full: ProbeSet | None = None
        if probe is not None:
            full = make_probe_set(probe, sample_id, param_dtype)
        elif every is not None:
            msg = "'every' schedules snapshots of the probe set, so 'probe' must be given too."
            raise RecorderConfigError(msg)
        multi = self.ranks_.world_size > 1
        self.probe_ = full
        if full is not None and multi:
            self.probe_ = full.shard(self.ranks_.rank, self.ranks_.world_size)
        self.path = store_path(store)
        self._closed = False
        self._hooks = HookSet(
            self.root_,
            self.layers_,
            self.dtype,
            resolve_batch_dims(self.root_, self.layers_, batch_dim),
            select_recorded(self.root_, self.layers_, inputs, "inputs"),
            resolve_reduce(self.root_, self.layers_, reduce),
        )
        self.estimate_: Estimate | None = None
        if full is not None and self.probe_ is not None:
            check_writable(self.path.parent)  # an unwritable place is told as such, not as full
            start = (read_root_attrs(self.path) or {}).get("last_step") if resume else None
            self.estimate_ = estimate_run(
                measure(self._hooks, self.probe_.inputs, self.device),
                n_samples=full.n_samples,
                world_size=self.ranks_.world_size,
                weights=self.layers_ if weights else {},
                agop=self.agop_layers_,
                snapshots=planned_snapshots(
                    every,
                    max_steps,
                    final_snapshot=final_snapshot,
                    start=0 if start is None else int(start) + 1,
                ),
                path=self.path,
            )
            check_estimate(self.estimate_, check_space=check_space)
        attrs = run_attrs(
            model_class=type(self.root_).__name__,
            layers=list(self.layers_),
            probe=full,
            dtype=self.dtype,
            weights=bool(weights),
            agop=list(self.agop_layers_),
            config=config,
            seed=seed,
            estimate=None if self.estimate_ is None else self.estimate_.attrs(),
        )
        root, own = group_specs(attrs, full, self.probe_, self.ranks_, store_probe_inputs)
        own.attrs["weights"] = self.weights
        group, resumed, self._locks = open_group(
            self.path, self.ranks_, root, own, resume=resume, overwrite=overwrite
        )
        try:
            self.step_, self.epoch = (
                resume_point(self.path, self.ranks_, group) if resumed else (0, 0)
            )
            self.writer_ = make_writer(
                writer, group, max_bytes=max_queue_bytes, compressors=parse_compressors(compressors)
            )
        except BaseException:
            self._release_locks()
            raise
        self._last_snapshot_step: int | None = self.writer_.last_step
        atexit.register(self._atexit)
        # A fresh run snapshots its initial state when due; a resumed one does not, because the
        # model it is handed (e.g. from a checkpoint) need not be the state at the last step.
        if self.probe_ is not None and not resumed and self._due(self.step_):
            try:
                self.snapshot()
            except BaseException:  # no Recorder to close: do not leave the run locked
                self._close_quietly()
                raise

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
            The current epoch (>= 0), saved with metrics and snapshots from now on.
        **metrics : float or 0-d tensor
            Scalars such as ``loss=loss`` (tensors are converted off the training thread). Each
            name becomes the array ``metrics/<name>``: 1 to 128 characters, a letter, digit or
            ``_`` then letters, digits, ``_ . - @`` (``loss``, ``val.loss``, ``acc@1``), not
            ``__...``, ``step`` or ``epoch`` (`hooks._steps.METRIC_NAME_RULE`).

        Raises
        ------
        StepOrderError
            ``step`` is not an int larger than the last step.
        RecorderConfigError
            ``epoch`` is not a non-negative int, a metric name breaks the rule above, or a
            metric value is not a real number or a one-element real tensor.
        WriterError
            The background writer failed earlier (e.g. disk full).
        """
        self._check_open()
        metrics = validated_metrics(metrics)
        epoch = self.epoch if epoch is None else check_epoch(epoch)
        self.step_ = next_step(self.step_, step)
        self.epoch = epoch
        self._put_metrics(metrics)
        if self.probe_ is not None and self._due(self.step_):
            self.snapshot()

    def log(self, **metrics: Any) -> None:
        """Log scalar metrics at the current step without advancing it (e.g. test accuracy).

        Raises
        ------
        RecorderConfigError
            A metric name breaks the rule of `step`, or a value is not a real number or a
            one-element real tensor.
        """
        self._check_open()
        self._put_metrics(validated_metrics(metrics))

    def _put_metrics(self, metrics: dict[str, Any]) -> None:
        if metrics and self._log_metrics:
            self.writer_.put(MetricRecord(self.step_, self.epoch, metrics), 64 * len(metrics))

    def snapshot(self) -> None:
        """Forward the probe set in eval mode without gradients and record the selected layers.

        Every module's train/eval flag and the RNG state are restored afterwards, so the training
        trajectory is unchanged. A second snapshot at the same step is skipped.

        Raises
        ------
        RecorderConfigError
            The Recorder was created without a probe set.
        BatchDimError
            A recorded output's batch dimension is ambiguous (two dimensions of the batch
            size) or not where ``batch_dim`` or a module rule puts it.
        BatchlessOutputError
            An output with no batch dimension differs between probe batches.
        """
        self._check_open()
        if self.probe_ is None:
            msg = "snapshot() needs a probe set; create the Recorder with probe=(x, y)."
            raise RecorderConfigError(msg)
        if self._last_snapshot_step == self.step_:
            return
        x = self.probe_.inputs
        with probe_mode(self.root_, self.device), self._hooks.attached("probe", n_rows=x.shape[0]):
            for i in range(0, x.shape[0], self.batch_size):
                batch = x[i : i + self.batch_size]
                self._hooks.begin_batch(i, batch.shape[0])
                self.root_(batch.to(self.device, non_blocking=True))
        ready, arrays = self._hooks.ready(), self._hooks.take()
        dims = {k: self._hooks.layouts.dims(k, a.ndim) for k, a in arrays.items()}
        attrs = self._hooks.array_attrs(arrays)
        more, more_dims = snapshot_extras(  # after the no-grad probe mode: AGOP needs backward
            self.root_,
            self.layers_,
            self.agop_layers_,
            x,
            weights=self.weights,
            batch_size=self.batch_size,
            device=self.device,
        )
        arrays.update(more)
        dims.update(more_dims)
        snap = Snapshot(self.step_, self.epoch, time.time(), arrays, dims, ready, attrs)
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
        ProbeInputError
            ``sample_id`` holds no integers >= 0.
        """
        self._check_open()
        with self._hooks.attached("stream", self._put_stream_batch, as_sample_ids(sample_id)):
            yield self

    def _put_stream_batch(
        self, arrays: dict[str, Any], ids: Any, ready: Any, attrs: dict[str, Any]
    ) -> None:
        self.writer_.put(
            StreamBatch(self.step_, ids, arrays, ready, attrs),
            sum(a.nbytes for a in arrays.values()),
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
        try:
            with contextlib.suppress(WriterError):
                self.writer_.close()
        finally:
            self._release_locks()

    def _release_locks(self) -> None:
        """Free the run's writer lock: another Recorder may now resume or overwrite it."""
        for lock in self._locks:
            lock.release()

    def _atexit(self) -> None:
        with contextlib.suppress(Exception):
            self._close_quietly()
