"""Crash-safe zarr primitives: data-first append, trim to a committed length, stray-file cleanup.

`append_many` writes the new chunks *beyond* the array's current shape and only then rewrites its
``zarr.json`` with the grown shape (one atomic rename in zarr >= 3.1.3's LocalStore). A reader or a
killed writer therefore never sees rows whose data is missing; zarr's own ``Array.append`` does the
opposite order (docs/storage.md §2). Uses ``AsyncArray`` construction, a semi-internal API:
zarr is pinned to 3.1.x and tests/hooks/test_crash.py guards the behaviour.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import google_crc32c
import numpy as np
import numpy.typing as npt
import zarr
from zarr.codecs import BytesCodec, Crc32cCodec
from zarr.codecs.bytes import Endian
from zarr.core.array import AsyncArray
from zarr.core.buffer import default_buffer_prototype
from zarr.core.chunk_grids import RegularChunkGrid
from zarr.core.sync import sync
from zarr.storage import LocalStore

_TMP_IDS = itertools.count()
_PID = [os.getpid()]  # cached: os.getpid is a system call; refreshed in a forked child
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))
_CREATE = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
)


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
) -> zarr.Array[Any]:
    """Create an array that grows along axis 0, every chunk checksummed.

    Every chunk ends with the crc32c of its (compressed) bytes: zarr's ``crc32c`` codec, which
    zarr and xarray verify on every read, so a damaged chunk raises instead of returning wrong
    numbers. Every chunk of every written row is stored, even one equal to the fill value, so a
    missing chunk file is always damage (`probe.open_run` raises on it), never "all fill".

    Chunk keys use the "." separator (``c.12.0.0``): every chunk of the array sits in its
    folder, so a new snapshot row makes no directories (a mkdir and a failed open per level
    cost ~15 % of the writer's time on 6.7 MB snapshots).
    """
    dtype = np.dtype(dtype)
    codecs = tuple(cast(Any, compressors)) if compressors is not None else ()
    return group.create_array(
        name,
        shape=tuple(shape),
        chunks=tuple(chunks),
        dtype=dtype,
        fill_value=fill_value(dtype),
        compressors=(*codecs, Crc32cCodec()),
        dimension_names=tuple(dims),
        chunk_key_encoding={"name": "default", "separator": "."},
        config={"write_empty_chunks": True},
    )


def has_checksums(arr: zarr.Array[Any]) -> bool:
    """Return whether ``arr``'s chunks end with a crc32c (arrays written since checksums)."""
    return any(isinstance(c, Crc32cCodec) for c in getattr(arr.metadata, "codecs", ()))


def append_many(pairs: Sequence[tuple[zarr.Array[Any], npt.NDArray[np.generic]]]) -> None:
    """Append rows to several arrays: all chunks first, then all ``zarr.json``, each atomically.

    Chunks of uncompressed arrays on local disk are written straight to their files
    (`_write_raw_chunks`); the rest go through zarr in one concurrent round. zarr's own
    path costs ~1 ms of CPU per file, taken from the training process.
    """
    plans, via_zarr = [], []
    for arr, data in pairs:
        if data.shape[1:] != arr.shape[1:]:
            msg = (
                f"rows to append to {arr.path!r} must have shape "
                f"(n, {', '.join(map(str, arr.shape[1:]))}); got {data.shape}."
            )
            raise ValueError(msg)
        aa = arr.async_array
        old = aa.metadata.shape[0]
        meta = aa.metadata.update_shape((old + data.shape[0], *aa.metadata.shape[1:]))
        folder, crc = _raw_folder(aa)
        if folder is not None:
            _write_raw_chunks(folder, meta, old, data, crc=crc)
        else:
            # Every chunk is written, even all-fill ones: a missing chunk then means damage.
            config = dataclasses.replace(aa.config, write_empty_chunks=True)
            grown = AsyncArray(metadata=meta, store_path=aa.store_path, config=config)
            via_zarr.append(grown.setitem(slice(old, None), data))
        plans.append((aa, meta, folder))

    async def write_chunks() -> None:
        await asyncio.gather(*via_zarr)

    if via_zarr:
        sync(write_chunks())
    # Only now the grown shapes: a reader never sees rows whose chunks are missing.
    for aa, meta, folder in plans:
        if folder is None:
            sync(aa.resize(meta.shape))
        else:
            _atomic_write(folder / "zarr.json", _metadata_bytes(meta))
            object.__setattr__(aa, "metadata", meta)  # what zarr's own resize does in memory


def update_attributes(group: zarr.Group, updates: Mapping[str, Any]) -> None:
    """Merge ``updates`` into the group's attrs with one atomic ``zarr.json`` write.

    On local disk the file is written directly (what zarr's `update_attributes` does, minus
    the hop through zarr's event-loop thread: ~4 ms per commit); elsewhere through zarr.
    """
    store = group.store_path.store
    if not isinstance(store, LocalStore):
        group.update_attributes(dict(updates))
        return
    meta = group.metadata
    meta.attributes.update(updates)  # zarr keeps the in-memory attrs in sync the same way
    _atomic_write(Path(store.root) / group.store_path.path / "zarr.json", _metadata_bytes(meta))


def _raw_folder(aa: AsyncArray[Any]) -> tuple[Path | None, bool]:
    """Return the array's folder when its chunks are plain little-endian bytes on local disk.

    Also returns whether each chunk ends with a crc32c of its bytes (the ``crc32c`` codec).
    """
    meta = aa.metadata
    store = aa.store_path.store
    codecs = tuple(getattr(meta, "codecs", ()))
    crc = bool(codecs) and isinstance(codecs[-1], Crc32cCodec)
    body = codecs[:-1] if crc else codecs
    if (
        isinstance(store, LocalStore)
        and len(body) == 1
        and isinstance(body[0], BytesCodec)
        and body[0].endian in (None, Endian.little)
        and isinstance(meta.chunk_grid, RegularChunkGrid)
    ):
        return Path(store.root) / aa.store_path.path, crc
    return None, False


def crc32c_bytes(data: npt.NDArray[Any] | bytes) -> bytes:
    """Return the 4-byte little-endian crc32c of ``data``'s bytes, as zarr's codec appends it."""
    if isinstance(data, np.ndarray):
        data = data.view()
        data.flags.writeable = False  # google_crc32c takes read-only buffers only
    return struct.pack("<I", google_crc32c.value(data))


def _write_raw_chunks(
    folder: Path, meta: Any, start: int, data: npt.NDArray[Any], *, crc: bool
) -> None:
    """Write ``data`` as rows ``start:`` of the array, one whole chunk file at a time.

    A chunk that already holds committed rows (``start`` not on a chunk boundary) is read back
    (its checksum verified), its rows before ``start`` kept, and rewritten whole: the rename
    makes the rewrite atomic, so a reader sees either the old chunk or the new one, both with
    every committed row intact. Rows past the data are padded with the fill value. With ``crc``
    each file ends with the crc32c of the chunk's bytes.
    """
    chunks = meta.chunk_grid.chunk_shape
    dtype = data.dtype.newbyteorder("<")
    fill = fill_value(dtype)
    first = start // chunks[0]
    grid = [range(first, -(-meta.shape[0] // chunks[0]))]
    grid += [range(-(-s // c)) for s, c in zip(meta.shape[1:], chunks[1:], strict=True)]
    for idx in itertools.product(*grid):
        lo = [i * c for i, c in zip(idx, chunks, strict=True)]
        path = folder / meta.encode_chunk_key(idx)
        keep = max(0, start - lo[0])  # committed rows at the head of this chunk
        lo[0] = max(0, lo[0] - start)
        rows = chunks[0] - keep
        block = data[
            (
                slice(lo[0], lo[0] + rows),
                *(slice(a, a + c) for a, c in zip(lo[1:], chunks[1:], strict=True)),
            )
        ]
        if keep == 0 and block.shape == tuple(chunks):
            out = np.ascontiguousarray(block, dtype)
        else:
            out = np.full(chunks, fill, dtype)
            old = _read_chunk(path, out.nbytes, crc) if keep else None
            if old is not None:  # no file (a run written before checksums): all fill
                out[:keep] = np.frombuffer(old, dtype).reshape(chunks)[:keep]
            out[(slice(keep, keep + block.shape[0]), *(slice(0, b) for b in block.shape[1:]))] = (
                block
            )
        _atomic_write(path, out, crc32c_bytes(out) if crc else b"")


def _read_chunk(path: Path, nbytes: int, crc: bool) -> bytes | None:
    """Return the ``nbytes`` of data of a raw chunk file, its checksum verified (None: no file).

    Raises
    ------
    OSError
        The file is short, or its bytes do not match its crc32c: the store is damaged.
    """
    data = _read_file(path, nbytes + 4 * crc)
    if data is None or not crc:
        return data
    body = data[:nbytes]
    if crc32c_bytes(body) != data[nbytes:]:
        msg = f"chunk {path} does not match its crc32c checksum; the store is damaged."
        raise OSError(msg)
    return body


def _read_file(path: Path, nbytes: int) -> bytes | None:
    """Return the first ``nbytes`` of the file at ``path`` (None: no such file).

    Three system calls; ``np.fromfile`` makes about twenty (see `_atomic_write` for why
    that matters).
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        return None
    try:
        parts, left = [], nbytes
        while left:
            part = os.read(fd, left)
            if not part:
                break
            parts.append(part)
            left -= len(part)
    finally:
        os.close(fd)
    data = b"".join(parts)
    if len(data) != nbytes:
        msg = f"chunk {path} holds {len(data)} bytes, expected {nbytes}; the store is damaged."
        raise OSError(msg)
    return data


def _metadata_bytes(meta: Any) -> bytes:
    return bytes(meta.to_buffer_dict(default_buffer_prototype())["zarr.json"].to_bytes())


def _atomic_write(path: Path, data: bytes | npt.NDArray[Any], trailer: bytes = b"") -> None:
    """Write via a ``*.partial`` temp file and rename (zarr's LocalStore convention).

    Four system calls per file (open, write, close, rename): each one releases the GIL, and the
    training thread waits whenever the writer thread takes it back, so Python's buffered
    ``open`` (about ten calls per file, plus ``getrandom`` for a uuid) cost training time.
    The temp name is unique per process (pid and a counter; ``O_EXCL`` guards against a
    killed process's leftovers). ``trailer`` (a checksum) follows ``data`` in the same file.
    """
    view = (
        memoryview(cast(Any, data)).cast("B") if isinstance(data, np.ndarray) else memoryview(data)
    )
    parts = [view, memoryview(trailer)] if trailer else [view]
    while True:
        tmp = f"{path}.{_PID[0]}-{next(_TMP_IDS)}.partial"
        try:
            fd = os.open(tmp, _CREATE, 0o666)
        except FileNotFoundError:  # first chunk in a new folder: one mkdir, not one per chunk
            path.parent.mkdir(parents=True, exist_ok=True)
            continue
        except FileExistsError:  # a leftover of a killed process with the same pid
            continue
        break
    try:
        _write_all(fd, parts)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)


def _write_all(fd: int, parts: list[memoryview]) -> None:
    """Write every byte of ``parts`` to ``fd``: one ``writev`` call unless it writes short."""
    while parts:
        n = os.writev(fd, parts)
        while parts and n >= len(parts[0]):
            n -= len(parts[0])
            parts = parts[1:]
        if parts:
            parts = [parts[0][n:], *parts[1:]]


def trim(arr: zarr.Array[Any], n_rows: int) -> zarr.Array[Any]:
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
