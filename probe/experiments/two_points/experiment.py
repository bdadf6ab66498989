"""Two-point representation dynamics (van Rossem & Saxe 2024; docs/dynamics.md §1.5–1.6, V1-3).

A network of the authors' settings table (`probe.experiments.two_points.config.SETTINGS`) is
trained full batch on two points; the hooked hidden layer (or the layers asked for) and the
output are recorded through `hooks.Recorder` (snapshot at step t = state after t updates, i.e. at
the start of epoch t + 1 as in the authors' ``Compiler.training_run``). Each recorded layer's
measured ``h, y, w`` is then fitted with the effective theory
(`probe.theory.effective_fit.fit_two_point`), giving a per-layer table and the measured-vs-theory
figure.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from hooks import Recorder
from probe.errors import OdeIntegrationError, TheoryInputError
from probe.experiments.two_points._report import plot_fit, plot_sse_by_layer
from probe.experiments.two_points.config import FIT_STARTS, SETTINGS, TwoPointsConfig
from probe.models.two_point import two_point_model
from probe.store import open_run
from probe.theory.effective_fit import TwoPointFit, fit_two_point, two_point_traces

__all__ = [
    "SETTINGS",
    "TwoPointsConfig",
    "TwoPointsResult",
    "fit_layers",
    "torch_threads",
    "run_two_points",
    "train_two_point",
]


@dataclass
class TwoPointsResult:
    """What `run_two_points` wrote: run stores, the per-layer fit table and the figures."""

    runs: list[Path]
    table: pd.DataFrame
    table_csv: Path
    summary_json: Path
    figures: list[Path]
    wall_s: float


def two_point_data(cfg: TwoPointsConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the two inputs (2, 1) and targets (2, 1) of §1.5, in ``cfg.dtype``."""
    dtype = getattr(torch, cfg.dtype)
    x = torch.tensor([[-1.0], [-1.0 + math.sqrt(cfg.dx2)]], dtype=dtype)
    y = torch.tensor([[0.6], [0.6 + math.sqrt(cfg.dy2)]], dtype=dtype)
    return x, y


def train_two_point(cfg: TwoPointsConfig, seed: int, store: Path, *, progress: bool = True) -> Path:
    """Train one seed of the resolved ``cfg``, recording its layers every ``cfg.every`` steps.

    Returns the run store's path. The recorded layers are ``hidden.<i>`` for
    ``cfg.layer_indices()`` (the authors' activation list, `probe.models.two_point`) and the
    output.
    """
    with torch_threads(cfg.threads):
        return _train(cfg, seed, store, progress)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch intra-op threads, then restore the previous number."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train(cfg: TwoPointsConfig, seed: int, store: Path, progress: bool) -> Path:
    torch.manual_seed(seed)
    model = two_point_model(
        cfg.architecture,  # type: ignore[arg-type]
        1,
        1,
        cfg.width,  # type: ignore[arg-type]
        cfg.depth,  # type: ignore[arg-type]
        cfg.nonlinearity,  # type: ignore[arg-type]
        cfg.gain,  # type: ignore[arg-type]
    ).to(getattr(torch, cfg.dtype))
    x, y = two_point_data(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)  # type: ignore[arg-type]
    layers = [f"hidden.{i}" for i in cfg.layer_indices()]
    with Recorder(
        model,
        layers=layers,
        store=store,
        probe=(x, y),
        every=cfg.every,
        overwrite=True,
        config=asdict(cfg),
        seed=seed,
    ) as rec:
        for _ in tqdm(range(cfg.epochs), desc=f"seed {seed}", disable=not progress, leave=False):  # type: ignore[arg-type]
            opt.zero_grad(set_to_none=True)
            loss = 0.5 * F.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            rec.step(loss=loss.detach())
    return store


def fit_layers(
    store: Path, layers: list[str] | None = None, *, starts: str = "authors"
) -> tuple[dict[str, TwoPointFit], dict[str, str]]:
    """Fit the effective theory to the recorded layers of a two-point run store.

    ``starts`` picks the fit's start grid from `FIT_STARTS`. Returns the fits by layer and, by
    layer, why a fit failed (the ODEs could not be integrated
    at any rate, or ``h`` is 0 at the start: the two points share one representation).
    """
    run = open_run(store)
    outputs, inputs, targets = run.outputs(), run.probe_inputs, run.targets
    assert inputs is not None  # the experiment records both
    assert targets is not None
    fits, failed = {}, {}
    for layer in layers or run.layers:
        traces = two_point_traces(run.acts(layer), outputs, inputs, targets, run.steps)
        try:
            fits[layer] = fit_two_point(traces, rho_factors=FIT_STARTS[starts])
        except (OdeIntegrationError, TheoryInputError) as e:
            failed[layer] = str(e)
    return fits, failed


