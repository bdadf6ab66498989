"""Map a function over named items as engine tasks, with one progress bar and failures kept.

`run_tasks` submits one task per item (to a dask ``Client``, or runs them in this process
when given none), shows running/finished/failed counts on a tqdm bar, and returns every
item's result or the traceback of its failure. A task whose worker died is rescheduled by the
scheduler up to its ``allowed-failures`` and then fails with ``KilledWorker``; an exception
raised by the function fails the task at once (it would fail the same way again). Only as
many tasks as the cluster has worker threads are submitted at a time: the scheduler charges a
dead worker's death to every task assigned to it, so a worker must hold no task it does not
run, and a worker that joins gets work at the next check.
"""

from __future__ import annotations

import contextlib
import itertools
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from probe.errors import EngineError

if TYPE_CHECKING:
    from distributed import Client, Future

__all__ = ["TaskOutcome", "gather_map", "run_tasks"]

#: Seconds between checks for new workers while no task settles.
POLL_S = 0.5


@dataclass
class TaskOutcome:
    """Results by item name, and the traceback text of each failed item."""

    results: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


class _Bar:
    """A tqdm bar over items whose postfix counts running, finished and failed ones."""

    def __init__(self, total: int, initial: int, desc: str, unit: str, show: bool) -> None:
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not show)
        self.finished, self.failed, self.running = initial, 0, 0

    def count(self, *, failed: bool = False) -> None:
        if failed:
            self.failed += 1
        else:
            self.finished += 1
        self.show()
        self.bar.update()

    def show(self, running: int | None = None) -> None:
        if running is not None:
            self.running = running
        self.bar.set_postfix(
            running=self.running, finished=self.finished, failed=self.failed, refresh=False
        )
        self.bar.refresh()


def _format(exc: BaseException, tb: Any) -> str:
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _in_process(
    fn: Callable[..., Any], jobs: Mapping[str, tuple[Any, ...]], bar: _Bar
) -> TaskOutcome:
    out = TaskOutcome()
    for name, args in jobs.items():
        bar.show(running=1)
        try:
            out.results[name] = fn(*args)
        except Exception:
            out.failed[name] = traceback.format_exc()
        bar.count(failed=name in out.failed)
    return out


def _collect(fut: Future[Any], name: str, out: TaskOutcome) -> bool:
    """Store one settled future's result or failure; return whether it failed."""
    if fut.status == "finished":
        out.results[name] = fut.result()
        return False
    if fut.status == "cancelled":
        msg = (
            f"the dask scheduler dropped task {name!r} (scheduler lost or restarted). Finished "
            "items are kept: run the same command again to resume."
        )
        raise EngineError(msg)
    exc = fut.exception()
    out.failed[name] = _format(exc, fut.traceback())
    return True


def _on_cluster(
    client: Client, fn: Callable[..., Any], jobs: Mapping[str, tuple[Any, ...]], bar: _Bar
) -> TaskOutcome:
    """Keep one task per worker thread in flight until every job settled."""
    from distributed import wait

    token = uuid.uuid4().hex[:8]  # fresh keys: a rerun never meets a dropped client's tasks
    todo = iter(enumerate(jobs.items()))
    flying: dict[Future[Any], str] = {}
    out = TaskOutcome()
    threads, checked = 1, -POLL_S
    try:
        while True:
            if time.monotonic() - checked >= POLL_S:  # one scheduler call per poll, not per task
                threads, checked = max(1, sum(client.nthreads().values())), time.monotonic()
            for i, (name, args) in itertools.islice(todo, max(threads - len(flying), 0)):
                key = f"task-{token}-{i}"  # one prefix: one task group in the dashboard
                flying[client.submit(fn, *args, key=key, pure=False, retries=0)] = name
            if not flying:
                return out
            bar.show(running=len(flying))
            try:
                settled = wait(list(flying), timeout=POLL_S, return_when="FIRST_COMPLETED").done
            except TimeoutError:
                continue
            except CancelledError:  # raised by wait itself in recent versions
                settled = {f for f in flying if f.cancelled()}
            for fut in settled:
                bar.count(failed=_collect(fut, flying.pop(fut), out))
    except OSError as err:  # the scheduler's connection closed (distributed's CommClosedError)
        msg = (
            f"lost the dask scheduler ({type(err).__name__}: {err}). Finished items are kept: "
            "restart the scheduler and its workers, then run the same command again to resume."
        )
        raise EngineError(msg) from err
    finally:
        with contextlib.suppress(OSError):
            client.cancel(list(flying))


def run_tasks(
    client: Client | None,
    fn: Callable[..., Any],
    jobs: Mapping[str, tuple[Any, ...]],
    *,
    desc: str,
    unit: str = "task",
    total: int | None = None,
    initial: int = 0,
    progress: bool = True,
) -> TaskOutcome:
    """Run ``fn(*args)`` for every ``name -> args`` of ``jobs``; return results and failures.

    Parameters
    ----------
    client : distributed.Client or None
        Where the tasks run; None runs them one after another in this process.
    fn : callable
        Importable by the workers (a module-level function), as are its arguments.
    jobs : mapping of str to tuple
        Item name -> positional arguments of ``fn``.
    desc, unit : str
        The progress bar's label and unit.
    total, initial : int, optional
        Bar length and starting count, for items done before (default: ``len(jobs)``, 0).
    progress : bool, default True
        Show the bar.

    Returns
    -------
    TaskOutcome
        ``results``: name -> what ``fn`` returned; ``failed``: name -> traceback text (the
        exception ``fn`` raised, or ``KilledWorker`` when its worker died too often).

    Raises
    ------
    EngineError
        The scheduler dropped the tasks or its connection closed (stopped, restarted or lost);
        finished items stay done.
    """
    n_total = len(jobs) + initial if total is None else total
    bar = _Bar(n_total, initial, desc, unit, progress)
    try:
        out = _in_process(fn, jobs, bar) if client is None else _on_cluster(client, fn, jobs, bar)
        bar.show(running=0)
        return out
    finally:
        bar.bar.close()


def gather_map(
    client: Client | None, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]]
) -> list[Any]:
    """Return ``[fn(*args) for args in calls]``, computed as tasks on ``client`` if given.

    Unlike `run_tasks`, the first failure is raised (with its own type), so an analysis built
    from many tasks fails as it would in one process.

    Parameters
    ----------
    client : distributed.Client or None
        None computes in this process.
    fn : callable
        Importable by the workers, as are the arguments.
    calls : sequence of tuple
        Positional arguments of each call.

    Returns
    -------
    list
        The results, in the order of ``calls``.
    """
    if client is None:
        return [fn(*args) for args in calls]
    futures = [client.submit(fn, *args, pure=False) for args in calls]
    try:
        return list(client.gather(futures))
    finally:
        client.cancel(futures)
