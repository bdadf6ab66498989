"""The writer's file primitives: atomic writes with few system calls, chunk read-back."""

import errno
import os

import numpy as np
import pytest
import zarr

import hooks._zarr_io as zio


def test_atomic_write_leaves_no_temp_file_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "c.0"
    target.write_bytes(b"committed")

    def full(fd, parts):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zio.os, "writev", full)
    with pytest.raises(OSError, match="No space left on device"):
        zio._atomic_write(target, np.zeros(8, np.float32))
    assert target.read_bytes() == b"committed"  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.0"]


def test_atomic_write_skips_temp_names_a_killed_process_left(tmp_path, monkeypatch):
    import itertools

    monkeypatch.setattr(zio, "_TMP_IDS", itertools.count(7))
    stale = tmp_path / f"c.0.{os.getpid()}-7.partial"
    stale.write_bytes(b"stale")
    zio._atomic_write(tmp_path / "c.0", np.arange(4, dtype=np.int64))
    np.testing.assert_array_equal(np.fromfile(tmp_path / "c.0", np.int64), np.arange(4))
    assert stale.read_bytes() == b"stale"  # not overwritten: resume's cleanup removes it


def test_atomic_write_writes_everything_despite_short_writes(tmp_path, monkeypatch):
    real = os.writev
    monkeypatch.setattr(zio.os, "writev", lambda fd, parts: real(fd, [parts[0][:5]]))
    data = np.arange(100, dtype=np.float64)
    # also creates the missing folder; the checksum trailer follows the data
    zio._atomic_write(tmp_path / "sub" / "c.0", data, b"\x01\x02\x03\x04")
    raw = (tmp_path / "sub" / "c.0").read_bytes()
    np.testing.assert_array_equal(np.frombuffer(raw[:-4]), data)
    assert raw[-4:] == b"\x01\x02\x03\x04"


def test_a_truncated_chunk_stops_the_append_with_a_clear_error(tmp_path):
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    arr = zio.create_array(
        group, "a", shape=(0, 3), chunks=(4, 3), dtype="float32", dims=("r", "f"), compressors=None
    )
    zio.append_many([(arr, np.ones((2, 3), np.float32))])
    chunk = tmp_path / "g.zarr" / "a" / "c.0.0"
    chunk.write_bytes(chunk.read_bytes()[:10])
    with pytest.raises(OSError, match=r"c\.0\.0 holds 10 bytes, expected 52; the store is damaged"):
        zio.append_many([(arr, np.ones((1, 3), np.float32))])


def test_partly_filled_chunks_keep_their_committed_rows(tmp_path):
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    arr = zio.create_array(
        group, "a", shape=(0, 2), chunks=(4, 2), dtype="int64", dims=("r", "f"), compressors=None
    )
    rows = np.arange(14, dtype=np.int64).reshape(7, 2)
    for lo, hi in [(0, 1), (1, 3), (3, 7)]:
        zio.append_many([(arr, rows[lo:hi])])
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "g.zarr" / "a"))[:], rows)