def _crossing(t: np.ndarray, v: np.ndarray, level: float) -> float:
    """First step at which ``v`` reaches ``level`` (nan if never)."""
    hit = np.flatnonzero(v >= level)
    return float(t[hit[0]]) if hit.size else math.nan


def _rows(seed: int, fits: dict[str, TwoPointFit], cfg: TwoPointsConfig) -> list[dict[str, Any]]:
    rows = []
    for layer, f in fits.items():
        tr = f.prediction
        meas = f.measured
        rows.append(
            {
                "seed": seed,
                "layer": layer,
                "index": int(layer.split(".")[-1]),
                "eta_h": f.eta_h,
                "eta_y": f.eta_y,
                "rho": f.rho,
                "sse": f.sse,
                "rel_err_h": f.rel_error["h"],
                "rel_err_y": f.rel_error["y"],
                "rel_err_w": f.rel_error["w"],
                "h0": float(meas.h[0]),
                "h_end": float(meas.h[-1]),
                "y_end": float(meas.y[-1]),
                "h_inf_theory": f.h_inf,
                "rho_rich": float(meas.h[-1] ** 2 / (cfg.dx2 * cfg.dy2)),
                "h_end_over_h_inf": float(meas.h[-1] / f.h_inf),
                "t_half_y_data": _crossing(meas.t, meas.y, cfg.dy2 / 2),
                "t_half_y_ode": _crossing(tr.t, tr.y, cfg.dy2 / 2),
                "n_evals": f.n_evals,
                "fit_error": "",
            }
        )
    return rows


def _failed_rows(seed: int, failed: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {"seed": seed, "layer": k, "index": int(k.split(".")[-1]), "fit_error": v}
        for k, v in failed.items()
    ]


def run_two_points(
    cfg: TwoPointsConfig, out: str | Path = "artifacts/two-points", *, progress: bool = True
) -> TwoPointsResult:
    """Train ``cfg.seeds`` seeds, fit the recorded layers, write the table, summary and figures.

    Raises
    ------
    ConfigError
        ``cfg`` is invalid (see `TwoPointsConfig.resolved`).
    """
    t0 = time.perf_counter()
    cfg = cfg.resolved()
    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    runs, rows, figures = [], [], []
    for seed in range(cfg.seed0, cfg.seed0 + cfg.seeds):
        store = train_two_point(cfg, seed, out / "runs" / f"seed{seed}.zarr", progress=progress)
        runs.append(store)
        if cfg.fit:
            fits, failed = fit_layers(store, starts=cfg.fit_starts)
            rows += _rows(seed, fits, cfg) + _failed_rows(seed, failed)
            hooked = fits.get(f"hidden.{cfg.hooked}")
            if seed == cfg.seed0 and hooked is not None:
                figures.append(plot_fit(hooked, out / "fit_hooked.png"))
    table = pd.DataFrame(rows)
    if len(table):
        table = table.sort_values(["seed", "index"], ignore_index=True)
    table_csv = out / "fits.csv"
    table.to_csv(table_csv, index=False)
    if cfg.fit and len(cfg.layer_indices()) > 1:
        figures.append(plot_sse_by_layer(table, out / "sse_by_layer.png"))
    summary = {"config": asdict(cfg), "eta_conventions": _CONVENTIONS}
    if cfg.fit:
        hooked_rows = table[table["index"] == cfg.hooked]
        summary["hooked_layer"] = hooked_rows.mean(numeric_only=True).to_dict()
    summary_json = out / "summary.json"
    summary_json.write_text(json.dumps(summary, indent=2, default=float))
    return TwoPointsResult(runs, table, table_csv, summary_json, figures, time.perf_counter() - t0)


_CONVENTIONS = {
    "t": "optimizer steps; the snapshot at t is the state after t full-batch SGD updates",
    "h, y, w": "||dh||^2, ||dyhat||^2, dyhat.(dyhat - dy) for the pair (x_A, x_B)",
    "eta_h, eta_y": "effective rates per step fitted by least squares on h, y, w "
    "(Nelder-Mead in log space from the authors' grid start); lr/2 is the exact value for a "
    "bias-free two-layer linear net on centred data under 0.5*F.mse_loss",
    "rel_err": "max_t |measured - ODE| / max_t |measured| per variable",
    "sse": "sum over t of squared residuals of h, y and w",
    "t_half_y": "first step at which y reaches dy2/2 (data and fitted ODE)",
    "rho": "eta_h / eta_y (the closed forms' convention, docs/dynamics.md §1.3)",
    "h_inf_theory": "closed-form final distance at the fitted rates from the measured start",
}
