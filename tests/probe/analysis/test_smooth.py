import numpy as np
import pytest

from probe.analysis.smooth import tukey_smooth
from probe.errors import InvalidArrayError, SmootherOptionError

# R's own output: the "Didactical investigation" of demo(smooth) (stats/demo/smooth.R), from the
# R-generated transcript of R's demos kept with the R sources (*.Rout.save). Columns: x,
# smooth(x, "3", end="copy"), smooth(x, "3"), smooth(x, "3R", end="copy"), smooth(x, "3R"),
# smooth(x) (= 3RS3R, Tukey).
R_DEMO = [
    (
        [4, 6, 2, 2, 6, 3, 6, 6, 5, 2],
        [4, 4, 2, 2, 3, 6, 6, 6, 5, 2],
        [4, 4, 2, 2, 3, 6, 6, 6, 5, 3],
        [4, 4, 2, 2, 3, 6, 6, 6, 5, 2],
        [4, 4, 2, 2, 3, 6, 6, 6, 5, 3],
        [4, 4, 4, 3, 3, 6, 6, 6, 5, 3],
    ),
    (
        [3, 2, 1, 4, 5, 1, 3, 2, 4, 5, 2],
        [3, 2, 2, 4, 4, 3, 2, 3, 4, 4, 2],
        [2, 2, 2, 4, 4, 3, 2, 3, 4, 4, 4],
        [3, 2, 2, 4, 4, 3, 3, 3, 4, 4, 2],
        [2, 2, 2, 4, 4, 3, 3, 3, 4, 4, 4],
        [2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4],
    ),
    (
        [2, 4, 2, 6, 1, 1, 2, 6, 3, 1, 6],
        [2, 2, 4, 2, 1, 1, 2, 3, 3, 3, 6],
        [2, 2, 4, 2, 1, 1, 2, 3, 3, 3, 3],
        [2, 2, 2, 2, 1, 1, 2, 3, 3, 3, 6],
        [2, 2, 2, 2, 1, 1, 2, 3, 3, 3, 3],
        [2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3],
    ),
    (  # the ?smooth example x1; R prints the same 3R and S results in example(smooth)
        [4, 1, 3, 6, 6, 4, 1, 6, 2, 4, 2],
        [4, 3, 3, 6, 6, 4, 4, 2, 4, 2, 2],
        [3, 3, 3, 6, 6, 4, 4, 2, 4, 2, 2],
        [4, 3, 3, 6, 6, 4, 4, 4, 2, 2, 2],
        [3, 3, 3, 6, 6, 4, 4, 4, 2, 2, 2],
        [3, 3, 3, 3, 4, 4, 4, 4, 2, 2, 2],
    ),
]
SETTINGS = [("3", "copy"), ("3", "Tukey"), ("3R", "copy"), ("3R", "Tukey"), ("3RS3R", "Tukey")]

# R's `presidents` (quarterly approval, 1945-1974) with NA set to 0, as in example(smooth); the
# series reproduces R's printed summaries of both smoothers below (a check of the data too).
PRESIDENTS = (
    "0 87 82 75 63 50 43 32 35 60 54 55 36 39 0 0 69 57 57 51 45 37 46 39 36 24 32 23 25 32 0 32 "
    "59 74 75 60 71 61 71 57 71 68 79 73 76 71 67 75 79 62 63 57 60 49 48 52 57 62 61 66 71 62 61 "
    "57 72 83 71 78 79 71 62 74 76 64 62 57 80 73 69 69 71 64 69 62 63 46 56 44 44 52 38 46 36 49 "
    "35 44 59 65 65 56 66 53 61 52 51 48 54 49 49 61 0 0 68 44 40 27 28 25 24 24"
)


@pytest.mark.parametrize("row", R_DEMO)
@pytest.mark.parametrize(("i", "setting"), list(enumerate(SETTINGS, start=1)))
def test_matches_r_demo_smooth(row, i, setting):
    kind, endrule = setting
    out = tukey_smooth(row[0], kind=kind, endrule=endrule)
    np.testing.assert_array_equal(out, np.asarray(row[i], dtype=float))
    assert out.dtype == np.float64


