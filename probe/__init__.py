"""Analysis side of the toolkit: read run stores, analyse them, run reference experiments.

Submodules and names load on first use (PEP 562), so ``import probe`` followed by `open_run` and
the array analyses never imports torch: a process that only reads a store stays small.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
    "cluster_theory",
    "clusters",
    "collapse",
    "curve_plots",
    "curve_report",
    "curves",
    "difference",
    "dimension",
    "effective",
    "effective_fit",
    "embed",
    "export",
    "features",
    "group_stats",
    "linear_dynamics",
    "local_metric",
    "margins",
    "open_run",
    "projector",
    "readout",
    "report",
    "routing",
    "smooth",
    "streaming",
    "summaries",
]
_NAMES = {
    "ConfigError": "probe.errors",
    "CorruptRunError": "probe.errors",
    "LayerNotInRunError": "probe.errors",
    "NotARunError": "probe.errors",
    "ProbeError": "probe.errors",
    "RunNotFoundError": "probe.errors",
    "SchemaVersionError": "probe.errors",
    "StepNotFoundError": "probe.errors",
    "Run": "probe.store",
    "StreamRows": "probe.store",
    "open_run": "probe.store",
}


def __getattr__(name: str) -> Any:
    if name in __all__ and name not in _NAMES:  # a submodule
        return importlib.import_module(f"probe.{name}")
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
        globals()[name] = value
        return value
    msg = f"module 'probe' has no attribute {name!r}; see probe.__all__ for the public names."
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from probe import (
        alignment,
        cluster_theory,
        clusters,
        collapse,
        curve_plots,
        curve_report,
        curves,
        difference,
        dimension,
        effective,
        effective_fit,
        embed,
        export,
        features,
        group_stats,
        linear_dynamics,
        local_metric,
        margins,
        projector,
        readout,
        report,
        routing,
        smooth,
        streaming,
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
