"""Analysis side of the toolkit: read run stores, analyse them, run reference experiments."""

from probe.errors import (
    CorruptRunError,
    LayerNotInRunError,
    NotARunError,
    ProbeError,
    RunNotFoundError,
    SchemaVersionError,
    StepNotFoundError,
)
from probe.store import Run, StreamRows, open_run

__all__ = [
    "CorruptRunError",
    "LayerNotInRunError",
    "NotARunError",
    "ProbeError",
    "Run",
    "RunNotFoundError",
    "SchemaVersionError",
    "StepNotFoundError",
    "StreamRows",
    "open_run",
]
