"""Errors raised by the capture side (`hooks`).

One base class, :class:`HooksError`; every concrete error also inherits the matching builtin so that
``except KeyError`` or ``except OSError`` in user code keeps working.
"""

from __future__ import annotations

__all__ = [
    "AgopError",
    "AgopLayerError",
    "BatchDimError",
    "BatchlessOutputError",
    "HooksError",
    "IntegrationError",
    "IntegrationImportError",
    "LayerNotFoundError",
    "NoLayersError",
    "NonFiniteWarning",
    "ProbeInputError",
    "RecorderClosedError",
    "RecorderConfigError",
    "ReduceError",
    "ResumeMismatchError",
    "SchemaMismatchError",
    "StepOrderError",
    "StoreCorruptError",
    "StoreExistsError",
    "StoreLockedError",
    "StoreNotWritableError",
    "StoreTooLargeError",
    "StreamShapeError",
    "UnrecordedOutputWarning",
    "WriterError",
]


class HooksError(Exception):
    """Base class of every error raised by `hooks`."""


class AgopLayerError(HooksError, TypeError):
    """AGOP was requested for a layer that is not an ``nn.Linear`` or ungrouped ``nn.Conv2d``."""


class AgopError(HooksError, ValueError):
    """The AGOP pass cannot run: bad inputs or batch size, or an unusable model output or layer."""


class BatchDimError(HooksError, ValueError):
    """The batch dimension of a recorded tensor is ambiguous or not where a rule or option says."""


class BatchlessOutputError(HooksError, ValueError):
    """An output with no batch dimension differs between the probe batches of one snapshot."""


class UnrecordedOutputWarning(UserWarning):
    """A module output holds non-tensor objects (strings, generators ...) that are not recorded."""


class LayerNotFoundError(HooksError, KeyError):
    """A layer selector matched no module, or named one that does not exist."""

    def __str__(self) -> str:
        # KeyError quotes its message; show it as written.
        return str(self.args[0]) if self.args else ""


class NoLayersError(HooksError, ValueError):
    """The layer selection resolved to zero modules."""


class RecorderConfigError(HooksError, TypeError):
    """An argument of `Recorder` has the wrong type or value."""


class ReduceError(HooksError, ValueError):
    """A token reduction does not fit a recorded tensor (no token dim, wrong mask, bad position)."""


class ProbeInputError(HooksError, ValueError):
    """The fixed probe inputs, targets or sample ids (or a watched batch's ids) are unusable."""


class StepOrderError(HooksError, ValueError):
    """An explicit step is not larger than the last recorded one."""


class StreamShapeError(HooksError, ValueError):
    """A watched layer's output does not have the batch as its first dimension."""


class StoreExistsError(HooksError, FileExistsError):
    """The store path already holds a run and neither ``resume`` nor ``overwrite`` was given."""


class StoreLockedError(HooksError, BlockingIOError):
    """Another live process writes the run (it holds the run's writer lock)."""


class StoreNotWritableError(HooksError, PermissionError):
    """The store location cannot be created or written."""


class SchemaMismatchError(HooksError, ValueError):
    """The path holds something that is not a run of this schema version."""


class ResumeMismatchError(HooksError, ValueError):
    """``resume=True`` on a run recorded with other layers, probe set or settings."""


class StoreCorruptError(HooksError, ValueError):
    """The store's metadata cannot be parsed or contradicts itself."""


class RecorderClosedError(HooksError, RuntimeError):
    """The recorder was used after `close()` or after its writer stopped."""


class WriterError(HooksError, OSError):
    """The background writer failed (for example, the disk is full); the store stays readable."""


class NonFiniteWarning(UserWarning):
    """Recorded activations hold NaN or Inf (kept as is and flagged in ``Run.info()``)."""


class IntegrationError(HooksError, RuntimeError):
    """A training-framework callback cannot build its Recorder (e.g. no model at train begin)."""


class IntegrationImportError(HooksError, ImportError):
    """An integration's framework (PyTorch Lightning, transformers) is not installed."""


class StoreTooLargeError(HooksError, OSError):
    """The planned run is larger than the free space of its store's file system."""
