"""The distribution: its name, the extras, the type markers that ship with both packages."""

import importlib.metadata
from pathlib import Path

import pytest

import hooks
import probe
from hooks import _options

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_toolkit_version_reads_the_distribution_name(monkeypatch):
    seen = []
    monkeypatch.setattr(importlib.metadata, "version", lambda name: seen.append(name) or "9.9")
    assert _options.toolkit_version() == "9.9"
    assert seen == [PYPROJECT["project"]["name"]] == [_options.DISTRIBUTION]


def test_xarray_extra_and_dev_includes_it():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {d.split(">")[0] for d in extras["xarray"]} == {"xarray", "dask"}
    assert f"{_options.DISTRIBUTION}[xarray]" in extras["dev"]
    assert any(d.startswith("mypy") for d in extras["dev"])


def test_both_packages_ship_py_typed():
    data = PYPROJECT["tool"]["setuptools"]["package-data"]
    for pkg in (hooks, probe):
        assert (Path(pkg.__file__).parent / "py.typed").is_file()
        assert data[pkg.__name__] == ["py.typed"]


def test_readme_installs_the_distribution_name():
    readme = (ROOT / "README.md").read_text()
    assert f"pip install '{_options.DISTRIBUTION}[xarray]'" in readme
    assert "pip install probe\n" not in readme