def test_matches_r_presidents_summary():
    # R's summary() in example(smooth): 3R: 0, 44, 57, 54.2, 71, 82 (used 4 iterations);
    # 3RS3R: 24, 44, 57, 55.88, 69, 82. Quantile type 7 = numpy's default.
    x = np.array(PRESIDENTS.split(), dtype=float)
    assert x.size == 120
    for kind, ref in [("3R", (0, 44, 57, 54.2, 71, 82)), ("3RS3R", (24, 44, 57, 55.88, 69, 82))]:
        y = tukey_smooth(x, kind=kind)
        q = np.quantile(y, [0.0, 0.25, 0.5, 0.75, 1.0])
        got = (q[0], q[1], q[2], round(y.mean(), 2), q[3], q[4])
        np.testing.assert_allclose(got, ref, atol=1e-12)


def test_split_at_both_ends_with_copy_rule():
    # Hand-derived from smooth.c. x = 0 5 5 1 2 3. 3R (copy): pass 1 -> 0 5 5 2 2 3, pass 2 no
    # change. S (R's default 3RS3R splits the ends): (5, 5) at positions 1-2 is a peak:
    # y1 = x0 = 0, y2 = med(5, 2, 3*2 - 2*2) = 2; (2, 2) at positions 3-4 is a valley:
    # y4 = x5 = 3, y3 = med(2, 5, 3*5 - 2*5) = 5 -> 0 0 2 5 3 3. 3R again: 0 0 2 3 3 3.
    out = tukey_smooth([0, 5, 5, 1, 2, 3], endrule="copy")
    np.testing.assert_array_equal(out, [0, 0, 2, 3, 3, 3])
    np.testing.assert_array_equal(
        tukey_smooth([0, 5, 5, 1, 2, 3], kind="3R", endrule="copy"), [0, 5, 5, 2, 2, 3]
    )


def test_split_change_flag_is_the_last_assignment():
    # Hand-derived from smooth.c (R's chg is assigned, not OR-ed). x = 4 6 1 1 6 3 4.
    # 3R: 4 4 1 1 3 4 4 (Tukey ends: med(3*4-2*1, 4, 4) = 4, med(4, 4, 3*4-2*3) = 4).
    # S at the valley (1, 1), i = 2: left med(1, 4, 3*4-2*4) = 4 changes y2, chg = TRUE;
    # right imed3(1, 3, 3*3-2*4 = 1) picks w = 1: unchanged, chg = FALSE. So 3RS3R returns
    # the 3R result, not 3R(4 4 4 1 3 4 4) = 4 4 4 3 3 4 4.
    out = tukey_smooth([4, 6, 1, 1, 6, 3, 4])
    np.testing.assert_array_equal(out, [4, 4, 1, 1, 3, 4, 4])


def test_short_sequences():
    assert tukey_smooth([2.5]).tolist() == [2.5]
    assert tukey_smooth([3, 1]).tolist() == [3.0, 1.0]
    # n = 3: 3R gives 1 2 2; Tukey: y0 = med(3*2 - 2*2, 1, 2) = 2, y2 = med(2, 2, 3*2 - 2*2) = 2
    assert tukey_smooth([1, 5, 2]).tolist() == [2.0, 2.0, 2.0]
    assert tukey_smooth([1, 5, 2], endrule="copy").tolist() == [1.0, 2.0, 2.0]
    # n = 4: no S step (R needs n > 4); 3R: 1 2 3 3 -> Tukey ends 1 and 3
    assert tukey_smooth([1, 9, 2, 3]).tolist() == [1.0, 2.0, 3.0, 3.0]


@pytest.mark.parametrize("x", [np.arange(12.0), -0.5 * np.arange(9.0), np.full(7, 0.3)])
def test_monotone_and_constant_sequences_are_fixed_points(x):
    # running medians keep monotone runs; Tukey's end extrapolation reproduces a straight line
    np.testing.assert_array_equal(tukey_smooth(x), x)


def test_integer_and_float32_inputs():
    x = [4, 1, 3, 6, 6, 4, 1, 6, 2, 4, 2]
    np.testing.assert_array_equal(tukey_smooth(np.array(x, np.float32)), tukey_smooth(x))


def test_errors():
    with pytest.raises(SmootherOptionError, match="kind must be one of"):
        tukey_smooth([1, 2, 3], kind="3RSR")
    with pytest.raises(SmootherOptionError, match="endrule must be one of"):
        tukey_smooth([1, 2, 3], endrule="tukey")
    with pytest.raises(InvalidArrayError, match="must be finite"):
        tukey_smooth([1.0, np.nan, 2.0])
    with pytest.raises(InvalidArrayError, match="non-empty 1-d sequence"):
        tukey_smooth(np.ones((2, 3)))
    with pytest.raises(InvalidArrayError, match="non-empty 1-d sequence"):
        tukey_smooth([])
