"""Figures refuse tables that are not what their analysis returns (probe.plots)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from probe.analysis.features import compare
from probe.errors import InvalidArrayError
from probe.plots.clusters import plot_sweep
from probe.plots.features import plot_nfa


def test_plot_nfa_errors(tmp_path):
    with pytest.raises(InvalidArrayError, match=r"non-empty nfa_over_steps output.*missing \["):
        plot_nfa(compare(np.eye(2) + 1, np.eye(2) + 2).to_frame(), tmp_path / "x.png")


def test_plot_sweep_errors(tmp_path):
    with pytest.raises(InvalidArrayError, match=r"missing columns \['metric'\]"):
        plot_sweep(pd.DataFrame({"layer": ["a"], "step": [0], "value": [1.0]}), tmp_path / "x.png")
    empty = pd.DataFrame(columns=["layer", "step", "metric", "value"])
    with pytest.raises(InvalidArrayError, match="non-empty sweep"):
        plot_sweep(empty, tmp_path / "x.png")
