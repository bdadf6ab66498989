"""Worker of test_distributed: one DDP rank (gloo, CPU) that trains a tiny MLP with a Recorder.

Phases: record 3 steps (every=1, probe of 10 samples, a watch stream); two resumes that must fail
on every rank (rank 0's store error, then rank 1's mismatched layers); a good resume for 2 more
steps; rank 0 alone records ``solo.zarr`` (rank=0, world_size=1). Every write to the stores is
logged per rank (``writes_<rank>.json``), as are the errors seen (``errors_<rank>.json``) and
rank 0's initial and final weights (``init.pt``, ``final.pt``).
"""

import datetime
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

N_PROBE, BATCH = 10, 4


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3))


def probe_set():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(N_PROBE, 6, generator=g), torch.randint(0, 3, (N_PROBE,), generator=g)
    return x, y, np.arange(100, 100 + N_PROBE)


def batch_ids(rank, step):
    """Dataset indices of this rank's training batch at ``step`` (disjoint across ranks)."""
    return np.arange(BATCH) + 1000 * rank + 10 * step


def _log_writes(rank, out):
    """Record the path of every file this process writes through zarr or the data-first append."""
    import zarr.storage

    import hooks._zarr_io as zio

    written = set()
    orig_set, orig_atomic = zarr.storage.LocalStore.set, zio._atomic_write

    async def logged_set(self, key, value, *args, **kwargs):
        written.add(str(Path(self.root) / key))
        return await orig_set(self, key, value, *args, **kwargs)

    def logged_atomic(path, data, trailer=b""):
        written.add(str(path))
        return orig_atomic(path, data, trailer)

    zarr.storage.LocalStore.set = logged_set
    zio._atomic_write = logged_atomic
    return lambda: (out / f"writes_{rank}.json").write_text(json.dumps(sorted(written)))


def _train(rec, ddp, opt, rank, n_steps):
    x_all = torch.randn(64, 6, generator=torch.Generator().manual_seed(2 + rank))
    for _ in range(n_steps):
        ids = batch_ids(rank, rec.step_)
        xb = x_all[ids % 64]
        with rec.watch(sample_id=ids):
            out = ddp(xb)
        loss = out.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        rec.step(loss=loss)


def worker(rank, world_size, port, store, out):
    from hooks import Recorder

    out = Path(out)
    torch.set_num_threads(1)  # a forked child must not enter the parent's OpenMP thread pool
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    timeout = datetime.timedelta(seconds=120)  # a failed peer must not hang us for 30 minutes
    dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=timeout)
    save_writes = _log_writes(rank, out)
    errors = {}
    try:
        model = make_model()
        ddp = DistributedDataParallel(model)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        if rank == 0:
            torch.save(model.state_dict(), out / "init.pt")
        kw = dict(probe=probe_set(), every=1, weights=True, agop=True, batch_size=3)
        with Recorder(ddp, layers=["0", "2"], store=store, **kw) as rec:
            _train(rec, ddp, opt, rank, 3)
        for phase, layers, resume in (("exists", ["0", "2"], False), ("mismatch", None, True)):
            layers = layers or (["0", "2"] if rank == 0 else ["0"])
            try:
                Recorder(ddp, layers=layers, store=store, resume=resume, **kw)
            except Exception as err:  # noqa: BLE001 - reported to the test
                errors[phase] = [type(err).__name__, str(err)]
        with Recorder(ddp, layers=["0", "2"], store=store, resume=True, **kw) as rec:
            errors["resumed_at"] = rec.step_
            _train(rec, ddp, opt, rank, 2)
        if rank == 0:
            torch.save(model.state_dict(), out / "final.pt")
            # rank 0 alone: no collective call, so this must not wait for rank 1
            solo = Path(store).with_name("solo.zarr")
            with Recorder(ddp, layers="0", store=solo, probe=kw["probe"], rank=0, world_size=1):
                pass
    finally:
        save_writes()
        (out / f"errors_{rank}.json").write_text(json.dumps(errors))
        dist.destroy_process_group()
