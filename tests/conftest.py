"""Shared fixtures of the test suite."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# ../shared/data/MNIST/raw next to the repository root (read only: never written to).
SHARED_MNIST_RAW = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "MNIST" / "raw"
_MARKER = Path("MNIST") / "raw" / "t10k-labels-idx1-ubyte.gz"


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding ``MNIST/raw/*.gz`` for ``load_mnist(root=...)``.

    ``$PROBE_DATA`` when it already holds the archives, else a session temp copy of
    ``../shared/data/MNIST/raw``; skips the test when neither is available.
    """
    env = os.environ.get("PROBE_DATA")
    if env and (Path(env) / _MARKER).is_file():
        return Path(env)
    archives = sorted(SHARED_MNIST_RAW.glob("*.gz")) if SHARED_MNIST_RAW.is_dir() else []
    if not archives:
        pytest.skip(
            f"MNIST archives not found: neither $PROBE_DATA/{_MARKER} nor {SHARED_MNIST_RAW}/*.gz"
        )
    root = tmp_path_factory.mktemp("mnist_data")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for archive in archives:
        shutil.copy2(archive, raw / archive.name)
    return root
