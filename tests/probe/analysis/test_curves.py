import argparse

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from torch import nn

import probe
from hooks import Recorder
from probe.analysis.curves import (
    CurveMetrics,
    curve_metrics,
    curves_from_run,
    developmental_trajectory,
    metrics_table,
    processing_trajectory,
    readout_curve,
)
from probe.cli.curves import add_parser
from probe.errors import (
    CurveTableError,
    InvalidArrayError,
    MetricNotInRunError,
    ReadoutError,
    ShapeMismatchError,
)
from probe.plots.curves import plot_trajectory

X1 = [4, 1, 3, 6, 6, 4, 1, 6, 2, 4, 2]  # R's ?smooth example; smooth(x1) = 3 3 3 3 4 4 4 4 2 2 2


def astuple(m):
    if isinstance(m, pd.Series):
        return tuple(m[k] for k in ("start", "end_minus_start", "max", "tmax"))
    return (m.start, m.end_minus_start, m.max, m.tmax)


# ------------------------------------------------------------------ curve_metrics
@pytest.mark.parametrize(
    ("v", "expected"),
    [
        (np.linspace(0.1, 1.0, 10), (0.1, 0.9, 1.0, 1.0)),  # monotone increasing: max at the end
        ([0.9, 0.7, 0.4, 0.2], (0.9, -0.7, 0.9, 0.25)),  # monotone decreasing: max first
        ([0.2, 0.9, 0.4, 0.3], (0.2, 0.1, 0.9, 0.5)),  # non-monotone
        ([0.1, 0.8, 0.5, 0.8], (0.1, 0.7, 0.8, 0.5)),  # tie: the first maximum
        ([0.3, 0.6, 0.6, 0.6, 0.5], (0.3, 0.2, 0.6, 0.4)),  # plateau: its first step
        ([0.7], (0.7, 0.0, 0.7, 1.0)),  # length 1
        (X1, (4.0, -2.0, 6.0, 4 / 11)),
    ],
)
def test_raw_metrics_known_answers(v, expected):
    m = curve_metrics(v, smooth=False)
    np.testing.assert_allclose(astuple(m), expected, atol=1e-12)
    assert m.smoothing == "raw"


def test_smoothed_metrics_use_r_smooth():
    # smooth(x1) = 3 3 3 3 4 4 4 4 2 2 2: start 3, end - start -1, max 4 first at t = 5 of 11
    m = curve_metrics(X1)
    assert astuple(m) == (3.0, -1.0, 4.0, 5 / 11)
    assert m == CurveMetrics(3.0, -1.0, 4.0, 5 / 11, "3RS3R")
    # a one-step spike is removed: smoothed max 0.5 at t = 1, raw max 1.0 at t = 4
    spike = [0.5, 0.5, 0.5, 1.0, 0.5, 0.5]
    assert astuple(curve_metrics(spike)) == (0.5, 0.0, 0.5, 1 / 6)
    assert astuple(curve_metrics(spike, smooth=False)) == (0.5, 0.0, 1.0, 4 / 6)
    assert astuple(curve_metrics([0.7])) == (0.7, 0.0, 0.7, 1.0)


def test_curve_metrics_errors():
    with pytest.raises(InvalidArrayError, match="v must be finite; got 1 NaN"):
        curve_metrics([0.1, np.nan, 0.3])
    with pytest.raises(InvalidArrayError, match="v must be finite"):
        curve_metrics([0.1, np.inf], smooth=False)
    with pytest.raises(InvalidArrayError, match=r"non-empty 1-d curve of shape \(T,\)"):
        curve_metrics([])
    with pytest.raises(InvalidArrayError, match="non-empty 1-d curve"):
        curve_metrics(np.zeros((2, 3)))


# ------------------------------------------------------------------ tables and trajectories
def curve_table():
    """Two groups x two runs x two epochs of hand-made raw curves (rows shuffled)."""
    curves = {
        ("r1", "A", 0): [0.2, 0.4, 0.3],  # start .2, end-start .1, max .4, tmax 2/3
        ("r2", "A", 0): [0.4, 0.6, 0.5],  # start .4, end-start .1, max .6, tmax 2/3
        ("r1", "A", 1): [0.5, 0.7, 0.9],  # start .5, end-start .4, max .9, tmax 1
        ("r2", "A", 1): [0.5, 0.9, 0.9],  # start .5, end-start .4, max .9, tmax 2/3
        ("r3", "B", 0): [0.6, 0.5, 0.5],
        ("r4", "B", 0): [0.6, 0.5, 0.5],
        ("r3", "B", 1): [0.5, 0.5, 0.8],
        ("r4", "B", 1): [0.5, 0.5, 0.8],
    }
    rows = [
        {"run": r, "group": g, "epoch": e, "t": t + 1, "value": v}
        for (r, g, e), vs in curves.items()
        for t, v in enumerate(vs)
    ]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0).reset_index(drop=True)


