"""The runs one server shows: `Registry` keeps one `RunCache` per run found under its folder.

Only names its `probe.serve.catalog.Catalog` found are opened, so requests cannot reach other
paths; each run's cache is made on first use and shared by every page that shows the run.
"""

from __future__ import annotations

import os
import threading

from probe.serve.cache import RunCache
from probe.serve.catalog import Catalog

__all__ = ["Registry"]


class Registry:
    """The runs under one folder and their caches (one `RunCache` per run, made on first use).

    Parameters
    ----------
    root : path
        A run store or a folder of them.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.catalog = Catalog(root)
        self._caches: dict[str, RunCache] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> RunCache:
        """Return the cache of run ``name``.

        Raises
        ------
        RunNotFoundError
            No run of that name under the root (see `Catalog.resolve`).
        """
        entry = self.catalog.resolve(name)
        with self._lock:
            if name not in self._caches:
                self._caches[name] = RunCache(entry)
            return self._caches[name]
