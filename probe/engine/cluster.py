"""Connect to the engine: an embedded `LocalCluster`, a running scheduler, or a given `Client`.

`connect` is a context manager yielding a ``distributed.Client``; it closes only what it
started. The embedded cluster runs ``workers`` worker processes with one thread each, the
setting `probe sweep` uses by default.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from probe.errors import EngineError
from probe.validation import check_int

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["connect", "describe"]

#: Seconds to wait for a scheduler given by address before giving up.
CONNECT_TIMEOUT_S = 20


@contextlib.contextmanager
def connect(
    scheduler: str | Client | None = None,
    *,
    workers: int = 2,
    retries: int = 2,
    dashboard: str = ":8787",
) -> Iterator[Client]:
    """Yield a dask ``Client``: to ``scheduler`` if given, else to a new local cluster.

    Parameters
    ----------
    scheduler : str, Client or None
        ``None``: start a `LocalCluster` of ``workers`` processes (closed on exit). A string:
        the address of a running scheduler, e.g. ``tcp://10.0.0.5:8786`` (the client is
        closed on exit, the cluster keeps running). A ``Client``: used as is, never closed.
    workers : int, default 2
        Worker processes of the local cluster (one thread each); ignored otherwise.
    retries : int, default 2
        How many times the local cluster's scheduler reschedules a task whose worker died
        (``distributed.scheduler.allowed-failures``); the task is then reported failed with
        ``KilledWorker``. A running scheduler uses its own settings (docs/distributed.md).
    dashboard : str, default ":8787"
        Dashboard address of the local cluster (another port if taken; ":0": any free port).

    Yields
    ------
    distributed.Client

    Raises
    ------
    EngineError
        The scheduler at ``scheduler`` cannot be reached within `CONNECT_TIMEOUT_S` seconds.
    ConfigError
        ``workers`` is not an int >= 1 or ``retries`` is not an int >= 0 (local cluster only).
    """
    import dask
    from distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        yield scheduler
        return
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
        except OSError as err:  # TimeoutError and refused connections are OSErrors
            msg = (
                f"cannot reach the dask scheduler at {scheduler!r} ({type(err).__name__}: "
                f"{err}). Start one (`dask scheduler`, then `dask worker {scheduler}`) or "
                "leave out --scheduler to run on this machine."
            )
            raise EngineError(msg) from err
        with client:
            yield client
        return
    check_int(workers, "workers", minimum=1)
    check_int(retries, "retries", minimum=0)
    # Saturation 1: a worker holds only the tasks it runs, so its death counts against those
    # alone (the scheduler charges every task assigned to a dead worker).
    settings = {
        "distributed.scheduler.allowed-failures": retries,
        "distributed.scheduler.worker-saturation": 1.0,
    }
    with dask.config.set(settings):
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=dashboard,
        )
    with cluster, Client(cluster) as client:
        yield client


def describe(client: Client) -> str:
    """Return one line naming the scheduler, its workers and the dashboard address."""
    info = client.scheduler_info()
    n = len(client.nthreads())
    link = client.dashboard_link if info.get("services", {}).get("dashboard") else None
    where = f"dashboard {link}" if link else "no dashboard (install bokeh>=3.1 to serve one)"
    return f"dask scheduler {info.get('address', '?')} with {n} workers; {where}"
