"""Crash-safe zarr primitives: data-first append, trim to a committed length, stray-file cleanup.

`append_many` writes the new chunks *beyond* the array's current shape and only then rewrites its
``zarr.json`` with the grown shape (one atomic rename in zarr >= 3.1.3's LocalStore). A reader or a
killed writer therefore never sees rows whose data is missing; zarr's own ``Array.append`` does the
opposite order (specs/storage.md §1.8, §3.C). Uses ``AsyncArray`` construction, a semi-internal API:
zarr is pinned to 3.1.x and tests/hooks/test_crash.py guards the behaviour.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import zarr
from zarr.core.array import AsyncArray
from zarr.core.sync import sync


def fill_value(dtype: npt.DTypeLike) -> float | int:
    """Return the fill value for ``dtype``: NaN for floats (a missing row is visibly missing)."""
    return np.nan if np.dtype(dtype).kind in "fc" else 0


def create_array(
    group: zarr.Group,
    name: str,
    *,
    shape: Sequence[int],
    chunks: Sequence[int],
    dtype: npt.DTypeLike,
    dims: Sequence[str],
    compressors: object,
) -> zarr.Array:
    """Create an array that grows along axis 0; unwritten rows read as `fill_value`."""
    dtype = np.dtype(dtype)
    return group.create_array(
        name,
        shape=tuple(shape),
        chunks=tuple(chunks),
        dtype=dtype,
        fill_value=fill_value(dtype),
        compressors=compressors,
        dimension_names=tuple(dims),
    )


def append_many(pairs: Sequence[tuple[zarr.Array, npt.NDArray[np.generic]]]) -> None:
    """Append rows to several arrays in two concurrent rounds: all chunks, then all ``zarr.json``.

    One event-loop round trip per round instead of two per array (a snapshot touches ~10 arrays).
    """
    plans = []
    for arr, data in pairs:
        if data.shape[1:] != arr.shape[1:]:
            msg = (
                f"rows to append to {arr.path!r} must have shape "
                f"(n, {', '.join(map(str, arr.shape[1:]))}); got {data.shape}."
            )
            raise ValueError(msg)
        aa = arr.async_array
        old = aa.metadata.shape[0]
        new_shape = (old + data.shape[0], *aa.metadata.shape[1:])
        grown = AsyncArray(
            metadata=aa.metadata.update_shape(new_shape), store_path=aa.store_path, config=aa.config
        )
        plans.append((aa, grown, old, new_shape, data))

    async def run() -> None:
        # Chunks beyond the persisted shapes first: invisible to readers until the resize.
        await asyncio.gather(*(g.setitem(slice(old, None), d) for _, g, old, _, d in plans))
        # Growing resizes only rewrite zarr.json (atomically, one file each).
        await asyncio.gather(*(aa.resize(shape) for aa, _, _, shape, _ in plans))

    sync(run())


def trim(arr: zarr.Array, n_rows: int) -> zarr.Array:
    """Shrink ``arr`` to its first ``n_rows`` rows, deleting chunks past them (recovery only)."""
    if arr.shape[0] > n_rows:
        arr.resize((n_rows, *arr.shape[1:]))
    return arr


def remove_partials(root: str | os.PathLike[str]) -> int:
    """Delete the ``*.partial`` temp files a killed writer leaves behind; return how many."""
    n = 0
    for p in Path(root).rglob("*.partial"):
        p.unlink(missing_ok=True)
        n += 1
    return n
