"""Fixtures of the live-view tests: small recorded runs, a served folder, a headless browser."""

from __future__ import annotations

import os
import shutil
import threading

import pytest
import torch
from torch import nn

from hooks import Recorder
from probe.serve import make_app_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def record(path, n_steps=4, *, close=True, config=None, agop=False, n=60, torch_seed=0, **kw):
    """Record an MLP (layers "0", "2") on a 3-class probe set for ``n_steps`` steps."""
    torch.manual_seed(torch_seed)
    x = torch.randn(n, 6)
    y = torch.arange(n) % 3
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    opt = torch.optim.SGD(net.parameters(), lr=0.2)
    rec = Recorder(
        net, ["0", "2"], path, (x, y), every=1, weights=agop, agop=agop, config=config or {}, **kw
    )
    for _ in range(n_steps):
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        rec.step(loss=loss.detach())
    if close:
        rec.close()
    return rec


@pytest.fixture(name="record")
def record_fixture():
    """The `record` helper, for tests that make their own runs."""
    return record


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A sweep-like folder: runs/lr=0.1/run.zarr (with AGOPs) and runs/lr=0.2/run.zarr."""
    root = tmp_path_factory.mktemp("sweep")
    record(root / "runs" / "lr=0.1" / "run.zarr", config={"lr": 0.1, "seed": 0}, agop=True)
    record(root / "runs" / "lr=0.2" / "run.zarr", 6, config={"lr": 0.2, "seed": 0})
    return root


class Served:
    """A `make_app_server` running in a thread; ``url`` is its base address."""

    def __init__(self, root):
        self.server = make_app_server(root, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve(monkeypatch):
    """Return a function that serves a folder; every server is stopped after the test.

    The server limits this process's BLAS pools to one thread (as `probe serve` does); they and
    the variables it sets are restored after the test, so later tests run as before.
    """
    from threadpoolctl import threadpool_info, threadpool_limits

    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, os.environ.get(var, ""))  # restored (or removed) after
        if not os.environ[var]:
            monkeypatch.delenv(var)
    pools = threadpool_info()
    started = []

    def start(root):
        started.append(Served(root))
        return started[-1]

    yield start
    for s in started:
        s.stop()
    for pool in pools:
        threadpool_limits(limits=pool["num_threads"], user_api=pool["user_api"])


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium (the OS package) driven by Selenium through the OS chromedriver."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("needs the OS packages chromium and chromium-driver (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # the OS's build: Selenium never downloads a browser
    for arg in ("--headless=new", "--no-sandbox", "--window-size=1400,2400"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()
