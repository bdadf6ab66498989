"""Multi-process capture: this process's rank, and the group of the run store it records into.

Under `torch.distributed` (DDP), or given an explicit ``rank``/``world_size``, every process records
into its own group ``ranks/<r>`` of one run, laid out like a single-process run with its own commit
counters, so no array or chunk ever has two writers (docs/storage.md §2: one writer per array).
Rank 0 creates the root: the shared attrs and the full probe set.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy.typing as npt
import torch.distributed as dist
import zarr

from hooks import errors, schema
from hooks._appender import last_snapshot_step
from hooks._lock import WriterLock
from hooks._open import open_locked
from hooks._probe_set import ProbeSet
from hooks._resume import last_epoch, last_metric_step
from hooks._run_attrs import mismatch, probe_attrs, read_root_attrs
from hooks.errors import HooksError, RecorderConfigError, ResumeMismatchError, WriterError

# How long a rank other than 0 polls for rank 0's root when no torch.distributed can sync them.
ROOT_WAIT_S = 600.0
_POLL_S = 0.05


@dataclass(frozen=True)
class Ranks:
    """A process's place among the ``world_size`` processes recording one run."""

    rank: int = 0
    world_size: int = 1
    distributed: bool = False  # the ranks synchronise through torch.distributed


@dataclass
class GroupSpec:
    """What a new group of the run holds: its attrs and its ``probe/`` arrays."""

    attrs: dict[str, Any]
    probe: Mapping[str, npt.NDArray[Any]]


def resolve_ranks(rank: object, world_size: object) -> Ranks:
    """Return this process's `Ranks`: from torch.distributed when initialised, else the arguments.

    ``rank=0, world_size=1`` always means "this process records alone" (e.g. only rank 0 of a
    DDP job creates a Recorder): no collective call, the single-process layout.

    Raises
    ------
    RecorderConfigError
        Only one of ``rank``/``world_size`` is given, they are not ints with
        ``0 <= rank < world_size``, or they contradict the initialised process group.
    """
    if (rank is None) != (world_size is None):
        msg = (
            "'rank' and 'world_size' must be given together (or neither); "
            f"got rank={rank!r}, world_size={world_size!r}."
        )
        raise RecorderConfigError(msg)
    state = (
        (dist.get_rank(), dist.get_world_size())
        if dist.is_available() and dist.is_initialized()
        else None
    )
    if rank is None or world_size is None:
        r, w = state or (0, 1)
    else:
        ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (rank, world_size))
        if not ints or not 0 <= rank < world_size:  # type: ignore[operator]
            msg = (
                "'world_size' must be a positive int and 'rank' an int in [0, world_size); "
                f"got rank={rank!r}, world_size={world_size!r}."
            )
            raise RecorderConfigError(msg)
        if state is not None and state != (rank, world_size) and world_size != 1:
            msg = (
                f"rank={rank!r}, world_size={world_size!r} must match the initialised "
                f"torch.distributed process group (rank {state[0]} of {state[1]}); "
                "leave them out to take them from it (or pass rank=0, world_size=1 to record "
                "from this process alone)."
            )
            raise RecorderConfigError(msg)
        r, w = int(rank), int(world_size)  # type: ignore[call-overload]
    return Ranks(r, w, distributed=state is not None and w > 1)


def group_specs(
    attrs: dict[str, Any],
    full: ProbeSet | None,
    shard: ProbeSet | None,
    ranks: Ranks,
    max_input_bytes: int,
) -> tuple[GroupSpec, GroupSpec]:
    """Return the specs of the run's root and of this rank's group from the run's ``attrs``.

    The root holds the full probe set (inputs when at most ``max_input_bytes``); a rank group
    its shard (no inputs: the root has them), its own probe attrs, ``rank`` and ``world_size``.
    """
    root = GroupSpec(dict(attrs), full.arrays(max_input_bytes) if full else {})
    own = GroupSpec(dict(attrs), shard.arrays(-1) if shard else {})
    if ranks.world_size > 1:
        root.attrs[schema.WORLD_SIZE] = ranks.world_size
        own.attrs.update(probe_attrs(shard))
        own.attrs.update({schema.RANK: ranks.rank, schema.WORLD_SIZE: ranks.world_size})
    return root, own


