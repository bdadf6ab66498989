"""Detect a diverged training run from its batch losses and final accuracy.

`check_divergence` applies one stated rule (`RULE`) to one run: the run diverged if a batch loss
is not finite, if a batch loss spikes far above its running baseline, or if the final test
accuracy is below a floor. `spike_ratios` is the per-step ratio the spike test thresholds, so a
reader can see how far the kept runs stay from the threshold.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from probe.errors import StatsInputError

__all__ = ["RULE", "DivergenceCheck", "check_divergence", "spike_ratios"]

F64 = npt.NDArray[np.float64]

#: The rule `check_divergence` applies, in words (for reports).
RULE = (
    "diverged if (a) a batch loss is NaN or infinite, or (b) a batch loss exceeds spike_factor "
    "times its running baseline (the median of the previous `window` finite batch losses), or "
    "(c) the final test accuracy is below accuracy_floor"
)


@dataclass(frozen=True)
class DivergenceCheck:
    """Verdict of `check_divergence` for one run.

    Attributes
    ----------
    diverged : bool
        Any of the three tests of `RULE` fired.
    reasons : tuple of str
        One line per test that fired (empty when kept), e.g. ``"loss spike x3.1e+05 at step 812"``.
    first_nonfinite_step : int or None
        Step of the first NaN or infinite loss.
    first_spike_step : int or None
        Step of the first loss above ``spike_factor`` times its baseline.
    max_spike_ratio : float
        Largest loss / baseline over the steps with a finite loss and baseline (NaN if none).
    max_loss : float
        Largest finite batch loss (NaN if none).
    final_accuracy : float
        The final test accuracy the floor was applied to.
    """

    diverged: bool
    reasons: tuple[str, ...]
    first_nonfinite_step: int | None
    first_spike_step: int | None
    max_spike_ratio: float
    max_loss: float
    final_accuracy: float


def _losses(losses: npt.ArrayLike) -> F64:
    arr = np.asarray(losses, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        msg = (
            "losses must be a non-empty 1-D array (one batch loss per step); got shape "
            f"{arr.shape}."
        )
        raise StatsInputError(msg)
    return arr


def spike_ratios(losses: npt.ArrayLike, *, window: int = 100) -> F64:
    """Return each batch loss divided by its running baseline.

    Parameters
    ----------
    losses : array_like of shape (n_steps,)
        Batch losses in step order; NaN and infinite values are allowed.
    window : int
        The baseline of step t is the median of the finite losses among steps t-window .. t-1.

    Returns
    -------
    ndarray of float64 of shape (n_steps,)
        ``loss_t / baseline_t``; NaN where the loss is not finite, where no earlier finite loss
        is in the window (step 0 always) or where the baseline is not positive.

    Raises
    ------
    StatsInputError
        ``losses`` is not a non-empty 1-D array, or ``window`` is not an int >= 1.

    Examples
    --------
    >>> spike_ratios([1.0, 1.0, 1.0, 50.0, 1.0], window=3)
    array([nan,  1.,  1., 50.,  1.])
    """
    arr = _losses(losses)
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        msg = f"window must be an int >= 1 (steps of the running baseline); got {window!r}."
        raise StatsInputError(msg)
    finite = np.where(np.isfinite(arr), arr, np.nan)
    padded = np.concatenate([np.full(window, np.nan), finite[:-1]])
    with warnings.catch_warnings():  # all-NaN windows (step 0, after a NaN run) give NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        baseline = np.nanmedian(sliding_window_view(padded, window), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(baseline > 0, finite / baseline, np.nan)


def check_divergence(
    steps: npt.ArrayLike,
    losses: npt.ArrayLike,
    final_accuracy: float,
    *,
    spike_factor: float = 100.0,
    window: int = 100,
    accuracy_floor: float = 0.9,
) -> DivergenceCheck:
    """Apply `RULE` to one run's batch losses and final test accuracy.

    Parameters
    ----------
    steps : array_like of int of shape (n_steps,)
        Optimizer step of each loss (for the report).
    losses : array_like of shape (n_steps,)
        Batch losses in step order.
    final_accuracy : float
        Test accuracy at the end of training, in [0, 1] (NaN counts as below the floor).
    spike_factor : float
        A loss above ``spike_factor`` times its baseline is a spike; > 1.
    window : int
        Steps of the running baseline (`spike_ratios`).
    accuracy_floor : float
        Final accuracy below this is a failure; in [0, 1] (0 disables the test).

    Returns
    -------
    DivergenceCheck

    Raises
    ------
    StatsInputError
        ``losses`` is not a non-empty 1-D array, ``steps`` has another length, ``window`` < 1,
        ``spike_factor`` is not a finite number > 1, or ``accuracy_floor`` is outside [0, 1].

    Notes
    -----
    A spike is judged against the median of the preceding losses, so one noisy batch does not
    move the baseline and a loss that stays high after a blow-up is flagged at its first step.
    Batch losses of a healthy minibatch run vary by a factor of a few to a few tens late in
    training (a batch with one misclassified image against a median of near-zero losses), hence
    the default factor of 100; `DivergenceCheck.max_spike_ratio` shows the margin.

    Examples
    --------
    >>> check_divergence([0, 1, 2, 3], [1.0, 0.9, 500.0, 0.8], 0.95, window=2).reasons
    ('loss spike x5.3e+02 at step 2',)
    """
    arr = _losses(losses)
    st = np.asarray(steps)
    if st.shape != arr.shape:
        msg = f"steps must have one entry per loss ({arr.size}); got shape {st.shape}."
        raise StatsInputError(msg)
    if not 1.0 < float(spike_factor) < math.inf:
        msg = f"spike_factor must be a finite number > 1; got {spike_factor!r}. Pass e.g. 100."
        raise StatsInputError(msg)
    if not 0.0 <= float(accuracy_floor) <= 1.0:
        msg = f"accuracy_floor must be in [0, 1]; got {accuracy_floor!r}. Pass 0 to disable it."
        raise StatsInputError(msg)
    ratios = spike_ratios(arr, window=window)
    bad = np.flatnonzero(~np.isfinite(arr))
    spikes = np.flatnonzero(np.nan_to_num(ratios, nan=0.0) > spike_factor)
    reasons = []
    if bad.size:
        reasons.append(f"non-finite loss ({arr[bad[0]]}) at step {int(st[bad[0]])}")
    if spikes.size:
        reasons.append(f"loss spike x{ratios[spikes[0]]:.2g} at step {int(st[spikes[0]])}")
    if not final_accuracy >= accuracy_floor:
        reasons.append(f"final test accuracy {final_accuracy:.4f} < floor {accuracy_floor}")
    finite = arr[np.isfinite(arr)]
    return DivergenceCheck(
        diverged=bool(reasons),
        reasons=tuple(reasons),
        first_nonfinite_step=int(st[bad[0]]) if bad.size else None,
        first_spike_step=int(st[spikes[0]]) if spikes.size else None,
        max_spike_ratio=float(np.nanmax(ratios)) if np.isfinite(ratios).any() else math.nan,
        max_loss=float(finite.max()) if finite.size else math.nan,
        final_accuracy=float(final_accuracy),
    )
