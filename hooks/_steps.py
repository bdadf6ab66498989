"""Step bookkeeping of `Recorder.step`/`log`/`watch`: the step counter and the values handed in."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from hooks.errors import RecorderConfigError, StepOrderError


def next_step(current: int, step: object) -> int:
    """Return the step after ``current``: ``current + 1``, or ``step`` when given.

    Raises
    ------
    StepOrderError
        ``step`` is not an int larger than ``current``.
    """
    if step is None:
        return current + 1
    if not isinstance(step, (int, np.integer)) or isinstance(step, bool) or step <= current:
        msg = (
            f"step must be an int larger than the last step {current}; got {step!r}. "
            "Steps count optimizer updates and never go backwards "
            "(use a new store to restart)."
        )
        raise StepOrderError(msg)
    return int(step)


def validated_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Return ``metrics`` with tensors detached (not yet synchronised to the host).

    Raises
    ------
    RecorderConfigError
        A name is reserved (``step``, ``epoch``) or a value is not a number or a one-element
        tensor.
    """
    out = {}
    for name, value in metrics.items():
        if name in ("step", "epoch"):
            msg = f"metric name {name!r} is reserved (it is a column of the metrics table)."
            raise RecorderConfigError(msg)
        ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
        if isinstance(value, torch.Tensor):
            ok = value.numel() == 1
            value = value.detach()
        if not ok:
            msg = f"metric {name!r} must be a number or a one-element tensor; got {value!r}."
            raise RecorderConfigError(msg)
        out[name] = value
    return out


def as_sample_ids(sample_id: object) -> npt.NDArray[np.int64] | None:
    """Return the dataset indices of a watched batch as a flat int64 array (None stays None)."""
    if sample_id is None:
        return None
    if isinstance(sample_id, torch.Tensor):
        sample_id = sample_id.detach().cpu()
    return np.asarray(sample_id).astype(np.int64).reshape(-1)
