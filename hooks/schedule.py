"""Snapshot schedules: every N steps, an explicit list of steps, a predicate or log-spaced steps."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from hooks.errors import RecorderConfigError

__all__ = ["Schedule", "as_schedule", "log_schedule"]

Schedule = Callable[[int], bool]


def log_schedule(n_steps: int, n_points: int = 50, *, include_zero: bool = True) -> list[int]:
    """Return about ``n_points`` sorted, unique log-spaced int steps in ``[1, n_steps]`` (plus 0).

    Early training changes fastest, so snapshots are dense at the start and sparse later.

    Parameters
    ----------
    n_steps : int
        The last step (included).
    n_points : int
        Number of log-spaced points before rounding removes duplicates.
    include_zero : bool
        Also include step 0 (the initialisation).

    Raises
    ------
    RecorderConfigError
        ``n_steps`` or ``n_points`` is not a positive int.

    Examples
    --------
    >>> log_schedule(100, 5)
    [0, 1, 3, 10, 32, 100]
    """
    for name, value in (("n_steps", n_steps), ("n_points", n_points)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            msg = f"{name!r} must be a positive int; got {value!r}."
            raise RecorderConfigError(msg)
    steps = np.unique(np.rint(np.geomspace(1, n_steps, n_points)).astype(int)).tolist()
    return ([0] if include_zero else []) + [int(s) for s in steps]


def as_schedule(every: int | Iterable[int] | Schedule | None) -> Schedule:
    """Return a predicate ``due(step) -> bool`` from a Recorder's ``every`` argument.

    Raises
    ------
    RecorderConfigError
        ``every`` is not a positive int, an iterable of non-negative ints, a callable or None.
    """
    if every is None:
        return lambda step: False
    if isinstance(every, bool):
        pass
    elif isinstance(every, (int, np.integer)):
        if every >= 1:
            n = int(every)
            return lambda step: step % n == 0
    elif callable(every):
        return lambda step: bool(every(step))
    elif isinstance(every, Iterable) and not isinstance(every, (str, bytes)):
        steps = list(every)
        if all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in steps
        ):
            wanted = {int(s) for s in steps}
            return wanted.__contains__
    msg = (
        "'every' must be a positive int, a list of non-negative int steps, a callable "
        f"step -> bool or None; got {every!r}. "
        "Example: every=100 or every=hooks.log_schedule(5000)."
    )
    raise RecorderConfigError(msg)
