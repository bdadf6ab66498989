"""Capture side of the toolkit: attach a `Recorder` to any training loop; no import of `probe`."""

from hooks.agop import gradient_grams
from hooks.errors import (
    AgopError,
    AgopLayerError,
    HooksError,
    IntegrationError,
    IntegrationImportError,
    LayerNotFoundError,
    NoLayersError,
    NonFiniteWarning,
    ProbeInputError,
    RecorderClosedError,
    RecorderConfigError,
    ResumeMismatchError,
    SchemaMismatchError,
    StepOrderError,
    StoreCorruptError,
    StoreExistsError,
    StoreNotWritableError,
    StreamShapeError,
    WriterError,
)
from hooks.layers import list_layers, resolve_layers, unwrap_model
from hooks.recorder import Recorder
from hooks.schedule import log_schedule

__all__ = [
    "AgopError",
    "AgopLayerError",
    "HooksError",
    "IntegrationError",
    "IntegrationImportError",
    "LayerNotFoundError",
    "NoLayersError",
    "NonFiniteWarning",
    "ProbeInputError",
    "Recorder",
    "RecorderClosedError",
    "RecorderConfigError",
    "ResumeMismatchError",
    "SchemaMismatchError",
    "StepOrderError",
    "StoreCorruptError",
    "StoreExistsError",
    "StoreNotWritableError",
    "StreamShapeError",
    "WriterError",
    "gradient_grams",
    "list_layers",
    "log_schedule",
    "resolve_layers",
    "unwrap_model",
]
