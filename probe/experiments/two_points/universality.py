"""Universality: every row of the authors' two-point settings, fitted by one theory.

van Rossem & Saxe (2024) claim that the two-point effective theory (docs/dynamics.md §1) describes
networks of any architecture once the implementation is folded into two rates ``eta_h, eta_y``.
`run_universality` trains every row of `SETTINGS` (MLPs of several nonlinearities, widths and
gains, a ResNet, a CNN, a dropout net) with `run_two_points`, fits the hooked layer of each seed,
and writes one table with a verdict per row, a figure of the measured traces with the fitted
ODE (small multiples), and the fit-by-layer curve of the ``default`` row.

Verdict rule (fixed before any run; means over seeds): ``fits`` when the largest peak-relative
trajectory error of ``h, y, w`` is <= 10 % and, if training converged (``y_end`` within 5 % of
``dy2``), ``|h_end / h_inf - 1| <= 10 %``; ``rough`` when both are <= 25 %; ``poor`` otherwise;
``no fit`` when the fit failed for a seed.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from probe.errors import ConfigError
from probe.experiments.two_points._report import plot_sse_by_layer
from probe.experiments.two_points.config import SETTINGS, TwoPointsConfig
from probe.experiments.two_points.experiment import run_two_points
from probe.plots.two_point import FitPanel, plot_fit_grid
from probe.store import open_run
from probe.theory.effective import simulate_two_point
from probe.theory.effective_fit import two_point_traces
from probe.validation import check_int

__all__ = [
    "VERDICT_RULE",
    "UniversalityConfig",
    "UniversalityResult",
    "format_table",
    "run_universality",
    "verdict",
]

VERDICT_RULE = (
    "means over seeds: 'fits' if max peak-relative error of h, y, w <= 10% and, when converged "
    "(|y_end/dy2 - 1| <= 5%), |h_end/h_inf - 1| <= 10%; 'rough' if both <= 25%; 'poor' "
    "otherwise; 'no fit' if a seed's fit failed"
)
_FITS, _ROUGH, _CONVERGED = 0.10, 0.25, 0.05


@dataclass
class UniversalityConfig:
    """Settings of `run_universality`.

    Attributes
    ----------
    rows : str
        Comma-separated rows of the authors' settings table, or ``all``.
    seeds : int
        Independent seeds per row.
    seed0 : int
        First seed.
    halve_lr : bool
        Halve each row's lr and double its epochs (the authors' ``2_points.ipynb`` protocol: 6000
        epochs); off: the settings file as written (3000 epochs).
    speedup : float
        Multiply every lr by this and divide the epochs by it (same gradient-flow time in
        fewer steps; 1 is the protocol).
    every : int
        Snapshot interval in steps.
    by_layer : bool
        Record and fit every hidden layer of the ``default`` row (the fit-by-layer curve).
    fit_starts : {"authors", "wide"}
        Start grid of the fit: the authors' 1-D grid with the rich-limit rho, or that grid times
        rho factors 1e-3 .. 1e3 (7x the cost).
    """

    rows: str = "all"
    seeds: int = 3
    seed0: int = 0
    halve_lr: bool = True
    speedup: float = 1.0
    every: int = 1
    by_layer: bool = True
    fit_starts: str = "authors"

    def row_names(self) -> list[str]:
        """Return the rows to run, in the settings table's order.

        Raises
        ------
        ConfigError
            A name that is not a row of `SETTINGS`.
        """
        if self.rows.strip() == "all":
            return list(SETTINGS)
        names = [r.strip() for r in self.rows.split(",") if r.strip()]
        unknown = sorted(set(names) - set(SETTINGS))
        if unknown or not names:
            msg = f"rows must be 'all' or names from {list(SETTINGS)}; got unknown {unknown}."
            raise ConfigError(msg)
        return [r for r in SETTINGS if r in names]


@dataclass
class UniversalityResult:
    """What `run_universality` wrote: the row table, per-seed fits, by-layer table, figures."""

    table: pd.DataFrame
    seeds: pd.DataFrame
    by_layer: pd.DataFrame
    table_csv: Path
    table_md: Path
    figures: list[Path]
    wall_s: float


def verdict(rel_err_max: float, h_inf_err: float, converged: bool, failed: bool) -> str:
    """Return the row's verdict under `VERDICT_RULE`.

    Examples
    --------
    >>> verdict(0.05, 0.02, True, False), verdict(0.2, 0.5, False, False)
    ('fits', 'rough')
    """
    if failed or not np.isfinite(rel_err_max):
        return "no fit"
    worst = max(rel_err_max, h_inf_err) if converged else rel_err_max
    if worst <= _FITS:
        return "fits"
    return "rough" if worst <= _ROUGH else "poor"


def _row_summary(name: str, cfg: TwoPointsConfig, seeds: pd.DataFrame) -> dict[str, object]:
    """Aggregate one row's hooked-layer fits over seeds (means; seeds that failed count)."""
    hooked = seeds[seeds["index"] == cfg.hooked]
    failed = bool((hooked["fit_error"].fillna("") != "").any()) or hooked.empty
    ok = hooked[hooked["fit_error"].fillna("") == ""]
    mean = ok.mean(numeric_only=True) if len(ok) else pd.Series(dtype=float)
    errs = ok[["rel_err_h", "rel_err_y", "rel_err_w"]].max(axis=1)
    rel_max = float(errs.mean()) if len(ok) else np.nan
    y_ratio = float(mean.get("y_end", np.nan) / cfg.dy2)
    converged = abs(y_ratio - 1) <= _CONVERGED
    h_inf_err = float(abs(mean.get("h_end_over_h_inf", np.nan) - 1))
    return {
        "setting": name,
        "architecture": cfg.architecture,
        "nonlinearity": cfg.nonlinearity,
        "gain": cfg.gain,
        "lr": cfg.lr,
        "epochs": cfg.epochs,
        "layer": cfg.hooked,
        "seeds_fitted": len(ok),
        "eta_h": mean.get("eta_h", np.nan),
        "eta_y": mean.get("eta_y", np.nan),
        "rho": mean.get("rho", np.nan),
        "eta_y/eta_h": float(1 / mean.get("rho", np.nan)),
        "sse": mean.get("sse", np.nan),
        "rel_err_h": mean.get("rel_err_h", np.nan),
        "rel_err_y": mean.get("rel_err_y", np.nan),
        "rel_err_w": mean.get("rel_err_w", np.nan),
        "t_half_y_data": mean.get("t_half_y_data", np.nan),
        "t_half_y_ode": mean.get("t_half_y_ode", np.nan),
        "h0": mean.get("h0", np.nan),
        "h_end": mean.get("h_end", np.nan),
        "h_inf": mean.get("h_inf_theory", np.nan),
        "h_end/h_inf": mean.get("h_end_over_h_inf", np.nan),
        "y_end/dy2": y_ratio,
        "verdict": verdict(rel_max, h_inf_err, converged, failed),
    }


