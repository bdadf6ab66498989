"""Capture side of the toolkit: attach a `Recorder` to any training loop; no import of `probe`.

Names load on first use (PEP 562): `probe` reads stores through `hooks.schema` without importing
torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_NAMES = {
    "AgopError": "hooks.errors",
    "AgopLayerError": "hooks.errors",
    "BatchDimError": "hooks.errors",
    "BatchlessOutputError": "hooks.errors",
    "HooksError": "hooks.errors",
    "IntegrationError": "hooks.errors",
    "IntegrationImportError": "hooks.errors",
    "LayerNotFoundError": "hooks.errors",
    "NoLayersError": "hooks.errors",
    "NonFiniteWarning": "hooks.errors",
    "ProbeInputError": "hooks.errors",
    "Recorder": "hooks.recorder",
    "RecorderClosedError": "hooks.errors",
    "RecorderConfigError": "hooks.errors",
    "ReduceError": "hooks.errors",
    "LastToken": "hooks.reduce",
    "Positions": "hooks.reduce",
    "RandomProjection": "hooks.reduce",
    "TokenMean": "hooks.reduce",
    "ResumeMismatchError": "hooks.errors",
    "SchemaMismatchError": "hooks.errors",
    "StepOrderError": "hooks.errors",
    "StoreCorruptError": "hooks.errors",
    "StoreExistsError": "hooks.errors",
    "StoreNotWritableError": "hooks.errors",
    "StoreTooLargeError": "hooks.errors",
    "StreamShapeError": "hooks.errors",
    "UnrecordedOutputWarning": "hooks.errors",
    "WriterError": "hooks.errors",
    "gradient_grams": "hooks.agop",
    "LayerInfo": "hooks.preview",
    "LayerTable": "hooks.preview",
    "list_layers": "hooks.preview",
    "log_schedule": "hooks.schedule",
    "resolve_layers": "hooks.layers",
    "unwrap_model": "hooks.layers",
}
__all__ = [
    "AgopError",
    "AgopLayerError",
    "BatchDimError",
    "BatchlessOutputError",
    "HooksError",
    "IntegrationError",
    "IntegrationImportError",
    "LastToken",
    "LayerInfo",
    "LayerNotFoundError",
    "LayerTable",
    "NoLayersError",
    "NonFiniteWarning",
    "Positions",
    "ProbeInputError",
    "RandomProjection",
    "Recorder",
    "RecorderClosedError",
    "RecorderConfigError",
    "ReduceError",
    "ResumeMismatchError",
    "SchemaMismatchError",
    "StepOrderError",
    "StoreCorruptError",
    "StoreExistsError",
    "StoreNotWritableError",
    "StoreTooLargeError",
    "StreamShapeError",
    "TokenMean",
    "UnrecordedOutputWarning",
    "WriterError",
    "gradient_grams",
    "list_layers",
    "log_schedule",
    "resolve_layers",
    "unwrap_model",
]


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
        globals()[name] = value
        return value
    msg = f"module 'hooks' has no attribute {name!r}; see hooks.__all__ for the public names."
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from hooks.agop import (
        gradient_grams,
    )
    from hooks.errors import (
        AgopError,
        AgopLayerError,
        BatchDimError,
        BatchlessOutputError,
        HooksError,
        IntegrationError,
        IntegrationImportError,
        LayerNotFoundError,
        NoLayersError,
        NonFiniteWarning,
        ProbeInputError,
        RecorderClosedError,
        RecorderConfigError,
        ReduceError,
        ResumeMismatchError,
        SchemaMismatchError,
        StepOrderError,
        StoreCorruptError,
        StoreExistsError,
        StoreNotWritableError,
        StoreTooLargeError,
        StreamShapeError,
        UnrecordedOutputWarning,
        WriterError,
    )
    from hooks.layers import (
        resolve_layers,
        unwrap_model,
    )
    from hooks.preview import (
        LayerInfo,
        LayerTable,
        list_layers,
    )
    from hooks.recorder import (
        Recorder,
    )
    from hooks.reduce import (
        LastToken,
        Positions,
        RandomProjection,
        TokenMean,
    )
    from hooks.schedule import (
        log_schedule,
    )
