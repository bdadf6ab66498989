"""Checks of plain-number settings, shared by `Recorder` and the experiment configs of `probe`.

One wording for every caller: ``"<name> must be a positive int; got <value>."``. A bool is not an
int here (``True`` is no batch size), and a float setting must be finite (``nan`` and ``inf`` are
no learning rates). Imports neither torch nor zarr.
"""

from __future__ import annotations

import math
import numbers

from hooks.errors import RecorderConfigError


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(
    value: object,
    name: str,
    *,
    minimum: int = 1,
    error: type[Exception] = RecorderConfigError,
    hint: str = "",
) -> int:
    """Return ``value`` as an int if it is an int (numpy ints too, not a bool) >= ``minimum``.

    Parameters
    ----------
    value : object
        The setting to check.
    name : str
        How the message names it (e.g. ``"'batch_size'"`` or ``"epochs"``).
    minimum : int
        Smallest allowed value (1: "a positive int", 0: "a non-negative int").
    error : type of Exception
        The error to raise (`RecorderConfigError`; `probe.errors.ConfigError` for configs).
    hint : str
        Appended to the message: how to fix it.

    Raises
    ------
    error
        ``value`` is not an int or is below ``minimum``.
    """
    if not _is_int(value) or value < minimum:  # type: ignore[operator]
        kind = {1: "a positive int", 0: "a non-negative int"}.get(minimum, f"an int >= {minimum}")
        msg = f"{name} must be {kind}; got {value!r}.{' ' + hint if hint else ''}"
        raise error(msg)
    return int(value)  # type: ignore[call-overload]


def check_float(
    value: object,
    name: str,
    *,
    error: type[Exception] = RecorderConfigError,
    hint: str = "",
) -> float:
    """Return ``value`` as a float if it is a finite real number > 0 (an int will do, a bool not).

    Parameters
    ----------
    value : object
        The setting to check (a learning rate, a gain, a scale).
    name : str
        How the message names it.
    error : type of Exception
        The error to raise.
    hint : str
        Appended to the message: how to fix it.

    Raises
    ------
    error
        ``value`` is not a real number, or is NaN, infinite or <= 0.
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not 0 < float(value) < math.inf:  # type: ignore[arg-type]
        msg = f"{name} must be a finite number > 0; got {value!r}.{' ' + hint if hint else ''}"
        raise error(msg)
    return float(value)  # type: ignore[arg-type]
