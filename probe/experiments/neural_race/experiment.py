"""The neural race in the gated routing network (Saxe, Sodhani & Lewallen 2022).

The equations are in docs/dynamics.md §3.3; the checks V2-3 to V2-5 in §5-6.

`run_neural_race` trains `probe.models.gdln.RoutingNetwork` full batch on the gated loss with a
`hooks.Recorder` (weights of W_in[0], W_h, W_out[0] and every path's output), reads the singular
values back from the run store and compares them with the exact reduced dynamics
(`probe.theory.routing`). `init_scale_sweep` measures trained- vs untrained-path error against the
init scale (the zero-shot generalisation of shared representations).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from tqdm.auto import tqdm

from probe.errors import ConfigError
from probe.experiments.neural_race._report import plot_race, plot_sweep
from probe.experiments.neural_race._train import (
    N_MODES,
    NeuralRaceConfig,
    RaceTraces,
    RoutingPaths,
    path_errors,
    race_traces,
    theory_start,
    train_routing,
)
from probe.models.gdln import routing_data
from probe.theory.routing import (
    final_hidden_strength,
    half_time,
    io_strength,
    mode_strengths,
    routing_tau,
    routing_trajectory,
)

__all__ = [
    "InitScaleSweepConfig",
    "NeuralRaceConfig",
    "NeuralRaceResult",
    "RaceTraces",
    "RoutingPaths",
    "SweepResult",
    "init_scale_sweep",
    "path_errors",
    "race_traces",
    "run_neural_race",
    "train_routing",
]


def _first_crossing(steps: npt.NDArray[np.int64], v: npt.NDArray[np.float64]) -> float:
    hit = np.flatnonzero(v >= v[-1] / 2)
    return float(steps[hit[0]]) if hit.size else math.nan


def _loss_at(tr: RaceTraces, step: int) -> float:
    hit = np.flatnonzero(tr.loss_steps == step)
    return float(tr.loss[hit[0]]) if hit.size else math.nan


def _rows(seed: int, tr: RaceTraces, s: np.ndarray, b0: float, tau: float) -> list[dict[str, Any]]:
    bh = final_hidden_strength(s, b0)
    theory = {"in": io_strength(bh, b0), "h": bh, "out": io_strength(bh, b0)}
    t_half = half_time(s, b0, tau)
    rows = []
    for layer, v in tr.sv.items():
        for a in range(N_MODES):
            rows.append(
                {
                    "seed": seed,
                    "layer": layer,
                    "mode": a + 1,
                    "s": s[a],
                    "sv_final": v[-1, a],
                    "sv_final_theory": theory[layer][a],
                    "rel_err": v[-1, a] / theory[layer][a] - 1,
                    "t_half": _first_crossing(tr.steps, v[:, a]),
                    "t_half_theory": t_half[a] if layer == "h" else math.nan,
                }
            )
    return rows


@dataclass
class NeuralRaceResult:
    """What `run_neural_race` wrote: run stores, per-mode table, loss table, summary, figure."""

    runs: list[Path]
    table: pd.DataFrame
    losses: pd.DataFrame
    table_csv: Path
    summary_json: Path
    figure: Path
    wall_s: float


def run_neural_race(
    cfg: NeuralRaceConfig, out: str | Path = "artifacts/neural-race", *, progress: bool = True
) -> NeuralRaceResult:
    """Train ``cfg.seeds`` routing networks and compare their race with the exact theory.

    Writes ``out/runs/seed<k>.zarr``, ``modes.csv`` (final singular values and W_h half-times
    per seed, layer and mode, with theory), ``losses.csv`` (loss at epochs 0, 100, 200, ... and
    the end vs theory), ``summary.json`` and ``figure.png`` (measured solid, theory dotted).

    Raises
    ------
    ConfigError
        ``cfg`` is invalid (see `NeuralRaceConfig.checked`).
    """
    t0 = time.perf_counter()
    cfg = cfg.checked()
    b0, tau = theory_start(cfg), routing_tau(cfg.lr)
    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    s = mode_strengths(routing_data()[1].numpy())
    runs, traces, rows, loss_rows = [], [], [], []
    marks = sorted({0, *range(100, cfg.epochs, 100), cfg.epochs})
    seeds = range(cfg.seed0, cfg.seed0 + cfg.seeds)
    for seed in tqdm(seeds, desc="neural race", disable=not progress):
        store = train_routing(cfg, seed, out / "runs" / f"seed{seed}.zarr")
        tr = race_traces(store)
        runs.append(store)
        traces.append(tr)
        rows += _rows(seed, tr, s, b0, tau)
        loss_rows += [{"seed": seed, "epoch": e, "loss": _loss_at(tr, e)} for e in marks]
    theory = routing_trajectory(np.asarray(marks, float), s, b0, tau)
    losses = pd.DataFrame(loss_rows)
    losses["loss_theory"] = losses["epoch"].map(dict(zip(marks, theory.loss, strict=True)))
    table = pd.DataFrame(rows)
    table_csv = out / "modes.csv"
    table.to_csv(table_csv, index=False)
    losses.to_csv(out / "losses.csv", index=False)
    mean = table.drop(columns="seed").groupby(["layer", "mode"], sort=False).mean()
    summary = {
        "config": asdict(cfg),
        "tau": tau,
        "s": s.tolist(),
        "modes_mean_over_seeds": mean.reset_index().to_dict(orient="records"),
        "loss_mean_over_seeds": losses.groupby("epoch").mean().drop(columns="seed").to_dict(),
        "final_path_error": {
            "trained": float(np.mean([t.trained_error[-1] for t in traces])),
            "untrained": float(np.mean([t.untrained_error[-1] for t in traces])),
        },
    }
    summary_json = out / "summary.json"
    summary_json.write_text(json.dumps(summary, indent=2, default=float))
    grid = np.arange(0.0, cfg.epochs + 1.0)
    figure = plot_race(
        traces,
        routing_trajectory(grid, s, b0, tau),
        out / "figure.png",
        title=f"routing network, {cfg.init} init {cfg.scale:g}, {cfg.seeds} seed(s), "
        f"vs theory b0={b0:g}",
    )
    return NeuralRaceResult(
        runs, table, losses, table_csv, summary_json, figure, time.perf_counter() - t0
    )


@dataclass
class InitScaleSweepConfig:
    """Settings of the init-scale sweep (docs/dynamics.md §6 V2-5): orthogonal init gain per run.

    ``sigmas`` is a comma-separated list (default ``linspace(.2, 2.5, 6)``); each run uses
    ``lr = lr0 / sigma0^(1/3)`` as in the authors' ``Gated_DLN_vs_ntk_figure.ipynb``.
    """

    sigmas: str = "0.2,0.66,1.12,1.58,2.04,2.5"
    lr0: float = 0.006
    epochs: int = 700
    seeds: int = 2
    seed0: int = 0
    record_every: int = 10
    d_hidden: int = 64
    gate: str = "4_plus_minus_mod"

    def sigma_values(self) -> list[float]:
        """Return the parsed ``sigmas``.

        Raises
        ------
        ConfigError
            An entry that is not a number > 0, or an empty list.
        """
        try:
            values = [float(v) for v in self.sigmas.split(",") if v.strip()]
        except ValueError:
            values = []
        if not values or not all(0 < v < math.inf for v in values):
            msg = (
                "sigmas must be comma-separated numbers > 0, e.g. '0.2,1,2.5'; "
                f"got {self.sigmas!r}."
            )
            raise ConfigError(msg)
        return values


@dataclass
class SweepResult:
    """What `init_scale_sweep` wrote: per-run table, per-sigma0 means, summary and figure."""

    table: pd.DataFrame
    means: pd.DataFrame
    table_csv: Path
    summary_json: Path
    figure: Path
    wall_s: float


def init_scale_sweep(
    cfg: InitScaleSweepConfig,
    out: str | Path = "artifacts/neural-race/sweep",
    *,
    progress: bool = True,
) -> SweepResult:
    """Train routing networks over init scales; report trained vs untrained path error.

    Error per path is ``‖Y - O_ij‖_F² / 2`` over the 4 items, averaged separately over trained
    and untrained (gated-off) paths (`path_errors`), at the end of training; ``zero_error`` is
    the error of predicting 0. Writes ``out/runs/``, ``sweep.csv``, ``summary.json``,
    ``figure.png``.

    Raises
    ------
    ConfigError
        Invalid ``sigmas`` or run settings.
    """
    t0 = time.perf_counter()
    sigmas = cfg.sigma_values()
    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    zero = 0.5 * float((routing_data()[1] ** 2).sum())
    rows, traces = [], {}
    jobs = [(sg, seed) for sg in sigmas for seed in range(cfg.seed0, cfg.seed0 + cfg.seeds)]
    for sigma, seed in tqdm(jobs, desc="init-scale sweep", disable=not progress):
        run_cfg = NeuralRaceConfig(
            init="orthogonal",
            scale=sigma,
            lr=cfg.lr0 / sigma ** (1 / 3),
            epochs=cfg.epochs,
            record_every=cfg.record_every,
            d_hidden=cfg.d_hidden,
            gate=cfg.gate,
        )
        tr = race_traces(train_routing(run_cfg, seed, out / "runs" / f"s{sigma:g}_seed{seed}.zarr"))
        traces[sigma, seed] = tr
        rows.append(
            {
                "sigma0": sigma,
                "seed": seed,
                "lr": run_cfg.lr,
                "final_loss": float(tr.loss[-1]),
                "trained_error": float(tr.trained_error[-1]),
                "untrained_error": float(tr.untrained_error[-1]),
                "zero_error": zero,
            }
        )
    table = pd.DataFrame(rows)
    means = table.drop(columns="seed").groupby("sigma0").mean().reset_index()
    table_csv = out / "sweep.csv"
    table.to_csv(table_csv, index=False)
    summary_json = out / "summary.json"
    summary = {"config": asdict(cfg), "mean_over_seeds": means.to_dict(orient="records")}
    summary_json.write_text(json.dumps(summary, indent=2, default=float))
    figure = plot_sweep(table, traces, zero, out / "figure.png", epochs=cfg.epochs)
    return SweepResult(table, means, table_csv, summary_json, figure, time.perf_counter() - t0)
