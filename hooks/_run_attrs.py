"""The root attrs of a run: what a new run records, what identifies it, and reading them back."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from hooks import schema
from hooks._options import toolkit_version
from hooks._probe_set import ProbeSet
from hooks.errors import StoreCorruptError


def probe_digest(inputs: npt.NDArray[Any]) -> str:
    """Return a SHA-256 of the probe inputs (dtype, shape and bytes), to check them on resume."""
    h = hashlib.sha256(f"{inputs.dtype.str}{inputs.shape}".encode())
    h.update(np.ascontiguousarray(inputs).data)
    return h.hexdigest()


# Root attrs that must agree between a run and a Recorder resuming it (or another rank of it):
# a resumed run that starts recording weights or AGOPs would have no rows for earlier snapshots.
SAME_RUN_KEYS = (
    "layers",
    "n_samples",
    "dtype",
    "probe_sha256",
    schema.WORLD_SIZE,
    "weights",
    "agop",
)


def probe_attrs(probe: ProbeSet | None) -> dict[str, Any]:
    """Return the attrs that identify a probe set: its size and the digest of its inputs."""
    return {
        "n_samples": probe.n_samples if probe else 0,
        "probe_sha256": probe_digest(probe.inputs.detach().cpu().numpy()) if probe else None,
    }


def run_attrs(
    *,
    model_class: str,
    layers: list[str],
    probe: ProbeSet | None,
    dtype: torch.dtype,
    weights: bool,
    agop: list[str],
    config: Mapping[str, Any] | None,
    seed: int | None,
    estimate: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the root attrs of a new run (schema, versions, settings, zeroed commit counters).

    ``estimate`` is the pre-flight size estimate (`hooks._estimate.Estimate.attrs`; None
    without a probe set).
    """
    return {
        "schema": schema.SCHEMA,
        "schema_version": schema.SCHEMA_VERSION,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        # which run this is: a resume keeps it, overwrite=True makes a new one (readers that
        # cache a run, like probe serve, must notice a rewrite even at equal counts)
        "run_id": uuid.uuid4().hex,
        "toolkit_version": toolkit_version(),
        "torch_version": torch.__version__,
        "model_class": model_class,
        "config": dict(config or {}),
        "seed": seed,
        "layers": layers,
        **probe_attrs(probe),
        "dtype": str(dtype).removeprefix("torch."),
        "weights": weights,
        "agop": agop,
        "estimate": dict(estimate) if estimate is not None else None,
        schema.N_COMMITTED: 0,
        schema.N_METRIC_RECORDS: 0,
        schema.N_STREAM_ROWS: 0,
    }


def mismatch(stored: Mapping[str, Any], expected: Mapping[str, Any]) -> tuple[str, Any, Any] | None:
    """Return the first of `SAME_RUN_KEYS` on which two runs' attrs differ, with both values."""
    a: Any
    b: Any
    for key in SAME_RUN_KEYS:
        if key == schema.WORLD_SIZE:
            a, b = schema.world_size(stored), schema.world_size(expected)
        else:
            a, b = stored.get(key), expected.get(key)
        if a != b:
            return key, a, b
    return None


def read_root_attrs(path: Path) -> dict[str, Any] | None:
    """Return the root attrs of the zarr group at ``path``, or None when it is not a zarr v3 group.

    Raises
    ------
    StoreCorruptError
        ``zarr.json`` exists but is not valid JSON.
    """
    meta = path / "zarr.json"
    if not meta.is_file():
        return None
    try:
        doc = json.loads(meta.read_text())
    except (OSError, ValueError) as err:
        msg = f"{meta} cannot be parsed ({err}); the store's metadata is corrupted."
        raise StoreCorruptError(msg) from err
    if not isinstance(doc, dict) or doc.get("node_type") != "group":
        return None
    attrs = doc.get("attributes", {})
    return attrs if isinstance(attrs, dict) else None
