"""Validate and convert the Recorder's options (dtype, compressors) at the boundary."""

from __future__ import annotations

import sys

import torch
from zarr.abc.codec import BytesBytesCodec
from zarr.codecs import BloscCodec, ZstdCodec

from hooks.errors import RecorderConfigError

_DTYPES = {"float32": torch.float32, "float16": torch.float16}
_COMPRESSORS = {
    "zstd": lambda: (ZstdCodec(level=0),),  # pays on sparse post-ReLU data (specs/storage.md)
    "blosc": lambda: (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),),
}


def toolkit_version() -> str:
    """Return the installed version of the toolkit (``"unknown"`` in a bare source checkout)."""
    try:
        from importlib.metadata import version

        return version("probe")
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
