"""The fixed probe set (inputs, targets, sample ids): validation, shards, stored arrays.

Validated at the Recorder's boundary; one rank of several records its shard; the arrays go to the
store's ``probe/`` group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from hooks.errors import ProbeInputError, RecorderConfigError


@dataclass
class ProbeSet:
    """The fixed inputs forwarded at every snapshot, with their targets and dataset indices.

    ``index`` holds the positions of a shard's samples in the full probe set (None: the full set).
    """

    inputs: torch.Tensor
    targets: npt.NDArray[Any] | None
    sample_id: npt.NDArray[np.int64]
    index: npt.NDArray[np.int64] | None = None

    @property
    def n_samples(self) -> int:
        """Number of probe samples."""
        return int(self.inputs.shape[0])

    def shard(self, rank: int, world_size: int) -> ProbeSet:
        """Return the samples ``rank::world_size`` that one of ``world_size`` processes records.

        Raises
        ------
        ProbeInputError
            Fewer samples than processes (a rank would record nothing).
        """
        if self.n_samples < world_size:
            msg = (
                f"the probe set must have at least one sample per rank ({world_size}); got "
                f"{self.n_samples}. Use a larger probe set or record from fewer processes."
            )
            raise ProbeInputError(msg)
        pos = np.arange(rank, self.n_samples, world_size, dtype=np.int64)
        targets = None if self.targets is None else self.targets[pos]
        return ProbeSet(self.inputs[rank::world_size], targets, self.sample_id[pos], pos)

    def arrays(self, max_input_bytes: int) -> dict[str, npt.NDArray[Any]]:
        """Return the ``probe/`` arrays: ids, targets, shard index, inputs if <= the byte limit."""
        out: dict[str, npt.NDArray[Any]] = {"sample_id": self.sample_id}
        x = self.inputs.detach().cpu()
        if x.numel() * x.element_size() <= max_input_bytes:
            out["inputs"] = x.numpy()
        if self.targets is not None:
            out["targets"] = self.targets
        if self.index is not None:
            out["index"] = self.index
        return out


def _as_tensor(x: object, what: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    msg = (
        f"{what} must be a torch.Tensor or numpy array of shape (n_samples, ...); "
        f"got {type(x).__name__}."
    )
    raise ProbeInputError(msg)


def as_numpy(x: object, what: str) -> npt.NDArray[Any]:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (list, tuple)):
        return np.asarray(x)
    msg = f"{what} must be a tensor, numpy array or list; got {type(x).__name__}."
    raise ProbeInputError(msg)


def dataset_indices(ids: npt.NDArray[Any], what: str, hint: str) -> npt.NDArray[np.int64]:
    """Return ``ids`` as int64 if they are integers >= 0 (indices into the source dataset).

    Raises
    ------
    ProbeInputError
        ``ids`` are not integers, or some are negative; the message ends with ``hint``.
    """
    if ids.dtype.kind not in "iu":
        msg = f"{what} must be integers (indices into the source dataset); got dtype {ids.dtype}."
        raise ProbeInputError(msg)
    if ids.size and ids.min() < 0:
        msg = (
            f"{what} must be >= 0 (indices into the source dataset); got "
            f"{ids[ids < 0][:3].tolist()} among them. {hint}"
        )
        raise ProbeInputError(msg)
    return ids.astype(np.int64)


def make_probe_set(probe: object, sample_id: object, param_dtype: torch.dtype | None) -> ProbeSet:
    """Return a validated `ProbeSet` from ``probe=x``, ``(x,)``, ``(x, y)`` or ``(x, y, ids)``.

    Raises
    ------
    ProbeInputError
        Inputs empty, on the meta device, of a floating dtype other than the model's; targets or
        sample ids of another length; sample ids not unique integers >= 0.
    """
    parts = tuple(probe) if isinstance(probe, (tuple, list)) else (probe,)
    if not 1 <= len(parts) <= 3:
        msg = f"probe must be x, (x, y) or (x, y, sample_id); got a sequence of {len(parts)} items."
        raise ProbeInputError(msg)
    x = _as_tensor(parts[0], "probe inputs")
    if x.ndim == 0 or x.shape[0] == 0:
        msg = (
            "probe inputs must have shape (n_samples, ...) with n_samples >= 1; "
            f"got {tuple(x.shape)}."
        )
        raise ProbeInputError(msg)
    if x.device.type == "meta":
        msg = "probe inputs must hold data; got a tensor on the meta device. Materialise it first."
        raise ProbeInputError(msg)
    if x.is_floating_point() and param_dtype is not None and x.dtype != param_dtype:
        msg = (
            f"probe inputs must have the model's floating dtype {param_dtype}; got {x.dtype}. "
            f"Convert them, e.g. x_probe.to({param_dtype})."
        )
        raise ProbeInputError(msg)
    n = int(x.shape[0])
    y = None if len(parts) < 2 or parts[1] is None else as_numpy(parts[1], "probe targets")
    if y is not None and (y.ndim == 0 or y.shape[0] != n):
        msg = (
            f"probe targets must have one row per probe input ({n}); got shape {y.shape}. "
            "Pass the targets of exactly the probe inputs."
        )
        raise ProbeInputError(msg)
    if len(parts) == 3:
        if sample_id is not None:
            msg = (
                "sample ids were given twice (in probe=(x, y, ids) and sample_id=); give them once."
            )
            raise ProbeInputError(msg)
        sample_id = parts[2]
    ids = np.arange(n, dtype=np.int64) if sample_id is None else as_numpy(sample_id, "sample ids")
    if ids.shape != (n,) or ids.dtype.kind not in "iu":
        msg = (
            f"sample ids must be {n} integers (one per probe input); "
            f"got dtype {ids.dtype}, shape {ids.shape}."
        )
        raise ProbeInputError(msg)
    ids = dataset_indices(
        ids, "sample ids", "Pass the samples' dataset indices, or leave them out."
    )
    if np.unique(ids).size != n:
        msg = "sample ids must be unique (they index the source dataset); got duplicates."
        raise ProbeInputError(msg)
    return ProbeSet(inputs=x, targets=y, sample_id=ids)


def probe_sets(
    root: torch.nn.Module, probe: object, sample_id: object, every: object, ranks: Any
) -> tuple[ProbeSet | None, ProbeSet | None]:
    """Return the full probe set and the part this process records (its shard under DDP).

    ``ranks`` is the process's `hooks._ranks.Ranks`. Float inputs take the dtype of the model's
    first floating parameter.

    Raises
    ------
    ProbeInputError
        The probe set is malformed (see `make_probe_set`), or smaller than the number of ranks.
    RecorderConfigError
        ``every`` schedules snapshots but no probe set is given.
    """
    if probe is None:
        if every is not None:
            msg = "'every' schedules snapshots of the probe set, so 'probe' must be given too."
            raise RecorderConfigError(msg)
        return None, None
    dtype = next((p.dtype for p in root.parameters() if p.is_floating_point()), None)
    full = make_probe_set(probe, sample_id, dtype)
    if ranks.world_size > 1:
        return full, full.shard(ranks.rank, ranks.world_size)
    return full, full
