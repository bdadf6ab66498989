"""Writer and store round trips, back-pressure, disk-full handling, resume."""

import errno

import numpy as np
import pytest
import torch
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import probe
from hooks import (
    Recorder,
    RecorderClosedError,
    RecorderConfigError,
    ResumeMismatchError,
    SchemaMismatchError,
    StoreCorruptError,
    StoreExistsError,
    StoreNotWritableError,
    WriterError,
)
from hooks.writer import MetricRecord, RunWriter, Snapshot, StreamBatch

DTYPES = [np.float16, np.float32, np.float64, np.int32, np.int64, np.uint8]


def _root(path):
    root = zarr.open_group(str(path), mode="w")
    root.attrs.update(
        {
            "schema": "probe-run",
            "schema_version": 1,
            "layers": ["a"],
            "n_samples": 0,
            "n_committed": 0,
        }
    )
    return root


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n_samples=st.integers(1, 30),
    feat=st.lists(st.integers(1, 6), min_size=0, max_size=3),
    dtype=st.sampled_from(DTYPES),
    n_snap=st.integers(1, 6),
    flush_every=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_writer_roundtrip_any_shape_dtype_and_flushes(
    tmp_path_factory, n_samples, feat, dtype, n_snap, flush_every, seed
):
    path = tmp_path_factory.mktemp("w") / "run.zarr"
    rng = np.random.default_rng(seed)
    w = RunWriter(_root(path), max_bytes=1 << 16)
    data = []
    for i in range(n_snap):
        a = (rng.standard_normal((n_samples, *feat)) * 50).astype(dtype)
        data.append(a)
        w.put(
            Snapshot(
                i * 10,
                0,
                0.0,
                {"layers/a/acts": a},
                {"layers/a/acts": ("sample", *[f"f{j}" for j in range(len(feat))])},
            ),
            a.nbytes,
        )
        if (i + 1) % flush_every == 0:
            w.flush()
    w.close()
    run = probe.open_run(path)
    got = run.acts("a")
    assert got.dtype == dtype and got.shape == (n_snap, n_samples, *feat)
    np.testing.assert_array_equal(got, np.stack(data))
    np.testing.assert_array_equal(run.steps, np.arange(n_snap) * 10)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(st.integers(1, 40), min_size=1, max_size=12), width=st.integers(1, 300))
def test_stream_rows_roundtrip_across_chunk_boundaries(tmp_path_factory, batches, width):
    path = tmp_path_factory.mktemp("s") / "run.zarr"
    w = RunWriter(_root(path))
    w.store._stream_rows_per_chunk = 16  # small chunks so batches straddle boundaries
    rows, start = [], 0
    for step, n in enumerate(batches):
        a = np.arange(start * width, (start + n) * width, dtype=np.float32).reshape(n, width)
        rows.append(a)
        w.put(StreamBatch(step, np.arange(start, start + n), {"stream/a/acts": a}), a.nbytes)
        start += n
    w.close()
    s = probe.open_run(path).stream("a")
    np.testing.assert_array_equal(s.acts, np.concatenate(rows))
    np.testing.assert_array_equal(s.sample_id, np.arange(start))
    np.testing.assert_array_equal(s.step, np.repeat(np.arange(len(batches)), batches))


def test_back_pressure_bounds_queued_bytes(tmp_path, monkeypatch):
    import hooks._appender as amod
    import hooks._zarr_io as zio

    slow = zio.append_many

    def slow_append(pairs):
        import time

        time.sleep(0.01)
        return slow(pairs)

    monkeypatch.setattr(amod, "append_many", slow_append)
    budget = 3 * 4000
    w = RunWriter(_root(tmp_path / "r.zarr"), max_bytes=budget)
    for i in range(20):
        a = np.full((10, 100), i, np.float32)  # 4,000 bytes
        w.put(
            Snapshot(i, 0, 0.0, {"layers/a/acts": a}, {"layers/a/acts": ("sample", "f")}), a.nbytes
        )
    w.close()
    assert w.peak_bytes <= budget
    assert w.wait_s > 0  # the producer was held back
    np.testing.assert_array_equal(
        probe.open_run(tmp_path / "r.zarr").acts("a")[:, 0, 0], np.arange(20)
    )


