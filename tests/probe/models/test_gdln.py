"""Gated deep linear networks: graph forward and routing network (docs/dynamics.md §3.1, §3.3)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from probe.errors import GateError, InputShapeError, ModelConfigError
from probe.models.gdln import (
    GatedDLN,
    RoutingNetwork,
    decoupled_init_,
    gate_matrix,
    orthogonal_init_,
    routing_data,
    routing_network,
)

D64 = torch.float64


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: more threads only contend on a shared machine
    yield
    torch.set_num_threads(n)


def diamond(seed=0):
    """x(2) -> a(3), b(3) -> y(2), plus a skip edge x -> y, with seeded weights."""
    net = GatedDLN(
        {"x": 2, "a": 3, "b": 3, "y": 2},
        {"xa": ("x", "a"), "xb": ("x", "b"), "ay": ("a", "y"), "by": ("b", "y"), "xy": ("x", "y")},
    ).to(D64)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for lin in net.edges.values():
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=g, dtype=D64))
    return net


def W(net, e):
    return net.edges[e].weight.detach()


def test_structure_and_names():
    net = diamond()
    assert net.input_nodes_ == ["x"]
    assert net.output_nodes_ == ["y"]
    assert net.order_.index("x") < net.order_.index("a") < net.order_.index("y")
    names = dict(net.named_modules())
    assert {"edges.xa", "edges.ay", "edges.xy"} <= set(names)
    assert all(lin.bias is None for lin in net.edges.values())


def test_forward_equals_hand_computation_with_per_example_gates():
    net = diamond()
    x = torch.randn(4, 2, dtype=D64, generator=torch.Generator().manual_seed(1))
    ge = {"xb": torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=D64), "xy": 0.0}
    gv = {"a": torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=D64), "y": 2.0}
    y = net(x, node_gates=gv, edge_gates=ge)["y"]
    for n in range(4):
        a = gv["a"][n] * (W(net, "xa") @ x[n])
        b = ge["xb"][n] * (W(net, "xb") @ x[n])
        expected = 2.0 * (W(net, "ay") @ a + W(net, "by") @ b)
        torch.testing.assert_close(y[n], expected)
    # example 3 has both hidden paths and the skip edge gated off
    torch.testing.assert_close(y[3], torch.zeros(2, dtype=D64))
    ungated = net(x)["y"]
    expected = x @ (net.path_map(["xa", "ay"]) + net.path_map(["xb", "by"]) + W(net, "xy")).T
    torch.testing.assert_close(ungated, expected)


def test_input_node_gate_and_several_inputs():
    net = GatedDLN(
        {"u": 2, "v": 3, "h": 4, "y": 1}, {"uh": ("u", "h"), "vh": ("v", "h"), "hy": ("h", "y")}
    )
    net = net.to(D64)
    u, v = torch.ones(5, 2, dtype=D64), torch.ones(5, 3, dtype=D64)
    out = net({"u": u, "v": v}, node_gates={"v": torch.zeros(5, dtype=D64)})["y"]
    torch.testing.assert_close(out, u @ net.path_map(["uh", "hy"]).T)


def test_gates_broadcast_over_a_trailing_path_axis():
    net = diamond()
    x = torch.randn(3, 2, dtype=D64, generator=torch.Generator().manual_seed(2))
    gates = {"xa": torch.tensor([1.0, 0.0], dtype=D64), "xb": torch.tensor([0.0, 1.0], dtype=D64)}
    y = net(x.unsqueeze(1).expand(-1, 2, -1), edge_gates=gates | {"xy": 0.0})["y"]
    torch.testing.assert_close(y[:, 0], x @ net.path_map(["xa", "ay"]).T)
    torch.testing.assert_close(y[:, 1], x @ net.path_map(["xb", "by"]).T)


@pytest.mark.parametrize(
    ("nodes", "edges", "match"),
    [
        ({"x": 0, "y": 1}, {"e": ("x", "y")}, "the size of node 'x' must be an int >= 1"),
        ({"x": 1, "y": 1}, {}, "needs at least one edge"),
        ({"x": 1, "y": 1}, {"e.1": ("x", "y")}, "contain no '.'"),
        ({"x": 1, "y": 1}, {"e": ("x", "z")}, "unknown node 'z'"),
        ({"x": 1, "y": 1, "z": 1}, {"e": ("x", "y")}, r"isolated nodes \['z'\]"),
        (
            {"x": 1, "a": 1, "b": 1, "y": 1},
            {"xa": ("x", "a"), "ab": ("a", "b"), "ba": ("b", "a"), "by": ("b", "y")},
            "must be acyclic",
        ),
    ],
)
def test_graph_errors(nodes, edges, match):
    with pytest.raises(ModelConfigError, match=match):
        GatedDLN(nodes, edges)


def test_forward_and_path_errors():
    net = diamond()
    x = torch.ones(3, 2, dtype=D64)
    two_in = GatedDLN({"u": 2, "v": 2, "y": 1}, {"uy": ("u", "y"), "vy": ("v", "y")}).to(D64)
    with pytest.raises(InputShapeError, match="exactly the input nodes"):
        two_in({"u": x})
    with pytest.raises(InputShapeError, match="same batch shape"):
        two_in({"u": x, "v": torch.ones(4, 2, dtype=D64)})
    with pytest.raises(InputShapeError, match=r"shape \(\*batch, 2\)"):
        net(torch.ones(3, 5, dtype=D64))
    with pytest.raises(GateError, match=r"node_gates names unknown \['q'\]"):
        net(x, node_gates={"q": 1.0})
    with pytest.raises(GateError, match="must broadcast to the batch shape"):
        net(x, edge_gates={"xa": torch.ones(4, dtype=D64)})
    with pytest.raises(ModelConfigError, match="at least one edge"):
        net.path_map([])
    with pytest.raises(ModelConfigError, match="unknown edge 'zz'"):
        net.path_map(["zz"])
    with pytest.raises(ModelConfigError, match="path edges must connect"):
        net.path_map(["ay", "xa"])


def test_gate_matrix_modes():
    G = gate_matrix(7, "4_plus_minus_mod")
    for i in range(7):
        assert {int(j) for j in torch.nonzero(G[i])} == {(i + d) % 7 for d in (-1, 0, 1, 2)}
    assert int(G.sum()) == 28
    assert torch.all(G.sum(0) == 4)
    assert torch.all(G.sum(1) == 4)
    assert gate_matrix(5, "2_plus_mod")[4].tolist() == [1.0, 0, 0, 0, 1.0]
    assert int(gate_matrix(3, "fully_connected").sum()) == 9


@pytest.mark.parametrize(
    ("M", "mode", "match"),
    [
        (0, "fully_connected", "M must be an int >= 1"),
        (7, "banana", "mode must be"),
        (3, "4_plus_mod", "must be in 1..M=3"),
    ],
)
def test_gate_matrix_errors(M, mode, match):
    with pytest.raises(ModelConfigError, match=match):
        gate_matrix(M, mode)


def test_routing_data():
    X, Y = routing_data()
    torch.testing.assert_close(X, torch.eye(4, dtype=D64))
    assert Y[3].tolist() == [6.0, 0.0, 4.0, 0.0, 0.0, 0.0, 3.0]
    np.testing.assert_allclose(torch.linalg.svdvals(Y.T).numpy(), np.sqrt([185, 41, 9, 9]))


def test_routing_paths_equal_direct_products():
    net = routing_network(d_hidden=16, init="orthogonal", scale=0.7, seed=3)
    X, Y = routing_data()
    pairs = [(i, j) for i in range(7) for j in range(7)]
    via_gdln = net.path_outputs(X, pairs)
    direct = net.all_paths(X)
    for p, (i, j) in enumerate(pairs):
        Wp = net.path_map([f"in_{i}", "h", f"out_{j}"])
        ref = W(net, f"out_{j}") @ W(net, "h") @ W(net, f"in_{i}")
        torch.testing.assert_close(Wp, ref)
        torch.testing.assert_close(via_gdln[:, p], X @ ref.T)
        torch.testing.assert_close(direct[:, i, j], X @ ref.T)
    assert net.trained_pairs == [(int(i), int(j)) for i, j in torch.nonzero(net.G)]
    assert len(net.trained_pairs) == 28
    assert len(net.untrained_pairs) == 21
    trained = net.path_outputs(X)  # default: the trained paths
    expected = sum(F.mse_loss(trained[:, p], Y) for p in range(28))
    torch.testing.assert_close(net.gated_loss(X, Y), expected)


def test_routing_module_names():
    names = {n for n, _ in RoutingNetwork(M=3, d_hidden=8, gate="2_plus_mod").named_modules()}
    assert {"edges.in_0", "edges.in_2", "edges.h", "edges.out_0", "edges.out_2"} <= names


def test_decoupled_init_is_aligned_and_balanced():
    b0 = 0.08
    net = routing_network(init="decoupled", scale=b0, seed=5)
    _, Y = routing_data()
    for name, n in (("in_3", 4), ("h", 64), ("out_6", 7)):
        np.testing.assert_allclose(torch.linalg.svdvals(W(net, name)).numpy(), np.full(n, b0))
    P = net.path_map(["in_2", "h", "out_5"]).detach()
    A = P.T @ Y.T  # = b0³ V S V^T when P = b0³ U V^T is aligned to Y^T = U S V^T
    torch.testing.assert_close(A, A.T)
    np.testing.assert_allclose(
        np.sort(torch.linalg.eigvalsh(A).numpy())[::-1],
        b0**3 * np.sqrt([185, 41, 9, 9]),
        rtol=1e-10,
    )


def test_orthogonal_init_gain():
    net = RoutingNetwork(d_hidden=16).to(D64)
    orthogonal_init_(net, 0.2, torch.Generator().manual_seed(0))
    torch.testing.assert_close(W(net, "h").T @ W(net, "h"), 0.04 * torch.eye(16, dtype=D64))
    torch.testing.assert_close(W(net, "in_1").T @ W(net, "in_1"), 0.04 * torch.eye(4, dtype=D64))
    torch.testing.assert_close(W(net, "out_1") @ W(net, "out_1").T, 0.04 * torch.eye(7, dtype=D64))


def test_routing_errors():
    with pytest.raises(ModelConfigError, match="init must be 'orthogonal' or 'decoupled'"):
        routing_network(init="xavier")
    with pytest.raises(ModelConfigError, match="scale must be a finite number > 0"):
        routing_network(scale=0.0)
    with pytest.raises(ModelConfigError, match=r"0/1 matrix of shape \(7, 7\)"):
        RoutingNetwork(gate=torch.ones(3, 3))
    net = RoutingNetwork(d_hidden=5).to(D64)
    with pytest.raises(ModelConfigError, match=r"Y must have shape \(d_in, d_out\)"):
        decoupled_init_(net, 0.1, torch.ones(3, 7, dtype=D64))
    with pytest.raises(ModelConfigError, match="d_in, d_out <= d_hidden=5"):
        decoupled_init_(net, 0.1, torch.ones(4, 7, dtype=D64))
    X, Y = routing_data()
    with pytest.raises(GateError, match="non-empty list of"):
        net.path_gates([(0, 7)])
    with pytest.raises(GateError, match="non-empty list of"):
        net.path_gates([(0,)])
    with pytest.raises(InputShapeError, match=r"x must have shape \(n, 4\)"):
        net.all_paths(torch.ones(4, 3, dtype=D64))
    with pytest.raises(InputShapeError, match=r"y must have shape \(4, 7\)"):
        net.gated_loss(X, Y[:, :3])
