"""XOR: each pair's final representational distance predicted from a two-point fit.

The authors' ``experiments/XOR.ipynb`` (docs/dynamics.md §1.3, §1.6): four inputs
``(0,0), (0,1), (1,0), (1,1)`` with XOR targets ``0, 1, 1, 0``; a deep MLP is trained full batch
with ``nn.MSELoss`` (mean over the 4 points, so eta = lr/2 as for ``0.5*F.mse_loss`` on two);
the final distance matrix of the hooked layer is compared with the closed form ``h_inf`` of §1.3
applied to each pair, from the pair's measured initial ``h0, y0`` and the rates ``eta_h, eta_y``
fitted on a two-point run of the same network (`run_two_points`).

Settings (``experiments/model_settings/XOR.txt``): ``rich`` gain 0.85, lr 0.015, 3000 epochs;
``intermediate`` 1.25, 0.002, 1000; ``lazy`` 2.0, 3e-9, 1000; ``shallow`` (1 hidden layer,
gain 0.0015, lr 0.03, 2000 epochs, layer 0); the deep ones 20 layers of 500, layer 10.

Notes
-----
Deviations from the notebook: it takes the rates of the two-point ``default`` row for every
setting (only ``rho = eta_h/eta_y`` enters ``h_inf``); here each setting's rates are fitted on
two points with that setting's own network, gain and lr (``eta_source="same"``), or taken from
the ``default`` row (``eta_source="default"``). The notebook builds the MLP with ReLU although
the settings file says leaky_relu; ``nonlinearity`` defaults to ``relu`` as the notebook runs.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from hooks import Recorder
from probe.errors import ConfigError
from probe.experiments.two_points.config import TwoPointsConfig
from probe.experiments.two_points.experiment import run_two_points, torch_threads
from probe.models.two_point import TwoPointMLP
from probe.plots.two_point import plot_distance_matrices
from probe.store import open_run
from probe.theory.effective_closed import final_distance, rich_final_distance
from probe.validation import check_int

__all__ = ["XOR_SETTINGS", "XorConfig", "XorResult", "pair_predictions", "run_xor"]

#: ``XOR.txt``: (gain, lr, width, hidden layers, epochs, hooked layer).
XOR_SETTINGS: dict[str, tuple[float, float, int, int, int, int]] = {
    "rich": (0.85, 0.015, 500, 20, 3000, 10),
    "intermediate": (1.25, 0.002, 500, 20, 1000, 10),
    "lazy": (2.0, 3e-9, 500, 20, 1000, 10),
    "shallow": (0.0015, 0.03, 500, 1, 2000, 0),
}
XOR_INPUTS = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_TARGETS = np.array([[0.0], [1.0], [1.0], [0.0]])


@dataclass
class XorConfig:
    """Settings of `run_xor`.

    Attributes
    ----------
    settings : str
        Comma-separated rows of ``XOR.txt`` (rich, intermediate, lazy, shallow).
    seed : int
        Seed of the XOR net and of its two-point run.
    nonlinearity : {"relu", "leaky_relu", "tanh", "elu", "swish", "none"}
        Hidden nonlinearity (the notebook runs relu).
    eta_source : {"same", "default"}
        Where the rates come from: a two-point run of the same network and settings, or of the
        two-point ``default`` row (the notebook's choice).
    epochs_scale : float
        Multiply every row's epochs by this (1: the settings file).
    width : int, optional
        Hidden width (None: the row's).
    depth : int, optional
        Hidden layers (None: the row's; the hooked layer becomes depth // 2).
    """

    settings: str = "rich,intermediate,lazy"
    seed: int = 0
    nonlinearity: str = "relu"
    eta_source: str = "same"
    epochs_scale: float = 1.0
    width: int | None = None
    depth: int | None = None

    def rows(self) -> dict[str, tuple[float, float, int, int, int, int]]:
        """Return the resolved rows by name.

        Raises
        ------
        ConfigError
            An unknown setting or eta source, or a size not >= 1.
        """
        names = [s.strip() for s in self.settings.split(",") if s.strip()]
        unknown = sorted(set(names) - set(XOR_SETTINGS))
        if unknown or not names:
            msg = f"settings must be names from {list(XOR_SETTINGS)}; got unknown {unknown}."
            raise ConfigError(msg)
        if self.eta_source not in ("same", "default"):
            msg = f"eta_source must be 'same' or 'default'; got {self.eta_source!r}."
            raise ConfigError(msg)
        out = {}
        for name in names:
            gain, lr, width, depth, epochs, hooked = XOR_SETTINGS[name]
            if self.depth is not None and depth > 1:
                depth, hooked = check_int(self.depth, "depth"), self.depth // 2
            width = check_int(self.width, "width") if self.width is not None else width
            epochs = max(2, round(epochs * self.epochs_scale))
            out[name] = (gain, lr, width, depth, epochs, hooked)
        return out


@dataclass
class XorResult:
    """What `run_xor` wrote: the per-pair table, its CSV and the figure."""

    table: pd.DataFrame
    table_csv: Path
    figure: Path
    wall_s: float


def pair_predictions(
    h: np.ndarray, yhat: np.ndarray, x: np.ndarray, y: np.ndarray, eta_h: float, eta_y: float
) -> pd.DataFrame:
    """Return, per pair, the closed-form final distance from the initial state and the rates.

    Parameters
    ----------
    h : ndarray of shape (n_points, d_hidden)
        Hidden representations at the start.
    yhat : ndarray of shape (n_points, d_out)
        Outputs at the start.
    x : ndarray of shape (n_points, d_in)
        Inputs.
    y : ndarray of shape (n_points, d_out)
        Targets.
    eta_h, eta_y : float
        Effective rates (> 0).

    Returns
    -------
    DataFrame
        One row per pair ``i < j``: ``i, j, dx2, dy2, h0, y0, h_inf`` (squared distances) and
        ``h_rich`` (the rich limit ``sqrt(rho dx2 dy2)``).
    """
    rows = []
    n = len(x)
    for i in range(n):
        for j in range(i + 1, n):
            dx2 = float(np.sum((x[j] - x[i]) ** 2))
            dy2 = float(np.sum((y[j] - y[i]) ** 2))
            h0 = float(np.sum((h[j] - h[i]) ** 2))
            y0 = float(np.sum((yhat[j] - yhat[i]) ** 2))
            rows.append(
                {
                    "i": i,
                    "j": j,
                    "dx2": dx2,
                    "dy2": dy2,
                    "h0": h0,
                    "y0": y0,
                    "h_inf": final_distance(h0, y0, eta_h, eta_y, dx2, dy2),
                    "h_rich": rich_final_distance(eta_h, eta_y, dx2, dy2),
                }
            )
    return pd.DataFrame(rows)


def _train_xor(
    row: tuple[float, float, int, int, int, int], cfg: XorConfig, store: Path, progress: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train the XOR net; return hidden reps at start (4, d), outputs at start, hidden at end."""
    gain, lr, width, depth, epochs, hooked = row
    torch.manual_seed(cfg.seed)
    model = TwoPointMLP(2, 1, width, depth, cfg.nonlinearity, gain)
    x = torch.tensor(XOR_INPUTS, dtype=torch.float32)
    y = torch.tensor(XOR_TARGETS, dtype=torch.float32)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    layer = f"hidden.{hooked}"
    rec = Recorder(model, layers=[layer], store=store, probe=(x, y), every=[0], overwrite=True)
    with torch_threads(1), rec:
        for _ in tqdm(range(epochs), desc="xor", disable=not progress, leave=False):
            opt.zero_grad(set_to_none=True)
            loss = F.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            rec.step(loss=loss.detach())
    run = open_run(store)
    acts, outs = run.acts(layer), run.outputs()
    return acts[0].reshape(4, -1), outs[0].reshape(4, -1), acts[-1].reshape(4, -1)


def _rates(
    name: str, row: tuple[float, float, int, int, int, int], cfg: XorConfig, out: Path
) -> tuple[float, float]:
    """Fit ``eta_h, eta_y`` on two points (the same network, or the ``default`` row)."""
    gain, lr, width, depth, epochs, hooked = row
    if cfg.eta_source == "default":
        tp = TwoPointsConfig(setting="default", seeds=1, seed0=cfg.seed, halve_lr=False)
        if cfg.depth is not None:
            tp.depth, tp.hooked = cfg.depth, cfg.depth // 2
        tp.width, tp.epochs = cfg.width, max(2, round(3000 * cfg.epochs_scale))
    else:
        tp = TwoPointsConfig(
            setting="default",
            seeds=1,
            seed0=cfg.seed,
            halve_lr=False,
            nonlinearity=cfg.nonlinearity,
            gain=gain,
            lr=lr,
            width=width,
            depth=depth,
            epochs=epochs,
            hooked=hooked,
        )
    tab = run_two_points(tp, out / f"{name}_two_points", progress=False).table
    return float(tab["eta_h"].iloc[0]), float(tab["eta_y"].iloc[0])


def run_xor(
    cfg: XorConfig, out: str | Path = "artifacts/xor", *, progress: bool = True
) -> XorResult:
    """Train every XOR setting, fit the rates on two points, compare per-pair final distances.

    Writes ``xor.csv`` (one row per setting and pair: squared distances ``dx2, dy2, h0, y0``,
    predicted ``h_inf`` and rich limit, measured ``h_end``, distances ``d_pred = sqrt(h_inf)``,
    ``d_meas = sqrt(h_end)`` and ``rel_err = d_pred / d_meas - 1``), ``xor.json`` and
    ``xor_distances.png`` (predicted and measured distance matrices per setting).

    Raises
    ------
    ConfigError
        Invalid settings (`XorConfig.rows`).
    """
    t0 = time.perf_counter()
    rows = cfg.rows()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tables, mats = [], {}
    shared: tuple[float, float] | None = None  # the default row's rates, fitted once
    for name, row in tqdm(rows.items(), desc="xor settings", disable=not progress):
        if cfg.eta_source == "default":
            shared = shared or _rates("default", row, cfg, out)
        eta_h, eta_y = shared or _rates(name, row, cfg, out)
        h0, y0, h_end = _train_xor(row, cfg, out / f"{name}.zarr", progress)
        tab = pair_predictions(h0, y0, XOR_INPUTS, XOR_TARGETS, eta_h, eta_y)
        pairs = zip(tab["i"], tab["j"], strict=True)
        tab["h_end"] = [float(np.sum((h_end[j] - h_end[i]) ** 2)) for i, j in pairs]
        tab["d_pred"], tab["d_meas"] = np.sqrt(tab["h_inf"]), np.sqrt(tab["h_end"])
        tab["rel_err"] = tab["d_pred"] / tab["d_meas"] - 1
        tab.insert(0, "setting", name)
        tab["eta_h"], tab["eta_y"] = eta_h, eta_y
        tables.append(tab)
        mats[name] = (_matrix(tab, "d_pred"), _matrix(tab, "d_meas"))
    table = pd.concat(tables, ignore_index=True)
    table_csv = out / "xor.csv"
    table.to_csv(table_csv, index=False)
    (out / "xor.json").write_text(json.dumps({"config": asdict(cfg)}, indent=2))
    labels = [f"({int(a)},{int(b)})" for a, b in XOR_INPUTS]
    figure = plot_distance_matrices(mats, labels, out / "xor_distances.png")
    return XorResult(table, table_csv, figure, time.perf_counter() - t0)


def _matrix(tab: pd.DataFrame, col: str) -> np.ndarray:
    m = np.zeros((4, 4))
    for i, j, v in zip(tab["i"], tab["j"], tab[col], strict=True):
        m[i, j] = m[j, i] = v
    return m