def test_disk_full_stops_with_last_committed_step_and_store_stays_readable(
    tmp_path, monkeypatch, tiny_mlp, probe_xy
):
    from zarr.storage import LocalStore

    real_set = LocalStore.set
    state = {"armed": False}

    async def full_set(self, key, value):
        if state["armed"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return await real_set(self, key, value)

    import hooks._zarr_io as zio

    real_write = zio._atomic_write

    def full_write(path, data, trailer=b""):
        if state["armed"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, data, trailer)

    # Both write paths: zarr's store (metadata, small arrays) and the raw chunk writer.
    monkeypatch.setattr(LocalStore, "set", full_set)
    monkeypatch.setattr(zio, "_atomic_write", full_write)
    path = tmp_path / "r.zarr"
    rec = Recorder(tiny_mlp, layers="0", store=path, probe=probe_xy[0], every=1)
    rec.step(loss=1.0)
    rec.flush()
    state["armed"] = True
    rec.step(loss=2.0)
    with pytest.raises(
        WriterError, match=r"No space left on device.*last committed snapshot is step 1"
    ):
        rec.flush()
    with pytest.raises(OSError, match="resume=True"):  # WriterError is an OSError too
        rec.step()
    state["armed"] = False
    with pytest.raises(WriterError, match="last committed snapshot is step 1"):
        rec.close()
    run = probe.open_run(path)
    np.testing.assert_array_equal(run.steps, [0, 1])
    assert run.acts("0").shape == (2, 40, 16)
    # resume continues after the failure
    with Recorder(tiny_mlp, layers="0", store=path, probe=probe_xy[0], every=1, resume=True) as rec:
        assert rec.step_ == 1
        rec.step()
    np.testing.assert_array_equal(probe.open_run(path).steps, [0, 1, 2])


def test_resume_continues_and_validates(tmp_path, tiny_mlp, probe_xy):
    path = tmp_path / "r.zarr"
    x, y = probe_xy
    with Recorder(tiny_mlp, layers="0", store=path, probe=(x, y), every=2) as rec:
        for _ in range(4):
            rec.step(loss=1.0)
    with pytest.raises(StoreExistsError, match="pass resume=True to continue it or overwrite=True"):
        Recorder(tiny_mlp, layers="0", store=path, probe=(x, y))
    with pytest.raises(ResumeMismatchError, match="layers to match"):
        Recorder(tiny_mlp, layers="2", store=path, probe=(x, y), resume=True)
    with pytest.raises(ResumeMismatchError, match="probe_sha256 to match"):
        Recorder(tiny_mlp, layers="0", store=path, probe=(x + 1, y), resume=True)
    with Recorder(tiny_mlp, layers="0", store=path, probe=(x, y), every=2, resume=True) as rec:
        assert rec.step_ == 4 and rec.n_snapshots == 3
        assert probe.open_run(path).attrs["closed_utc"] is None  # recording again, not closed
        for _ in range(2):
            rec.step(loss=0.5)
    run = probe.open_run(path)
    assert run.attrs["closed_utc"]  # closed again by the resumed writer
    np.testing.assert_array_equal(run.steps, [0, 2, 4, 6])
    assert list(run.metrics()["step"]) == [1, 2, 3, 4, 5, 6]
    assert run.attrs["n_resumes"] == 1
    with Recorder(tiny_mlp, layers="0", store=path, probe=(x, y), overwrite=True) as rec:
        pass
    assert probe.open_run(path).n_snapshots == 1  # replaced: only the final snapshot at step 0


def test_store_path_problems(tmp_path, tiny_mlp, probe_xy):
    x = probe_xy[0]
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.txt").write_text("not a run")
    with pytest.raises(SchemaMismatchError, match="exists and is not a probe run"):
        Recorder(tiny_mlp, layers="0", store=other, probe=x)
    assert (other / "data.txt").read_text() == "not a run"
    with pytest.raises(SchemaMismatchError, match="no zarr group metadata"):
        Recorder(tiny_mlp, layers="0", store=other, probe=x, resume=True)
    foreign = tmp_path / "foreign.zarr"
    zarr.open_group(str(foreign), mode="w").attrs.update(
        {"schema": "probe-run", "schema_version": 99}
    )
    with pytest.raises(SchemaMismatchError, match="schema_version must be 1; got 99"):
        Recorder(tiny_mlp, layers="0", store=foreign, probe=x, resume=True)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreNotWritableError, match="must be a writable folder"):
        Recorder(tiny_mlp, layers="0", store=blocker / "run.zarr", probe=x)
    with pytest.raises(StoreNotWritableError, match="must be a writable folder"):
        Recorder(tiny_mlp, layers="0", store="/proc/probe-test/run.zarr", probe=x)


