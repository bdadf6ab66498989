"""Neural Feature Ansatz experiment (docs/features.md §1, §1.9, §2): NFM vs AGOP over training.

`run_nfa` trains an MNIST (or offline digits) MLP, or the bias-free ReLU MLP of the polynomial
task y = x0 x1 (`poly_data`, `poly_mlp`), with weights and AGOPs of every Linear layer recorded
on training inputs; it writes the NFA measures over steps, the per-layer table at init and at the
end (every measure with its baselines), and the NFA-over-training and static-vs-local figures.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from hooks import Recorder, log_schedule
from probe.errors import ConfigError
from probe.experiments.nfa._report import (
    final_table,
    format_table,
    ground_truth_steps,
    local_metric,
    nfa_steps,
    plot_ground_truth,
)
from probe.experiments.nfa._setup import Setup, chain, make_setup, poly_data, poly_mlp
from probe.plots.features import plot_nfa
from probe.store import Run, open_run
from probe.validation import check_int, check_positive

__all__ = [
    "NfaConfig",
    "NfaResult",
    "demo_config",
    "format_summary",
    "poly_data",
    "poly_mlp",
    "run_nfa",
]

# Task defaults where a field is None: (epochs, width, depth).
_DEFAULTS = {"mnist": (3, 200, 4), "poly": (300, 256, 2)}
_CHOICES = {"task": ("mnist", "poly"), "dataset": ("mnist", "digits"), "init": ("default", "rich")}
_POSITIVE = ("seeds", "batch_size", "n_probe", "n_train", "n_test", "n_log_snapshots", "n_local")


@dataclass
class NfaConfig:
    """Settings of `run_nfa` (saved as JSON in every run store's ``config``).

    ``task="mnist"``: `probe.models.MLP` (leaky ReLU, biases) on ``dataset`` (the first
    ``max_train`` training images, None: all), cross-entropy, the AGOP on ``n_probe`` stratified
    training images. ``task="poly"``: docs/features.md §1.9, x ~ N(0, I_dim), y = x0 x1, the first
    ``n_train`` of ``n_train + n_test`` draws train, bias-free ReLU MLP dim-width-...-1
    (`poly_mlp`), MSE, the AGOP on all training points. Both: plain SGD,
    seeds ``seed ... seed + seeds - 1`` (data draw, init and batch order). ``init="rich"`` draws
    every weight but the readout's from N(0, 0.01/fan_in); ``"default"`` keeps the model's own.
    None means the task default: epochs 3 / 300, width 200 / 256, depth (hidden layers) 4 / 2.
    ``local_layer`` indexes the Linear layers (0: input layer) for the static-vs-local figure,
    computed on the first ``n_local`` probe points with ``k`` neighbours.
    """

    task: str = "mnist"
    dataset: str = "mnist"
    init: str = "default"
    seeds: int = 1
    seed: int = 0
    epochs: int | None = None
    lr: float = 0.1
    batch_size: int = 128
    width: int | None = None
    depth: int | None = None
    n_probe: int = 1000
    max_train: int | None = None
    dim: int = 100
    n_train: int = 1600
    n_test: int = 400
    n_log_snapshots: int = 25
    local_layer: int = 1
    n_local: int = 300
    k: int = 10


@dataclass
class NfaResult:
    """What `run_nfa` wrote: run stores, tables (CSV/JSON), figures, and the final table."""

    out: Path
    stores: list[Path]
    table: pd.DataFrame
    table_csv: Path
    table_json: Path
    steps_csv: Path
    figures: list[Path]
    static_vs_local: dict[str, Any]
    wall_s: float


def demo_config(task: str, dataset: str = "mnist") -> NfaConfig:
    """Return the small configuration of ``probe demo`` (a minute or two on 2 CPU cores).

    ``task="mnist"``: two epochs on the first 20,000 MNIST images, AGOP on 500 of them
    (digits: 20 epochs on all); ``task="poly"``: the rich-init polynomial task (one seed) for
    60 epochs, past the feature-learning transition near epoch 15 (a full run takes 300).
    """
    if task == "poly":
        return NfaConfig(task="poly", init="rich", epochs=60, n_log_snapshots=15)
    if dataset == "digits":
        return NfaConfig(dataset="digits", epochs=20, n_probe=500, n_log_snapshots=15)
    return NfaConfig(dataset=dataset, epochs=2, max_train=20000, n_probe=500, n_log_snapshots=15)


def _resolved(cfg: NfaConfig) -> tuple[int, int, int]:
    """Validate ``cfg`` and return its (epochs, width, depth) with task defaults filled in."""
    for name, allowed in _CHOICES.items():
        if getattr(cfg, name) not in allowed:
            msg = f"{name} must be one of {allowed}; got {getattr(cfg, name)!r}."
            raise ConfigError(msg)
    defaults = dict(zip(("epochs", "width", "depth"), _DEFAULTS[cfg.task], strict=True))
    sizes = {n: d if getattr(cfg, n) is None else getattr(cfg, n) for n, d in defaults.items()}
    ints = {n: getattr(cfg, n) for n in _POSITIVE} | sizes
    if cfg.max_train is not None:
        ints["max_train"] = cfg.max_train
    for name, value in ints.items():
        check_int(value, name)
    n_points = min(cfg.n_local, cfg.n_train if cfg.task == "poly" else cfg.n_probe)
    if not 0 <= cfg.local_layer <= sizes["depth"] or not 1 <= cfg.k < n_points:
        msg = (
            f"local_layer must be in [0, depth = {sizes['depth']}] and k in [1, {n_points - 1}] "
            f"(fewer than the static-vs-local points); got local_layer={cfg.local_layer!r}, "
            f"k={cfg.k!r}."
        )
        raise ConfigError(msg)
    check_positive(cfg.lr, "lr")
    if cfg.task == "poly" and cfg.dim < 2:
        msg = f"dim must be >= 2 (y = x0 x1); got dim={cfg.dim!r}."
        raise ConfigError(msg)
    return sizes["epochs"], sizes["width"], sizes["depth"]


def _train(
    cfg: NfaConfig, s: Setup, seed: int, epochs: int, store: Path, progress: bool
) -> dict[str, dict[str, float]]:
    """Train one seed with a Recorder attached; return the test metrics at init and the end."""
    opt = torch.optim.SGD(s.model.parameters(), lr=cfg.lr)
    n = len(s.x_tr)
    n_steps = epochs * -(-n // cfg.batch_size)
    gen = torch.Generator().manual_seed(seed)
    with Recorder(
        s.model,
        layers=nn.Linear,
        store=store,
        probe=s.probe,
        every=log_schedule(n_steps, cfg.n_log_snapshots),
        weights=True,
        agop=True,
        overwrite=True,
        config=asdict(cfg),
        seed=seed,
    ) as rec:
        metrics = {"init": s.evaluate()}
        rec.log(**metrics["init"])
        bar = tqdm(total=n_steps, desc=f"nfa {cfg.task} seed {seed}", disable=not progress)
        for epoch in range(epochs):
            perm = torch.randperm(n, generator=gen)
            for i in range(0, n, cfg.batch_size):
                idx = perm[i : i + cfg.batch_size]
                loss = s.loss(s.model(s.x_tr[idx]), s.y_tr[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                rec.step(epoch=epoch, loss=loss.detach())
                bar.update()
            metrics["trained"] = s.evaluate()
            rec.log(**metrics["trained"])
            bar.set_postfix(metrics["trained"])
        bar.close()
    return metrics


def run_nfa(cfg: NfaConfig, out: str | Path, *, progress: bool = True) -> NfaResult:
    """Train, record and analyse the NFA experiment; write everything under ``out``.

    Parameters
    ----------
    cfg : NfaConfig
    out : str or path
        Output folder: ``seed-<s>/run.zarr`` per seed (replaced if present), ``nfa_steps.csv``
        (`probe.experiments.nfa._report.nfa_steps` of every seed), ``nfa_table.csv`` and
        ``nfa_table.json`` (per layer at init and trained; the JSON adds the mean over seeds,
        the static-vs-local summary and the config), ``ground_truth_steps.csv`` (poly: input
        layer vs G* = e0e0ᵀ + e1e1ᵀ), figures ``nfa_M.png``, ``nfa_dM.png`` (first seed; NFM
        ``WᵀW`` and ``(W - W0)ᵀ(W - W0)``), ``static_vs_local.png`` (first seed) and
        ``ground_truth.png`` (poly, every seed).
    progress : bool
        Show tqdm progress bars.

    Returns
    -------
    NfaResult

    Raises
    ------
    ConfigError
        A setting is outside its allowed values.
    """
    epochs, width, depth = _resolved(cfg)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    stores, steps, tables, truths = [], [], [], []
    svl: dict[str, Any] = {}
    for seed in range(cfg.seed, cfg.seed + cfg.seeds):
        s = make_setup(cfg, seed, width, depth)
        store = out / f"seed-{seed}" / "run.zarr"
        metrics = _train(cfg, s, seed, epochs, store, progress)
        run = open_run(store)
        df = nfa_steps(run, seed)
        d_in = {layer: int(run.weights(layer, step=0).shape[1]) for layer in run.layers}
        truth = ground_truth_steps(run, run.layers[0], seed) if cfg.task == "poly" else None
        tables.append(final_table(df, seed, d_in, metrics, truth))
        stores.append(store)
        steps.append(df)
        truths += [truth] if truth is not None else []
        if seed == cfg.seed:
            figures = [plot_nfa(df[df["nfm"] == m], out / f"nfa_{m}.png") for m in ("M", "dM")]
            svl = _static_vs_local(cfg, s, run, out / "static_vs_local.png")
            figures.append(out / "static_vs_local.png")
    table = pd.concat(tables, ignore_index=True)
    pd.concat(steps, ignore_index=True).to_csv(out / "nfa_steps.csv", index=False)
    if truths:
        truth_all = pd.concat(truths, ignore_index=True)
        truth_all.to_csv(out / "ground_truth_steps.csv", index=False)
        figures.append(plot_ground_truth(truth_all, cfg.dim, out / "ground_truth.png"))
    table.to_csv(out / "nfa_table.csv", index=False)
    keys = ["layer", "d_in", "state"]
    mean = table.drop(columns=["seed", "step"]).groupby(keys, sort=False).mean().reset_index()
    wall = time.perf_counter() - t0
    doc = {
        "config": asdict(cfg) | {"epochs": epochs, "width": width, "depth": depth},
        "rows": _records(table),
        "mean_over_seeds": _records(mean),
        "static_vs_local": svl,
        "wall_s": wall,
    }
    (out / "nfa_table.json").write_text(json.dumps(doc, indent=1))
    return NfaResult(
        out=out,
        stores=stores,
        table=table,
        table_csv=out / "nfa_table.csv",
        table_json=out / "nfa_table.json",
        steps_csv=out / "nfa_steps.csv",
        figures=figures,
        static_vs_local=svl,
        wall_s=wall,
    )


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Return rows as dicts with NaN as None (strict JSON null)."""
    return [{k: None if v != v else v for k, v in r.items()} for r in df.to_dict("records")]


def _static_vs_local(cfg: NfaConfig, s: Setup, run: Run, path: Path) -> dict[str, Any]:
    """Compare the trained NFM of Linear ``cfg.local_layer`` with local output pullbacks."""
    mods, cut = chain(s.model), 2 * cfg.local_layer
    layer = run.layers[cfg.local_layer]
    W, x = run.weights(layer, step=-1), s.probe[0][: cfg.n_local]
    up, down = nn.Sequential(*mods[:cut]), nn.Sequential(*mods[cut:])
    return {"layer": layer} | local_metric(up, down, W, x, k=cfg.k, path=path)


def format_summary(res: NfaResult) -> str:
    """Return the final per-layer table (mean over seeds) as markdown, for the CLI."""
    cols = ["pearson_M_sqrtG", "pearson_M_G", "pearson_dM_sqrtG", "pearson_M_M0"]
    cols += ["offdiag_M_sqrtG", "offdiag_dM_sqrtG"]
    cols += [c for c in ("test_mse", "test_accuracy") if c in res.table.columns]
    return format_table(res.table, cols)
