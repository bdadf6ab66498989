"""The pre-flight size estimate of a run: bytes per snapshot, snapshots planned, free space.

`planned_snapshots` counts a schedule's snapshots, `estimate_run` adds up one snapshot's arrays
(`hooks._sizes.measure`), weights and AGOPs, and `check_estimate` raises when the run cannot fit
on its file system and warns when it is large.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from hooks._extras import _WEIGHTED
from hooks._run_attrs import read_root_attrs
from hooks._sizes import ArraySize, format_bytes
from hooks._store import check_writable
from hooks.errors import StoreTooLargeError

__all__ = ["WARN_BYTES", "Estimate", "check_estimate", "estimate_run", "planned_snapshots"]

#: A run planned larger than this gets one `UserWarning` at construction.
WARN_BYTES = 10 << 30


@dataclass(frozen=True)
class Estimate:
    """A run's planned size (saved in its root attrs as ``estimate``).

    Attributes
    ----------
    bytes_per_snapshot : int
        Every array of one snapshot, all ranks together: activations (storage dtype, after
        ``reduce``), model outputs, inputs, weights and AGOPs when recorded.
    snapshots_planned : int or None
        Snapshots the schedule takes (None: unknown, e.g. an int ``every`` without ``max_steps``).
    total : int or None
        ``bytes_per_snapshot * snapshots_planned``.
    free_bytes : int
        Free space of the store's file system at construction.
    """

    bytes_per_snapshot: int
    snapshots_planned: int | None
    total: int | None
    free_bytes: int

    def attrs(self) -> dict[str, Any]:
        """Return the estimate as the JSON mapping of the run's ``estimate`` attr."""
        return asdict(self)

    def __str__(self) -> str:
        n = "an unknown number of" if self.snapshots_planned is None else self.snapshots_planned
        total = "" if self.total is None else f" = {format_bytes(self.total)}"
        return (
            f"{format_bytes(self.bytes_per_snapshot)} per snapshot x {n} snapshots planned"
            f"{total}; {format_bytes(self.free_bytes)} free"
        )


def planned_snapshots(
    every: object, max_steps: int | None, *, final_snapshot: bool, start: int = 0
) -> int | None:
    """Return how many snapshots from step ``start`` on a schedule takes (None: unknown).

    Known for a list of steps (those <= ``max_steps`` when given) and for an int ``every`` with
    ``max_steps`` (steps 0, N, 2N ... <= max_steps); the final snapshot at ``max_steps`` counts
    when ``final_snapshot`` and the schedule misses it. Predicates and ``None`` are unknown.

    Examples
    --------
    >>> planned_snapshots(10, 95, final_snapshot=True), planned_snapshots([0, 5, 50], None,
    ...     final_snapshot=True)
    (11, 3)
    """
    if isinstance(every, (int, np.integer)) and not isinstance(every, bool):
        if max_steps is None:
            return None
        steps = set(range(0, max_steps + 1, int(every)))
    elif isinstance(every, Iterable) and not callable(every):
        steps = {int(s) for s in every}
        if max_steps is not None:
            steps = {s for s in steps if s <= max_steps}
    else:
        return None
    if final_snapshot and max_steps is not None:
        steps.add(max_steps)
    return sum(1 for s in steps if s >= start)


def estimate_run(
    sizes: list[ArraySize],
    *,
    n_samples: int,
    world_size: int,
    weights: dict[str, nn.Module],
    agop: dict[str, nn.Module],
    snapshots: int | None,
    path: Path,
) -> Estimate:
    """Return the estimate of a run from one rank's measured arrays and the whole probe set.

    Per-sample arrays count for all ``n_samples`` (the ranks' shards together), batch-less
    arrays and AGOPs once per rank, weights once (rank 0 records them), all in float32 except
    the activations (already in the storage dtype in ``sizes``).
    """
    per_snapshot = sum(s.nbytes * n_samples for s in sizes if s.per_sample)
    per_snapshot += world_size * sum(s.nbytes for s in sizes if not s.per_sample)
    for module in weights.values():
        w = getattr(module, "weight", None)
        if isinstance(module, _WEIGHTED) and w is not None:
            per_snapshot += 4 * w.numel()
    for module in agop.values():
        d = module.get_parameter("weight")[0].numel()  # AGOP: (in, in), in = in or in*kh*kw
        per_snapshot += world_size * 4 * d * d
    total = None if snapshots is None else per_snapshot * snapshots
    return Estimate(per_snapshot, snapshots, total, free_space(path))


def free_space(path: Path) -> int:
    """Return the free bytes of the file system holding ``path`` (or its nearest parent)."""
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return int(shutil.disk_usage(p).free)


def check_estimate(estimate: Estimate, *, check_space: bool) -> None:
    """Raise when the planned run exceeds the free space; warn when it exceeds `WARN_BYTES`.

    Without a planned total, one snapshot is compared.

    Raises
    ------
    StoreTooLargeError
        ``check_space`` and the planned bytes exceed the file system's free space.
    """
    planned = estimate.total if estimate.total is not None else estimate.bytes_per_snapshot
    fixes = (
        "record fewer layers, reduce them (reduce={'h.*': 'mean'}), store float16 "
        "(dtype='float16') or take fewer snapshots"
    )
    if check_space and planned > estimate.free_bytes:
        msg = (
            f"the run must fit in the store's free space; got {estimate} "
            f"({format_bytes(planned - estimate.free_bytes)} short). To fix: {fixes}; or pass "
            "check_space=False to record anyway."
        )
        raise StoreTooLargeError(msg)
    if planned > WARN_BYTES:
        msg = (
            f"the run will take {format_bytes(planned)}: {estimate}. If that is more than you "
            f"meant: {fixes}."
        )
        warnings.warn(msg, UserWarning, stacklevel=3)


def preflight(
    sizes: list[ArraySize],
    *,
    n_samples: int,
    world_size: int,
    weights: dict[str, nn.Module],
    agop: dict[str, nn.Module],
    every: object,
    max_steps: int | None,
    final_snapshot: bool,
    resume: bool,
    path: Path,
    check_space: bool,
) -> Estimate:
    """Estimate the run before training starts and compare it with the free space.

    ``sizes`` come from one measuring forward (`hooks._sizes.measure`); a resumed run counts
    only the snapshots after its last step.

    Raises
    ------
    StoreNotWritableError
        The store's folder cannot be written (told as such, not as a full disk).
    StoreTooLargeError
        The planned run does not fit in the free space (and ``check_space``).
    """
    check_writable(path.parent)
    start = (read_root_attrs(path) or {}).get("last_step") if resume else None
    estimate = estimate_run(
        sizes,
        n_samples=n_samples,
        world_size=world_size,
        weights=weights,
        agop=agop,
        snapshots=planned_snapshots(
            every,
            max_steps,
            final_snapshot=final_snapshot,
            start=0 if start is None else int(start) + 1,
        ),
        path=path,
    )
    check_estimate(estimate, check_space=check_space)
    return estimate
