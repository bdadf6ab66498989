"""Messages between a training process and its writer process.

Each message is a JSON document behind a 4-byte little-endian length, sent over a pipe. Arrays do
not travel in messages: they sit in a shared memory arena and a message names them by offset,
dtype and shape (no pickle, no copy through the pipe).
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import numpy as np
import numpy.typing as npt

_LENGTH = struct.Struct("<I")


def send(fd: int, doc: dict[str, Any]) -> None:
    """Write ``doc`` as one message to the pipe ``fd`` (blocking until all of it is written)."""
    body = json.dumps(doc, allow_nan=True).encode()
    data = memoryview(_LENGTH.pack(len(body)) + body)
    while data:
        data = data[os.write(fd, data) :]


class Reader:
    """Split what arrives on the pipe ``fd`` into messages."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buf = bytearray()
        self.eof = False

    def read(self) -> list[dict[str, Any]]:
        """Read what the pipe holds now (blocking until something does) and return its messages.

        Sets `eof` once the other end is closed.
        """
        chunk = os.read(self.fd, 1 << 16)
        if not chunk:
            self.eof = True
        self._buf += chunk
        docs = []
        while len(self._buf) >= _LENGTH.size:
            (n,) = _LENGTH.unpack_from(self._buf)
            if len(self._buf) < _LENGTH.size + n:
                break
            docs.append(json.loads(self._buf[_LENGTH.size : _LENGTH.size + n]))
            del self._buf[: _LENGTH.size + n]
        return docs


def describe(path: str, a: npt.NDArray[Any], offset: int) -> dict[str, Any]:
    """Return the message entry of array ``a`` stored at ``offset`` of the arena."""
    return {"path": path, "dtype": a.dtype.str, "shape": list(a.shape), "offset": offset}


def view(arena: Any, entry: dict[str, Any]) -> npt.NDArray[Any]:
    """Return the array an entry of `describe` names, as a view into ``arena``."""
    return np.ndarray(
        tuple(entry["shape"]), np.dtype(entry["dtype"]), buffer=arena, offset=entry["offset"]
    )
