"""writer='process': the same store as the writer thread, errors surfaced, dies with its parent."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

import probe
from hooks import NonFiniteWarning, Recorder, RecorderClosedError, RecorderConfigError, WriterError

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


def _record(model, x, path, writer, **kw):
    torch.manual_seed(0)
    with Recorder(model, layers=["0", "2"], store=path, probe=x, every=2, writer=writer, **kw) as r:
        for s in range(7):
            with r.watch(sample_id=np.arange(5) + s):
                model(x[s : s + 5])
            r.step(loss=torch.tensor(0.5 * s), acc=s / 10)
    return zarr.open_group(str(path), mode="r")


@pytest.mark.parametrize("compressors", [None, "zstd"])
def test_process_writer_writes_the_same_store_as_the_thread(
    tmp_path, tiny_mlp, probe_xy, compressors
):
    """Raw chunks are written directly, compressed ones through zarr: in the child too."""
    x = probe_xy[0]
    a = _record(tiny_mlp, x, tmp_path / "t.zarr", "thread", compressors=compressors)
    b = _record(
        tiny_mlp, x, tmp_path / "p.zarr", "process", max_queue_bytes=4096, compressors=compressors
    )
    assert len(b["layers/0/acts"].compressors) == 1 + (compressors is not None)  # + crc32c
    paths = sorted(p for p, n in a.members(max_depth=None) if isinstance(n, zarr.Array))
    assert paths == sorted(p for p, n in b.members(max_depth=None) if isinstance(n, zarr.Array))
    assert "metrics/loss" in paths and any(p.startswith("stream/") for p in paths), paths
    for p in paths:
        if p != "snapshots/wall_time":
            np.testing.assert_array_equal(a[p][:], b[p][:], err_msg=p)
    for key in ("n_committed", "n_metric_records", "n_stream_rows", "last_step"):
        assert a.attrs[key] == b.attrs[key], key
    run = probe.open_run(tmp_path / "p.zarr")
    np.testing.assert_array_equal(run.steps, [0, 2, 4, 6, 7])
    assert run.info()["state"] == "closed"


def test_arena_smaller_than_a_snapshot_grows_and_wraps(tmp_path, tiny_mlp, probe_xy):
    """A 256-byte arena: every snapshot (2.6 kB) waits for the one before, and rows stay exact."""
    x = probe_xy[0]
    expect = [tiny_mlp[0](x).detach().numpy()]
    with Recorder(
        tiny_mlp,
        layers="0",
        store=tmp_path / "r.zarr",
        probe=x,
        every=1,
        writer="process",
        max_queue_bytes=256,
    ) as rec:
        for _ in range(13):
            with torch.no_grad():
                tiny_mlp[0].weight.add_(0.01)
            rec.step()
            expect.append(tiny_mlp[0](x).detach().numpy())
    run = probe.open_run(tmp_path / "r.zarr")
    np.testing.assert_array_equal(run.steps, np.arange(14))
    np.testing.assert_allclose(run.acts("0"), np.stack(expect), rtol=1e-6)
    assert rec.writer_.peak_bytes >= x.shape[0] * 16 * 4


def test_writer_kind_is_checked_before_the_store_is_touched(tmp_path, tiny_mlp, probe_xy):
    with pytest.raises(
        RecorderConfigError, match=r"'writer' must be one of \['thread', 'process'\]"
    ):
        Recorder(tiny_mlp, layers="0", store=tmp_path / "r.zarr", probe=probe_xy[0], writer="gpu")
    assert not (tmp_path / "r.zarr").exists()


def test_process_writer_needs_linux(tmp_path, tiny_mlp, probe_xy, monkeypatch):
    import hooks._writer_process as wp

    monkeypatch.setattr(wp, "process_writer_available", lambda: False)
    with pytest.raises(RecorderConfigError, match="writer='process' needs Linux"):
        Recorder(
            tiny_mlp, layers="0", store=tmp_path / "r.zarr", probe=probe_xy[0], writer="process"
        )


def test_a_failed_write_in_the_process_stops_the_run_with_the_last_commit(
    tmp_path, tiny_mlp, probe_xy
):
    path = tmp_path / "r.zarr"
    wide = torch.nn.Sequential(torch.nn.Linear(8, 2048))  # 330 kB rows: a chunk per snapshot
    rec = Recorder(wide, layers="0", store=path, probe=probe_xy[0], every=1, writer="process")
    rec.step()
    rec.flush()
    (path / "layers" / "0" / "acts" / "c.2.0.0").mkdir()  # the next chunk cannot be renamed
    rec.step()
    with pytest.raises(WriterError, match=r"IsADirectoryError.*last committed snapshot is step 1"):
        rec.flush()
    with pytest.raises(WriterError, match="last committed snapshot is step 1"):
        rec.close()
    np.testing.assert_array_equal(probe.open_run(path).steps, [0, 1])


def test_nonfinite_warnings_reach_the_training_process(tmp_path, tiny_mlp, probe_xy):
    x = probe_xy[0].clone()
    x[3, 0] = float("nan")
    rec = Recorder(tiny_mlp, layers="0", store=tmp_path / "r.zarr", probe=x, writer="process")
    rec.snapshot()
    with pytest.warns(NonFiniteWarning, match="NaN/Inf"):
        rec.flush()
    rec.close()
    assert probe.open_run(tmp_path / "r.zarr").info()["nonfinite"]["layers/0/acts"][0] == [0, 16]


def test_a_killed_writer_process_is_reported(tmp_path, tiny_mlp, probe_xy):
    rec = Recorder(
        tiny_mlp,
        layers="0",
        store=tmp_path / "r.zarr",
        probe=probe_xy[0],
        every=1,
        writer="process",
    )
    rec.flush()
    rec.writer_._proc.kill()
    rec.writer_._proc.wait()
    rec.step()
    with pytest.raises(WriterError, match=r"writer process exited with code -9"):
        rec.flush()
    with pytest.raises(WriterError, match="last committed snapshot is step 0"):
        rec.close()
    with pytest.raises(RecorderClosedError, match="closed"):
        rec.step()


_PARENT = """
import sys, time, torch
from torch import nn
from hooks import Recorder
model = nn.Sequential(nn.Linear(4, 3))
rec = Recorder(model, layers="0", store=sys.argv[1], probe=torch.randn(10, 4), every=1,
               writer="process")