def test_metrics_table_known_answers():
    table = metrics_table(curve_table(), smooth=False)
    assert list(table.columns) == [
        "run",
        "group",
        "epoch",
        "n_steps",
        "smoothing",
        "start",
        "end_minus_start",
        "max",
        "tmax",
    ]
    assert len(table) == 8 and (table["n_steps"] == 3).all() and (table["smoothing"] == "raw").all()
    r = table.set_index(["run", "epoch"])
    np.testing.assert_allclose(astuple(r.loc[("r1", 0)]), (0.2, 0.1, 0.4, 2 / 3), atol=1e-12)
    np.testing.assert_allclose(astuple(r.loc[("r1", 1)]), (0.5, 0.4, 0.9, 1.0), atol=1e-12)
    np.testing.assert_allclose(astuple(r.loc[("r4", 0)]), (0.6, -0.1, 0.6, 1 / 3), atol=1e-12)
    # without a group column every curve is in group "all"; the smoothed variant is labelled
    smoothed = metrics_table(curve_table().drop(columns="group"))
    assert (smoothed["group"] == "all").all() and (smoothed["smoothing"] == "3RS3R").all()


def test_trajectories_mean_and_se_over_runs():
    dev = developmental_trajectory(curve_table(), smooth=False).set_index(["group", "epoch"])
    assert dev.loc[("A", 0), "n_runs"] == 2
    # starts 0.2 and 0.4: mean 0.3, SE = sd(ddof=1)/sqrt(2) = 0.1414.../1.414... = 0.1
    np.testing.assert_allclose(dev.loc[("A", 0), ["start_mean", "start_se"]], [0.3, 0.1])
    np.testing.assert_allclose(dev.loc[("A", 0), ["max_mean", "max_se"]], [0.5, 0.1])
    np.testing.assert_allclose(dev.loc[("B", 1), ["max_mean", "max_se"]], [0.8, 0.0])
    proc = processing_trajectory(curve_table(), smooth=False).set_index(["group", "epoch"])
    # tmax 1 and 2/3: mean 5/6, SE = (1/3)/sqrt(2)/sqrt(2) = 1/6
    np.testing.assert_allclose(proc.loc[("A", 1), ["tmax_mean", "tmax_se"]], [5 / 6, 1 / 6])
    np.testing.assert_allclose(proc.loc[("A", 1), "end_minus_start_mean"], 0.4)
    assert set(dev["trajectory"]) == {"developmental"}
    assert set(proc["trajectory"]) == {"processing"}


def test_plot_trajectories(tmp_path):
    for build in (developmental_trajectory, processing_trajectory):
        path = tmp_path / f"{build.__name__}.png"
        fig = plot_trajectory(build(curve_table()), path=path)
        assert isinstance(fig, Figure) and path.stat().st_size > 0
        ax = fig.axes[0]
        assert len(ax.get_lines()) == 2 and [t.get_text() for t in ax.get_legend().texts] == [
            "A",
            "B",
        ]
    assert ax.get_xlim() == (0.0, 1.05)  # processing: tmax is a fraction
    with pytest.raises(CurveTableError, match="from developmental_trajectory or processing"):
        plot_trajectory(metrics_table(curve_table()))


def test_table_errors():
    df = curve_table()
    with pytest.raises(CurveTableError, match=r"missing \['t'\]"):
        metrics_table(df.drop(columns="t"))
    with pytest.raises(
        CurveTableError, match="one row per t; got a repeat at run=.r2., group=.A., epoch=1, t=3"
    ):
        metrics_table(pd.concat([df, df.iloc[:1]]))
    bad = df.copy()
    bad.loc[(bad["run"] == "r3") & (bad["epoch"] == 1) & (bad["t"] == 2), "value"] = np.nan
    with pytest.raises(InvalidArrayError, match="curve run='r3', group='B', epoch=1: .*finite"):
        developmental_trajectory(bad)


