"""Child process for test_crash: records forever (until SIGKILL) into a run it resumes.

Layer ``lin`` outputs ``x * step`` exactly, so every committed value can be checked against its
step.
Usage: python crash_child.py STORE [N_STEPS] [WRITER]
"""

import sys
import time

import torch
from torch import nn

from hooks import Recorder

N_PROBE, WIDTH, BATCH = 2000, 64, 32


class Scale(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Identity()
        self.register_buffer("s", torch.zeros(()))

    def forward(self, x):
        return self.lin(x * self.s)


def probe_inputs():
    return (torch.arange(N_PROBE * WIDTH, dtype=torch.float32).reshape(N_PROBE, WIDTH) % 97) - 48


def main(store, n_steps, writer="thread"):
    stop = time.monotonic() + 60  # never outlive a test that failed to kill us
    model = Scale()
    x = probe_inputs()
    with Recorder(
        model, layers="lin", store=store, probe=x, every=1, resume=True, writer=writer
    ) as rec:
        print("ready", rec.step_, flush=True)
        for _ in range(n_steps):
            if time.monotonic() > stop:
                break
            step = rec.step_ + 1
            ids = torch.arange(step * BATCH, (step + 1) * BATCH) % N_PROBE
            model.s.fill_(step - 1)  # the forward of step k runs with k-1 steps done
            with rec.watch(sample_id=ids):
                model(x[ids])
            model.s.fill_(step)
            rec.step(loss=float(step))
            time.sleep(0.01)  # a training step takes time; bounds the store at ~50 MB/s


if __name__ == "__main__":
    n_steps = int(sys.argv[2]) if len(sys.argv) > 2 else 10**9
    main(sys.argv[1], n_steps, *sys.argv[3:])
