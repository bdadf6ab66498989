import hashlib
import json

import numpy as np
import pandas as pd

from probe.analysis.summaries import summaries
from probe.serve.cache import RunCache
from probe.serve.catalog import RunEntry


def _entry(path):
    return RunEntry(path.name, path)


def _tree_digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + p.read_bytes())
    return h.hexdigest()


def test_summaries_match_probe_analysis_summaries(sweep):
    path = sweep / "runs" / "lr=0.2" / "run.zarr"
    cache = RunCache(_entry(path))
    cache.update(budget_s=60)
    got = cache.summaries().rename(columns={"class_separation": "centroid_separation"})
    want = summaries(path)
    cols = ["layer", "step", "cka_prev", "effective_rank", "centroid_separation"]
    got = got[cols].sort_values(["layer", "step"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want[cols], check_dtype=False)
    assert cache.state == "closed" and cache.n_done == 7 and cache.error is None


def test_only_new_snapshots_are_summarised_as_a_recorder_appends(tmp_path, record, monkeypatch):
    path = tmp_path / "r.zarr"
    rec = record(path, 3, close=False)
    rec.flush()
    try:
        cache = RunCache(_entry(path))
        cache.update(budget_s=60)
        n_first = cache.n_done
        assert cache.state == "recording" and n_first >= 1
        seen = []
        original = cache._summarise
        monkeypatch.setattr(cache, "_summarise", lambda run, i: (seen.append(i), original(run, i)))
        rec.snapshot()
        rec.flush()
    finally:
        rec.close()
    cache.update(budget_s=60)
    assert seen == list(range(n_first, cache.run.n_snapshots))
    assert cache.state == "closed"
    assert len(cache.summaries()) == 2 * cache.run.n_snapshots


def test_a_budget_of_zero_summarises_one_snapshot_per_update(sweep):
    cache = RunCache(_entry(sweep / "runs" / "lr=0.2" / "run.zarr"))
    cache.update(budget_s=0.0)
    assert cache.n_done == 1 and len(cache.summaries()) == 2
    cache.update(budget_s=0.0)
    assert cache.n_done == 2


def test_reading_never_writes_to_the_store(sweep):
    path = sweep / "runs" / "lr=0.1" / "run.zarr"
    before = _tree_digest(path)
    cache = RunCache(_entry(path))
    cache.update(budget_s=60)
    cache.metrics()
    assert _tree_digest(path) == before


def test_a_malformed_store_becomes_an_error_and_recovers_when_fixed(tmp_path, record):
    path = tmp_path / "r.zarr"
    record(path, 2)
    meta = path / "zarr.json"
    good = meta.read_text()
    meta.write_text(good[: len(good) // 2])  # a partly written root: not JSON
    cache = RunCache(_entry(path))
    assert cache.update() is None and cache.run is None
    assert cache.error.startswith("CorruptRunError") and "zarr.json" in cache.error
    assert cache.error in cache.version()
    meta.write_text(good)
    assert cache.update() is not None and cache.error is None


def test_a_damaged_chunk_is_reported_and_the_run_still_shown(tmp_path, record):
    path = tmp_path / "r.zarr"
    record(path, 3)
    (chunk,) = (path / "layers" / "2" / "acts").glob("c.*")  # every snapshot of layer 2
    chunk.write_bytes(b"\0" * 7)
    cache = RunCache(_entry(path))
    for _ in range(3):  # polls go on: each snapshot is summarised once, layer 2 as NaN
        cache.update(budget_s=60)
    assert cache.error is None and cache.run is not None
    assert cache.damage.startswith("step 0, layer 2: CorruptRunError")
    assert "layers/2/acts" in cache.damage and cache.damage in cache.version()
    table = cache.summaries()
    assert len(table) == 2 * 4 and cache.n_done == 4  # one row per (snapshot, layer), no repeats
    assert table[table["layer"] == "2"][["cka_prev", "effective_rank"]].isna().all(axis=None)
    assert np.isfinite(table[table["layer"] == "0"]["effective_rank"]).all()
    assert np.isfinite(table[table["layer"] == "0"]["cka_prev"].iloc[1:]).all()


def test_damaged_metrics_leave_the_rest_of_the_run_shown(tmp_path, record):
    path = tmp_path / "r.zarr"
    record(path, 3)
    for chunk in (path / "metrics" / "loss").glob("c.*"):
        chunk.write_bytes(b"\0" * 7)
    cache = RunCache(_entry(path))
    cache.update(budget_s=60)
    assert list(cache.metrics().columns) == ["step"] and len(cache.metrics()) == 0
    assert cache.damage.startswith("metrics: CorruptRunError")
    assert cache.error is None and cache.n_done == 4


def test_a_process_writer_is_read_while_it_records(tmp_path, record):
    path = tmp_path / "p.zarr"
    rec = record(path, 2, close=False, writer="process")
    try:
        cache = RunCache(_entry(path))
        cache.update(budget_s=60)
        assert cache.state == "recording"
    finally:
        rec.close()
    cache.update(budget_s=60)
    assert cache.state == "closed" and cache.n_done == 3
    assert json.loads((path / "zarr.json").read_text())["attributes"]["closed_utc"]


def _live(record, path, n_steps):
    """Return a recorder left open on ``path`` (its steps committed) and a cache that read it."""
    rec = record(path, n_steps, close=False)
    rec.flush()
    cache = RunCache(_entry(path))
    cache.update(budget_s=60)
    return rec, cache


def test_version_changes_only_with_new_work(tmp_path, record):
    rec, cache = _live(record, tmp_path / "r.zarr", 2)
    try:
        v = cache.version()
        cache.update(budget_s=0.0)
        assert cache.version() == v  # nothing new
        rec.step(loss=0.5)
        rec.flush()
        cache.update(budget_s=0.0)
        assert cache.version() != v and cache.n_done == 4
        assert cache.metrics()["loss"].iloc[-1] == 0.5  # the live run's curves follow it
    finally:
        rec.close()


def test_ranks_appending_are_seen_as_they_commit(tmp_path, record):
    path = tmp_path / "ddp.zarr"
    rank0 = record(path, 2, close=False, rank=0, world_size=2)
    rank1 = record(path, 2, close=False, rank=1, world_size=2)
    try:
        for rec in (rank0, rank1):
            rec.flush()
        cache = RunCache(_entry(path))
        cache.update(budget_s=60)
        n0 = cache.run.n_snapshots
        assert cache.state == "recording" and n0 == cache.n_done >= 2
        rank0.step(loss=0.0)
        rank0.flush()
        cache.update(budget_s=60)
        assert cache.run.n_snapshots == n0  # only snapshots committed on every rank are shown
        rank1.step(loss=0.0)
        rank1.flush()
        cache.update(budget_s=60)
        assert cache.run.n_snapshots == cache.n_done == n0 + 1
    finally:
        rank1.close()
        cache.update(budget_s=60)
        assert cache.state == "recording"  # rank 0 still writes
        rank0.close()
    cache.update(budget_s=60)
    assert cache.state == "closed" and cache.n_done == cache.run.n_snapshots >= n0 + 1


def test_a_closed_run_is_not_reread_until_its_metadata_changes(tmp_path, record, monkeypatch):
    from probe.store import Run

    path = tmp_path / "r.zarr"
    record(path, 2)
    cache = RunCache(_entry(path))
    assert cache.refresh().n_snapshots == 3 and cache.state == "closed"
    reads = []
    real = Run.refresh
    monkeypatch.setattr(Run, "refresh", lambda self: (reads.append(1), real(self))[1])
    for _ in range(3):
        assert cache.refresh().n_snapshots == 3
    assert reads == []
    record(path, 2, resume=True)  # resuming rewrites the root attrs: the run is read again
    assert cache.refresh().n_snapshots > 3 and reads


def test_a_run_rewritten_with_equal_counts_is_recomputed(tmp_path, record):
    path = tmp_path / "r.zarr"
    record(path, 3, config={"lr": 0.1})
    cache = RunCache(_entry(path))
    cache.update(budget_s=60)
    cache.metrics()
    cache.memo[("a view",)] = "of the old run"
    old_rank, old_version = cache.summaries()["effective_rank"].to_numpy(), cache.version()
    # a different net: other activations and losses, the same counts
    record(path, 3, config={"lr": 0.2}, overwrite=True, torch_seed=1)
    cache.update(budget_s=60)
    fresh = RunCache(_entry(path))
    fresh.update(budget_s=60)
    assert cache.generation == 1 and cache.version() != old_version
    assert ("a view",) not in cache.memo
    pd.testing.assert_frame_equal(cache.summaries(), fresh.summaries())
    pd.testing.assert_frame_equal(cache.metrics(), fresh.metrics())
    assert not np.allclose(cache.summaries()["effective_rank"], old_rank)
    assert cache.run.attrs["config"] == {"lr": 0.2}


def test_a_resumed_run_records_and_its_new_commits_are_shown(tmp_path, record):
    path = tmp_path / "r.zarr"
    record(path, 2)
    cache = RunCache(_entry(path))
    cache.update(budget_s=60)
    assert cache.state == "closed"
    rec = record(path, 2, resume=True, close=False)
    try:
        rec.flush()
        cache.update(budget_s=60)
        assert cache.state == "recording" and cache.n_done == cache.run.n_snapshots > 3
    finally:
        rec.close()
    cache.update(budget_s=60)
    assert cache.state == "closed"


def test_a_multi_process_run_is_summarised_merged_and_read_again_when_resumed(tmp_path, record):
    path = tmp_path / "ddp.zarr"
    for rank in (0, 1):
        record(path, 2, rank=rank, world_size=2)
    cache = RunCache(_entry(path))
    cache.update(budget_s=60)
    assert cache.state == "closed" and cache.run.world_size == 2
    assert cache.n_done == cache.run.n_snapshots == 3
    assert np.isfinite(cache.summaries()["effective_rank"]).all()  # over the merged probe set
    ranks = [record(path, 2, rank=r, world_size=2, resume=True, close=False) for r in (0, 1)]
    try:
        for rec in ranks:
            rec.flush()
        cache.update(budget_s=60)
        assert cache.state == "recording" and cache.n_done == cache.run.n_snapshots > 3
    finally:
        for rec in ranks:
            rec.close()
    cache.update(budget_s=60)
    assert cache.state == "closed"


def test_a_stopped_run_is_not_reread_until_its_metadata_changes(tmp_path, record, monkeypatch):
    from probe.store import Run

    path = tmp_path / "r.zarr"
    rec = record(path, 2, close=False)
    try:
        rec.flush()
        meta = path / "zarr.json"
        doc = json.loads(meta.read_text())
        doc["attributes"]["writer"]["pid"] = 2**22 + 1  # no such process: the writer "died"
        meta.write_text(json.dumps(doc))
        cache = RunCache(_entry(path))
        assert cache.refresh() is not None and cache.state == "stopped without close"
        reads = []
        real = Run.refresh
        monkeypatch.setattr(Run, "refresh", lambda self: (reads.append(1), real(self))[1])
        for _ in range(3):
            cache.refresh()
        assert reads == []
        rec.step(loss=0.5)
        rec.flush()  # a commit rewrites the metadata: read again (and recording: pid is ours)
        cache.refresh()
        assert reads and cache.state == "recording"
    finally:
        rec.close()


def test_metrics_read_only_the_new_records_and_equal_a_fresh_read(tmp_path, record, monkeypatch):
    from probe.store import Run, open_run

    path = tmp_path / "r.zarr"
    rec, cache = _live(record, path, 3)
    try:
        cache.metrics()
        starts = []
        real = Run.metrics
        monkeypatch.setattr(Run, "metrics", lambda self, **kw: (
            starts.append(kw.get("start", 0)), real(self, **kw))[1])
        rec.step(loss=0.5)
        rec.flush()
        cache.refresh()
        pd.testing.assert_frame_equal(cache.metrics(), real(open_run(path)))
        assert starts == [3]  # only the record committed since
        rec.step(loss=0.4, acc=0.9)  # a new metric: earlier records are NaN in it
        rec.flush()
        cache.refresh()
        pd.testing.assert_frame_equal(cache.metrics(), real(open_run(path)))
        assert starts[1:] == [4, 0] and cache.metrics()["acc"].isna().sum() == 4
    finally:
        rec.close()
