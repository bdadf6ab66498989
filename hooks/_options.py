"""Validate and convert the Recorder's options at the boundary (dtype, codecs, device, store...)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any, cast

import numpy as np
import torch
from zarr.abc.codec import BytesBytesCodec
from zarr.codecs import BloscCodec, ZstdCodec

from hooks._checks import check_int
from hooks.errors import RecorderConfigError

_DTYPES = {"float32": torch.float32, "float16": torch.float16}
_COMPRESSORS = {
    "zstd": lambda: (ZstdCodec(level=0),),  # pays on sparse post-ReLU data (docs/storage.md §1)
    "blosc": lambda: (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),),
}
#: The name the toolkit is installed under (``pip install repgeom-probe``); it imports as
#: ``hooks`` and ``probe``, names taken on the package index by other projects.
DISTRIBUTION = "repgeom-probe"


def toolkit_version() -> str:
    """Return the installed version of the toolkit (``"unknown"`` in a bare source checkout)."""
    try:
        from importlib.metadata import version

        return version(DISTRIBUTION)
    except Exception:  # noqa: BLE001 - metadata missing in a source checkout
        return "unknown"


def parse_compressors(compressors: object) -> object:
    """Return zarr compressors for ``None``, ``"zstd"``, ``"blosc"`` or codec objects."""
    if compressors is None:
        return None
    if isinstance(compressors, str) and compressors in _COMPRESSORS:
        return _COMPRESSORS[compressors]()
    items = compressors if isinstance(compressors, (list, tuple)) else [compressors]
    if items and all(isinstance(c, BytesBytesCodec) for c in items):
        return tuple(items)
    msg = (
        f"'compressors' must be None, one of {sorted(_COMPRESSORS)} or zarr bytes-to-bytes "
        f"codecs (e.g. zarr.codecs.ZstdCodec()); got {compressors!r}."
    )
    raise RecorderConfigError(msg)


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """Return the storage dtype for ``"float32"``, ``"float16"`` or the torch dtypes."""
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in _DTYPES:
        return _DTYPES[dtype]
    msg = f"'dtype' must be 'float32' or 'float16'; got {dtype!r}."
    raise RecorderConfigError(msg)


WRITERS = ("thread", "process")


def parse_writer(writer: object) -> str:
    """Return the writer kind, ``"thread"`` or ``"process"`` (the latter on Linux only)."""
    if writer not in WRITERS:
        msg = f"'writer' must be one of {list(WRITERS)}; got {writer!r}."
        raise RecorderConfigError(msg)
    from hooks._writer_process import process_writer_available

    if writer == "process" and not process_writer_available():
        msg = (
            "writer='process' needs Linux (os.memfd_create); "
            f"this is {sys.platform}. Use writer='thread'."
        )
        raise RecorderConfigError(msg)
    return str(writer)


def parse_device(device: object) -> torch.device:
    """Return ``device`` as a `torch.device` that this machine has.

    Raises
    ------
    RecorderConfigError
        ``device`` names no device type (``"banana"``), or one this machine does not have
        (``"cuda:7"`` with one GPU, ``"cuda"`` without a driver).
    """
    try:
        dev = torch.device(cast(Any, device))  # any object: torch says what it cannot read
    except (RuntimeError, TypeError) as err:
        msg = (
            "'device' must be a torch.device or a device string such as 'cpu', 'cuda' or "
            f"'cuda:0'; got {device!r}. Leave it out to use the device of the model's parameters."
        )
        raise RecorderConfigError(msg) from err
    try:
        torch.empty(0, device=dev)
    except Exception as err:  # noqa: BLE001 - torch raises RuntimeError or AssertionError here
        n_cuda = torch.cuda.device_count()
        have = f"cuda:0 to cuda:{n_cuda - 1}" if n_cuda else "no CUDA device"
        msg = (
            f"'device' {str(dev)!r} is not available on this machine ({have}; "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
            "Pass an available device, e.g. 'cpu', or leave it out to use the model's."
        )
        raise RecorderConfigError(msg) from err
    return dev


def model_device(root: torch.nn.Module, device: object) -> torch.device:
    """Return where probe batches go: ``device`` (checked), else the model's first parameter's.

    Raises
    ------
    RecorderConfigError
        ``device`` is not a device this machine has (see `parse_device`).
    """
    if device is not None:
        return parse_device(device)
    param = next(root.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def check_store_arg(store: object) -> None:
    """Raise unless ``store`` is a non-empty str or path-like (the run store's folder).

    Raises
    ------
    RecorderConfigError
        ``store`` is None, a number, an empty string, ...
    """
    if not isinstance(store, (str, os.PathLike)) or not os.fspath(store):
        msg = (
            "'store' must be the path of the run's folder (a str or pathlib.Path, e.g. "
            f"'artifacts/mnist/run.zarr'); got {store!r}."
        )
        raise RecorderConfigError(msg)


def check_flags(**flags: object) -> None:
    """Raise unless every flag is a bool, and ``resume`` and ``overwrite`` are not both True.

    Raises
    ------
    RecorderConfigError
        A flag is not a bool (``resume="yes"``), or ``resume=True`` with ``overwrite=True``.
    """
    for name, value in flags.items():
        if not isinstance(value, (bool, np.bool_)):
            msg = f"{name!r} must be True or False; got {value!r}."
            raise RecorderConfigError(msg)
    if flags.get("resume") and flags.get("overwrite"):
        msg = (
            "'resume' and 'overwrite' contradict each other: resume=True continues the run at "
            "'store', overwrite=True deletes it first. Pass only one of them."
        )
        raise RecorderConfigError(msg)


def check_settings(
    *,
    batch_size: object,
    max_queue_bytes: object,
    seed: object,
    store_probe_inputs: object,
    config: object,
    max_steps: object,
) -> tuple[int, int, int | None, int | None]:
    """Check the Recorder's plain settings; return batch_size, max_queue_bytes, seed, max_steps.

    Raises
    ------
    RecorderConfigError
        A setting is not an int in its range (a bool is not an int), or ``config`` is not a
        mapping.
    """
    batch = check_int(batch_size, "'batch_size'")
    budget = check_int(
        max_queue_bytes, "'max_queue_bytes'", hint="It is a byte budget, e.g. 256 << 20."
    )
    if seed is not None:
        seed = check_int(seed, "'seed'", minimum=0, hint="It is saved in the run's attrs.")
    check_int(store_probe_inputs, "'store_probe_inputs'", minimum=0, hint="It is in bytes.")
    if config is not None and not isinstance(config, Mapping):
        msg = f"'config' must be a mapping (e.g. a dict of settings) or None; got {config!r}."
        raise RecorderConfigError(msg)
    if max_steps is not None:
        max_steps = check_int(max_steps, "'max_steps'", minimum=0, hint="It is a step count.")
    return batch, budget, seed, max_steps