# ------------------------------------------------------------------ read-out curves
def states(seed, n=60, T=6, d=4, t_info=3):
    """Noise at every step; from t_info on, feature 0 carries the label (+-3 vs noise sd 1)."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    H = rng.standard_normal((n, T, d))
    H[:, t_info:, 0] += 3.0 * (2 * y[:, None] - 1)
    return H, y


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("method", ["knn", "linear"])
def test_readout_curve_finds_when_information_appears(seed, method):
    H, y = states(seed, T=4, t_info=2)
    acc = readout_curve(H, y, method=method, seed=seed)
    assert acc.shape == (4,)
    # chance is 0.5 (SD about 0.065 with 60 samples); Bayes accuracy from t = 2 on is 0.9987
    assert acc[:2].max() < 0.75 and acc[2:].min() > 0.95


def test_readout_curve_is_held_out_not_resubstitution():
    from sklearn.neighbors import KNeighborsClassifier

    H, y = states(2, t_info=6)  # no information anywhere
    held_out = readout_curve(H, y, n_neighbors=3)
    resub = [KNeighborsClassifier(3).fit(H[:, t], y).score(H[:, t], y) for t in range(6)]
    # resubstitution with k = 3 counts the point itself: about 0.75 on pure noise
    assert held_out.mean() < 0.62 < 0.68 < np.mean(resub)


def test_readout_curve_layers_of_different_widths_and_loo():
    H, y = states(3, n=20, T=2, t_info=1)
    layers = [H[:, 0], H[:, 1, :2]]  # widths 4 and 2
    acc = readout_curve(layers, y, cv="loo")
    assert acc.shape == (2,) and acc[0] < 0.8 and acc[1] >= 0.95


def test_readout_curve_errors():
    H, y = states(0, n=12, T=2)
    with pytest.raises(ShapeMismatchError, match="H and y must have the same number of samples"):
        readout_curve(H, y[:-1])
    with pytest.raises(ReadoutError, match="at least 2 classes"):
        readout_curve(H, np.zeros(12))
    with pytest.raises(ReadoutError, match=r"cv must be 'loo' or an int in \[2, 6\]"):
        readout_curve(H, y, cv=7)
    with pytest.raises(ReadoutError, match="cv must be 'loo'"):
        readout_curve(H, y, cv="kfold")
    with pytest.raises(ReadoutError, match="method must be 'knn' or 'linear'"):
        readout_curve(H, y, method="svm")
    with pytest.raises(ReadoutError, match=r"n_neighbors in \[1, 9\]"):
        readout_curve(H, y, cv=4, n_neighbors=10)
    with pytest.raises(InvalidArrayError, match="at least 3 dimensions"):
        readout_curve(H[:, 0], y)
    with pytest.raises(InvalidArrayError, match="at least one time step"):
        readout_curve([], y)
    with pytest.raises(ShapeMismatchError, match=r"H\[0\] and H\[1\] must have the same number"):
        readout_curve([H[:, 0], H[:-1, 1]], y)


# ------------------------------------------------------------------ runs and the CLI
@pytest.fixture
def run_path(tmp_path):
    path = tmp_path / "run.zarr"
    with Recorder(nn.Sequential(nn.Linear(2, 2)), layers=["0"], store=path) as rec:
        for i, v in enumerate(X1):
            rec.step(loss=v / 10, acc=0.5 if i >= 7 else float("nan"))
    return path


def test_curves_from_run(run_path):
    m = curves_from_run(run_path)  # loss = x1 / 10
    np.testing.assert_allclose(astuple(m), (0.3, -0.1, 0.4, 5 / 11), atol=1e-12)
    raw = curves_from_run(probe.open_run(run_path), "loss", smooth=False)
    np.testing.assert_allclose(astuple(raw), (0.4, -0.2, 0.6, 4 / 11), atol=1e-12)
    # acc logged at the last 4 records only (NaN = not logged): a flat curve of 4
    assert astuple(curves_from_run(run_path, "acc")) == (0.5, 0.0, 0.5, 0.25)


def test_curves_from_run_errors(run_path):
    with pytest.raises(MetricNotInRunError, match=r"'los' was not logged.*closest: \['loss'\]"):
        curves_from_run(run_path, "los")

    class NeverLogged:
        def metrics(self):
            return pd.DataFrame({"step": [1, 2], "epoch": [0, 0], "acc": [np.nan, np.nan]})

    with pytest.raises(InvalidArrayError, match="'acc' has no logged values"):
        curves_from_run(NeverLogged(), "acc")


def test_cli_curves(run_path, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="probe")
    add_parser(parser.add_subparsers(dest="verb", required=True))
    out = tmp_path / "out"
    args = parser.parse_args(["curves", str(run_path), str(run_path), "--out", str(out)])
    assert args.func(args) == 0
    table = pd.read_csv(out / "curves_loss.csv")
    assert len(table) == 2 and list(table.columns) == [
        "run",
        "metric",
        "smoothing",
        "start",
        "end_minus_start",
        "max",
        "tmax",
    ]
    np.testing.assert_allclose(table.loc[0, ["start", "max", "tmax"]], [0.3, 0.4, 5 / 11])
    printed = capsys.readouterr().out
    assert "3RS3R" in printed and "curves_loss.csv" in printed
    args = parser.parse_args(["curves", str(run_path), "--no-smooth", "--out", str(out)])
    assert args.func(args) == 0
    assert pd.read_csv(out / "curves_loss.csv").loc[0, "max"] == pytest.approx(0.6)
    with pytest.raises(MetricNotInRunError, match="'acuracy' was not logged"):
        args.func(
            parser.parse_args(["curves", str(run_path), "--metric", "acuracy", "--out", str(out)])
        )


def test_moved_names_are_reexported():
    from probe.analysis import curves, readout

    assert curves.readout_curve is readout.readout_curve
