"""The finetune-speed report: paired statistics per task, the loss-curve figure, a text summary.

Every number's convention is spelled out in `CONVENTIONS` (also saved in summary.json).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from probe.analysis.stats.paired import compare_paired, mean_ci
from probe.experiments.finetune_speed.tasks import (
    BRANCHES,
    FINETUNE_TASKS,
    METRICS,
    NETS,
    PRIMARY_METRIC,
)

__all__ = ["CONVENTIONS", "SummaryConfig", "format_summary", "plot_curves", "summarise"]


class SummaryConfig(Protocol):
    """The settings `summarise` reads (a `probe.experiments.finetune_speed.FinetuneConfig`)."""

    threshold: float
    alpha: float
    n_bootstrap: int
    bootstrap_seed: int


CONVENTIONS = {
    "loss": "full-batch MSE on the n_grid-point x-grid; loss[k] is computed in the forward of "
    "optimizer step k+1, i.e. after k updates (k = 0 .. finetune_steps-1)",
    "auc_log10_loss": "mean over the finetune_steps logged losses of log10(loss): the area "
    "under the log10-loss curve per step; lower = faster",
    "steps_to_threshold": "fewest updates k in 0 .. finetune_steps after which the loss is below "
    "threshold (k = finetune_steps uses final_loss); censored: finetune_steps + 1 when never",
    "final_loss": "full-batch MSE after the last update",
    "branch_change": "branch{1,2}_change = branch{1,2}_msd / variance over the x-grid of the "
    "branch output before finetuning; branch{1,2}_msd = mean over the x-grid of (branch output "
    "after finetuning - before)^2, read from the run store at the first and last snapshot",
    "difference": "ProductNet - SumNet, paired by seed; negative = ProductNet lower",
    "ci": "percentile bootstrap CI of the median paired difference",
    "test": "two-sided Wilcoxon signed-rank test of the paired differences (zeros dropped); "
    "with n seeds the smallest exact p is 2 / 2^n (0.0625 at n = 5): small runs cannot reach "
    "alpha = 0.05",
    "verdict": f"decided on {PRIMARY_METRIC}: p < alpha and the median difference's sign",
    "init": "for one seed both nets start from the same branch weights",
}


def summarise(df: pd.DataFrame, cfg: SummaryConfig) -> dict[str, Any]:
    seeds = sorted(int(s) for s in df["seed"].unique())
    columns = [*METRICS, "initial_loss"] + [f"{b}_{k}" for b in BRANCHES for k in ("change", "msd")]
    summary: dict[str, Any] = {
        "n_seeds": len(seeds),
        "seeds": seeds,
        "alpha": cfg.alpha,
        "primary_metric": PRIMARY_METRIC,
        "conventions": CONVENTIONS,
        "config": asdict(cast(Any, cfg)),  # every SummaryConfig is a dataclass
        "pretrain": {},
        "tasks": {},
    }
    first = df[df["task"] == next(iter(FINETUNE_TASKS))]
    for net in NETS:
        pre = first[first["net"] == net]["pretrain_loss"]
        summary["pretrain"][net] = {
            "median_loss": float(pre.median()),
            "max_loss": float(pre.max()),
            "n_below_threshold": int((pre < cfg.threshold).sum()),
        }
    for name, task in FINETUNE_TASKS.items():
        sub = df[df["task"] == name]
        wide = {net: sub[sub["net"] == net].set_index("seed").loc[seeds] for net in NETS}
        tests = {}
        for metric in METRICS:
            comparison = compare_paired(
                wide["ProductNet"][metric].to_numpy(),
                wide["SumNet"][metric].to_numpy(),
                n_resamples=cfg.n_bootstrap,
                seed=cfg.bootstrap_seed,
            )
            tests[metric] = asdict(comparison)
        main = tests[PRIMARY_METRIC]
        if main["pvalue"] < cfg.alpha and main["median_diff"] < 0:
            verdict = f"ProductNet faster on {name}"
        elif main["pvalue"] < cfg.alpha and main["median_diff"] > 0:
            verdict = f"SumNet faster on {name}"
        else:
            verdict = f"no significant difference at alpha={cfg.alpha:g}"
        summary["tasks"][name] = {
            "definition": task.describe(),
            "medians": {net: {c: float(wide[net][c].median()) for c in columns} for net in NETS},
            "tests": tests,
            "branch1_moved_more": {
                net: int((wide[net]["branch1_change"] > wide[net]["branch2_change"]).sum())
                for net in NETS
            },
            "verdict": verdict,
        }
    return summary


def plot_curves(curves: dict[tuple[str, str], list[npt.NDArray[np.float64]]], path: Path) -> None:
    fig = Figure(figsize=(5.0 * len(FINETUNE_TASKS), 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(FINETUNE_TASKS), sharey=True, squeeze=False)[0]
    for ax, (name, task) in zip(axes, FINETUNE_TASKS.items(), strict=True):
        for net in NETS:
            logs = np.log10(np.stack(curves[(net, name)]))
            mean, half = mean_ci(logs)
            steps = np.arange(logs.shape[1])
            ax.plot(steps, mean, label=f"{net} (n={logs.shape[0]})")
            ax.fill_between(steps, mean - half, mean + half, alpha=0.25)
        ax.set_title(f"task {name}: {task.describe()}", fontsize=9)
        ax.set_xlabel("finetune updates")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("log10 MSE (mean ± 95% t-CI over seeds)")
    fig.savefig(path, dpi=120)


def format_summary(summary: dict[str, Any]) -> str:
    """Return a one-screen text summary of a `run_finetune_speed` summary dict.

    Parameters
    ----------
    summary : dict
        ``FinetuneResult.summary`` or the parsed ``summary.json``.

    Returns
    -------
    str
    """
    n = summary["n_seeds"]
    lines = [
        f"finetune-speed, {n} seeds (diff = ProductNet - SumNet by seed; medians; "
        "change = msd / var before)"
    ]
    for net, pre in summary["pretrain"].items():
        lines.append(
            f"  pretrain MSE on base {net:<10}: median {pre['median_loss']:.2e}, "
            f"max {pre['max_loss']:.2e}, {pre['n_below_threshold']}/{n} below threshold"
        )
    for name, task in summary["tasks"].items():
        med = task["medians"]
        lines += [
            f"task {name}: {task['definition']}",
            f"  {'metric':<19}{'ProductNet':>11}{'SumNet':>11}{'median diff':>13}"
            f"{'95% CI':>26}{'W':>8}{'p':>10}",
        ]
        for metric, t in task["tests"].items():
            ci = f"[{t['ci_low']:.3g}, {t['ci_high']:.3g}]"
            lines.append(
                f"  {metric:<19}{med['ProductNet'][metric]:>11.4g}{med['SumNet'][metric]:>11.4g}"
                f"{t['median_diff']:>13.4g}{ci:>26}"
                f"{t['statistic']:>8.4g}{t['pvalue']:>10.2g}"
            )
        for net in med:
            m = med[net]
            lines.append(
                f"  branches {net:<10}: change b1 {m['branch1_change']:.3g}, "
                f"b2 {m['branch2_change']:.3g}; msd b1 {m['branch1_msd']:.3g}, "
                f"b2 {m['branch2_msd']:.3g}; b1 moved more in {task['branch1_moved_more'][net]}/{n}"
            )
        lines.append(f"  verdict: {task['verdict']}")
    if "wall_s" in summary:
        lines.append(f"wall time {summary['wall_s']:.0f} s")
    return "\n".join(lines)
