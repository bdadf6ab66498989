"""Tests of probe.validation's setting checks, check_int and check_positive (no bool passes)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from probe.errors import ConfigError, TheoryInputError
from probe.validation import check_int, check_positive


@pytest.mark.parametrize(("value", "minimum"), [(1, 1), (np.int64(5), 1), (0, 0), (2, 2)])
def test_check_int_returns_a_python_int(value, minimum):
    got = check_int(value, "n", minimum=minimum)
    assert got == value and type(got) is int


@pytest.mark.parametrize("value", [True, False, 0, -1, 1.0, 2.5, "3", None, np.float64(2.0)])
def test_check_int_rejects_bools_floats_and_small_values(value):
    want = re.escape(f"epochs must be an int >= 1; got {value!r}.")
    with pytest.raises(ConfigError, match=f"^{want}$"):
        check_int(value, "epochs")


def test_check_int_raises_the_callers_error_with_its_hint():
    with pytest.raises(TheoryInputError, match=r"^n must be an int >= 3; got 2\. Count layers\.$"):
        check_int(2, "n", minimum=3, error=TheoryInputError, hint="Count layers.")


@pytest.mark.parametrize("value", [1, 0.5, np.float32(2.0), np.int64(3), np.array(1e-3)])
def test_check_positive_returns_a_float(value):
    got = check_positive(value, "lr")
    assert got == pytest.approx(float(value)) and type(got) is float


@pytest.mark.parametrize("value", [0, -1.0, np.inf, np.nan, True, "1.0", None, [1.0]])
def test_check_positive_rejects_non_positive_non_finite_and_non_numbers(value):
    with pytest.raises(ConfigError, match=r"^lr must be a finite number > 0; got .*\.$"):
        check_positive(value, "lr")
