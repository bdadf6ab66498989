"""Deep linear network learning dynamics vs Saxe et al. 2014 (docs/dynamics.md §2, V2-1, V2-2).

A bias-free ``n_in -> n_hidden -> n_out`` linear net learns one-hot items (``X = I``) with
full-batch SGD on ``0.5 * SSE`` (so ``tau = 1/lr`` steps). The hidden layer and both weights are
recorded through `hooks.Recorder`; mode strengths are read out two ways (``U^T W32 W21 V`` from
the weights, ``v^T H H^T v`` from the hidden activations alone) and compared with Eq. 12.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn

from hooks import Recorder
from probe.errors import ConfigError
from probe.store import open_run
from probe.theory.linear_dynamics import (
    gram_mode_strengths,
    half_time,
    half_times,
    mode_trajectory,
    weight_mode_strengths,
)
from probe.validation import check_int, check_positive

__all__ = [
    "ROUTING_ITEMS",
    "DeepLinearConfig",
    "DeepLinearResult",
    "hierarchical_items",
    "run_deep_linear",
]

#: The 4 items x 7 outputs of the routing task (docs/dynamics.md §3.3); s = sqrt185, sqrt41, 3, 3.
ROUTING_ITEMS = np.array(
    [[6, 4, 0, 3, 0, 0, 0], [6, 4, 0, 0, 3, 0, 0], [6, 0, 4, 0, 0, 3, 0], [6, 0, 4, 0, 0, 0, 3]],
    dtype=float,
)


@dataclass
class DeepLinearConfig:
    """Settings of the deep-linear experiment.

    ``data`` is ``"routing"`` (the 4 items of §3.3; V2-1) or ``"hierarchy"`` (Saxe Fig. 3: the
    ``2**levels`` leaves of a binary tree, ``n_features`` features each drawn by diffusion down the
    tree with flip probability ``flip``). ``init`` is ``"decoupled"`` (balanced, aligned to the
    SVD, every mode at ``u0``) or ``"random"`` (i.i.d. Gaussian of std ``sigma``; theory uses
    ``u0 = sigma² sqrt(n_hidden)``, docs/dynamics.md §5 V2-2).
    """

    data: str = "routing"
    levels: int = 5
    n_features: int = 1000
    flip: float = 0.1
    n_hidden: int = 16
    init: str = "decoupled"
    u0: float = 1e-3
    sigma: float = 0.01
    lr: float = 1e-3
    steps: int = 4000
    seeds: int = 1
    seed0: int = 0


@dataclass
class DeepLinearResult:
    """Run stores, per-mode half-time table, summary and figure of `run_deep_linear`."""

    runs: list[Path]
    table: pd.DataFrame
    summary_json: Path
    figure: Path
    wall_s: float


def hierarchical_items(
    levels: int, n_features: int, flip: float, seed: int
) -> npt.NDArray[np.float64]:
    """Return (2**levels, n_features) ±1 features diffused down a binary tree (Saxe Fig. 3).

    Each feature starts as ±1 at the root; every child copies its parent's value, flipped with
    probability ``flip``; the leaves are the items.
    """
    rng = np.random.default_rng(seed)
    values = rng.choice([-1.0, 1.0], size=(1, n_features))
    for _ in range(levels):
        children = np.repeat(values, 2, axis=0)
        flips = rng.random(children.shape) < flip
        values = np.where(flips, -children, children)
    return values


def _check(cfg: DeepLinearConfig) -> None:
    if cfg.data not in ("routing", "hierarchy"):
        msg = f"data must be 'routing' or 'hierarchy'; got {cfg.data!r}."
        raise ConfigError(msg)
    if cfg.init not in ("decoupled", "random"):
        msg = f"init must be 'decoupled' or 'random'; got {cfg.init!r}."
        raise ConfigError(msg)
    for name in ("levels", "n_features", "n_hidden", "steps", "seeds"):
        check_int(getattr(cfg, name), name)
    for name in ("u0", "sigma", "lr"):
        check_positive(getattr(cfg, name), name)
    if not 0 <= cfg.flip <= 0.5:
        msg = f"flip must be a probability in [0, 0.5]; got {cfg.flip!r}."
        raise ConfigError(msg)


def _modes(Y: npt.NDArray[np.float64], n_hidden: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SVD of ``S31 = Y^T`` (X = I) kept to the modes the hidden layer can hold (s > 0)."""
    U, s, Vt = np.linalg.svd(Y.T, full_matrices=False)
    keep = min(n_hidden, int(np.sum(s > 1e-9 * s[0])))
    return U[:, :keep], s[:keep], Vt[:keep].T


def _net(cfg: DeepLinearConfig, U: np.ndarray, V: np.ndarray, n_in: int, n_out: int) -> nn.Module:
    first = nn.Linear(n_in, cfg.n_hidden, bias=False).double()
    second = nn.Linear(cfg.n_hidden, n_out, bias=False).double()
    net = nn.Sequential(first, second)
    with torch.no_grad():
        if cfg.init == "decoupled":
            k = U.shape[1]
            R, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((cfg.n_hidden, k)))
            a = np.sqrt(cfg.u0)
            first.weight.copy_(torch.from_numpy(a * R @ V.T))  # W21 = R D' V^T
            second.weight.copy_(torch.from_numpy(a * U @ R.T))  # W32 = U D R^T
        else:
            for lin in (first, second):
                nn.init.normal_(lin.weight, std=cfg.sigma)
    return net


