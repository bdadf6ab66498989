"""`import probe` / `import hooks` load names on first use: reading a store never imports torch."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import hooks
import probe


def test_reading_a_store_and_streaming_analyses_do_not_import_torch(tmp_path):
    path = tmp_path / "r.zarr"
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(12, 3)
    y = torch.arange(12) % 2
    with hooks.Recorder(net, layers="0", store=path, probe=(x, y), every=1) as rec:
        rec.step(loss=1.0)
    code = (
        "import sys, probe\n"
        f"run = probe.open_run({str(path)!r})\n"
        "a = run.acts('0', step=1)\n"
        "probe.analysis.streaming.class_moments(run, '0', 1)\n"
        "probe.analysis.streaming.consecutive_cka(run, '0')\n"
        "print(a.shape, run.info()['n_snapshots'], 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "(12, 4) 2 False"


def test_every_public_name_resolves_and_unknown_names_raise():
    for pkg in (hooks, probe):
        assert sorted(pkg.__all__) == pkg.__all__
        for name in pkg.__all__:
            assert getattr(pkg, name) is not None
        assert set(pkg.__all__) <= set(dir(pkg))
    assert set(hooks.__all__) == set(hooks._NAMES)
    assert probe.open_run is probe.store.open_run
    assert probe.analysis.streaming.__name__ == "probe.analysis.streaming"
    np.testing.assert_array_equal(probe.Run.__name__, "Run")
    with pytest.raises(AttributeError, match="module 'probe' has no attribute 'nope'"):
        probe.nope  # noqa: B018
    with pytest.raises(AttributeError, match="module 'hooks' has no attribute 'Nope'"):
        hooks.Nope  # noqa: B018


def test_cli_info_and_help_do_not_import_torch_but_run_builds_every_experiment(tmp_path, capsys):
    from probe.cli.app import build_parser

    path = tmp_path / "r.zarr"
    with hooks.Recorder(nn.Sequential(nn.Linear(3, 2)), "0", path, torch.randn(4, 3)) as rec:
        rec.step(loss=0.5)
    code = (
        "import sys\n"
        "from probe.cli.app import main\n"
        f"assert main(['info', {str(path)!r}]) == 0\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip().endswith("False") and "closed (schema v1" in out.stdout
    run_verb = build_parser("run")._subparsers._group_actions[0].choices["run"]
    experiments = run_verb._subparsers._group_actions[0].choices
    assert {"mnist", "finetune-speed", "two-points", "deep-linear", "nfa"} <= set(experiments)
    assert build_parser("info")._subparsers._group_actions[0].choices["run"]._subparsers