def test_resume_rejects_corrupted_metadata(tmp_path, tiny_mlp, probe_xy):
    path = tmp_path / "r.zarr"
    with Recorder(tiny_mlp, layers="0", store=path, probe=probe_xy[0], every=1) as rec:
        rec.step()
    (path / "zarr.json").write_text("{ not json")
    with pytest.raises(StoreCorruptError, match="cannot be parsed"):
        Recorder(tiny_mlp, layers="0", store=path, probe=probe_xy[0], resume=True)
    with pytest.raises(StoreCorruptError, match="cannot be parsed"):
        Recorder(tiny_mlp, layers="0", store=path, probe=probe_xy[0], overwrite=True)


def test_resume_rejects_counters_past_the_data(tmp_path, tiny_mlp, probe_xy):
    path = tmp_path / "r.zarr"
    with Recorder(tiny_mlp, layers="0", store=path, probe=probe_xy[0], every=1) as rec:
        rec.step()
    root = zarr.open_group(str(path), mode="r+")
    root.attrs.update({"n_committed": 9})
    with pytest.raises(StoreCorruptError, match="counters do not match their digest"):
        Recorder(tiny_mlp, layers="0", store=path, probe=probe_xy[0], resume=True)
    del root.attrs["commit_digest"]  # a run written before the digest: the rows still tell
    with pytest.raises(StoreCorruptError, match="counters say 9 were committed"):
        Recorder(tiny_mlp, layers="0", store=path, probe=probe_xy[0], resume=True)


def test_metric_columns_appear_late_and_missing_layers_fill(tmp_path):
    w = RunWriter(_root(tmp_path / "r.zarr"), metrics_every=2)
    w.put(MetricRecord(1, 0, {"loss": 1.0}))
    w.put(MetricRecord(2, 0, {"loss": 0.5}))
    w.put(MetricRecord(3, 0, {"acc": torch.tensor(0.75)}))
    a = np.ones((2, 3), np.float32)
    dims = {"layers/a/acts": ("sample", "f"), "layers/b/acts": ("sample", "g")}
    w.put(Snapshot(3, 0, 0.0, {"layers/a/acts": a, "layers/b/acts": a}, dims))
    w.put(Snapshot(4, 0, 0.0, {"layers/a/acts": a}, dims))  # b did not fire this time
    w.close()
    root = zarr.open_group(str(tmp_path / "r.zarr"), mode="r")
    np.testing.assert_array_equal(root["metrics/loss"][:], [1.0, 0.5, np.nan])
    np.testing.assert_array_equal(root["metrics/acc"][:], [np.nan, np.nan, 0.75])
    b = root["layers/b/acts"][:]
    assert b.shape == (2, 2, 3) and np.isnan(b[1]).all() and (b[0] == 1).all()


