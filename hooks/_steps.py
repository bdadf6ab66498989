"""Step bookkeeping of `Recorder.step`/`log`/`watch`: the step counter and the values handed in."""

from __future__ import annotations

import numbers
import re
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from hooks._checks import check_int
from hooks._probe_set import as_numpy, dataset_indices
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


#: Columns of the metrics table that no metric may take.
RESERVED_METRIC_NAMES = ("step", "epoch")
MAX_METRIC_NAME = 128
_METRIC_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]*")
METRIC_NAME_RULE = (
    "a metric name must be 1 to 128 characters: a letter, digit or '_', then letters, digits, "
    "'_', '.', '-' or '@' (e.g. loss, train_acc, val.loss, acc@1, top-5), not starting with "
    f"'__', and not {' or '.join(map(repr, RESERVED_METRIC_NAMES))} (columns of the table)"
)


def storable_metric_name(name: str) -> str:
    """Return ``name`` rewritten to follow `METRIC_NAME_RULE` ("" when nothing is left).

    ``/`` becomes ``.`` (``val/loss`` -> ``val.loss``), other runs of characters the rule does
    not allow become ``_``, and leading ``.``/``_`` are dropped. Reserved names are not changed.

    Examples
    --------
    >>> storable_metric_name("eval/top 5 acc")
    'eval.top_5_acc'
    """
    fix = re.sub(r"[^A-Za-z0-9_.@-]+", "_", name.replace("/", ".")).lstrip("._")
    return fix[:MAX_METRIC_NAME]


def check_metric_name(name: str) -> None:
    """Raise unless ``name`` can be a column of the metrics table (`METRIC_NAME_RULE`).

    Every metric is one zarr array ``metrics/<name>``, so its name must be one plain, portable
    file name that no other node of the run can take: no ``/`` (a nested group), no leading
    ``.`` (``.``, ``..``, hidden files), no ``__`` prefix (reserved by zarr), no spaces or
    control characters.

    Raises
    ------
    RecorderConfigError
        ``name`` breaks the rule; the message says which name and how to write it.
    """
    if name in RESERVED_METRIC_NAMES:
        msg = (
            f"metric name {name!r} is reserved (it is a column of the metrics table); "
            f"{METRIC_NAME_RULE}. Pass epoch= and step= as the step's own arguments, or rename "
            f"the metric (e.g. {name}_metric)."
        )
        raise RecorderConfigError(msg)
    if len(name) > MAX_METRIC_NAME or not _METRIC_NAME.fullmatch(name) or name.startswith("__"):
        fix = storable_metric_name(name)
        suggestion = f" such as {fix!r}" if fix else ""
        msg = (
            f"metric name {name!r} cannot be stored: {METRIC_NAME_RULE}. "
            f"Rename it{suggestion} ('/' becomes '.', as in val.loss)."
        )
        raise RecorderConfigError(msg)


def validated_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Return ``metrics`` with tensors detached (not yet synchronised to the host).

    Raises
    ------
    RecorderConfigError
        A name breaks `METRIC_NAME_RULE`, or a value is not a real number or a one-element
        real tensor.
    """
    out = {}
    for name, value in metrics.items():
        check_metric_name(name)
        ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
        if isinstance(value, torch.Tensor):
            ok = value.numel() == 1 and not value.is_complex() and value.dtype != torch.bool
            value = value.detach()
        if not ok:
            msg = (
                f"metric {name!r} must be a number or a one-element tensor, real and not a "
                f"bool; got {value!r}. Log e.g. loss=loss (a 0-d tensor) or acc=float(acc)."
            )
            raise RecorderConfigError(msg)
        out[name] = value
    return out


def check_epoch(epoch: object) -> int:
    """Return ``epoch`` as an int if it is a non-negative int (numpy ints too; a bool is not).

    Raises
    ------
    RecorderConfigError
        ``epoch`` is not a non-negative int.
    """
    return check_int(
        epoch, "'epoch'", minimum=0, hint="Pass the 0-based epoch count, e.g. epoch=2."
    )


def as_sample_ids(sample_id: object) -> npt.NDArray[np.int64] | None:
    """Return the dataset indices of a watched batch as a flat int64 array (None stays None).

    Raises
    ------
    ProbeInputError
        ``sample_id`` is not an array, tensor or list of integers >= 0.
    """
    if sample_id is None:
        return None
    ids = as_numpy(sample_id, "watch(sample_id=...)").reshape(-1)
    hint = "Leave them out for a batch without dataset indices (stored as -1)."
    return dataset_indices(ids, "watch(sample_id=...)", hint)