def open_group(
    path: Path, ranks: Ranks, root: GroupSpec, own: GroupSpec, *, resume: bool, overwrite: bool
) -> tuple[zarr.Group, bool, list[WriterLock]]:
    """Create or reopen the group this process records into, locked for this process.

    Returns the group, whether it resumed, and the writer locks this process now holds (release
    them when the Recorder closes). One process: the run itself (``own`` is unused). Several:
    rank 0 creates or reopens the root from ``root`` first (and holds its lock), then every rank
    its ``ranks/<r>`` from ``own`` (one lock per rank group). Under torch.distributed a failure
    on any rank is raised on every rank (as the same error type), so none hangs in the first
    collective of training.

    Raises
    ------
    RecorderConfigError
        This rank's settings differ from the run's, ``overwrite=True`` on a rank other than 0
        without torch.distributed, or rank 0 never created the run.
    ResumeMismatchError
        As `RecorderConfigError` for settings, on resume.
    StoreLockedError
        Another live process writes the run or this rank's group.
    """
    if ranks.world_size == 1:
        single, resumed, lock = open_locked(
            path, root.attrs, root.probe, resume=resume, overwrite=overwrite
        )
        return single, resumed, [lock]
    resumed, locks = _open_root(path, ranks, root, resume=resume, overwrite=overwrite)
    sub = path / schema.rank_group(ranks.rank)
    group: zarr.Group | None = None
    err: Exception | None = None
    try:
        if ranks.rank:
            _check_same_run(path, ranks.rank, root.attrs, resume=resume)
        group, sub_resumed, lock = open_locked(
            sub, own.attrs, own.probe, resume=resume, overwrite=False
        )
        locks.append(lock)
        if not ranks.distributed and ranks.rank:
            resumed = sub_resumed
    except Exception as exc:
        if not ranks.distributed:
            _release(locks)
            raise
        err = exc
    if ranks.distributed:
        outcomes: list[Any] = [None] * ranks.world_size
        dist.all_gather_object(outcomes, None if err is None else (type(err).__name__, str(err)))
        failed = [(src, o) for src, o in enumerate(outcomes) if o is not None]
        if failed:
            _release(locks)
        if err is not None:
            raise err
        for src, outcome in failed:
            raise _forwarded(*outcome, src=src)
    assert group is not None  # every failure above raised
    return group, resumed, locks


def _release(locks: list[WriterLock]) -> None:
    for lock in locks:
        lock.release()


def resume_point(path: Path, ranks: Ranks, group: zarr.Group) -> tuple[int, int]:
    """Return the (step, epoch) a resumed Recorder continues from.

    The step is the last one any rank recorded (snapshot or metric), so every rank continues
    from the same step even where only rank 0 logged metrics; the epoch is this rank's last.
    """
    groups = [group]
    if ranks.world_size > 1:
        subs = [path / schema.rank_group(r) for r in range(ranks.world_size)]
        groups = [zarr.open_group(str(s), mode="r") for s in subs if (s / "zarr.json").is_file()]
    step = max(max(last_snapshot_step(g) or 0, last_metric_step(g)) for g in groups)
    return step, last_epoch(group)


def _open_root(
    path: Path, ranks: Ranks, root: GroupSpec, *, resume: bool, overwrite: bool
) -> tuple[bool, list[WriterLock]]:
    """Rank 0 creates or reopens the run's root, the others wait for it.

    Returns whether the root was resumed and the locks taken (rank 0: the root's).
    """
    outcome: tuple[bool, str, str] = (False, "", "")
    err = None
    locks: list[WriterLock] = []
    if ranks.rank == 0:
        try:
            _, resumed, lock = open_locked(
                path,
                root.attrs,
                root.probe,
                resume=resume,
                overwrite=overwrite,
                groups=(schema.RANKS,),
            )
            locks.append(lock)
            outcome = (resumed, "", "")
        except Exception as exc:
            if not ranks.distributed:
                raise
            err, outcome = exc, (False, type(exc).__name__, str(exc))
    elif not ranks.distributed:
        if overwrite:
            msg = (
                f"overwrite=True on rank {ranks.rank} needs torch.distributed to tell the new run "
                "from the old one; without it, pass overwrite=True on rank 0 only."
            )
            raise RecorderConfigError(msg)
        _wait_for_root(path, ranks.rank)
    if ranks.distributed:
        box: list[Any] = [outcome]
        dist.broadcast_object_list(box, src=0)
        outcome = box[0]
    if err is not None:
        raise err
    if outcome[1]:
        raise _forwarded(outcome[1], outcome[2], src=0)
    return outcome[0], locks


def _wait_for_root(path: Path, rank: int) -> None:
    deadline = time.monotonic() + ROOT_WAIT_S
    while (attrs := read_root_attrs(path)) is None or attrs.get("schema") != schema.SCHEMA:
        if time.monotonic() > deadline:
            msg = (
                f"rank {rank} waited {ROOT_WAIT_S:g} s for rank 0 to create the run at "
                f"{str(path)!r}; start rank 0 too (it creates the run's root), or initialise "
                "torch.distributed first so the ranks synchronise through it."
            )
            raise RecorderConfigError(msg)
        time.sleep(_POLL_S)


def _check_same_run(path: Path, rank: int, expected: Mapping[str, Any], *, resume: bool) -> None:
    diff = mismatch(read_root_attrs(path) or {}, expected)
    if diff:
        key, stored, wanted = diff
        msg = (
            f"every rank must record the same run; rank {rank} has {key}={wanted!r} but the run "
            f"at {str(path)!r} has {key}={stored!r}. Give every rank the same layers, probe set, "
            "dtype and world size."
        )
        raise (ResumeMismatchError if resume else RecorderConfigError)(msg)


def _forwarded(name: str, message: str, *, src: int) -> HooksError:
    """Return the error another rank raised, as the same `hooks.errors` type where it is one."""
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, HooksError)):
        cls = WriterError
    return cls(f"rank {src} could not open the run, so every rank stops: {message}")
