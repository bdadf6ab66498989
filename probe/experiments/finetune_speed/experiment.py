"""Finetune speed of structured nets: is a new task learned faster when close to the net's form.

`ProductNet` (y = g1 g2) and `SumNet` (y = h1 + h2) are pretrained on (x+1)^2, then finetuned per
seed on A = (x+1)(x+2) and B = x^2 + 2.5x + 1. Every finetune run is recorded with
`hooks.Recorder`; per task the two nets are compared paired across seeds (`run_finetune_speed`).
"""

from __future__ import annotations

import copy
import json
import math
import numbers
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
from tqdm.auto import tqdm

from hooks import Recorder, log_schedule
from probe.errors import FinetuneConfigError
from probe.experiments.finetune_speed._report import (
    CONVENTIONS,
    format_summary,
    plot_curves,
    summarise,
)
from probe.experiments.finetune_speed.tasks import (
    BASE_TASK,
    BRANCHES,
    FINETUNE_TASKS,
    METRICS,
    NETS,
    PRIMARY_METRIC,
    X_RANGE,
    PolyTask,
    grid,
)
from probe.models import TwoBranchNet
from probe.store import open_run

__all__ = [
    "BASE_TASK",
    "CONVENTIONS",
    "FINETUNE_TASKS",
    "METRICS",
    "NETS",
    "PRIMARY_METRIC",
    "X_RANGE",
    "FinetuneConfig",
    "FinetuneResult",
    "PolyTask",
    "finetune",
    "format_summary",
    "grid",
    "pretrain",
    "representation_change",
    "run_finetune_speed",
]


@dataclass
class FinetuneConfig:
    """Settings of the finetune-speed experiment (saved as JSON in every run store's ``config``).

    Both nets use the same branch architecture, Adam with the fixed ``lr`` for pretraining and
    finetuning (a fresh optimizer for each finetune), and full-batch training on the fixed grid
    of ``n_grid`` equally spaced x in `X_RANGE`, which is also the probe set of every run store.
    Seeds are ``seed0 .. seed0 + seeds - 1``.
    """

    seeds: int = 20
    seed0: int = 0
    width: int = 32
    depth: int = 2
    pretrain_steps: int = 2000
    finetune_steps: int = 300
    lr: float = 3e-3
    threshold: float = 1e-3
    n_grid: int = 256
    supervise_branches: bool = True
    n_snapshots: int = 20
    alpha: float = 0.05
    n_bootstrap: int = 2000
    bootstrap_seed: int = 0


_RULES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "seeds": (">= 2 (paired tests need pairs)", lambda v: v >= 2),
    "width": (">= 1", lambda v: v >= 1),
    "depth": (">= 1", lambda v: v >= 1),
    "pretrain_steps": (">= 1", lambda v: v >= 1),
    "finetune_steps": (">= 1", lambda v: v >= 1),
    "lr": ("> 0", lambda v: v > 0),
    "threshold": ("> 0", lambda v: v > 0),
    "n_grid": (">= 2", lambda v: v >= 2),
    "n_snapshots": (">= 1", lambda v: v >= 1),
    "alpha": ("in (0, 1)", lambda v: 0 < v < 1),
    "n_bootstrap": (">= 1", lambda v: v >= 1),
}


def _check_config(cfg: FinetuneConfig) -> None:
    for name, (rule, ok) in _RULES.items():
        value = getattr(cfg, name)
        default = next(f.default for f in fields(FinetuneConfig) if f.name == name)
        kind = "a finite number" if isinstance(default, float) else "an int"
        typed = numbers.Real if isinstance(default, float) else numbers.Integral
        if (
            not isinstance(value, typed)
            or isinstance(value, bool)
            or not math.isfinite(value)
            or not ok(value)
        ):
            msg = (
                f"FinetuneConfig.{name} must be {kind} {rule}; got {value!r}. "
                f"The default is {default}."
            )
            raise FinetuneConfigError(msg)


@dataclass
class FinetuneResult:
    """What `run_finetune_speed` produced: output paths and the summary (also in summary.json)."""

    out: Path
    metrics_csv: Path
    summary_json: Path
    figure: Path
    runs: Path
    summary: dict[str, Any]
    wall_s: float