def _panel(name: str, cfg: TwoPointsConfig, run_path: Path, seeds: pd.DataFrame) -> FitPanel:
    """Return the first seed's hooked-layer traces and the ODE at its fitted rates."""
    run = open_run(run_path)
    assert run.probe_inputs is not None
    assert run.targets is not None
    layer = f"hidden.{cfg.hooked}"
    tr = two_point_traces(run.acts(layer), run.outputs(), run.probe_inputs, run.targets, run.steps)
    row = seeds[(seeds["seed"] == seeds["seed"].min()) & (seeds["index"] == cfg.hooked)]
    pred = None
    title = f"{name} ({cfg.architecture}, layer {cfg.hooked})"
    if len(row) and str(row["fit_error"].fillna("").iloc[0]) == "":
        r = row.iloc[0]
        pred = simulate_two_point(
            tr.h[0], tr.y[0], tr.w[0], r["eta_h"], r["eta_y"], tr.dx2, tr.dy2, tr.t, method="LSODA"
        )
        title += f"\nSSE {r['sse']:.3g}, rho {r['rho']:.3g}"
    else:
        title += "\nno fit"
    return FitPanel(title, tr, pred)


def run_universality(
    cfg: UniversalityConfig, out: str | Path = "artifacts/universality", *, progress: bool = True
) -> UniversalityResult:
    """Run every requested row with `run_two_points`, then write the table and figures.

    Writes ``universality.csv`` and ``universality.md`` (one row per setting),
    ``universality_seeds.csv`` (every fitted layer and seed), ``universality_fits.png``, and for
    the ``default`` row with ``by_layer`` ``default_by_layer.csv`` and ``default_by_layer.png``;
    each row's run stores are under ``<setting>/runs``. The files are rewritten after every row,
    so a run stopped early leaves the rows it finished.

    Raises
    ------
    ConfigError
        Unknown rows or invalid settings.
    """
    t0 = time.perf_counter()
    names = cfg.row_names()
    check_int(cfg.seeds, "seeds")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, object]] = []
    all_seeds: list[pd.DataFrame] = []
    panels: list[FitPanel] = []
    by_layer, figures = pd.DataFrame(), []
    for name in tqdm(names, desc="universality rows", disable=not progress):
        layers = "all" if (name == "default" and cfg.by_layer) else None
        tp = TwoPointsConfig(
            setting=name,
            seeds=cfg.seeds,
            seed0=cfg.seed0,
            halve_lr=cfg.halve_lr,
            speedup=cfg.speedup,
            every=cfg.every,
            layers=layers,
            fit_starts=cfg.fit_starts,
        ).resolved()
        res = run_two_points(tp, out / name, progress=progress)
        seeds = res.table.assign(setting=name)
        all_seeds.append(seeds)
        rows.append(_row_summary(name, tp, seeds))
        panels.append(_panel(name, tp, res.runs[0], seeds))
        if layers == "all":
            by_layer = seeds
        figures = _write(out, cfg, rows, all_seeds, panels, by_layer)  # after every row
    table = pd.DataFrame(rows)
    return UniversalityResult(
        table,
        pd.concat(all_seeds, ignore_index=True),
        by_layer,
        out / "universality.csv",
        out / "universality.md",
        figures,
        time.perf_counter() - t0,
    )


