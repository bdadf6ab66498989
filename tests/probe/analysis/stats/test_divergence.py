import math

import numpy as np
import pytest

from probe.analysis.stats.divergence import check_divergence, spike_ratios
from probe.errors import StatsInputError


def _noisy(n=2000, seed=0):
    """A healthy minibatch loss curve: decaying, with batch noise of a factor of a few."""
    rng = np.random.default_rng(seed)
    return 0.05 * np.exp(-np.arange(n) / 500) * rng.lognormal(0.0, 0.6, n) + 1e-4


def test_spike_ratios_match_a_loop_over_trailing_medians():
    losses = _noisy(300)
    losses[[50, 51, 120]] = [np.nan, np.inf, 7.0]
    got = spike_ratios(losses, window=20)
    for t in range(300):
        prev = losses[max(0, t - 20) : t]
        prev = prev[np.isfinite(prev)]
        want = losses[t] / np.median(prev) if prev.size and np.isfinite(losses[t]) else np.nan
        np.testing.assert_allclose(got[t], want, rtol=1e-12, equal_nan=True)


def test_a_healthy_curve_is_kept_with_its_margin_reported():
    losses = _noisy()
    check = check_divergence(np.arange(losses.size), losses, 0.97)
    assert not check.diverged and check.reasons == ()
    assert check.first_spike_step is None and check.first_nonfinite_step is None
    assert 1.0 < check.max_spike_ratio < 100.0
    assert check.max_loss == pytest.approx(losses.max())


def test_a_spike_is_found_at_its_step_with_its_ratio():
    losses = np.full(1000, 0.01)
    losses[600:] = 1e3  # a blow-up that stays: only its first step is a spike
    steps = np.arange(1000) * 2 + 1
    check = check_divergence(steps, losses, 0.97, spike_factor=100.0, window=50)
    assert check.diverged and check.first_spike_step == 1201
    assert check.max_spike_ratio == pytest.approx(1e5)
    assert check.reasons == ("loss spike x1e+05 at step 1201",)


def test_nonfinite_loss_and_low_accuracy_are_both_reasons():
    losses = np.full(100, 0.01)
    losses[40:] = np.nan
    check = check_divergence(np.arange(100), losses, 0.21, accuracy_floor=0.9)
    assert check.diverged and check.first_nonfinite_step == 40
    assert check.reasons == (
        "non-finite loss (nan) at step 40",
        "final test accuracy 0.2100 < floor 0.9",
    )
    assert check.max_loss == 0.01


def test_nan_accuracy_fails_the_floor_and_floor_zero_disables_it():
    losses = np.full(10, 0.01)
    assert check_divergence(np.arange(10), losses, math.nan).diverged
    assert not check_divergence(np.arange(10), losses, 0.0, accuracy_floor=0.0).diverged


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"losses": np.zeros((2, 2))}, "losses must be a non-empty 1-D array"),
        ({"losses": []}, "losses must be a non-empty 1-D array"),
        ({"steps": np.arange(3)}, "steps must have one entry per loss \\(4\\)"),
        ({"window": 0}, "window must be an int >= 1"),
        ({"spike_factor": 1.0}, "spike_factor must be a finite number > 1"),
        ({"accuracy_floor": 1.5}, "accuracy_floor must be in \\[0, 1\\]"),
    ],
)
def test_bad_input_is_rejected(kwargs, match):
    args = {"steps": np.arange(4), "losses": np.ones(4), "final_accuracy": 0.9} | kwargs
    if "losses" in kwargs:
        args["steps"] = np.arange(np.size(kwargs["losses"]))
    with pytest.raises(StatsInputError, match=match):
        check_divergence(
            args.pop("steps"), args.pop("losses"), args.pop("final_accuracy"), **args
        )
