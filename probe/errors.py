"""Errors raised by the analysis side (`probe`).

One base class, :class:`ProbeError`; every concrete error also inherits the matching builtin.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "CorruptRunError",
    "InvalidArgumentError",
    "LayerNotInRunError",
    "NotARunError",
    "OutputPathError",
    "ProbeError",
    "RunNotFoundError",
    "SchemaVersionError",
    "StepNotFoundError",
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