def _train(cfg: DeepLinearConfig, Y: np.ndarray, seed: int, store: Path) -> None:
    torch.manual_seed(seed)
    U, _, V = _modes(Y, cfg.n_hidden)
    n_items, n_out = Y.shape
    net = _net(cfg, U, V, n_items, n_out)
    X, T = torch.eye(n_items, dtype=torch.float64), torch.from_numpy(Y)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr)
    with Recorder(
        net,
        layers=["0", "1"],
        store=store,
        probe=(X, T),
        every=1,
        weights=True,
        dtype="float32",
        overwrite=True,
        config=asdict(cfg),
        seed=seed,
    ) as rec:
        for _ in range(cfg.steps):
            opt.zero_grad(set_to_none=True)
            loss = 0.5 * ((net(X) - T) ** 2).sum()  # 0.5 * SSE summed over items: tau = 1/lr
            loss.backward()
            opt.step()
            rec.step(loss=loss.detach())


def run_deep_linear(
    cfg: DeepLinearConfig, out: str | Path = "artifacts/deep-linear"
) -> DeepLinearResult:
    """Train ``cfg.seeds`` nets and compare their mode strengths with Eq. 12.

    Raises
    ------
    ConfigError
        A setting is out of range.
    """
    t0 = time.perf_counter()
    _check(cfg)
    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    tau = 1.0 / cfg.lr
    rows, runs, curves = [], [], []
    for seed in range(cfg.seed0, cfg.seed0 + cfg.seeds):
        Y = (
            ROUTING_ITEMS
            if cfg.data == "routing"
            else hierarchical_items(cfg.levels, cfg.n_features, cfg.flip, seed)
        )
        U, s, V = _modes(Y, cfg.n_hidden)
        u0 = cfg.u0 if cfg.init == "decoupled" else cfg.sigma**2 * np.sqrt(cfg.n_hidden)
        store = out / "runs" / f"seed{seed}.zarr"
        _train(cfg, Y, seed, store)
        runs.append(store)
        run = open_run(store)
        t = run.steps.astype(float)
        u_w = weight_mode_strengths(run.weights("1"), run.weights("0"), U, V)
        u_g = gram_mode_strengths(run.acts("0"), V)
        u_th = mode_trajectory(t, s, np.minimum(u0, 0.5 * s), tau)
        loss = run.metrics()
        curves.append((t, s, u_w, u_g, u_th, loss))
        for a, (tw, tg, tt) in enumerate(
            zip(
                half_times(t, u_w, s),
                half_times(t, u_g, s),
                np.atleast_1d(half_time(s, u0, tau)),
                strict=True,
            )
        ):
            rows.append(
                {
                    "seed": seed,
                    "mode": a + 1,
                    "s": float(s[a]),
                    "t_half_theory": float(tt),
                    "t_half_weights": float(tw),
                    "t_half_gram": float(tg),
                    "scaled_t_half": float(tw * s[a] / np.log(s[a] / u0)),
                    "max_abs_err_over_s": float(np.max(np.abs(u_w[:, a] - u_th[:, a])) / s[a]),
                }
            )
    table = pd.DataFrame(rows)
    table.to_csv(out / "half_times.csv", index=False)
    figure = _plot(curves[0], out / "modes.png", cfg)
    summary_json = out / "summary.json"
    summary_json.write_text(
        json.dumps(
            {
                "config": asdict(cfg),
                "tau": tau,
                "conventions": {
                    "loss": "0.5 * SSE summed over items, full-batch SGD: tau = 1/lr steps",
                    "u": "mode strength u_a = u_a^T W32 W21 v_a (weights) or v_a^T H H^T v_a "
                    "(hidden Gram of one-hot items)",
                    "t_half": "first step u_a reaches s_a/2 (interpolated); theory Eq. 11",
                    "scaled_t_half": "t_half * s / ln(s/u0): constant over modes under theory",
                },
                "half_times": rows,
            },
            indent=2,
        )
    )
    return DeepLinearResult(runs, table, summary_json, figure, time.perf_counter() - t0)


def _plot(curve: tuple[Any, ...], path: Path, cfg: DeepLinearConfig) -> Path:
    t, s, u_w, u_g, u_th, _ = curve
    fig = Figure(figsize=(7.0, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for a in range(min(len(s), 8)):
        color = f"C{a}"
        ax.plot(t, u_w[:, a], color=color, lw=2, label=f"mode {a + 1} (s={s[a]:.3g})")
        ax.plot(t, u_g[:, a], color=color, lw=1, ls="--")
        ax.plot(t, u_th[:, a], color="k", lw=1, ls=":")
    ax.plot([], [], color="k", ls="--", label="hidden-Gram readout")
    ax.plot([], [], color="k", ls=":", label="theory (Eq. 12)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("mode strength u")
    ax.set_title(f"deep linear net ({cfg.data}, {cfg.init} init): measured vs Saxe et al. 2014")
    ax.legend(fontsize=7, ncol=2)
    fig.savefig(path, dpi=120)
    return path
