"""`Recorder`: attach to a training loop, snapshot a fixed probe set, stream training batches.

Hooks exist only while the Recorder itself forwards the probe set (`snapshot`) or while the user's
forward runs inside `watch`; otherwise the model carries no hook at all, and `close` (also on error)
removes every handle it registered.
"""

from __future__ import annotations

import atexit
import contextlib
import warnings
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any

import torch
from torch import nn

from hooks._batch_dim import resolve_batch_dims
from hooks._estimate import Estimate, preflight
from hooks._hookset import HookSet
from hooks._options import (
    check_flags,
    check_settings,
    check_store_arg,
    model_device,
    parse_compressors,
    parse_dtype,
    parse_writer,
)
from hooks._probe_set import probe_sets
from hooks._ranks import group_specs, resolve_ranks
from hooks._run_attrs import run_attrs
from hooks._sizes import measure
from hooks._snapshot import capture_snapshot
from hooks._start import start_recording
from hooks._steps import as_sample_ids, check_epoch, next_step, validated_metrics
from hooks._store import store_path
from hooks.agop import agop_layers
from hooks.errors import RecorderClosedError, RecorderConfigError, WriterError
from hooks.layers import LayerSelector, resolve_layers, select_recorded, unwrap_model
from hooks.reduce import resolve_reduce
from hooks.schedule import Schedule, as_schedule
from hooks.writer import MetricRecord, StreamBatch

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
        The last step training will reach: with an int ``every``, the size estimate's count.
    check_space : bool
        Refuse to start when the planned run exceeds the free space (a run over 10 GiB warns).
    sample_id : array of int, optional
        Dataset indices of the probe samples (default ``arange(n_samples)``).
    weights : bool
        Also record the weight of every selected Linear/Conv layer, as (out, in[*kh*kw]).
    agop : bool, str, type, callable or a list of them
        Also record the AGOP w.r.t. the layer input (`hooks.agop.agop`) of every recorded
        Linear/Conv2d layer (True) or the selected ones, as ``layers/<name>/agop`` (in, in): one
        backward pass per model output and probe batch; ``.grad`` and the RNG are untouched.
    dtype : {"float32", "float16"} or torch.dtype
        Storage dtype of floating activations.
    batch_size : int
        Probe samples per forward pass in a snapshot.
    device : torch.device or str, optional
        Where probe batches are sent (default: the device of the model's first parameter).
    resume : bool
        Continue the run at ``store`` (same layers, probe, dtype, weights, agop), or create it.
        Uncommitted rows are discarded once the counters are checked against the data; `step_`
        continues from the last step any rank recorded; no snapshot is taken at construction.
    overwrite : bool
        Replace an existing run at ``store`` (never one that a live process still records).
    final_snapshot : bool
        On a clean exit, snapshot the last step if it is not snapshotted yet.
    compressors : {None, "zstd", "blosc"} or zarr codecs, optional
        Compression of recorded arrays (None: raw bytes; dense floats barely compress).
    max_queue_bytes : int
        Memory budget of arrays waiting for the writer; beyond it the training thread waits.
    writer : {"thread", "process"}
        Who writes the store: a background thread (default), or (Linux) a child process fed
        through shared memory, which shares no GIL with a CPU-bound training loop; it costs a
        process start and a copy of each snapshot (`benchmarks/capture_overhead.py`).
    config : mapping, optional
        Experiment settings saved as JSON in the run's attrs (``config``).
    seed : int, optional
        Saved in the run's attrs.
    store_probe_inputs : int
        Save the probe inputs in ``probe/inputs`` when they take at most this many bytes.
    rank, world_size : int, optional
        This process's rank among the recording processes: from `torch.distributed` when it is
        initialised (every rank must then create its Recorder), else given together;
        ``rank=0, world_size=1`` records from one process of a DDP job alone.
    log_all_ranks : bool
        With several processes, keep every rank's metrics (each in its group), not rank 0's only.
    batch_dim : mapping of layer selector to int or None, optional
        The batch dimension of the selected layers' outputs (``{"encoder.*": 1}``; None: no
        batch dimension). Every array is stored batch first, ``(snapshot, sample, ...)``: the
        batch dimension is this option, else a module rule (RNN/LSTM/GRU, MultiheadAttention,
        Transformer*), else inferred (`hooks._batch_dim`; kept in the array's attributes); an
        output every probe batch repeats (a position table) is stored once per snapshot.
    inputs : bool, str, type, callable or a list of them
        Also record what the selected recorded layers receive (all of them: True), by the same
        batch rules, as ``layers/<name>/inputs`` (a lone positional tensor) or
        ``inputs.<position>`` and ``inputs.<keyword>``; read them with
        ``Run.acts(layer, key="inputs")``.
    reduce : mapping of layer selector to reduction, optional
        Store less of the selected layers' arrays, reduced on the hook path once the batch is
        first: ``"mean"``/``hooks.TokenMean(mask)`` or ``"last"``/``hooks.LastToken(mask)`` over
        tokens (dim 1), ``hooks.Positions([0, -1])``, ``hooks.RandomProjection(k, seed)`` of
        the last dimension, or a tuple of them; see `hooks.reduce`.

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
    Before creating the store, the Recorder forwards three probe samples with its hooks (eval
    mode, no grad, RNG restored; it also learns the batch layouts) and sums what one snapshot
    stores; times the snapshots planned, this is compared with the free space
    (`hooks._estimate.preflight`) and kept in ``rec.estimate_`` and the root attr ``estimate``.

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
        self.batch_size, max_queue_bytes, seed, max_steps = check_settings(
            batch_size=batch_size,
            max_queue_bytes=max_queue_bytes,
            seed=seed,
            store_probe_inputs=store_probe_inputs,
            config=config,
            max_steps=max_steps,
        )
        check_flags(
            weights=weights,
            resume=resume,
            overwrite=overwrite,
            final_snapshot=final_snapshot,
            log_all_ranks=log_all_ranks,
            check_space=check_space,
        )
        self.ranks_ = resolve_ranks(rank, world_size)
        self.weights = bool(weights) and self.ranks_.rank == 0  # replicated across ranks
        self.agop_layers_ = agop_layers(self.root_, self.layers_, agop, has_probe=probe is not None)
        self.final_snapshot = final_snapshot
        self._log_metrics = self.ranks_.rank == 0 or log_all_ranks
        self.device = model_device(self.root_, device)
        full, self.probe_ = probe_sets(self.root_, probe, sample_id, every, self.ranks_)
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
            self.estimate_ = preflight(
                measure(self._hooks, self.probe_.inputs, self.device),
                n_samples=full.n_samples,
                world_size=self.ranks_.world_size,
                weights=self.layers_ if weights else {},
                agop=self.agop_layers_,
                every=every,
                max_steps=max_steps,
                final_snapshot=final_snapshot,
                resume=resume,
                path=self.path,
                check_space=check_space,
            )
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
        started = start_recording(
            self.path,
            self.ranks_,
            root,
            own,
            resume=resume,
            overwrite=overwrite,
            writer=writer,
            max_bytes=max_queue_bytes,
            compressors=parse_compressors(compressors),
        )
        self._locks, self.writer_ = started.locks, started.writer
        self.step_, self.epoch, resumed = started.step, started.epoch, started.resumed
        self._last_snapshot_step: int | None = self.writer_.last_step
        atexit.register(self._atexit)
        # A resumed run takes no snapshot now: its model (e.g. from a checkpoint) need not be the
        # state at the last step.
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
            Scalars such as ``loss=loss`` (tensors are converted off the training thread), each
            stored as ``metrics/<name>``; names follow `hooks._steps.METRIC_NAME_RULE`
            (``loss``, ``val.loss``, ``acc@1``; not ``step`` or ``epoch``).

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
        snap = capture_snapshot(
            self.root_,
            self._hooks,
            self.probe_.inputs,
            step=self.step_,
            epoch=self.epoch,
            batch_size=self.batch_size,
            device=self.device,
            layers=self.layers_,
            agop_layers=self.agop_layers_,
            weights=self.weights,
        )
        self.writer_.put(snap, sum(a.nbytes for a in snap.arrays.values()))
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
        finally:  # another Recorder may now resume or overwrite the run
            for lock in self._locks:
                lock.release()

    def _atexit(self) -> None:
        with contextlib.suppress(Exception):
            self._close_quietly()
