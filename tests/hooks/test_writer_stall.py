"""The thread writer's wake-ups: a producer waiting for the byte budget never waits for a timer."""

import threading

import numpy as np
import zarr

import probe
from hooks.writer import MetricRecord, RunWriter, Snapshot


def test_a_put_waiting_for_the_budget_wakes_the_writer_for_lazily_queued_items(tmp_path):
    """Issue 18's stall: a snapshot over the budget behind a lazily queued metric waited for the
    writer's timer (1 s per step by default; here an hour) because nothing woke the writer."""
    path = tmp_path / "r.zarr"
    root = zarr.open_group(str(path), mode="w")
    root.attrs.update({"schema": "probe-run", "schema_version": 1, "layers": ["a"]})
    root.attrs.update({"n_samples": 0, "n_committed": 0})
    w = RunWriter(root, max_bytes=1000, metrics_interval_s=3600)
    a = np.ones((10, 50), np.float32)  # 2000 bytes: over the whole budget
    dims = {"layers/a/acts": ("sample", "f")}

    def record() -> None:
        for step in range(1, 4):
            w.put(MetricRecord(step, 0, {"loss": float(step)}), 64)  # queued lazily
            w.put(Snapshot(step, 0, 0.0, {"layers/a/acts": a * step}, dims), a.nbytes)

    producer = threading.Thread(target=record, daemon=True)
    producer.start()
    producer.join(timeout=120)
    assert not producer.is_alive(), "a put waited for the writer's timer"
    assert w.n_wakeups >= 3  # every snapshot woke it
    w.close()
    run = probe.open_run(path)
    assert run.metrics()["loss"].tolist() == [1.0, 2.0, 3.0]
    np.testing.assert_array_equal(run.acts("a", step=3), a * 3)
