"""The README's examples run (doctest) and every `probe.` name it mentions exists."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_examples_pass_as_doctests():
    result = doctest.testfile(str(README), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def resolve(dotted: str) -> object:
    """Return the object a dotted ``probe.`` path names: the longest importable module, then
    attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


NAMES = sorted(set(re.findall(r"`(probe(?:\.\w+)+)", README.read_text(encoding="utf-8"))))


@pytest.mark.parametrize("dotted", NAMES)
def test_every_probe_name_in_the_readme_resolves(dotted):
    assert resolve(dotted) is not None