def _mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((pred - target) ** 2).mean()


def pretrain(
    net: TwoBranchNet, x: torch.Tensor, *, steps: int, lr: float, supervise_branches: bool
) -> float:
    """Pretrain ``net`` in place on `BASE_TASK`, full batch with Adam; return the final MSE.

    The loss is the output MSE, plus with ``supervise_branches`` the MSE of each branch against
    its base-task factor (ProductNet: x+1 and x+1) or term (SumNet: x^2 and 2x+1).

    Parameters
    ----------
    net : TwoBranchNet
        A ProductNet or SumNet.
    x : torch.Tensor
        Training inputs of shape (n, 1).
    steps : int
        Optimizer steps.
    lr : float
        Adam learning rate.
    supervise_branches : bool
        Also supervise the branch outputs.

    Returns
    -------
    float
        Output MSE on the base task after the last update (branch terms excluded).
    """
    y = BASE_TASK(x)
    t1, t2 = BASE_TASK.branch_targets(net, x)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        b1, b2 = net.branches(x)
        loss = _mse(net.combine(b1, b2), y)
        if supervise_branches:
            loss = loss + _mse(b1, t1) + _mse(b2, t2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float(_mse(net(x), y))


def finetune(
    net: TwoBranchNet,
    task: PolyTask,
    x: torch.Tensor,
    store: str | Path,
    *,
    steps: int,
    lr: float,
    n_snapshots: int,
    config: dict[str, Any] | None = None,
    seed: int | None = None,
) -> tuple[npt.NDArray[np.float64], float]:
    """Finetune ``net`` in place on ``task`` (output MSE, full batch, fresh Adam) and record it.

    The run store at ``store`` (replaced if present) records ``branch1``, ``branch2`` and the
    output on the probe set ``(x, task(x))`` at ``log_schedule(steps, n_snapshots)`` (step 0 is
    the pretrained net), and the metric ``loss`` at every step.

    Parameters
    ----------
    net : TwoBranchNet
        The (copied) pretrained net.
    task : PolyTask
        The finetune target.
    x : torch.Tensor
        Training and probe inputs of shape (n, 1).
    store : str or path
        Folder of the run store.
    steps : int
        Optimizer steps.
    lr : float
        Adam learning rate.
    n_snapshots : int
        ``n_points`` of `hooks.log_schedule`.
    config : dict, optional
        Saved in the run store's attrs.
    seed : int, optional
        Saved in the run store's attrs.

    Returns
    -------
    losses : ndarray of float64 of shape (steps,)
        ``losses[k]``: the MSE after k updates (computed in the forward of step k+1).
    final_loss : float
        The MSE after the last update.
    """
    y = task(x)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    losses = np.empty(steps, dtype=np.float64)
    with Recorder(
        net,
        layers=list(BRANCHES),
        store=store,
        probe=(x, y),
        every=log_schedule(steps, n_snapshots),
        overwrite=True,
        config=config,
        seed=seed,
    ) as rec:
        for k in range(steps):
            loss = _mse(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            rec.step(loss=loss.detach())
            losses[k] = loss.item()
    with torch.no_grad():
        return losses, float(_mse(net(x), y))


def representation_change(store: str | Path, layer: str) -> tuple[float, float]:
    """Change of a layer's probe-set output from the first to the last snapshot of a run.

    Read from the run store with `probe.open_run` (``acts(layer, step=0)`` and
    ``acts(layer, step=-1)``); means and variances run over samples and features.

    Parameters
    ----------
    store : str or path
        A run store with a snapshot at step 0.
    layer : str
        A recorded layer, e.g. ``"branch1"``.

    Returns
    -------
    change : float
        ``mean((a_last - a_first)^2) / var(a_first)``: 0 when unchanged, 1 when the change is as
        large as the layer's spread before.
    msd : float
        ``mean((a_last - a_first)^2)``, the unnormalised mean squared change.
    """
    run = open_run(store)
    before = run.acts(layer, step=0).astype(np.float64)
    after = run.acts(layer, step=-1).astype(np.float64)
    msd = float(np.mean((after - before) ** 2))
    return msd / float(np.var(before)), msd


def _metrics(losses: npt.NDArray[np.float64], final: float, threshold: float) -> dict[str, Any]:
    curve = np.append(losses, final)  # curve[k]: loss after k updates, k = 0 .. steps
    below = np.flatnonzero(curve < threshold)
    return {
        "auc_log10_loss": float(np.mean(np.log10(losses))),
        "steps_to_threshold": int(below[0]) if below.size else len(losses) + 1,
        "final_loss": final,
        "initial_loss": float(losses[0]),
    }


def _branch_changes(store: Path) -> dict[str, float]:
    out = {}
    for branch in BRANCHES:
        out[f"{branch}_change"], out[f"{branch}_msd"] = representation_change(store, branch)
    return out


def run_finetune_speed(
    cfg: FinetuneConfig, out: str | Path, *, progress: bool = True
) -> FinetuneResult:
    """Run the finetune-speed experiment and write its outputs under ``out``.

    For each seed, a ProductNet and a SumNet (same initial branch weights) are pretrained on
    `BASE_TASK`; a copy of each is then finetuned on every task of `FINETUNE_TASKS` with
    identical settings and recorded into ``out/runs/seed{s}/{net}_{task}.zarr``. Per task the nets
    are compared paired across seeds on `METRICS` (conventions in `CONVENTIONS`).

    Parameters
    ----------
    cfg : FinetuneConfig
        Experiment settings.
    out : str or path
        Output folder: ``metrics.csv`` (one row per seed, net and task), ``summary.json``,
        ``loss_curves.png`` and ``runs/``. Existing files there are replaced.
    progress : bool
        Show a tqdm progress bar over the (seed, net, task) finetune jobs.

    Returns
    -------
    FinetuneResult

    Raises
    ------
    FinetuneConfigError
        A setting of ``cfg`` is out of range.
    """
    _check_config(cfg)
    t0 = time.perf_counter()
    out = Path(out)
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    x = grid(cfg.n_grid)
    config = asdict(cfg)
    rows: list[dict[str, Any]] = []
    curves: dict[tuple[str, str], list[npt.NDArray[np.float64]]] = {
        (net, task): [] for net in NETS for task in FINETUNE_TASKS
    }
    seeds = range(cfg.seed0, cfg.seed0 + cfg.seeds)
    bar = tqdm(
        total=len(seeds) * len(NETS) * len(FINETUNE_TASKS),
        desc="finetune-speed",
        disable=not progress,
        unit="run",
    )
    for seed in seeds:
        for net_name, cls in NETS.items():
            torch.manual_seed(seed)
            base = cls(cfg.width, cfg.depth)
            pre_loss = pretrain(
                base,
                x,
                steps=cfg.pretrain_steps,
                lr=cfg.lr,
                supervise_branches=cfg.supervise_branches,
            )
            for task_name, task in FINETUNE_TASKS.items():
                bar.set_postfix(seed=seed, net=net_name, task=task_name, pretrain=f"{pre_loss:.1e}")
                store = runs / f"seed{seed}" / f"{net_name}_{task_name}.zarr"
                losses, final = finetune(
                    copy.deepcopy(base),
                    task,
                    x,
                    store,
                    steps=cfg.finetune_steps,
                    lr=cfg.lr,
                    n_snapshots=cfg.n_snapshots,
                    config={**config, "net": net_name, "task": task_name},
                    seed=seed,
                )
                curves[(net_name, task_name)].append(losses)
                rows.append(
                    {
                        "seed": seed,
                        "net": net_name,
                        "task": task_name,
                        **_metrics(losses, final, cfg.threshold),
                        **_branch_changes(store),
                        "pretrain_loss": pre_loss,
                        "run_store": str(store.relative_to(out)),
                    }
                )
                bar.update()
    bar.close()
    df = pd.DataFrame(rows)
    df.to_csv(out / "metrics.csv", index=False)
    plot_curves(curves, out / "loss_curves.png")
    summary = summarise(df, cfg)
    summary["wall_s"] = time.perf_counter() - t0
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return FinetuneResult(
        out=out,
        metrics_csv=out / "metrics.csv",
        summary_json=out / "summary.json",
        figure=out / "loss_curves.png",
        runs=runs,
        summary=summary,
        wall_s=summary["wall_s"],
    )
