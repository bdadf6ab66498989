"""Tests of the finetune-speed experiment: two-branch models, tasks, paired stats, end to end."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from numpy.polynomial import polynomial as P
from scipy import stats
from torch import nn

import probe
from hooks import log_schedule
from probe.analysis.stats.paired import (
    bootstrap_ci,
    compare_paired,
    mean_ci,
    paired_differences,
    wilcoxon_signed_rank,
)
from probe.errors import (
    FinetuneConfigError,
    InputShapeError,
    ModelConfigError,
    ProbeError,
    StatsInputError,
)
from probe.experiments.finetune_speed.experiment import (
    BASE_TASK,
    FINETUNE_TASKS,
    METRICS,
    FinetuneConfig,
    PolyTask,
    _metrics,
    format_summary,
    grid,
    pretrain,
    representation_change,
    run_finetune_speed,
)
from probe.models import ProductNet, SumNet, TwoBranchNet

# --------------------------------------------------------------------------- models


@pytest.mark.parametrize("cls", [ProductNet, SumNet])
def test_two_branch_output_shape(cls):
    net = cls(width=8, depth=3)
    assert net(torch.randn(7, 1)).shape == (7, 1)
    b1, b2 = net.branches(torch.randn(7, 1))
    assert b1.shape == b2.shape == (7, 1)


def test_product_and_sum_combine_branches_exactly():
    x = grid(64)
    torch.manual_seed(0)
    product = ProductNet(width=16)
    torch.manual_seed(0)
    total = SumNet(width=16)
    for a, b in zip(product.state_dict().values(), total.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # same seed, same branch weights
    g1, g2 = product.branches(x)
    assert torch.equal(product(x), g1 * g2)
    h1, h2 = total.branches(x)
    assert torch.equal(total(x), h1 + h2)
    assert torch.equal(g1, product.branch1(x)) and torch.equal(g2, product.branch2(x))


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_two_branch_named_modules(depth):
    modules = dict(ProductNet(width=8, depth=depth).named_modules())
    for branch in ("branch1", "branch2"):
        assert isinstance(modules[branch], nn.Sequential)
        assert len(modules[branch]) == 2 * depth + 1
        assert modules[f"{branch}.0"].in_features == 1
        assert modules[f"{branch}.0"].out_features == 8
        for k in range(depth):
            assert isinstance(modules[f"{branch}.{2 * k}"], nn.Linear)
            assert isinstance(modules[f"{branch}.{2 * k + 1}"], nn.Tanh)
        head = modules[f"{branch}.{2 * depth}"]
        assert isinstance(head, nn.Linear)
        assert (head.in_features, head.out_features) == (8, 1)


def test_two_branch_base_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        TwoBranchNet()  # type: ignore[abstract]


@pytest.mark.parametrize(("kwargs", "name"), [({"width": 0}, "width"), ({"depth": 0}, "depth")])
def test_two_branch_rejects_bad_sizes(kwargs, name):
    with pytest.raises(ModelConfigError, match=rf"{name} must be >= 1; got 0"):
        SumNet(**kwargs)


@pytest.mark.parametrize("shape", [(5,), (5, 2), (5, 1, 1)])
def test_two_branch_rejects_bad_input(shape):
    with pytest.raises(InputShapeError, match=r"input must have shape \(n, 1\)"):
        ProductNet()(torch.randn(*shape))
    assert issubclass(InputShapeError, ProbeError)


# --------------------------------------------------------------------------- tasks


def test_task_coefficients():
    assert BASE_TASK.coeffs == (1.0, 2.0, 1.0)
    assert FINETUNE_TASKS["A"].coeffs == (2.0, 3.0, 1.0)
    assert FINETUNE_TASKS["B"].coeffs == (1.0, 2.5, 1.0)
    assert BASE_TASK.factors == ((1.0, 1.0), (1.0, 1.0))  # (x+1)^2
    assert FINETUNE_TASKS["A"].factors == ((1.0, 1.0), (2.0, 1.0))  # (x+1)(x+2)
    assert FINETUNE_TASKS["B"].factors == ((2.0, 1.0), (0.5, 1.0))  # (x+2)(x+0.5)
    for task in (BASE_TASK, *FINETUNE_TASKS.values()):
        assert np.array_equal(P.polymul(*task.factors), task.coeffs)  # exact
        assert np.array_equal(P.polyadd(*task.terms), task.coeffs)
        assert task.terms[0] == (0.0, 0.0, 1.0)  # the x^2 term


def test_task_values():
    x = grid(101).double()
    assert torch.equal(BASE_TASK(x), (x + 1) ** 2)
    torch.testing.assert_close(FINETUNE_TASKS["A"](x), (x + 1) * (x + 2))
    torch.testing.assert_close(FINETUNE_TASKS["B"](x), x**2 + 2.5 * x + 1)
    for task in FINETUNE_TASKS.values():
        f1, f2 = task.factor_values(x)
        t1, t2 = task.term_values(x)
        torch.testing.assert_close(f1 * f2, task(x))
        torch.testing.assert_close(t1 + t2, task(x))
    assert torch.equal(BASE_TASK.branch_targets(ProductNet(), x)[0], x + 1)
    assert torch.equal(BASE_TASK.branch_targets(SumNet(), x)[0], x**2)
    assert FINETUNE_TASKS["A"].describe() == "(x + 1)(x + 2) = x^2 + 3x + 2"
    assert FINETUNE_TASKS["B"].describe() == "(x + 2)(x + 0.5) = x^2 + 2.5x + 1"


def test_grid():
    x = grid(256)
    assert x.shape == (256, 1) and x.dtype == torch.float32
    assert x[0].item() == -2.0 and x[-1].item() == 2.0


@pytest.mark.parametrize(
    ("factors", "terms", "form"),
    [
        (((1.0, 1.0), (1.0, 2.0)), ((0.0, 0.0, 1.0), (1.0, 2.0)), "factors"),
        (((1.0, 1.0), (1.0, 1.0)), ((0.0, 0.0, 1.0), (1.0, 3.0)), "terms"),
    ],
)
def test_task_rejects_inconsistent_forms(factors, terms, form):
    with pytest.raises(FinetuneConfigError, match=rf"task 'bad': {form} must combine to coeffs"):
        PolyTask("bad", coeffs=(1.0, 2.0, 1.0), factors=factors, terms=terms)


# --------------------------------------------------------------------------- stats


def test_compare_paired_detects_known_effect():
    rng = np.random.default_rng(0)
    b = rng.normal(size=20)
    a = b + 0.5 + rng.normal(scale=0.2, size=20)
    res = compare_paired(a, b, n_resamples=2000, seed=1)
    assert res.n == 20
    assert res.pvalue < 0.05
    assert 0.0 < res.ci_low <= res.median_diff <= res.ci_high
    assert res == compare_paired(a, b, n_resamples=2000, seed=1)  # deterministic
    assert res.pvalue == stats.wilcoxon(a - b).pvalue


def test_compare_paired_no_effect():
    rng = np.random.default_rng(0)
    b = rng.normal(size=20)
    a = b + rng.normal(scale=0.2, size=20)
    res = compare_paired(a, b, seed=1)
    assert res.ci_low < 0.0 < res.ci_high
    assert res.pvalue > 0.05


def test_wilcoxon_all_zero_differences():
    assert wilcoxon_signed_rank(np.zeros(6)) == (0.0, 1.0)


def test_bootstrap_ci_mean_and_level():
    v = np.random.default_rng(3).normal(loc=2.0, size=50)
    lo95, hi95 = bootstrap_ci(v, statistic="mean", seed=0)
    lo50, hi50 = bootstrap_ci(v, statistic="mean", level=0.5, seed=0)
    assert lo95 < lo50 < v.mean() < hi50 < hi95
    assert bootstrap_ci(v, seed=5) == bootstrap_ci(v, seed=5)


def test_mean_ci_is_t_interval():
    v = np.array([[1.0, 0.0], [2.0, 0.0], [4.0, 0.0]])
    mean, half = mean_ci(v)
    expected = stats.t.ppf(0.975, 2) * np.std(v[:, 0], ddof=1) / np.sqrt(3)
    np.testing.assert_allclose(mean, [7.0 / 3.0, 0.0])
    np.testing.assert_allclose(half, [expected, 0.0])


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        ([1.0, 2.0], [1.0], "same length >= 2"),
        ([1.0], [2.0], "same length >= 2"),
        ([[1.0, 2.0]], [[1.0, 2.0]], "1-d arrays"),
        ([1.0, np.nan], [1.0, 2.0], "must be finite"),
        ([1.0, 2.0], [np.inf, 2.0], "must be finite"),
    ],
)
def test_paired_differences_rejects(a, b, match):
    with pytest.raises(StatsInputError, match=match):
        paired_differences(a, b)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"statistic": "mode"}, r"statistic must be one of \['mean', 'median'\]"),
        ({"n_resamples": 0}, "n_resamples must be >= 1"),
        ({"level": 1.5}, r"level must be in \(0, 1\)"),
    ],
)
def test_bootstrap_ci_rejects(kwargs, match):
    with pytest.raises(StatsInputError, match=match):
        bootstrap_ci([1.0, 2.0, 3.0], **kwargs)


def test_mean_ci_rejects():
    with pytest.raises(StatsInputError, match="at least 2 rows"):
        mean_ci(np.ones((1, 5)))
    with pytest.raises(StatsInputError, match=r"level must be in \(0, 1\)"):
        mean_ci(np.ones((3, 5)), level=0.0)


# --------------------------------------------------------------------------- metrics, config


def test_metrics_conventions():
    losses = np.array([1.0, 0.1, 0.01, 0.001])
    m = _metrics(losses, 0.0001, threshold=0.05)
    assert m["auc_log10_loss"] == pytest.approx(-1.5)
    assert m["steps_to_threshold"] == 2
    assert m["initial_loss"] == 1.0 and m["final_loss"] == 0.0001
    assert _metrics(losses, 1e-5, threshold=1e-4)["steps_to_threshold"] == 4  # final loss
    assert _metrics(losses, 1e-3, threshold=1e-4)["steps_to_threshold"] == 5  # censored
    assert _metrics(losses, 1e-3, threshold=2.0)["steps_to_threshold"] == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seeds", 1),
        ("width", 0),
        ("depth", 0),
        ("pretrain_steps", 0),
        ("finetune_steps", 0),
        ("lr", 0.0),
        ("threshold", -1.0),
        ("n_grid", 1),
        ("n_snapshots", 0),
        ("alpha", 1.0),
        ("n_bootstrap", 0),
    ],
)
def test_config_rejects(tmp_path, field, value):
    cfg = replace(FinetuneConfig(), **{field: value})
    with pytest.raises(FinetuneConfigError, match=rf"FinetuneConfig\.{field} must be"):
        run_finetune_speed(cfg, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_pretrain_without_branch_supervision_lowers_loss():
    x = grid(64)
    torch.manual_seed(0)
    net = SumNet(width=8)
    with torch.no_grad():
        before = float(((net(x) - BASE_TASK(x)) ** 2).mean())
    after = pretrain(net, x, steps=100, lr=1e-2, supervise_branches=False)
    assert after < 0.5 * before


@pytest.mark.slow
@pytest.mark.parametrize("cls", [ProductNet, SumNet])
def test_default_pretraining_reaches_low_loss(cls):
    cfg = FinetuneConfig()
    torch.manual_seed(cfg.seed0)
    net = cls(cfg.width, cfg.depth)
    loss = pretrain(
        net,
        grid(cfg.n_grid),
        steps=cfg.pretrain_steps,
        lr=cfg.lr,
        supervise_branches=cfg.supervise_branches,
    )
    assert loss < 1e-3


# --------------------------------------------------------------------------- end to end

COLUMNS = [
    "seed",
    "net",
    "task",
    "auc_log10_loss",
    "steps_to_threshold",
    "final_loss",
    "initial_loss",
    "branch1_change",
    "branch1_msd",
    "branch2_change",
    "branch2_msd",
    "pretrain_loss",
    "run_store",
]


def test_end_to_end_tiny(tmp_path):
    cfg = FinetuneConfig(
        seeds=2,
        seed0=3,
        width=8,
        pretrain_steps=40,
        finetune_steps=12,
        n_grid=32,
        n_snapshots=5,
        n_bootstrap=200,
        threshold=0.05,
    )
    out = tmp_path / "fs"
    res = run_finetune_speed(cfg, out, progress=False)

    df = pd.read_csv(res.metrics_csv)
    assert list(df.columns) == COLUMNS
    assert len(df) == 2 * 2 * 2
    assert set(df["seed"]) == {3, 4}
    assert set(df["net"]) == {"ProductNet", "SumNet"}
    assert set(df["task"]) == {"A", "B"}
    assert df["steps_to_threshold"].between(0, cfg.finetune_steps + 1).all()

    x = grid(cfg.n_grid)
    for row in df.itertuples():
        store = out / "runs" / f"seed{row.seed}" / f"{row.net}_{row.task}.zarr"
        assert row.run_store == str(store.relative_to(out))
        run = probe.open_run(store)
        assert run.layers == ["branch1", "branch2"]
        assert run.steps.tolist() == log_schedule(cfg.finetune_steps, cfg.n_snapshots)
        assert run.attrs["seed"] == row.seed
        assert run.attrs["config"]["net"] == row.net
        loss = run.metrics()["loss"].to_numpy()
        assert loss.shape == (cfg.finetune_steps,)
        assert row.initial_loss == pytest.approx(loss[0], rel=1e-6)
        assert row.auc_log10_loss == pytest.approx(np.mean(np.log10(loss)), rel=1e-6)
        for layer in ("branch1", "branch2"):
            assert run.acts(layer, step=0).shape == (cfg.n_grid, 1)
            assert run.acts(layer, step=-1).shape == (cfg.n_grid, 1)
        assert run.outputs(step=-1).shape == (cfg.n_grid, 1)
        np.testing.assert_allclose(run.targets, FINETUNE_TASKS[row.task](x).numpy())
        before, after = run.acts("branch1", step=0), run.acts("branch1", step=-1)
        msd = np.mean((after.astype(np.float64) - before) ** 2)
        assert row.branch1_msd == pytest.approx(msd)
        assert row.branch1_change == pytest.approx(msd / np.var(before.astype(np.float64)))
        assert (row.branch2_change, row.branch2_msd) == pytest.approx(
            representation_change(store, "branch2")
        )

    summary = json.loads(res.summary_json.read_text())
    assert summary == json.loads(json.dumps(res.summary))
    assert summary["n_seeds"] == 2 and summary["seeds"] == [3, 4]
    assert set(summary["pretrain"]) == {"ProductNet", "SumNet"}
    assert set(summary["tasks"]) == {"A", "B"}
    for name, task in summary["tasks"].items():
        assert set(task) == {"definition", "medians", "tests", "branch1_moved_more", "verdict"}
        assert 0 <= task["branch1_moved_more"]["SumNet"] <= 2
        assert set(task["medians"]) == {"ProductNet", "SumNet"}
        assert set(task["tests"]) == set(METRICS)
        for t in task["tests"].values():
            assert t["n"] == 2
            assert {"statistic", "pvalue", "ci_low", "ci_high", "median_diff"} <= set(t)
        # 2 seeds: the smallest two-sided exact p is 0.5
        assert task["verdict"] == "no significant difference at alpha=0.05"
        medians = df[(df["task"] == name) & (df["net"] == "SumNet")]["final_loss"].median()
        assert task["medians"]["SumNet"]["final_loss"] == pytest.approx(medians)

    assert res.figure == out / "loss_curves.png"
    assert res.figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert res.figure.stat().st_size > 1000
    assert res.wall_s > 0
    text = format_summary(summary)
    assert "task A: (x + 1)(x + 2) = x^2 + 3x + 2" in text
    assert "verdict: no significant difference" in text


def test_cli_run_finetune_speed(tmp_path, capsys):
    from probe.cli.app import main as cli_main

    out = tmp_path / "cli"
    argv = [
        "run",
        "finetune-speed",
        "--seeds",
        "2",
        "--width",
        "4",
        "--pretrain-steps",
        "5",
        "--finetune-steps",
        "4",
        "--n-grid",
        "16",
        "--n-snapshots",
        "2",
        "--n-bootstrap",
        "50",
        "--no-supervise-branches",
        "--out",
        str(out),
    ]
    assert cli_main(argv) == 0
    text = capsys.readouterr().out
    assert "finetune-speed, 2 seeds" in text and "verdict" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["supervise_branches"] is False
    assert summary["config"]["finetune_steps"] == 4
