"""Gated deep linear networks (Saxe, Sodhani & Lewallen 2022; docs/dynamics.md §3).

`GatedDLN` is a graph of nodes joined by bias-free linear edges, run with per-example node and
edge gates. `RoutingNetwork` is the 7-module routing network of §3.3 (gate `gate_matrix`, data
`routing_data`); `routing_network` builds one with the decoupled (`decoupled_init_`) or the
torch ``orthogonal_`` (`orthogonal_init_`) initialisation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from probe.errors import GateError, InputShapeError, ModelConfigError
from probe.models._gdln_graph import GatedDLN
from probe.validation import check_int, check_positive

__all__ = [
    "GatedDLN",
    "RoutingNetwork",
    "decoupled_init_",
    "gate_matrix",
    "orthogonal_init_",
    "routing_data",
    "routing_network",
]


_MODE = re.compile(r"^(\d+)_plus(_minus)?_mod$")


def gate_matrix(M: int = 7, mode: str = "4_plus_minus_mod") -> torch.Tensor:
    """Return the 0/1 gate ``G`` of shape (M, M): ``G[i, j] = 1`` trains path input i -> output j.

    Parameters
    ----------
    M : int
        Number of input (and output) modules.
    mode : str
        ``"{k}_plus_minus_mod"``: ``j ∈ {i - (k-1)//2, ..., i + k//2} mod M`` (``4``: i-1 .. i+2);
        ``"{k}_plus_mod"``: ``j ∈ {i, ..., i + k - 1} mod M``; ``"fully_connected"``: all ones.

    Returns
    -------
    torch.Tensor
        float32 of shape (M, M) with k ones per row and per column.

    Raises
    ------
    ModelConfigError
        An unknown mode, M < 1, or k outside 1..M.

    Notes
    -----
    The authors' ``GatedDLN.make_gate`` (``Gated_DLN_*_figure.ipynb``; docs/dynamics.md §3.3).

    Examples
    --------
    >>> gate_matrix(7)[0].tolist()
    [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    """
    check_int(M, "M", error=ModelConfigError)
    if mode == "fully_connected":
        return torch.ones(M, M)
    match = _MODE.match(mode)
    if match is None:
        msg = (
            "mode must be '{k}_plus_minus_mod', '{k}_plus_mod' or 'fully_connected'; "
            f"got {mode!r}."
        )
        raise ModelConfigError(msg)
    k = int(match.group(1))
    if not 1 <= k <= M:
        msg = f"the k of mode {mode!r} must be in 1..M={M}; got {k}."
        raise ModelConfigError(msg)
    offsets = range(-((k - 1) // 2), k // 2 + 1) if match.group(2) else range(k)
    G = torch.zeros(M, M)
    for i in range(M):
        for d in offsets:
            G[i, (i + d) % M] = 1.0
    return G


def routing_data(dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the routing task (docs/dynamics.md §3.3): items ``X = I_4``, targets ``Y`` (4, 7).

    Every trained path is fitted to the same ``(X, Y)``; ``s(Y^T) = [sqrt(185), sqrt(41), 3, 3]``.

    Examples
    --------
    >>> X, Y = routing_data()
    >>> tuple(X.shape), Y[0].tolist()
    ((4, 4), [6.0, 4.0, 0.0, 3.0, 0.0, 0.0, 0.0])
    """
    Y = [[6, 4, 0, 3, 0, 0, 0], [6, 4, 0, 0, 3, 0, 0], [6, 0, 4, 0, 0, 3, 0], [6, 0, 4, 0, 0, 0, 3]]
    return torch.eye(4, dtype=dtype), torch.tensor(Y, dtype=dtype)


class RoutingNetwork(GatedDLN):
    """The routing network of docs/dynamics.md §3.3 as a `GatedDLN`.

    Input nodes ``x0 .. x{M-1}`` (d_in) feed the shared node ``a`` through the input modules
    ``edges.in_<i>`` (W_in,i); the shared module ``edges.h`` (W_h) maps ``a`` to ``b``; the output
    modules ``edges.out_<j>`` (W_out,j) map ``b`` to the output nodes ``y0 .. y{M-1}`` (d_out).
    Path (i, j) is selected by gating on only ``x<i>`` and ``y<j>``; its output is
    ``W_out,j W_h W_in,i x``.

    Parameters
    ----------
    M : int
        Number of input modules (and of output modules).
    d_in, d_hidden, d_out : int
        Sizes of the input, hidden (both ``a`` and ``b``) and output nodes.
    gate : str or tensor of shape (M, M)
        Training gate ``G`` (a `gate_matrix` mode, or a 0/1 matrix); kept as the buffer ``G``.

    Raises
    ------
    ModelConfigError
        A size or M < 1, an unknown gate mode, or a gate matrix that is not (M, M) of 0/1.

    Examples
    --------
    >>> net = RoutingNetwork().double()
    >>> tuple(net.all_paths(torch.eye(4, dtype=torch.float64)).shape), len(net.trained_pairs)
    ((4, 7, 7, 7), 28)
    """

    def __init__(
        self,
        M: int = 7,
        d_in: int = 4,
        d_hidden: int = 64,
        d_out: int = 7,
        gate: str | torch.Tensor = "4_plus_minus_mod",
    ) -> None:
        G = gate_matrix(M, gate) if isinstance(gate, str) else torch.as_tensor(gate).float()
        if G.shape != (M, M) or not torch.all((G == 0) | (G == 1)):
            msg = f"gate must be a 0/1 matrix of shape ({M}, {M}); got shape {tuple(G.shape)}."
            raise ModelConfigError(msg)
        nodes = {f"x{i}": d_in for i in range(M)} | {"a": d_hidden, "b": d_hidden}
        nodes |= {f"y{j}": d_out for j in range(M)}
        edges = {f"in_{i}": (f"x{i}", "a") for i in range(M)} | {"h": ("a", "b")}
        edges |= {f"out_{j}": ("b", f"y{j}") for j in range(M)}
        super().__init__(nodes, edges)
        self.M, self.d_in, self.d_hidden, self.d_out, self.gate = M, d_in, d_hidden, d_out, gate
        self.G: torch.Tensor
        self.register_buffer("G", G)

    @property
    def trained_pairs(self) -> list[tuple[int, int]]:
        """Paths (i, j) with ``G[i, j] = 1``, row-major."""
        return [(int(i), int(j)) for i, j in torch.nonzero(self.G == 1).tolist()]

    @property
    def untrained_pairs(self) -> list[tuple[int, int]]:
        """Paths (i, j) with ``G[i, j] = 0`` (gated off in training), row-major."""
        return [(int(i), int(j)) for i, j in torch.nonzero(self.G == 0).tolist()]

    def path_gates(self, pairs: Sequence[tuple[int, int]]) -> dict[str, torch.Tensor]:
        """Return node gates of shape (P,) that open input node ``x<i>`` and output ``y<j>``.

        Raises
        ------
        GateError
            No pair, or a module index outside 0..M-1.
        """
        try:
            idx = torch.as_tensor(list(pairs), dtype=torch.long).reshape(-1, 2)
        except (TypeError, ValueError, RuntimeError):
            idx = torch.empty(0, 2, dtype=torch.long)  # reported below
        if idx.numel() == 0 or idx.min() < 0 or idx.max() >= self.M:
            msg = (
                f"pairs must be a non-empty list of (i, j) with 0 <= i, j < {self.M}; "
                f"got {list(pairs)}."
            )
            raise GateError(msg)
        dtype = self.edge_weight("h").dtype
        onehot = F.one_hot(idx, self.M).to(dtype)  # (P, 2, M)
        gates = {f"x{i}": onehot[:, 0, i] for i in range(self.M)}
        return gates | {f"y{j}": onehot[:, 1, j] for j in range(self.M)}

    def path_outputs(
        self, x: torch.Tensor, pairs: Sequence[tuple[int, int]] | None = None
    ) -> torch.Tensor:
        """Return the outputs of paths ``pairs`` (default: the trained ones) by the gated forward.

        Parameters
        ----------
        x : torch.Tensor
            Items of shape (n, d_in), fed to every path.
        pairs : sequence of (int, int), optional
            Paths (i, j); default `trained_pairs`.

        Returns
        -------
        torch.Tensor
            Shape (n, P, d_out): ``[:, p] = W_out,j W_h W_in,i x`` for ``pairs[p] = (i, j)``.

        Raises
        ------
        InputShapeError
            ``x`` is not (n, d_in).
        GateError
            An invalid pair (see `path_gates`).
        """
        self._check_items(x)
        gates = self.path_gates(self.trained_pairs if pairs is None else pairs)
        P = next(iter(gates.values())).shape[0]
        out = self(x.unsqueeze(1).expand(-1, P, -1), node_gates=gates)
        return torch.stack(list(out.values())).sum(0)  # every other output node is gated to 0

    def all_paths(self, x: torch.Tensor) -> torch.Tensor:
        """Return every path's output directly (each module called once).

        Parameters
        ----------
        x : torch.Tensor
            Items of shape (n, d_in).

        Returns
        -------
        torch.Tensor
            Shape (n, M, M, d_out): ``[:, i, j] = W_out,j W_h W_in,i x``.

        Raises
        ------
        InputShapeError
            ``x`` is not (n, d_in).
        """
        self._check_items(x)
        a = torch.stack([self.edges[f"in_{i}"](x) for i in range(self.M)], 1)
        b = self.edges["h"](a)
        return torch.stack([self.edges[f"out_{j}"](b) for j in range(self.M)], 2)

    def gated_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Return ``Σ_{(i,j): G_ij = 1} F.mse_loss(path output, y)`` (docs/dynamics.md §3.3).

        Parameters
        ----------
        x : torch.Tensor
            Items of shape (n, d_in).
        y : torch.Tensor
            Targets of shape (n, d_out), the same for every path.

        Returns
        -------
        torch.Tensor
            The scalar loss; ``tau = n d_out / (2 lr)`` for SGD at rate ``lr`` (docs/dynamics.md
            §3.3).

        Raises
        ------
        InputShapeError
            ``x`` is not (n, d_in) or ``y`` is not (n, d_out).

        Notes
        -----
        Computed from `all_paths` masked by ``G`` (one call per module, about 3x faster than the
        gated forward of `path_outputs`, which gives the same value).
        """
        out = self.all_paths(x)
        if y.shape != (x.shape[0], self.d_out):
            msg = f"y must have shape ({x.shape[0]}, {self.d_out}); got {tuple(y.shape)}."
            raise InputShapeError(msg)
        sq = (out - y[:, None, None, :]) ** 2
        return (self.G.to(sq.dtype)[None, :, :, None] * sq).sum() / (y.shape[0] * self.d_out)

    def _check_items(self, x: torch.Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.d_in:
            msg = f"x must have shape (n, {self.d_in}); got {tuple(x.shape)}."
            raise InputShapeError(msg)


@torch.no_grad()
def orthogonal_init_(net: GatedDLN, gain: float, generator: torch.Generator | None = None) -> None:
    """Set every edge weight with ``torch.nn.init.orthogonal_(W, gain)`` (the authors' init)."""
    for edge in net.edges:
        nn.init.orthogonal_(net.edge_weight(edge), gain=gain, generator=generator)


@torch.no_grad()
def decoupled_init_(
    net: RoutingNetwork, b0: float, Y: torch.Tensor, generator: torch.Generator | None = None
) -> None:
    """Set the decoupled, balanced init (docs/dynamics.md §3.2): every mode has strength ``b0``.

    With ``Y^T = U S V^T`` (full SVD) and random orthogonal ``R_a, R_b`` (d_hidden x d_hidden):
    ``W_in,i = b0 R_a[:, :d_in] V^T``, ``W_h = b0 R_b R_a^T``, ``W_out,j = b0 U R_b[:, :d_out]^T``,
    so every path map is ``b0³ U[:, :r] V[:, :r]^T`` (aligned to the SVD of ``Y^T``), as in the
    authors' ``should_init_decoupled`` branch. Inputs are taken white (``X = I``, ``Σ_yx = Y^T``).

    Parameters
    ----------
    net : RoutingNetwork
    b0 : float
        Initial singular value of every weight.
    Y : torch.Tensor
        Targets of shape (d_in, d_out) (one row per one-hot item).
    generator : torch.Generator, optional
        Draws ``R_a, R_b``.

    Raises
    ------
    ModelConfigError
        ``Y`` is not (d_in, d_out), or d_in or d_out exceeds d_hidden.
    """
    if tuple(Y.shape) != (net.d_in, net.d_out):
        msg = f"Y must have shape (d_in, d_out) = ({net.d_in}, {net.d_out}); got {tuple(Y.shape)}."
        raise ModelConfigError(msg)
    if max(net.d_in, net.d_out) > net.d_hidden:
        msg = (
            f"decoupled init needs d_in, d_out <= d_hidden={net.d_hidden}; "
            f"got {net.d_in}, {net.d_out}."
        )
        raise ModelConfigError(msg)
    dtype = net.edge_weight("h").dtype
    U, _, Vh = torch.linalg.svd(Y.T.to(torch.float64), full_matrices=True)
    Ra, Rb = (
        nn.init.orthogonal_(
            torch.empty(net.d_hidden, net.d_hidden, dtype=torch.float64), generator=generator
        )
        for _ in range(2)
    )
    for i in range(net.M):
        net.edge_weight(f"in_{i}").copy_((b0 * Ra[:, : net.d_in] @ Vh).to(dtype))
    net.edge_weight("h").copy_((b0 * Rb @ Ra.T).to(dtype))
    for j in range(net.M):
        net.edge_weight(f"out_{j}").copy_((b0 * U @ Rb[:, : net.d_out].T).to(dtype))


def routing_network(
    M: int = 7,
    d_in: int = 4,
    d_hidden: int = 64,
    d_out: int = 7,
    *,
    gate: str | torch.Tensor = "4_plus_minus_mod",
    init: str = "orthogonal",
    scale: float = 0.2,
    Y: torch.Tensor | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> RoutingNetwork:
    """Build and initialise a `RoutingNetwork`.

    Parameters
    ----------
    M, d_in, d_hidden, d_out, gate
        As in `RoutingNetwork`.
    init : {"orthogonal", "decoupled"}
        ``orthogonal_`` with gain ``scale`` (`orthogonal_init_`), or the decoupled init with
        singular value ``b0 = scale`` (`decoupled_init_`).
    scale : float
        The gain or ``b0`` (> 0).
    Y : torch.Tensor, optional
        Targets (d_in, d_out) of the decoupled init (default: `routing_data`'s).
    seed : int
        Seed of the random orthogonal matrices.
    dtype : torch.dtype
        Parameter dtype.

    Returns
    -------
    RoutingNetwork

    Raises
    ------
    ModelConfigError
        Unknown ``init``, ``scale`` not > 0, or a size/gate error of `RoutingNetwork`.

    Examples
    --------
    >>> net = routing_network(init="decoupled", scale=0.08)
    >>> torch.linalg.svdvals(net.edges["in_0"].weight).round(decimals=4).tolist()
    [0.08, 0.08, 0.08, 0.08]
    """
    if init not in ("orthogonal", "decoupled"):
        msg = f"init must be 'orthogonal' or 'decoupled'; got {init!r}."
        raise ModelConfigError(msg)
    check_positive(scale, "scale", error=ModelConfigError, hint="It is the gain or b0.")
    net = RoutingNetwork(M, d_in, d_hidden, d_out, gate).to(dtype)
    gen = torch.Generator().manual_seed(seed)
    if init == "orthogonal":
        orthogonal_init_(net, scale, gen)
    else:
        decoupled_init_(net, scale, routing_data(dtype)[1] if Y is None else Y, gen)
    return net
