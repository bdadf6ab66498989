"""Two-point representation dynamics (van Rossem & Saxe 2024; docs/dynamics.md §1.5–1.6, V1-3).

An MLP is trained full batch on two points with the authors' settings; every hidden layer and the
output are recorded at every step through `hooks.Recorder` (snapshot at step t = state after t
updates, i.e. at the start of epoch t + 1 as in the authors' ``Compiler.training_run``). Each
hidden layer's measured ``h, y, w`` is then fitted with the effective theory
(`probe.theory.effective_fit.fit_two_point`), giving a per-layer table and the measured-vs-theory
figure.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from hooks import Recorder
from probe.errors import ConfigError
from probe.experiments.two_points._report import plot_fit, plot_sse_by_layer
from probe.models.two_point import NONLINEARITIES, TwoPointMLP
from probe.store import open_run
from probe.theory.effective_fit import TwoPointFit, fit_two_point, two_point_traces
from probe.validation import check_int, check_positive

__all__ = ["SETTINGS", "TwoPointsConfig", "TwoPointsResult", "run_two_points", "train_two_point"]

#: The MLP rows of the authors' ``experiments/model_settings/2 points.txt`` (docs/dynamics.md §1.6):
#: (nonlinearity, gain, lr, width, hidden layers, epochs, hooked layer index). The ResNet, CNN and
#: Dropout rows are not included.
SETTINGS: dict[str, tuple[str, float, float, int, int, int, int]] = {
    "default": ("leaky_relu", 1.0, 0.01, 500, 20, 3000, 10),
    "shallow": ("leaky_relu", 0.35, 0.02, 500, 2, 3000, 1),
    "narrow": ("leaky_relu", 1.05, 0.01, 50, 20, 3000, 10),
    "linear": ("none", 0.85, 0.0025, 500, 20, 3000, 10),
    "tanh": ("tanh", 0.85, 0.0025, 500, 20, 3000, 10),
    "elu": ("elu", 0.95, 0.0009, 500, 20, 3000, 10),
    "relu": ("relu", 1.0, 0.01, 500, 20, 3000, 10),
    "swish": ("swish", 1.7, 0.005, 500, 20, 3000, 10),
    "gain_0.9": ("leaky_relu", 0.9, 0.03, 500, 20, 3000, 10),
    "gain_1.1": ("leaky_relu", 1.1, 0.005, 500, 20, 3000, 10),
    "gain_1.2": ("leaky_relu", 1.2, 0.0025, 500, 20, 3000, 10),
    "gain_1.3": ("leaky_relu", 1.3, 0.0015, 500, 20, 3000, 10),
    "gain_1.4": ("leaky_relu", 1.4, 0.0005, 500, 20, 3000, 10),
    "gain_1.6": ("leaky_relu", 1.6, 3e-6, 500, 20, 3000, 10),
    "two_layer": ("none", 0.1, 0.01, 500, 1, 3000, 0),
}


@dataclass
class TwoPointsConfig:
    """Settings of the two-points experiment (saved as JSON in every run store's ``config``).

    ``setting`` picks a row of `SETTINGS`; any of ``nonlinearity, gain, lr, width, depth,
    epochs, hooked`` left at None takes the row's value. ``halve_lr`` halves the row's lr and
    doubles its epochs, as the authors' ``2_points.ipynb`` does. Data (§1.5): ``x_A = -1``,
    ``x_B = -1 + sqrt(dx2)`` (per dimension / sqrt(in_dim)), ``y_A = 0.6``,
    ``y_B = 0.6 + sqrt(dy2)``; criterion ``0.5*F.mse_loss``; full-batch SGD.
    """

    setting: str = "default"
    seeds: int = 3
    seed0: int = 0
    nonlinearity: str | None = None
    gain: float | None = None
    lr: float | None = None
    width: int | None = None
    depth: int | None = None
    epochs: int | None = None
    hooked: int | None = None
    halve_lr: bool = True
    dx2: float = 1.0
    dy2: float = 0.5
    dtype: str = "float32"
    fit: bool = True

    def resolved(self) -> TwoPointsConfig:
        """Return a copy with every None field filled from the setting's row, after checks.

        Raises
        ------
        ConfigError
            Unknown setting, nonlinearity or dtype; a size, rate or distance not > 0; or the
            hooked layer outside ``0 .. depth - 1``.
        """
        if self.setting not in SETTINGS:
            msg = f"setting must be one of {sorted(SETTINGS)}; got {self.setting!r}."
            raise ConfigError(msg)
        phi, gain, lr, width, depth, epochs, hooked = SETTINGS[self.setting]
        if self.halve_lr:
            lr, epochs = lr / 2, epochs * 2
        r = replace(
            self,
            nonlinearity=self.nonlinearity if self.nonlinearity is not None else phi,
            gain=self.gain if self.gain is not None else gain,
            lr=self.lr if self.lr is not None else lr,
            width=self.width if self.width is not None else width,
            depth=self.depth if self.depth is not None else depth,
            epochs=self.epochs if self.epochs is not None else epochs,
            hooked=self.hooked if self.hooked is not None else hooked,
        )
        if r.nonlinearity not in NONLINEARITIES:
            msg = f"nonlinearity must be one of {sorted(NONLINEARITIES)}; got {r.nonlinearity!r}."
            raise ConfigError(msg)
        if r.dtype not in ("float32", "float64"):
            msg = f"dtype must be 'float32' or 'float64'; got {r.dtype!r}."
            raise ConfigError(msg)
        for name in ("seeds", "width", "depth", "epochs"):
            check_int(getattr(r, name), name)
        for name in ("gain", "lr", "dx2", "dy2"):
            check_positive(getattr(r, name), name)
        if not 0 <= r.hooked < r.depth:  # type: ignore[operator]
            msg = f"hooked must be a hidden-layer index in 0 .. {r.depth - 1}; got {r.hooked}."  # type: ignore[operator]
            raise ConfigError(msg)
        return r


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
    """Train one seed of the resolved ``cfg``, recording every hidden layer at every step.

    Returns the run store's path. Layers are ``hidden.0 .. hidden.{depth-1}`` (post-nonlinearity).
    """
    torch.manual_seed(seed)
    model = TwoPointMLP(1, 1, cfg.width, cfg.depth, cfg.nonlinearity, cfg.gain)  # type: ignore[arg-type]
    model = model.to(getattr(torch, cfg.dtype))
    x, y = two_point_data(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)  # type: ignore[arg-type]
    layers = [f"hidden.{i}" for i in range(cfg.depth)]  # type: ignore[arg-type]
    with Recorder(
        model,
        layers=layers,
        store=store,
        probe=(x, y),
        every=1,
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


def fit_layers(store: Path, layers: list[str] | None = None) -> dict[str, TwoPointFit]:
    """Fit the effective theory to every recorded layer of a two-point run store."""
    run = open_run(store)
    outputs, inputs, targets = run.outputs(), run.probe_inputs, run.targets
    assert inputs is not None  # the experiment records both
    assert targets is not None
    fits = {}
    for layer in layers or run.layers:
        traces = two_point_traces(run.acts(layer), outputs, inputs, targets, run.steps)
        fits[layer] = fit_two_point(traces)
    return fits


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
                "h_inf_theory": f.h_inf,
                "rho_rich": float(meas.h[-1] ** 2 / (cfg.dx2 * cfg.dy2)),
                "t_half_y_data": _crossing(meas.t, meas.y, cfg.dy2 / 2),
                "t_half_y_ode": _crossing(tr.t, tr.y, cfg.dy2 / 2),
                "n_evals": f.n_evals,
            }
        )
    return rows


def run_two_points(
    cfg: TwoPointsConfig, out: str | Path = "artifacts/two-points", *, progress: bool = True
) -> TwoPointsResult:
    """Train ``cfg.seeds`` seeds, fit every hidden layer, write the table, summary and figures.

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
            fits = fit_layers(store)
            rows += _rows(seed, fits, cfg)
            if seed == cfg.seed0:
                figures.append(plot_fit(fits[f"hidden.{cfg.hooked}"], out / "fit_hooked.png"))
    table = pd.DataFrame(rows)
    table_csv = out / "fits.csv"
    table.to_csv(table_csv, index=False)
    if cfg.fit:
        figures.append(plot_sse_by_layer(table, out / "sse_by_layer.png"))
    summary = {"config": asdict(cfg), "eta_conventions": _CONVENTIONS}
    if cfg.fit:
        summary["hooked_layer"] = (
            table[table["index"] == cfg.hooked].drop(columns=["layer"]).mean().to_dict()
        )
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
}
