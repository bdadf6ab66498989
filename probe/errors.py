"""Errors raised by the analysis side (`probe`).

One base class, :class:`ProbeError`; every concrete error also inherits the matching builtin.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AGOPNotRecordedError",
    "ConfigError",
    "CorruptRunError",
    "CurveTableError",
    "DatasetUnavailableError",
    "EmptyAccumulatorError",
    "EngineError",
    "FinetuneConfigError",
    "FinetuneRunsError",
    "GateError",
    "InputShapeError",
    "InvalidArgumentError",
    "InvalidArrayError",
    "LayerNotInRunError",
    "MetricNotInRunError",
    "MissingTargetsError",
    "ModelConfigError",
    "NotARunError",
    "OdeIntegrationError",
    "OutputPathError",
    "PairIndexError",
    "ProbeError",
    "ProjectorConfigError",
    "ReadoutError",
    "RunNotFoundError",
    "SchemaVersionError",
    "ShapeMismatchError",
    "SmootherOptionError",
    "SplitSizeError",
    "StatsInputError",
    "StepNotFoundError",
    "SweepConfigError",
    "SweepRunError",
    "SweepTableError",
    "TheoryInputError",
    "UnknownClassError",
    "UnknownDatasetError",
]


class ProbeError(Exception):
    """Base class of every error raised by `probe`."""


class _KeyMessage(KeyError):
    def __str__(self) -> str:
        # KeyError quotes its message; show it as written.
        return str(self.args[0]) if self.args else ""


class RunNotFoundError(ProbeError, FileNotFoundError):
    """No run store at the given path."""


class NotARunError(ProbeError, ValueError):
    """The path exists but holds no probe run."""


class SchemaVersionError(ProbeError, ValueError):
    """The run was written with another schema version."""


class CorruptRunError(ProbeError, ValueError):
    """The run's metadata cannot be parsed or contradicts itself."""


class LayerNotInRunError(ProbeError, _KeyMessage):
    """A layer (or array key) that the run did not record."""


class StepNotFoundError(ProbeError, _KeyMessage):
    """A step at which the run has no snapshot."""


class ConfigError(ProbeError, ValueError):
    """An experiment setting outside its allowed values."""


class InvalidArgumentError(ProbeError, TypeError):
    """An argument of a public function has the wrong type (e.g. a run path that is None)."""


class OutputPathError(ProbeError, OSError):
    """An output path cannot be written: a file where a folder must be, or no permission."""


# -------------------- Arrays and inputs of the analyses
class InvalidArrayError(ProbeError, ValueError):
    """An array has the wrong number of dimensions, dtype, size or non-finite values."""


class ShapeMismatchError(ProbeError, ValueError):
    """Arrays that must agree in shape (or number of samples) do not."""


class PairIndexError(ProbeError, IndexError):
    """A pair index points outside the sample axis."""


class MissingTargetsError(ProbeError, ValueError):
    """A run stores no probe targets but the quantity needs them."""


class AGOPNotRecordedError(LayerNotInRunError):
    """A run holds no AGOP for a layer."""


class EmptyAccumulatorError(ProbeError, ValueError):
    """A statistic was asked of an accumulator that has seen too few samples."""


class SmootherOptionError(ProbeError, ValueError):
    """An unknown smoother kind or end rule."""


class CurveTableError(ProbeError, ValueError):
    """A tidy curve table lacks a column or holds one curve twice at the same ``t``."""


class MetricNotInRunError(ProbeError, _KeyMessage):
    """A metric name the run never logged."""


class ReadoutError(ProbeError, ValueError):
    """Settings or labels a cross-validated read-out cannot use."""


class StatsInputError(ProbeError, ValueError):
    """Values or settings a paired comparison cannot use."""


# -------------------- Theory
class TheoryInputError(ProbeError, ValueError):
    """A rate, distance or initial condition of the effective theory is out of its range."""


class OdeIntegrationError(ProbeError, RuntimeError):
    """`scipy.integrate.solve_ivp` could not integrate the two-point ODEs."""


class UnknownClassError(InvalidArrayError):
    """A probe label whose class does not occur among the images the prediction was built from."""


# -------------------- Exports and reports
class ProjectorConfigError(ProbeError, ValueError):
    """An existing projector_config.pbtxt that cannot be parsed."""


class SweepTableError(ProbeError, ValueError):
    """A sweep table that is missing, unreadable or lacks a column the report needs."""


# -------------------- Models, datasets and experiments
class ModelConfigError(ProbeError, ValueError):
    """A model built with impossible hyper-parameters."""


class InputShapeError(ProbeError, ValueError):
    """A batch whose shape the model cannot take."""


class GateError(ProbeError, ValueError):
    """Gates that name no node or edge of the graph, or do not broadcast to the batch."""


class DatasetUnavailableError(ProbeError, FileNotFoundError):
    """A dataset is neither on disk nor downloadable (e.g. MNIST on an offline machine)."""


class UnknownDatasetError(ProbeError, ValueError):
    """A dataset name that `load_dataset` does not know."""


class SplitSizeError(ProbeError, ValueError):
    """A requested subset or split size that the data cannot provide."""


class FinetuneConfigError(ProbeError, ValueError):
    """Impossible settings of the finetune-speed experiment, or an inconsistent task."""


class FinetuneRunsError(ProbeError, ValueError):
    """A finetune-speed folder without usable run stores, or an unknown curve name."""


class SweepConfigError(ConfigError):
    """A sweep config that cannot be run (unknown experiment or field, empty grid, bad value)."""


class SweepRunError(ProbeError, RuntimeError):
    """One or more runs of a sweep failed; the others were kept (see ``result``)."""

    result: Any  # the sweep's `probe.experiments.sweep.SweepResult`


class EngineError(ProbeError, RuntimeError):
    """The task engine (dask.distributed) cannot be reached, was lost, or a task stayed locked."""