@pytest.mark.parametrize("compressors", ["zstd", "blosc"])
def test_compressed_runs_roundtrip_through_zarr(tmp_path, tiny_mlp, probe_xy, compressors):
    path = tmp_path / "r.zarr"
    with Recorder(
        tiny_mlp, layers="1", store=path, probe=probe_xy[0], every=1, compressors=compressors
    ) as rec:
        for _ in range(3):
            with rec.watch():
                tiny_mlp(probe_xy[0])
            rec.step()
    run = probe.open_run(path)
    meta = zarr.open_array(str(path / "layers/1/acts")).metadata
    assert len(meta.codecs) == 3  # bytes + compressor + crc32c: written by zarr, not the raw path
    with torch.no_grad():
        expected = torch.relu(tiny_mlp[0](probe_xy[0])).numpy()
    np.testing.assert_array_equal(run.acts("1", -1), expected)
    np.testing.assert_array_equal(run.stream("1").acts[-40:], expected)


def test_bad_compressors(tmp_path, tiny_mlp):
    with pytest.raises(RecorderConfigError, match="'compressors' must be None, one of"):
        Recorder(tiny_mlp, layers="0", store=tmp_path / "r.zarr", compressors="lzma")
    assert not (tmp_path / "r.zarr").exists()


def test_resume_with_another_layer_width_fails_clearly(tmp_path, probe_xy):
    path = tmp_path / "r.zarr"
    x = probe_xy[0]
    with Recorder(nn.Sequential(nn.Linear(8, 16)), layers="0", store=path, probe=x, every=1) as rec:
        rec.step()
    wider = nn.Sequential(nn.Linear(8, 32))
    rec = Recorder(wider, layers="0", store=path, probe=x, every=1, resume=True)
    rec.step()  # queues a snapshot of width 32 for a store whose layer has width 16
    shape_msg = r"'layers/0/acts' in the store has rows of shape \(40, 16\)"
    with pytest.raises(WriterError, match=shape_msg):
        rec.flush()
    with pytest.raises(WriterError, match="last committed snapshot is step 1"):
        rec.close()
    assert probe.open_run(path).n_snapshots == 2  # the earlier run is intact


def test_append_many_rejects_rows_of_another_shape(tmp_path):
    from hooks._zarr_io import append_many, create_array

    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    arr = create_array(
        group, "a", shape=(0, 3), chunks=(4, 3), dtype="float32", dims=("r", "f"), compressors=None
    )
    with pytest.raises(
        ValueError, match=r"rows to append to 'a' must have shape \(n, 3\); got \(2, 4\)"
    ):
        append_many([(arr, np.zeros((2, 4), np.float32))])
    assert arr.shape == (0, 3)


def test_put_after_close_is_refused(tmp_path):
    w = RunWriter(_root(tmp_path / "r.zarr"))
    w.close()
    with pytest.raises(RecorderClosedError, match="the run's writer is closed"):
        w.put(MetricRecord(1, 0, {"loss": 1.0}))