def _write(
    out: Path,
    cfg: UniversalityConfig,
    rows: list[dict[str, object]],
    all_seeds: list[pd.DataFrame],
    panels: list[FitPanel],
    by_layer: pd.DataFrame,
) -> list[Path]:
    """Write the tables and figures of the rows done so far; return the figures."""
    table = pd.DataFrame(rows)
    table.to_csv(out / "universality.csv", index=False)
    pd.concat(all_seeds, ignore_index=True).to_csv(out / "universality_seeds.csv", index=False)
    (out / "universality.md").write_text(format_table(table, cfg))
    figures = [plot_fit_grid(panels, out / "universality_fits.png")]
    if len(by_layer):
        by_layer.to_csv(out / "default_by_layer.csv", index=False)
        figures.append(plot_sse_by_layer(by_layer, out / "default_by_layer.png"))
    (out / "universality.json").write_text(
        json.dumps({"config": asdict(cfg), "verdict_rule": VERDICT_RULE}, indent=2)
    )
    return figures


def format_table(table: pd.DataFrame, cfg: UniversalityConfig) -> str:
    """Return the row table as Markdown, with the conventions and the verdict rule."""
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in table.iterrows():
        lines.append("| " + " | ".join(_fmt(r[c]) for c in cols) + " |")
    return (
        f"# Two-point universality ({cfg.seeds} seeds per row, halve_lr={cfg.halve_lr}, "
        f"speedup={cfg.speedup}, every={cfg.every}, fit_starts={cfg.fit_starts})\n\n"
        + "\n".join(lines)
        + "\n\nrho = eta_h / eta_y (the closed form's convention, docs/dynamics.md §1.3); the "
        "column eta_y/eta_h is its inverse. eta per optimizer step. rel_err = max_t |data - ODE| "
        "/ max_t |data|. t_half_y: first step with y >= dy2/2. h_inf: closed form at the fitted "
        "rates from the measured start. Numbers are means over seeds.\n\nVerdict: "
        + VERDICT_RULE
        + ".\n"
    )


def _fmt(v: object) -> str:
    if isinstance(v, float | np.floating):
        return f"{float(v):.4g}"
    return str(v)
