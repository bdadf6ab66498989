import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from probe.cli.app import main

REPO = Path(__file__).resolve().parents[3]


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    assert "(default: 8050)" in out and "(default: 127.0.0.1)" in out


@pytest.mark.parametrize("port", ["-1", "70000"])
def test_a_bad_port_is_a_one_line_error(port, tmp_path, capsys):
    assert main(["serve", str(tmp_path), "--port", port]) == 2
    err = capsys.readouterr().err
    assert err.startswith("probe serve: error: --port must be an int") and err.count("\n") == 1


def test_a_missing_folder_is_a_one_line_error(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "nope")]) == 2
    assert "needs a run store or a folder of them" in capsys.readouterr().err


@pytest.mark.slow
def test_serve_prints_its_loopback_address_and_answers_there(sweep):
    env = os.environ | {"PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "probe", "serve", str(sweep), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        # Ctrl-C as from a terminal, whatever this test process's own SIGINT disposition is
        # (an ignored signal is inherited through exec).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"probe serve: {sweep} at http://127.0.0.1:")
        url = line.split(" at ")[1].split()[0]
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    assert r.status == 200 and b"probe serve" in r.read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)  # drains the pipes: a full one blocks the server
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"probe serve did not stop within 60 s of Ctrl-C; its stderr:\n{err}")
    assert proc.returncode == 0, err  # Ctrl-C is how a server is meant to stop


def test_the_port_check_raises_a_config_error(tmp_path):
    import argparse

    from probe.cli.serve import _cmd_serve
    from probe.errors import ConfigError

    args = argparse.Namespace(path=str(tmp_path), port=65536, host="127.0.0.1")
    with pytest.raises(ConfigError, match=r"--port must be an int in \[0, 65535\]; got 65536"):
        _cmd_serve(args)