def test_snapshot_batches_share_chunks_and_fill_late_or_missing_layers(tmp_path):
    """A writer that fell behind appends queued snapshots together (`write_snapshots`)."""
    path = tmp_path / "r.zarr"
    w = RunWriter(_root(path))
    dims = {"layers/a/acts": ("sample", "f"), "layers/b/acts": ("sample", "f")}
    a = [np.full((2, 3), i, np.float32) for i in range(7)]
    w.store.write_snapshots([Snapshot(i, 0, 0.0, {"layers/a/acts": a[i]}, dims) for i in range(3)])
    # b appears in the middle of the second batch; a is missing from its last snapshot
    batch = [
        Snapshot(3, 0, 0.0, {"layers/a/acts": a[3]}, dims),
        Snapshot(4, 1, 0.0, {"layers/a/acts": a[4], "layers/b/acts": -a[4]}, dims),
        Snapshot(5, 1, 0.0, {"layers/b/acts": -a[5]}, dims),
    ]
    w.store.write_snapshots(batch)
    w.store.write_snapshots(
        [Snapshot(6, 1, 0.0, {"layers/a/acts": a[6], "layers/b/acts": -a[6]}, dims)]
    )
    w.close()
    run = probe.open_run(path)
    np.testing.assert_array_equal(run.steps, np.arange(7))
    got_a = run.acts("a")
    got_b = zarr.open_array(str(path / "layers/b/acts"))[:]  # `_root` lists only layer a
    np.testing.assert_array_equal(got_a[[0, 1, 2, 3, 4, 6]], np.stack(a)[[0, 1, 2, 3, 4, 6]])
    assert np.isnan(got_a[5]).all()
    assert np.isnan(got_b[:4]).all()
    np.testing.assert_array_equal(got_b[4:], -np.stack(a[4:]))
    # small rows share one chunk along `snapshot`, rewritten whole as it grows
    assert zarr.open_array(str(path / "layers/a/acts")).chunks[0] > 1
    assert sorted(p.name for p in (path / "layers/a/acts").glob("c.*")) == ["c.0.0.0"]


def test_small_items_wake_the_writer_only_in_bulk(tmp_path):
    """Metric records and stream batches do not wake the writer per put: a wake-up per training
    step costs the training thread GIL hand-offs."""
    w = RunWriter(_root(tmp_path / "r.zarr"), metrics_every=4, metrics_interval_s=60)
    ids = np.arange(2)
    for step in range(1, 4):
        w.put(MetricRecord(step, 0, {"loss": float(step)}), 64)
    assert w.n_wakeups == 0
    w.put(StreamBatch(3, ids, {"stream/a/acts": np.ones((2, 4), np.float32)}), 32)
    assert w.n_wakeups == 1  # the fourth small item
    w.flush()
    w.put(StreamBatch(4, ids, {"stream/a/acts": np.ones((2, 4), np.float32)}), 5 << 20)
    assert w.n_wakeups == 3  # the flush, then enough bytes
    a = np.ones((2, 3), np.float32)
    w.put(Snapshot(4, 0, 0.0, {"layers/a/acts": a}, {"layers/a/acts": ("sample", "f")}), a.nbytes)
    assert w.n_wakeups == 4  # a snapshot wakes it at once
    w.close()
    run = probe.open_run(tmp_path / "r.zarr")
    assert run.metrics()["loss"].tolist() == [1.0, 2.0, 3.0]
    assert run.n_stream_rows == 4 and run.n_snapshots == 1


def test_lazily_queued_metrics_land_within_the_interval_without_a_flush(tmp_path):
    import time

    path = tmp_path / "r.zarr"
    w = RunWriter(_root(path), metrics_interval_s=0.1)
    for step in range(1, 4):
        w.put(MetricRecord(step, 0, {"loss": float(step)}), 64)
    assert w.n_wakeups == 0
    deadline = time.monotonic() + 10
    while zarr.open_group(str(path), mode="r").attrs.get("n_metric_records", 0) < 3:
        assert time.monotonic() < deadline, "queued metrics were never written"
        time.sleep(0.02)
    w.close()
    assert probe.open_run(path).metrics()["loss"].tolist() == [1.0, 2.0, 3.0]


def test_wake_bytes_is_capped_by_the_queue_budget(tmp_path):
    w = RunWriter(_root(tmp_path / "r.zarr"), max_bytes=4000, wake_bytes=1 << 30)
    assert w.wake_bytes == 1000  # the writer wakes long before producers block
    for i in range(20):  # stream batches alone fill the budget: no deadlock
        w.put(StreamBatch(i, np.arange(10), {"stream/a/acts": np.ones((10, 25), np.float32)}), 1000)
    w.close()
    assert probe.open_run(tmp_path / "r.zarr").n_stream_rows == 200


