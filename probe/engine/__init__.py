"""The task engine of sweeps and cross-run analyses: dask.distributed, on one machine or a cluster.

`cluster` connects (an embedded `LocalCluster` of worker processes, a running scheduler's
address, or a `Client` the caller made), `tasks` maps a function over named items with bounded
retries and one progress bar, `lock` keeps two executions of one task out of the same folder.
Submodules load on first use; docs/distributed.md describes the setups.
"""

from probe._lazy import attach

__all__ = ["cluster", "lock", "tasks"]
__getattr__, __dir__ = attach(__name__, __all__)
