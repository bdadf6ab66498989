"""Tukey running-median smoothers: a port of R's ``stats::smooth``.

`tukey_smooth` computes the "3", "3R" and "3RS3R" smoothers with the "Tukey" or "copy" end rule;
its defaults (``kind="3RS3R"``, ``endrule="Tukey"``) are R's defaults, used by the learning-curve
metrics of `probe.analysis.curves` (docs/features.md §3.2).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from probe.errors import InvalidArrayError, SmootherOptionError
from probe.validation import as_float_array

__all__ = ["KINDS", "tukey_smooth"]

F64 = npt.NDArray[np.float64]
KINDS = ("3RS3R", "3R", "3")
_ENDRULES = ("Tukey", "copy")


def _med3(u: float, v: float, w: float) -> float:
    """Median of three numbers."""
    return max(min(u, v), min(max(u, v), w))


def _imed3(u: float, v: float, w: float) -> int:
    """Which of (u, v, w) R's ``imed3`` names as the median: -1 for u, 0 for v, 1 for w."""
    # Ties favour v, then w, exactly as in smooth.c: the split step's "changed" flag depends on it.
    if u <= v <= w or u >= v >= w:
        return 0
    if u <= w <= v or u >= w >= v:
        return 1
    return -1


def _pass3(x: F64) -> tuple[F64, bool]:
    """One running median of 3 over the interior (ends copied); also whether anything changed."""
    y = x.copy()
    a, b, c = x[:-2], x[1:-1], x[2:]
    y[1:-1] = np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))
    return y, bool(np.any(y[1:-1] != b))


def _tukey_ends(y: F64, x: F64) -> None:
    """Apply Tukey's end rule in place: ``y[0] = median(x[0], y[1], 3 y[1] - 2 y[2])``."""
    # Sequential as in smooth.c: for n = 3 the right end sees the new left end.
    y[0] = _med3(3.0 * y[1] - 2.0 * y[2], x[0], y[1])
    y[-1] = _med3(y[-2], x[-1], 3.0 * y[-2] - 2.0 * y[-3])


def _smooth_3(x: F64, endrule: str, *, repeat: bool) -> F64:
    """Take running medians of 3, once ("3") or until nothing changes ("3R"); apply the end rule."""
    if x.size <= 2:
        return x.copy()
    y, changed = _pass3(x)
    while repeat and changed:
        y, changed = _pass3(y)
    if endrule == "Tukey":
        _tukey_ends(y, x)
    return y


def _split_test(x: F64, i: int) -> bool:
    """Test for a 2-flat ``x[i] == x[i+1]`` at a local peak or valley (R's ``sptest``)."""
    if x[i] != x[i + 1]:
        return False
    rising = x[i - 1] <= x[i] and x[i + 1] <= x[i + 2]
    falling = x[i - 1] >= x[i] and x[i + 1] >= x[i + 2]
    return not (rising or falling)


def _split(x: F64) -> tuple[F64, bool]:
    """Apply the "S" step (R's ``sm_split3``): split 2-flats that are local peaks or valleys.

    Each side of an interior 2-flat becomes the median of itself, its outer neighbour and the
    linear extrapolation from the two outer neighbours; a 2-flat at positions (1, 2) or
    (n-3, n-2) takes the end value on its outer side. The flag is R's ``chg``, which each interior
    replacement overwrites (not ORs): reproduced, since 3RS3R re-smooths only when it is set.
    """
    n = x.size
    y = x.copy()
    if n <= 4:
        return y, False
    changed = False
    # R's smooth() negates iend when do.ends = FALSE and smooth.c splits the ends when iend < 0,
    # so R's default 3RS3R *does* split at the ends.
    if _split_test(x, 1):
        changed = True
        y[1] = x[0]
        y[2] = _med3(x[2], x[3], 3.0 * x[3] - 2.0 * x[4])
    for i in range(2, n - 3):
        if not _split_test(x, i):
            continue
        for inner, outer, outer2 in ((i, i - 1, i - 2), (i + 1, i + 2, i + 3)):
            extrap = 3.0 * x[outer] - 2.0 * x[outer2]
            j = _imed3(x[inner], x[outer], extrap)
            if j > -1:
                y[inner] = x[outer] if j == 0 else extrap
                changed = bool(y[inner] != x[inner])
    if _split_test(x, n - 3):
        changed = True
        y[n - 2] = x[n - 1]
        y[n - 3] = _med3(x[n - 3], x[n - 4], 3.0 * x[n - 4] - 2.0 * x[n - 5])
    return y, changed


