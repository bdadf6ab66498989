"""The live local web view of runs (`probe serve`): Dash pages over the run stores of a folder.

`build_app` returns the Dash app, `make_app_server` a WSGI server of it; `Catalog` finds the
runs, `RunCache` keeps each up to date incrementally and `run_state` says whether it records.
"""

from probe.serve.app import build_app, make_app_server
from probe.serve.cache import RunCache
from probe.serve.catalog import Catalog, RunEntry
from probe.serve.registry import Registry
from probe.serve.state import run_state

__all__ = [
    "Catalog",
    "Registry",
    "RunCache",
    "RunEntry",
    "build_app",
    "make_app_server",
    "run_state",
]
