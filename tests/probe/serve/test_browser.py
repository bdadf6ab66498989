"""The live view in headless Chromium (the OS package), driven by Selenium.

A recorder in another process appends snapshots while the page is open; the test measures how
long after each commit the page shows the new step (printed, not asserted: no timing asserts).
"""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from matplotlib.image import imread

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
CHILD = r"""
import sys, time, torch
from torch import nn
from hooks import Recorder
torch.manual_seed(0)
x, y = torch.randn(60, 6), torch.arange(60) % 3
net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
rec = Recorder(net, ["0", "2"], sys.argv[1], (x, y), every=1)
for k in range(1, int(sys.argv[2]) + 1):
    rec.step(loss=1.0 / k)
    rec.flush()
    print(k, time.time(), flush=True)
    time.sleep(float(sys.argv[3]))
time.sleep(600)  # never closes: the test kills it
"""


def wait_for(predicate, timeout=60.0, every=0.05):
    """Return predicate()'s first truthy value, polling; fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            value = predicate()
        except Exception:  # noqa: BLE001 - the element is not there yet
            value = None
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout} s waiting for {predicate.__doc__ or predicate}")


def text(driver, element_id):
    return driver.execute_script(
        "const e = document.getElementById(arguments[0]); return e ? e.textContent : null;",
        element_id,
    )


def embedding_xs(driver):
    return driver.execute_script(
        "const g = document.querySelector('#embedding .js-plotly-plot');"
        "return g && g.data && g.data.length ? [g.layout.title.text, g.data[0].x] : null;"
    )


def test_the_run_list_loads(sweep, serve, browser):
    browser.get(serve(sweep).url + "/")
    rows = wait_for(lambda: browser.find_elements("css selector", ".run-row"))
    assert len(rows) == 2
    page = browser.find_element("id", "runs-table").text
    assert "runs/lr=0.1/run.zarr" in page and "closed" in page and "Sequential" in page


@pytest.fixture(scope="module")
def big_sweep(tmp_path_factory, sweep):
    """A folder of 300 runs (copies of one run, each with its own grid settings)."""
    root = tmp_path_factory.mktemp("big-sweep")
    source = sweep / "runs" / "lr=0.2" / "run.zarr"
    for k in range(300):
        run = root / "runs" / f"seed={k:03d}" / "run.zarr"
        shutil.copytree(source, run)
        meta = json.loads((run / "zarr.json").read_text())
        meta["attributes"]["config"] = {"lr": [0.1, 0.2, 0.4][k % 3], "seed": k}
        (run / "zarr.json").write_text(json.dumps(meta))
    return root


def test_a_list_of_300_runs_appears_in_pages_and_fills_in(big_sweep, serve, browser):
    opened = time.time()
    browser.get(serve(big_sweep).url + "/")
    rows = wait_for(lambda: browser.find_elements("css selector", ".run-row"))
    print(f"\n300 runs: page open -> first rows shown: {time.time() - opened:.2f} s")
    assert len(rows) == 50  # one page
    count = wait_for(lambda: (t := text(browser, "runs-count")) and "300 closed" in t and t)
    print(f"300 runs: page open -> every run read: {time.time() - opened:.2f} s")
    assert count == "runs 1-50 of 300 · 300 closed"
    assert "runs/seed=000/run.zarr" in browser.find_element("id", "runs-table").text
    browser.find_element("id", "runs-next").click()
    wait_for(lambda: text(browser, "runs-count").startswith("runs 51-100 of 300"))
    page = wait_for(lambda: (t := browser.find_element("id", "runs-table").text) and
                    "seed=050" in t and t)
    assert "seed=000/" not in page and page.count("closed") == 50
    png = imread(io.BytesIO(browser.get_screenshot_as_png()))[..., :3]
    assert png.std() > 0.05 and (png.mean(axis=2) < 0.5).mean() > 0.002  # rows drawn
    browser.find_element("id", "runs-compare").click()  # the page's 50 runs, compared
    names = wait_for(lambda: browser.execute_script(
        "const g = document.querySelector('#compare-graph .js-plotly-plot');"
        "return g && g.data && g.data.length ? g.data.map(t => t.name) : null;"
    ))
    assert names == [f"runs/seed={k:03d}/run.zarr" for k in range(50, 100)]


def test_a_run_page_shows_layers_last_step_and_the_slider_moves_the_embedding(
    sweep, serve, browser
):
    url = serve(sweep).url + "/run/" + quote("runs/lr=0.2/run.zarr", safe="")
    browser.get(url)
    assert wait_for(lambda: text(browser, "last-step") == "6")
    assert text(browser, "run-layers") == "0, 2"
    browser.find_element("id", "tab-geometry").click()
    title, xs = wait_for(lambda: embedding_xs(browser))
    assert title == "2 at step 6"
    from selenium.webdriver.common.keys import Keys

    browser.find_element("css selector", "#step [role=slider]").send_keys(Keys.HOME)
    title0, xs0 = wait_for(lambda: (e := embedding_xs(browser)) and e[0] != title and e)
    assert title0 == "2 at step 0" and xs0 != xs  # new coordinates (plotly-encoded arrays)
    png = imread(io.BytesIO(browser.get_screenshot_as_png()))[..., :3]
    dark = (png.mean(axis=2) < 0.5).mean()
    assert png.std() > 0.05 and dark > 0.002  # text and figures drawn, not a blank page


def test_a_recorder_in_another_process_shows_live_and_then_stopped(tmp_path, serve, browser):
    path = tmp_path / "live.zarr"
    paths = [str(REPO), os.environ.get("PYTHONPATH", "")]
    env = os.environ | {"PYTHONPATH": os.pathsep.join(paths)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), "8", "1.0"],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    commits = {}

    def read():
        for line in child.stdout:
            k, t = line.split()
            commits[int(k)] = float(t)

    threading.Thread(target=read, daemon=True).start()
    try:
        wait_for(lambda: 1 in commits, timeout=120)
        opened = time.time()
        browser.get(serve(tmp_path).url + "/run/live.zarr")
        first = int(wait_for(lambda: (t := text(browser, "last-step")) and t.isdigit() and t))
        print(f"\npage open -> first step shown: {time.time() - opened:.2f} s")
        latency = {}
        for k in range(first + 1, 9):  # the commits made while the page is open
            wait_for(lambda k=k: k in commits, timeout=60)
            seen = wait_for(lambda k=k: int(text(browser, "last-step")) >= k and time.time())
            latency[k] = round(seen - commits[k], 2)
        print(f"live update latency (commit -> page shows the step), s: {latency}")
        assert latency  # at least one commit was watched arriving
        assert "state: recording" in text(browser, "run-state")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert wait_for(lambda: "stopped without close" in text(browser, "run-state"))
    assert text(browser, "last-step") == "8"