def tukey_smooth(x: npt.ArrayLike, *, kind: str = "3RS3R", endrule: str = "Tukey") -> F64:
    """Smooth a sequence with Tukey's running medians, as R's ``stats::smooth`` does.

    Parameters
    ----------
    x : array_like of shape (T,)
        The sequence (e.g. accuracy at each time step); finite.
    kind : {"3RS3R", "3R", "3"}
        "3": one running median of 3; "3R": repeated until nothing changes; "3RS3R": 3R, then
        the "S" step splitting 2-flats, then 3R again (R's default).
    endrule : {"Tukey", "copy"}
        "Tukey": ``s[1] = median(x[1], s[2], 3 s[2] - 2 s[3])`` and likewise at the right end
        (R's default); "copy": the end values are copied from ``x``.

    Returns
    -------
    ndarray of float64 of shape (T,)
        The smoothed sequence; sequences of length <= 2 are returned unchanged.

    Raises
    ------
    InvalidArrayError
        ``x`` is not 1-d, is empty, or holds NaN/Inf (R stops on NA too).
    SmootherOptionError
        ``kind`` or ``endrule`` is not one of the choices.

    Notes
    -----
    A port of R's ``src/library/stats/src/smooth.c`` (``sm_3``, ``sm_3R``, ``sptest``,
    ``sm_split3``, ``sm_3RS3R``) for R's call ``smooth(x)`` (``twiceit = FALSE``,
    ``do.ends = FALSE``). R's quirks are kept for parity: (1) ``smooth()`` negates the end-rule
    code when ``do.ends = FALSE`` and smooth.c splits the ends when it is negative, so the default
    3RS3R *does* split 2-flats next to the ends (a no-op under the Tukey rule, which makes
    ``s[1] = s[2]`` whenever ``s[2] = s[3]``); (2) the Tukey rule of "3R" is applied once, after the
    medians converged, against the unsmoothed end values; (3) the S step's "changed" flag is set
    by the last interior split only, so when an earlier split changed a value and the last did
    not, 3RS3R returns the 3R result. For "3" with the Tukey rule at T = 3 smooth.c reads an unset
    value; here the copied end is used. Matches R's printed outputs for the ``?smooth`` and
    ``demo(smooth)`` examples exactly (tests/probe/test_smooth.py).

    Examples
    --------
    >>> tukey_smooth([4, 1, 3, 6, 6, 4, 1, 6, 2, 4, 2])
    array([3., 3., 3., 3., 4., 4., 4., 4., 2., 2., 2.])
    """
    if kind not in KINDS:
        msg = f"kind must be one of {list(KINDS)}; got {kind!r}."
        raise SmootherOptionError(msg)
    if endrule not in _ENDRULES:
        msg = f"endrule must be one of {list(_ENDRULES)}; got {endrule!r}."
        raise SmootherOptionError(msg)
    arr = as_float_array(x, "x")
    if arr.ndim != 1 or arr.size == 0:
        msg = f"x must be a non-empty 1-d sequence; got shape {arr.shape}."
        raise InvalidArrayError(msg)
    if kind == "3":
        return _smooth_3(arr, endrule, repeat=False)
    y = _smooth_3(arr, endrule, repeat=True)
    if kind == "3R":
        return y
    z, changed = _split(y)
    return _smooth_3(z, endrule, repeat=True) if changed else y
