"""One neural-race run: its settings, training with a `hooks.Recorder`, and reading it back.

`NeuralRaceConfig`, the Recorder-facing wrapper `RoutingPaths`, `train_routing`, and
`race_traces` (singular values, loss and `path_errors` from the run store). Re-exported by
`probe.experiments.neural_race.experiment`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from hooks import Recorder
from probe.errors import ConfigError
from probe.models.gdln import RoutingNetwork, routing_data, routing_network
from probe.store import open_run
from probe.validation import check_int, check_positive

__all__ = [
    "LAYERS",
    "N_MODES",
    "NeuralRaceConfig",
    "RaceTraces",
    "RoutingPaths",
    "path_errors",
    "race_traces",
    "theory_start",
    "train_routing",
]

#: Recorded module of each analysed weight (inside `RoutingPaths`).
LAYERS = {"in": "net.edges.in_0", "h": "net.edges.h", "out": "net.edges.out_0"}
N_MODES = 4  # rank of Y^T


@dataclass
class NeuralRaceConfig:
    """Settings of a neural-race run (saved as JSON in every run store's ``config``).

    ``scale`` is ``b0`` for ``init="decoupled"`` and the ``orthogonal_`` gain for
    ``init="orthogonal"``. The theory starts from ``theory_b0``; None takes ``scale`` (decoupled)
    or ``scale / 2.5`` (orthogonal: the authors' figure overlays b0 = 0.2/2.5 = 0.08 on gain 0.2).
    """

    init: str = "orthogonal"
    scale: float = 0.2
    theory_b0: float | None = None
    lr: float = 0.02
    epochs: int = 500
    seeds: int = 3
    seed0: int = 0
    record_every: int = 2
    d_hidden: int = 64
    gate: str = "4_plus_minus_mod"
    all_edges: bool = False
    dtype: str = "float64"

    def checked(self) -> NeuralRaceConfig:
        """Return a copy with ``theory_b0`` filled in, after checks.

        Raises
        ------
        ConfigError
            Unknown init or dtype, a rate or scale not > 0, or a count not a positive int.
        """
        if self.init not in ("decoupled", "orthogonal"):
            msg = f"init must be 'decoupled' or 'orthogonal'; got {self.init!r}."
            raise ConfigError(msg)
        if self.dtype not in ("float32", "float64"):
            msg = f"dtype must be 'float32' or 'float64'; got {self.dtype!r}."
            raise ConfigError(msg)
        for name in ("scale", "lr"):
            check_positive(getattr(self, name), name)
        for name in ("epochs", "seeds", "record_every", "d_hidden"):
            check_int(getattr(self, name), name)
        b0 = theory_start(self)
        if not 0 < b0 < math.inf:
            msg = f"theory_b0 must be > 0; got {b0!r}."
            raise ConfigError(msg)
        return replace(self, theory_b0=float(b0))


def theory_start(cfg: NeuralRaceConfig) -> float:
    """Return the theory's initial strength: ``theory_b0``, else the init's (see the config)."""
    if cfg.theory_b0 is not None:
        return float(cfg.theory_b0)
    return float(cfg.scale if cfg.init == "decoupled" else cfg.scale / 2.5)


class RoutingPaths(nn.Module):
    """Wrap a `RoutingNetwork` so that ``forward(x)`` returns every path, (n, M, M, d_out).

    The Recorder's probe forward takes only ``x``; the gates of the path (i, j) are implied by
    its position in the output. Its modules are ``net.edges.<edge>``.
    """

    def __init__(self, net: RoutingNetwork) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``net.all_paths(x)`` of shape (n, M, M, d_out)."""
        return self.net.all_paths(x)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    # Tiny matmuls: extra intra-op threads only contend on a shared machine (10x slower).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def train_routing(cfg: NeuralRaceConfig, seed: int, store: str | Path) -> Path:
    """Train one routing network and record it; return the run store's path.

    Full-batch SGD at ``cfg.lr`` on `RoutingNetwork.gated_loss`. The metric ``loss`` at step t
    is the loss of the state after t updates (logged before the update), so metrics and
    snapshots share one time axis; snapshots every ``cfg.record_every`` steps and at the end.

    Raises
    ------
    ConfigError
        ``cfg`` is invalid (see `NeuralRaceConfig.checked`).
    """
    cfg = cfg.checked()
    dtype = getattr(torch, cfg.dtype)
    X, Y = routing_data(dtype)
    net = routing_network(
        d_hidden=cfg.d_hidden, gate=cfg.gate, init=cfg.init, scale=cfg.scale, seed=seed, dtype=dtype
    )
    params = list(net.parameters())
    layers = ["net.edges.*"] if cfg.all_edges else list(LAYERS.values())
    with (
        _one_thread(),
        Recorder(
            RoutingPaths(net),
            layers=layers,
            store=store,
            probe=(X, Y),
            every=cfg.record_every,
            weights=True,
            overwrite=True,
            config=asdict(cfg),
            seed=seed,
        ) as rec,
    ):
        for _ in range(cfg.epochs):
            loss = net.gated_loss(X, Y)
            rec.log(loss=loss.detach())
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():  # torch.optim.SGD's step without momentum (torch.optim would
                for p, g in zip(params, grads, strict=True):  # import torch._dynamo: ~10 s)
                    p.add_(g, alpha=-cfg.lr)
            rec.step()
        with torch.no_grad():
            rec.log(loss=net.gated_loss(X, Y))
    return Path(store)


@dataclass
class RaceTraces:
    """What one run store says about the race.

    Attributes
    ----------
    steps : ndarray of shape (n_snapshots,)
    sv : dict of str to ndarray of shape (n_snapshots, 4)
        Top singular values of W_in[0] (``"in"``), W_h (``"h"``) and W_out[0] (``"out"``).
    loss_steps, loss : ndarray of shape (n_records,)
        The gated loss at every step (state after that many updates).
    trained_error, untrained_error : ndarray of shape (n_snapshots,)
        `path_errors` at every snapshot.
    """

    steps: npt.NDArray[np.int64]
    sv: dict[str, npt.NDArray[np.float64]]
    loss_steps: npt.NDArray[np.int64]
    loss: npt.NDArray[np.float64]
    trained_error: npt.NDArray[np.float64]
    untrained_error: npt.NDArray[np.float64]


def path_errors(
    outputs: npt.ArrayLike, Y: npt.ArrayLike, G: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Return the mean over trained and over untrained paths of ``‖Y - O_ij‖_F² / 2``.

    Parameters
    ----------
    outputs : array_like of shape (..., n_items, M, M, d_out)
        Path outputs ``O_ij`` (e.g. the run store's ``outputs``).
    Y : array_like of shape (n_items, d_out)
        Targets (the same for every path).
    G : array_like of shape (M, M)
        Gate: 1 on trained paths, 0 on untrained (gated-off) ones.

    Returns
    -------
    trained, untrained : ndarray of shape (...)
        The reference of predicting 0 is ``‖Y‖_F² / 2`` (122 for §3.3).
    """
    out = np.asarray(outputs, dtype=np.float64)
    Yf = np.asarray(Y, dtype=np.float64)
    err = 0.5 * np.sum((out - Yf[:, None, None, :]) ** 2, axis=(-4, -1))  # (..., M, M)
    on = np.asarray(G) == 1
    return err[..., on].mean(-1), err[..., ~on].mean(-1)


def race_traces(store: str | Path) -> RaceTraces:
    """Read singular values, loss and path errors of a `train_routing` run from its store."""
    run = open_run(store)
    sv = {
        k: np.linalg.svd(run.weights(name).astype(np.float64), compute_uv=False)[:, :N_MODES]
        for k, name in LAYERS.items()
    }
    m = run.metrics().dropna(subset=["loss"])
    cfg = run.attrs["config"]
    G = RoutingNetwork(gate=cfg["gate"]).G.numpy()
    assert run.targets is not None  # the experiment records its targets
    trained, untrained = path_errors(run.outputs(), run.targets, G)
    return RaceTraces(
        run.steps.astype(np.int64),
        sv,
        m["step"].to_numpy(np.int64),
        m["loss"].to_numpy(np.float64),
        trained,
        untrained,
    )