class _LandsOnSync:
    """Stands in for a CUDA event: the arrays are filled only when the writer synchronises."""

    def __init__(self, arrays, value):
        self.arrays, self.value, self.calls = arrays, value, 0

    def synchronize(self):
        self.calls += 1
        for a in self.arrays:
            a[...] = self.value


def test_writer_reads_device_copies_only_after_their_event(tmp_path):
    path = tmp_path / "r.zarr"
    w = RunWriter(_root(path))
    a = np.zeros((4, 3), np.float32)  # "in flight": zeros until synchronised
    s = np.zeros((2, 3), np.float32)
    snap_ready, stream_ready = _LandsOnSync([a], 7.0), _LandsOnSync([s], 5.0)
    dims = {"layers/a/acts": ("sample", "f")}
    w.put(Snapshot(1, 0, 0.0, {"layers/a/acts": a}, dims, snap_ready), a.nbytes)
    w.put(StreamBatch(1, np.arange(2), {"stream/a/acts": s}, stream_ready), s.nbytes)
    w.close()
    run = probe.open_run(path)
    np.testing.assert_array_equal(run.acts("a", 1), np.full((4, 3), 7.0, np.float32))
    np.testing.assert_array_equal(run.stream("a").acts, np.full((2, 3), 5.0, np.float32))
    assert snap_ready.calls == 1 and stream_ready.calls == 1


def test_writer_on_a_store_other_than_local_disk_goes_through_zarr(tmp_path):
    store = zarr.storage.MemoryStore()
    root = zarr.open_group(store, mode="w")
    root.attrs.update({"schema": "probe-run", "n_committed": 0})
    w = RunWriter(root)
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    w.put(Snapshot(5, 0, 0.0, {"layers/a/acts": a}, {"layers/a/acts": ("sample", "f")}), a.nbytes)
    w.put(MetricRecord(5, 0, {"loss": 0.5}))
    w.close()
    back = zarr.open_group(store, mode="r")
    assert back.attrs["n_committed"] == 1 and back.attrs["last_step"] == 5
    assert back.attrs["n_metric_records"] == 1
    np.testing.assert_array_equal(back["layers/a/acts"][:], a[None])
    np.testing.assert_array_equal(back["metrics/loss"][:], [0.5])


@pytest.mark.parametrize("separator", [".", "/"])
def test_appends_follow_each_arrays_chunk_key_encoding(tmp_path, separator):
    """New arrays use flat "." keys; arrays of stores written with "/" keys still append."""
    from hooks._zarr_io import append_many

    arr = zarr.open_group(str(tmp_path / "g.zarr"), mode="w").create_array(
        "a",
        shape=(0, 3, 2),
        chunks=(1, 2, 2),
        dtype=np.float32,
        fill_value=np.nan,
        chunk_key_encoding={"name": "default", "separator": separator},
    )
    rows = np.arange(24, dtype=np.float32).reshape(4, 3, 2)
    append_many([(arr, rows[:1])])
    append_many([(arr, rows[1:])])
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "g.zarr/a"))[:], rows)
    folder = tmp_path / "g.zarr/a"
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    expected = "c.3.1.0" if separator == "." else "c/3/1/0"
    assert expected in files


def test_recorded_arrays_keep_their_chunks_in_one_folder(tmp_path, tiny_mlp, probe_xy):
    with Recorder(
        tiny_mlp, layers="0", store=tmp_path / "r.zarr", probe=probe_xy[0], every=1
    ) as rec:
        for _ in range(3):
            rec.step()
    folder = tmp_path / "r.zarr" / "layers" / "0" / "acts"
    assert not [p for p in folder.iterdir() if p.is_dir()]
    assert probe.open_run(tmp_path / "r.zarr").acts("0").shape[0] == 4
