"""The general gated deep linear network `GatedDLN` and its `GateError` (docs/dynamics.md §3.1).

Re-exported by `probe.models.gdln`, which adds the routing network of §3.3.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
from torch import nn

from probe.errors import GateError, InputShapeError, ModelConfigError
from probe.validation import check_int

__all__ = ["GatedDLN", "Gates"]

Gates = Mapping[str, "torch.Tensor | float"]


class GatedDLN(nn.Module):
    """A gated deep linear network: nodes with sizes, edges with bias-free weights ``W_e``.

    The weight of edge ``e`` is the submodule ``edges.<e>`` (a bias-free `torch.nn.Linear` from
    node ``s(e)`` to node ``t(e)``), so hooks and `hooks.Recorder` address it by that name.
    Nodes without incoming edges are input nodes; nodes without outgoing edges are output nodes.

    Parameters
    ----------
    nodes : mapping of str to int
        Node name -> size.
    edges : mapping of str to (str, str)
        Edge name -> (source node, target node). Names must not contain ``"."``.

    Raises
    ------
    ModelConfigError
        A size < 1, no edge, an edge name with a dot, an edge to an unknown node, a node with no
        edge, or a directed cycle.

    Notes
    -----
    Forward (docs/dynamics.md §3.1, from the paper): ``h_v = g_v Σ_{e: t(e)=v} g_e W_e h_{s(e)}`` in
    topological order; input nodes carry ``h_v = g_v x_v`` (their node gate is applied too, so
    ``g_p`` is the product of every gate on a path). Gates are supplied per example with the data.

    Examples
    --------
    >>> net = GatedDLN({"x": 2, "a": 3, "b": 3, "y": 1},
    ...                {"xa": ("x", "a"), "xb": ("x", "b"), "ay": ("a", "y"), "by": ("b", "y")})
    >>> out = net(torch.ones(5, 2), edge_gates={"xb": torch.zeros(5)})
    >>> sorted(out), tuple(out["y"].shape), net.order_
    (['y'], (5, 1), ['x', 'a', 'b', 'y'])
    """

    def __init__(self, nodes: Mapping[str, int], edges: Mapping[str, tuple[str, str]]) -> None:
        super().__init__()
        self.nodes = dict(nodes)
        self.edge_ends = {name: (str(s), str(t)) for name, (s, t) in dict(edges).items()}
        _check_graph(self.nodes, self.edge_ends)
        self.edges = nn.ModuleDict(
            {
                name: nn.Linear(self.nodes[s], self.nodes[t], bias=False)
                for name, (s, t) in self.edge_ends.items()
            }
        )
        self.incoming_ = {v: [e for e, (_, t) in self.edge_ends.items() if t == v] for v in nodes}
        sources = {s for s, _ in self.edge_ends.values()}
        self.input_nodes_ = [v for v in self.nodes if not self.incoming_[v]]
        self.output_nodes_ = [v for v in self.nodes if v not in sources]
        self.order_ = _topological_order(self.nodes, self.edge_ends)

    def forward(
        self,
        x: torch.Tensor | Mapping[str, torch.Tensor],
        node_gates: Gates | None = None,
        edge_gates: Gates | None = None,
    ) -> dict[str, torch.Tensor]:
        """Return the activations of the output nodes.

        Parameters
        ----------
        x : torch.Tensor or mapping of str to torch.Tensor
            Inputs of shape (*batch, size): one tensor given to every input node (all of one
            size), or one per input node.
        node_gates, edge_gates : mapping of str to tensor or float, optional
            Gate per node / edge name (missing names: gate 1), each a float or a tensor of shape
            broadcastable to ``batch`` (e.g. (*batch,) per example, or (P,) for a trailing axis).

        Returns
        -------
        dict of str to torch.Tensor
            Output node -> activations of shape (*batch, size).

        Raises
        ------
        InputShapeError
            Missing or unknown input nodes, a wrong feature size, or different batch shapes.
        GateError
            A gate for an unknown node or edge, or one that does not broadcast to the batch.
        """
        xs = self._inputs(x)
        batch = next(iter(xs.values())).shape[:-1]
        ng = _as_gates(node_gates, self.nodes, "node_gates", batch)
        eg = _as_gates(edge_gates, self.edge_ends, "edge_gates", batch)
        h: dict[str, torch.Tensor] = {}
        for v in self.order_:
            if v in xs:
                hv = xs[v]
            else:
                terms = [
                    _gated(eg.get(e), self.edges[e](h[self.edge_ends[e][0]]))
                    for e in self.incoming_[v]
                ]
                hv = torch.stack(terms).sum(0)
            h[v] = _gated(ng.get(v), hv)
        return {v: h[v] for v in self.output_nodes_}

    def edge_weight(self, edge: str) -> torch.Tensor:
        """Return the weight of ``edge``, of shape (size of its target, size of its source)."""
        return cast(nn.Linear, self.edges[edge]).weight  # ModuleDict items are typed Module

    def path_map(self, path: Sequence[str]) -> torch.Tensor:
        """Return ``W_p``, the ordered product of the edge weights along ``path``.

        Parameters
        ----------
        path : sequence of str
            Edge names from the first edge to the last; each edge starts where the previous ends.

        Returns
        -------
        torch.Tensor
            ``W_{e_k} ... W_{e_1}`` of shape (size of t(e_k), size of s(e_1)).

        Raises
        ------
        ModelConfigError
            An empty path, an unknown edge, or consecutive edges that do not connect.
        """
        if not path:
            msg = "path must name at least one edge; got an empty sequence."
            raise ModelConfigError(msg)
        for e in path:
            if e not in self.edge_ends:
                msg = f"path names unknown edge {e!r}; edges: {sorted(self.edge_ends)}."
                raise ModelConfigError(msg)
        for e1, e2 in zip(path[:-1], path[1:], strict=True):
            if self.edge_ends[e1][1] != self.edge_ends[e2][0]:
                msg = (
                    f"path edges must connect: {e1!r} ends at {self.edge_ends[e1][1]!r} but "
                    f"{e2!r} starts at {self.edge_ends[e2][0]!r}."
                )
                raise ModelConfigError(msg)
        w = self.edge_weight(path[0])
        for e in path[1:]:
            w = self.edge_weight(e) @ w
        return w

    def _inputs(self, x: torch.Tensor | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if isinstance(x, torch.Tensor):
            xs = dict.fromkeys(self.input_nodes_, x)
        else:
            xs = dict(x)
            if set(xs) != set(self.input_nodes_):
                msg = f"x must give exactly the input nodes {self.input_nodes_}; got {sorted(xs)}."
                raise InputShapeError(msg)
        shapes = set()
        for v, t in xs.items():
            if t.ndim < 1 or t.shape[-1] != self.nodes[v]:
                msg = (
                    f"input node {v!r} takes tensors of shape (*batch, {self.nodes[v]}); "
                    f"got {tuple(t.shape)}."
                )
                raise InputShapeError(msg)
            shapes.add(tuple(t.shape[:-1]))
        if len(shapes) > 1:
            msg = f"every input must have the same batch shape; got {sorted(shapes)}."
            raise InputShapeError(msg)
        return xs


def _check_graph(nodes: dict[str, int], ends: dict[str, tuple[str, str]]) -> None:
    for v, size in nodes.items():
        check_int(size, f"the size of node {v!r}", error=ModelConfigError)
    if not ends:
        msg = "a GatedDLN needs at least one edge; got none."
        raise ModelConfigError(msg)
    for e, (s, t) in ends.items():
        if not e or "." in e:
            msg = f"edge names must be non-empty and contain no '.'; got {e!r}."
            raise ModelConfigError(msg)
        for v in (s, t):
            if v not in nodes:
                msg = f"edge {e!r} joins unknown node {v!r}; nodes: {sorted(nodes)}."
                raise ModelConfigError(msg)
    touched = {v for st in ends.values() for v in st}
    lonely = sorted(set(nodes) - touched)
    if lonely:
        msg = f"every node must have an edge; got isolated nodes {lonely}."
        raise ModelConfigError(msg)


def _topological_order(nodes: dict[str, int], ends: dict[str, tuple[str, str]]) -> list[str]:
    """Kahn's algorithm, keeping the given node order among ready nodes."""
    indeg = {v: 0 for v in nodes}
    for _, t in ends.values():
        indeg[t] += 1
    order: list[str] = []
    ready = [v for v in nodes if indeg[v] == 0]
    while ready:
        v = ready.pop(0)
        order.append(v)
        for s, t in ends.values():
            if s == v:
                indeg[t] -= 1
                if indeg[t] == 0:
                    ready.append(t)
    if len(order) < len(nodes):
        msg = (
            "the graph must be acyclic; got a cycle through "
            f"{sorted(v for v in nodes if v not in order)}."
        )
        raise ModelConfigError(msg)
    return order


def _as_gates(
    gates: Gates | None, names: Mapping[str, Any], what: str, batch: torch.Size
) -> dict[str, torch.Tensor | float]:
    if not gates:
        return {}
    unknown = sorted(set(gates) - set(names))
    if unknown:
        msg = f"{what} names unknown {unknown}; choose from {sorted(names)}."
        raise GateError(msg)
    out: dict[str, torch.Tensor | float] = {}
    for k, g in gates.items():
        if isinstance(g, torch.Tensor) and g.ndim > 0:
            try:
                ok = torch.broadcast_shapes(g.shape, batch) == batch
            except RuntimeError:
                ok = False
            if not ok:
                msg = (
                    f"{what}[{k!r}] must broadcast to the batch shape {tuple(batch)}; "
                    f"got shape {tuple(g.shape)}."
                )
                raise GateError(msg)
            out[k] = g.unsqueeze(-1)  # broadcast over the feature axis
        else:
            out[k] = float(g)
    return out


def _gated(g: torch.Tensor | float | None, h: torch.Tensor) -> torch.Tensor:
    return h if g is None else g * h
