"""Analysis side of the toolkit: read run stores, analyse them, run reference experiments."""

from probe import (
    alignment,
    clusters,
    collapse,
    curves,
    difference,
    dimension,
    effective,
    group_stats,
    smooth,
    summaries,
)
from probe.errors import (
    ConfigError,
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
    "ConfigError",
    "CorruptRunError",
    "LayerNotInRunError",
    "NotARunError",
    "ProbeError",
    "Run",
    "RunNotFoundError",
    "SchemaVersionError",
    "StepNotFoundError",
    "StreamRows",
    "alignment",
    "clusters",
    "collapse",
    "curves",
    "difference",
    "dimension",
    "effective",
    "group_stats",
    "open_run",
    "smooth",
    "summaries",
]