print(rec.writer_._proc.pid, flush=True)
while True:
    rec.step()
    time.sleep(0.01)
"""


def test_the_writer_process_dies_with_its_parent(tmp_path):
    root = Path(__file__).resolve().parents[2]
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, str(tmp_path / "r.zarr")],
        stdout=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=str(root)),
        text=True,
    )
    child = int(parent.stdout.readline())
    time.sleep(0.3)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{child}").exists():
        if Path(f"/proc/{child}/stat").read_text().split(") ")[1][0] == "Z":
            break  # a zombie awaiting reaping by init: dead
        time.sleep(0.05)
    gone = not Path(f"/proc/{child}").exists() or (
        Path(f"/proc/{child}/stat").read_text().split(") ")[1][0] == "Z"
    )
    assert gone
    assert probe.open_run(tmp_path / "r.zarr").n_snapshots >= 1


def test_messages_split_across_pipe_reads_are_reassembled():
    from hooks import _wire

    r, w = os.pipe()
    try:
        docs = [{"seq": 1, "x": float("nan")}, {"seq": 2, "s": "é" * 5000}]
        raw = b"".join(_frame(d) for d in docs)
        reader = _wire.Reader(r)
        got = []
        for i in range(0, len(raw), 777):  # arbitrary cut points, inside headers too
            os.write(w, raw[i : i + 777])
            got += reader.read()
        assert [d["seq"] for d in got] == [1, 2] and np.isnan(got[0]["x"])
        assert got[1]["s"] == "é" * 5000
        os.close(w)
        w = -1
        assert reader.read() == [] and reader.eof
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def _frame(doc):
    from hooks import _wire

    r, w = os.pipe()
    _wire.send(w, doc)
    os.close(w)
    out = b""
    while chunk := os.read(r, 1 << 16):
        out += chunk
    os.close(r)
    return out


def test_a_writer_process_that_cannot_start_fails_the_recorder(tmp_path, tiny_mlp, monkeypatch):
    import hooks._writer_process as wp

    monkeypatch.setattr(wp.sys, "executable", "/bin/false")
    with pytest.raises(WriterError, match=r"writer process exited with code 1"):
        Recorder(tiny_mlp, layers="0", store=tmp_path / "r.zarr", writer="process")


def test_a_writer_process_that_never_answers_times_out(tmp_path, tiny_mlp, monkeypatch):
    import hooks._writer_process as wp

    hang = tmp_path / "hang.sh"
    hang.write_text("#!/bin/sh\nsleep 30\n")
    hang.chmod(0o755)
    monkeypatch.setattr(wp.sys, "executable", str(hang))
    monkeypatch.setattr(wp, "_START_TIMEOUT_S", 0.5)
    with pytest.raises(WriterError, match=r"writer process did not answer in 0.5 s"):
        Recorder(tiny_mlp, layers="0", store=tmp_path / "r.zarr", writer="process")


def test_put_after_close_is_refused_by_the_process_writer(tmp_path, tiny_mlp):
    from hooks.writer import MetricRecord

    rec = Recorder(tiny_mlp, layers="0", store=tmp_path / "r.zarr", writer="process")
    rec.close()
    rec.close()  # idempotent
    with pytest.raises(RecorderClosedError, match="the run's writer is closed"):
        rec.writer_.put(MetricRecord(1, 0, {"loss": 1.0}))


def test_the_writer_process_imports_no_torch():
    """Its start-up (about 0.5 s) stays small: numpy and zarr only."""
    code = "import sys\nimport hooks._writer_child\nprint('torch' in sys.modules)\n"
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(root)),
    )
    assert out.stdout.strip() == "False"


def test_the_writer_process_outlives_the_thread_that_started_it(tmp_path, tiny_mlp, probe_xy):
    """A Recorder made in a short-lived thread keeps its writer (it dies with the process only)."""
    import threading

    made: list[Recorder] = []
    t = threading.Thread(
        target=lambda: made.append(
            Recorder(
                tiny_mlp,
                layers="0",
                store=tmp_path / "r.zarr",
                probe=probe_xy[0],
                every=1,
                writer="process",
            )
        )
    )
    t.start()
    t.join()
    rec = made[0]
    time.sleep(0.5)  # time for a signal sent at the thread's exit to land
    for _ in range(3):
        rec.step()
    rec.close()
    run = probe.open_run(tmp_path / "r.zarr")
    np.testing.assert_array_equal(run.steps, [0, 1, 2, 3])
    assert run.info()["state"] == "closed"
