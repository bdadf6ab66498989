import numpy as np
import pandas as pd
import pytest
import torch
import zarr
from torch import nn
from torch.func import jacrev, vmap

import probe
from hooks import Recorder
from probe.analysis.features import (
    NFAComparison,
    compare,
    fact_matrix,
    fact_residual,
    matrix_power_psd,
    nfa_over_steps,
    nfm,
    rho_cos,
    rho_offdiag,
    rho_pearson,
)
from probe.errors import (
    AGOPNotRecordedError,
    ConfigError,
    InvalidArrayError,
    LayerNotInRunError,
    ShapeMismatchError,
    StepNotFoundError,
)
from probe.plots.features import plot_nfa

F64 = torch.float64


@pytest.fixture
def one_thread():
    # The 2 CPU cores are shared: many threads on tiny matrices only add contention.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def ref_agop(f, X):
    """(1/n) Σ J^T J with J = ∂f/∂x from vmap(jacrev) in float64 (docs/features.md §1.6)."""
    J = vmap(jacrev(f))(torch.as_tensor(X, dtype=F64)).reshape(len(X), -1, X.shape[1])
    return torch.einsum("ncd,nce->de", J, J).numpy() / len(X)


def random_psd(rng, d, rank=None):
    A = rng.standard_normal((d, rank or d))
    return A @ A.T


# ------------------------------------------------------------------ nfm
def test_nfm_plain_scaled_init_and_conv():
    rng = np.random.default_rng(0)
    W, W0 = rng.standard_normal((7, 5)), rng.standard_normal((7, 5))
    np.testing.assert_allclose(nfm(W), W.T @ W, atol=1e-12)
    np.testing.assert_allclose(nfm(W, scale="out"), W.T @ W / 7, atol=1e-12)
    np.testing.assert_allclose(nfm(W, scale=2.0), W.T @ W / 2, atol=1e-12)
    dW = W - W0
    np.testing.assert_allclose(nfm(W, W0, subtract_init=True), dW.T @ dW, atol=1e-12)
    conv = rng.standard_normal((4, 3, 2, 2))  # (out, in, kh, kw)
    flat = conv.reshape(4, 12)
    np.testing.assert_allclose(nfm(conv), flat.T @ flat, atol=1e-12)
    assert nfm(W.astype(np.float32)).dtype == np.float64


def test_nfm_errors():
    W = np.ones((3, 2))
    with pytest.raises(ConfigError, match="subtract_init=True needs W0"):
        nfm(W, subtract_init=True)
    with pytest.raises(ConfigError, match="W0 is used only with subtract_init=True"):
        nfm(W, W)
    with pytest.raises(ShapeMismatchError, match="W0 must have the shape of W"):
        nfm(W, np.ones((3, 3)), subtract_init=True)
    with pytest.raises(ConfigError, match="scale must be a finite number > 0"):
        nfm(W, scale=0.0)
    with pytest.raises(ConfigError, match="scale must be a finite number > 0"):
        nfm(W, scale="in")
    with pytest.raises(InvalidArrayError, match="at least 2 dimensions"):
        nfm(np.ones(3))


# ------------------------------------------------------------------ matrix power
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matrix_power_psd_sqrt_squares_back(seed):
    rng = np.random.default_rng(seed)
    G = random_psd(rng, 6)
    R = matrix_power_psd(G, 0.5)
    np.testing.assert_allclose(R @ R, G, rtol=0, atol=1e-10 * np.abs(G).max())
    np.testing.assert_allclose(R, R.T, atol=0)
    np.testing.assert_allclose(matrix_power_psd(G, 1), G, atol=1e-10 * np.abs(G).max())
    third = matrix_power_psd(G, 1 / 3)
    np.testing.assert_allclose(third @ third @ third, G, atol=1e-9 * np.abs(G).max())
    # Rank-deficient G and stacks of matrices.
    low = random_psd(rng, 6, rank=2)
    stack = matrix_power_psd(np.stack([G, low]), 0.5)
    np.testing.assert_allclose(stack[0], R, atol=1e-12)
    np.testing.assert_allclose(stack[1] @ stack[1], low, atol=1e-10 * np.abs(low).max())


def test_matrix_power_psd_clips_negative_roundoff():
    G = np.diag([4.0, -1e-13])  # PSD up to round-off
    np.testing.assert_allclose(matrix_power_psd(G, 0.5), np.diag([2.0, 0.0]), atol=0)


def test_matrix_power_psd_errors():
    G = np.eye(3)
    for p in (0, -0.5, True, "half"):
        with pytest.raises(ConfigError, match="power p must be a finite number > 0"):
            matrix_power_psd(G, p)
    with pytest.raises(InvalidArrayError, match=r"G must have shape \(\.\.\., d, d\)"):
        matrix_power_psd(np.ones((3, 2)), 0.5)
    with pytest.raises(InvalidArrayError, match="G must be symmetric"):
        matrix_power_psd(np.array([[1.0, 1.0], [0.0, 1.0]]), 0.5)


# ------------------------------------------------------------------ measures
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_measures_against_numpy(seed):
    rng = np.random.default_rng(seed)
    A, B = rng.standard_normal((5, 5)) + 3.0, rng.standard_normal((5, 5))
    assert rho_pearson(A, B) == pytest.approx(np.corrcoef(A.ravel(), B.ravel())[0, 1], abs=1e-12)
    # Pearson = cosine after centring the entries (Mallinar et al.).
    assert rho_pearson(A, B) == pytest.approx(rho_cos(A - A.mean(), B - B.mean()), abs=1e-12)
    cos = np.sum(A * B) / (np.linalg.norm(A) * np.linalg.norm(B))
    assert rho_cos(A, B) == pytest.approx(cos, abs=1e-12)
    off = ~np.eye(5, dtype=bool)
    ref = np.corrcoef(A[off], B[off])[0, 1]
    assert rho_offdiag(A, B) == pytest.approx(ref, abs=1e-12)
    # Invariances: Pearson under affine maps of the entries, cosine under scaling.
    assert rho_pearson(3 * A + 7, B) == pytest.approx(rho_pearson(A, B), abs=1e-12)
    assert rho_cos(5 * A, B) == pytest.approx(rho_cos(A, B), abs=1e-12)
    assert rho_pearson(A, A) == pytest.approx(1.0, abs=1e-15)


def test_pearson_is_diagonal_dominated_offdiag_is_not():
    # docs/features.md §1.8: near-isotropic matrices with unrelated off-diagonals still get a
    # high Pearson.
    rng = np.random.default_rng(0)
    E1, E2 = rng.standard_normal((2, 20, 20)) * 0.01
    A, B = np.eye(20) + E1 + E1.T, np.eye(20) + E2 + E2.T
    assert rho_pearson(A, B) > 0.9
    assert abs(rho_offdiag(A, B)) < 0.2


def test_measure_errors():
    with pytest.raises(ShapeMismatchError, match="A and B must have the same shape"):
        rho_pearson(np.eye(2), np.eye(3))
    with pytest.raises(InvalidArrayError, match=r"A must have shape \(d, d\)"):
        rho_cos(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(InvalidArrayError, match="rho_pearson is undefined: A is a constant"):
        rho_pearson(np.ones((3, 3)), np.eye(3))
    with pytest.raises(InvalidArrayError, match="rho_cos is undefined: B is a constant or zero"):
        rho_cos(np.eye(3), np.zeros((3, 3)))
    with pytest.raises(InvalidArrayError, match="rho_offdiag needs matrices of size d >= 2"):
        rho_offdiag(np.ones((1, 1)), np.ones((1, 1)))


# ------------------------------------------------------------------ compare
def test_compare_values_baselines_and_frame():
    rng = np.random.default_rng(3)
    M, G, M0, G0 = (random_psd(rng, 4) for _ in range(4))
    cmp = compare(M, G, powers=(1, 0.5), M0=M0, G0=G0)
    assert isinstance(cmp, NFAComparison) and cmp.powers == (1.0, 0.5)
    G_half = matrix_power_psd(G, 0.5)
    assert cmp.value["pearson"][0.5] == pytest.approx(rho_pearson(M, G_half), abs=1e-14)
    assert cmp.value["cosine"][1.0] == pytest.approx(rho_cos(M, G), abs=1e-14)
    assert cmp.value["offdiag"][0.5] == pytest.approx(rho_offdiag(M, G_half), abs=1e-14)
    init = rho_pearson(M0, matrix_power_psd(G0, 0.5))
    assert cmp.init["pearson"][0.5] == pytest.approx(init, abs=1e-14)
    assert cmp.nfm_change["offdiag"] == pytest.approx(rho_offdiag(M, M0), abs=1e-14)
    df = cmp.to_frame()
    assert list(df.columns) == ["measure", "power", "value", "init", "nfm_change"]
    assert len(df) == 6 and set(df["measure"]) == {"pearson", "cosine", "offdiag"}
    bare = compare(M, G, powers=[0.5]).to_frame()
    assert bare["init"].isna().all() and bare["nfm_change"].isna().all()


def test_compare_undefined_measure_is_nan():
    # A diagonal NFM has a constant (zero) off-diagonal: offdiag is undefined, Pearson is not.
    cmp = compare(np.diag([1.0, 2.0, 3.0]), np.diag([1.0, 4.0, 9.0]), powers=(0.5,))
    assert cmp.value["pearson"][0.5] == pytest.approx(1.0, abs=1e-12)
    assert np.isnan(cmp.value["offdiag"][0.5])


def test_compare_errors():
    M = np.eye(3) + 0.1
    with pytest.raises(ConfigError, match="compare needs >= 1 power"):
        compare(M, M, powers=())
    with pytest.raises(ConfigError, match="M0 whenever G0 is given"):
        compare(M, M, G0=M)
    with pytest.raises(ShapeMismatchError, match="M and M0 must have the same shape"):
        compare(M, M, M0=np.eye(2))
    with pytest.raises(ShapeMismatchError, match="M and G must have the same shape"):
        compare(M, np.eye(4))
    with pytest.raises(ConfigError, match="power p must be a finite number > 0"):
        compare(M, M, powers=(0,))


# ------------------------------------------------------------ known answers: E1, house style
def test_quadratic_form_agop_is_nfm_squared():
    # f(x) = ½||Wx||² on inputs with XᵀX/n = I exactly: ∇f = WᵀW x, AGOP = (WᵀW)².
    rng = np.random.default_rng(0)
    n, d = 40, 6
    X = np.linalg.qr(rng.standard_normal((n, d)))[0] * np.sqrt(n)
    W = torch.as_tensor(rng.standard_normal((4, d)))
    G = ref_agop(lambda x: 0.5 * (W @ x).pow(2).sum(), X)
    M = nfm(W.numpy())
    np.testing.assert_allclose(G, M @ M, atol=1e-10 * np.abs(M @ M).max())
    assert compare(M, G, powers=(0.5,)).value["pearson"][0.5] == pytest.approx(1.0, abs=1e-12)


def test_e1_two_layer_linear_balanced_init_nfa_with_square_root():
    """E1: f = W2 W1 x, balanced init, GD lr 1e-3 x 2e4 steps: NFM = AGOP^{1/2}, not AGOP."""
    rng = np.random.default_rng(0)
    d, n = 5, 50
    X = rng.standard_normal((n, d))
    orth = [np.linalg.qr(rng.standard_normal((d, d)))[0] for _ in range(5)]
    A = orth[0] @ np.diag([3.0, 2.0, 1.5, 1.0, 0.5]) @ orth[1].T  # target map
    Y = X @ A.T
    U, V1, V2, s = orth[2], orth[3], orth[4], 0.1
    W1, W2 = s * U @ V1.T, s * V2 @ U.T  # balanced: W1 W1ᵀ = W2ᵀ W2
    np.testing.assert_allclose(W1 @ W1.T, W2.T @ W2, atol=1e-15)
    for _ in range(20_000):  # full-batch GD on (1/2n) ||W2 W1 X - Y||²
        E = (X @ W1.T @ W2.T - Y) / n
        W1, W2 = W1 - 1e-3 * W2.T @ E.T @ X, W2 - 1e-3 * E.T @ (X @ W1.T)
    assert np.linalg.norm(W2 @ W1 - A) / np.linalg.norm(A) < 1e-4  # trained
    G = W1.T @ W2.T @ W2 @ W1  # J = W2 W1 at every x
    G_jac = ref_agop(lambda x: torch.as_tensor(W2) @ (torch.as_tensor(W1) @ x), X)
    np.testing.assert_allclose(G_jac, G, atol=1e-12 * np.abs(G).max())
    cmp = compare(nfm(W1), G_jac, powers=(1, 0.5))
    assert abs(1 - cmp.value["pearson"][0.5]) < 1e-6  # docs/features.md §5 target; measured 7e-11
    assert cmp.value["pearson"][1.0] < 0.99  # the power matters (measured 0.959)
    rel = np.linalg.norm(nfm(W1) - matrix_power_psd(G, 0.5)) / np.linalg.norm(nfm(W1))
    assert rel < 1e-3  # measured 1.2e-5 (reference run: 3.6e-4)


# ------------------------------------------------------------------ FACT
def tanh_mlp(seed, n):
    torch.manual_seed(seed)
    X = torch.randn(n, 10, dtype=F64)
    teacher = torch.randn(4, 10, dtype=F64) / 10**0.5
    y = torch.tanh(X @ teacher.T).sum(1)
    Ws = [
        (torch.randn(o, i, dtype=F64) / i**0.5).requires_grad_()
        for i, o in ((10, 64), (64, 64), (64, 1))
    ]
    return X, y, Ws


def forward_from(Ws, layer, h):
    for j in range(layer, len(Ws)):
        h = h @ Ws[j].T
        h = torch.tanh(h) if j < len(Ws) - 1 else h
    return h.squeeze(-1)


def objective(Ws, X, y, lam):
    return 0.5 * ((forward_from(Ws, 0, X) - y) ** 2).mean() + lam / 2 * sum(
        (W**2).sum() for W in Ws
    )


def fact_terms(Ws, X, y):
    """Per layer: (W, per-sample ∂ℓ_i/∂h, h) with ℓ_i = ½ (f(x_i) - y_i)²."""
    with torch.no_grad():
        hs = [X]
        for W in Ws[:-1]:
            hs.append(torch.tanh(hs[-1] @ W.T))
    out = []
    for layer, h in enumerate(hs):
        h = h.clone().requires_grad_()
        ell = 0.5 * (forward_from(Ws, layer, h) - y) ** 2
        (g,) = torch.autograd.grad(ell.sum(), h)  # samples do not interact
        out.append((Ws[layer].detach().numpy(), g.numpy(), h.detach().numpy()))
    return out


def test_fact_identity_holds_exactly_away_from_stationarity(one_thread):
    # WᵀW - F = Wᵀ ∇_W L / λ at any point (derivation of docs/features.md §1.4).
    lam = 1e-2
    X, y, Ws = tanh_mlp(1, 30)
    grads = torch.autograd.grad(objective(Ws, X, y, lam), Ws)
    for (W, g, h), gW in zip(fact_terms(Ws, X, y), grads, strict=True):
        lhs = nfm(W) - fact_matrix(g, h, lam)
        np.testing.assert_allclose(lhs, W.T @ gW.numpy() / lam, atol=1e-10 * np.abs(lhs).max())
        assert fact_residual(W, g, h, lam) == pytest.approx(
            np.linalg.norm(lhs) / np.linalg.norm(nfm(W)), rel=1e-12
        )


def test_e6_fact_at_a_stationary_point(one_thread):
    """E6: tanh MLP 10-64-64-1, λ = 1e-2, LBFGS to ||grad|| < 1e-7 (n = 200 teacher points)."""
    lam = 1e-2
    X, y, Ws = tanh_mlp(0, 200)
    opt = torch.optim.LBFGS(
        Ws, lr=1, max_iter=50, tolerance_grad=1e-14, tolerance_change=0, history_size=20,
        line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure():
        opt.zero_grad()
        loss = objective(Ws, X, y, lam)
        loss.backward()
        return loss

    for _ in range(80):
        opt.step(closure)
        grads = torch.autograd.grad(objective(Ws, X, y, lam), Ws)
        grad_norm = float(torch.sqrt(sum((g**2).sum() for g in grads)))
        if grad_norm < 1e-7:
            break
    assert grad_norm < 1e-7
    for W, g, h in fact_terms(Ws, X, y):
        assert fact_residual(W, g, h, lam) < 4e-6  # measured 2.6e-6, 1.8e-6, 3.0e-6
        assert 1 - rho_pearson(nfm(W), fact_matrix(g, h, lam)) < 1e-9  # measured <= 5e-12


def test_fact_conv_rows_and_n_samples():
    rng = np.random.default_rng(0)
    g, h = rng.standard_normal((12, 3)), rng.standard_normal((12, 3))
    # 12 rows = 3 images x 4 patch positions: divide by the 3 images, not the 12 rows.
    np.testing.assert_allclose(fact_matrix(g, h, 0.5, n_samples=3), -(g.T @ h) / 1.5, atol=1e-14)


def test_fact_errors():
    W, g, h = np.ones((2, 3)), np.ones((4, 3)), np.ones((4, 3))
    with pytest.raises(ShapeMismatchError, match="grad_h_loss and h must have the same shape"):
        fact_matrix(g, np.ones((4, 2)), 0.1)
    with pytest.raises(ConfigError, match="lam must be a finite number > 0"):
        fact_matrix(g, h, 0.0)
    with pytest.raises(ConfigError, match="n_samples must be a finite number > 0"):
        fact_matrix(g, h, 0.1, n_samples=0)
    with pytest.raises(ShapeMismatchError, match="h must have W's input width 3"):
        fact_residual(W, np.ones((4, 2)), np.ones((4, 2)), 0.1)
    with pytest.raises(InvalidArrayError, match="W must not be zero"):
        fact_residual(np.zeros((2, 3)), g, h, 0.1)


# ------------------------------------------------------------------ runs
def record_run(path, every=2, agop=True, agop_shape=None):
    """A bias-free tanh MLP 5-8-3 trained a few steps; its AGOPs written as Recorder(agop=True)
    would, computed here with vmap(jacrev) from the stored weights."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8, bias=False), nn.Tanh(), nn.Linear(8, 3, bias=False))
    x, y = torch.randn(20, 5), torch.randn(20, 3)
    opt = torch.optim.SGD(net.parameters(), lr=0.2)
    with Recorder(
        net, layers=["0", "2"], store=path, probe=(x, y), every=every, weights=True
    ) as rec:
        for _ in range(6):
            loss = nn.functional.mse_loss(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.step(loss=loss)
    run = probe.open_run(path)
    if agop:
        X = x.to(F64)
        W0s, W2s = run.weights("0").astype(np.float64), run.weights("2").astype(np.float64)
        group = zarr.open_group(str(path), mode="r+")
        for layer in ("0", "2"):
            G = []
            for W0, W2 in zip(torch.as_tensor(W0s), torch.as_tensor(W2s), strict=True):
                if layer == "0":
                    G.append(ref_agop(lambda v, W0=W0, W2=W2: W2 @ torch.tanh(W0 @ v), X))
                else:
                    H = torch.tanh(X @ W0.T)
                    G.append(ref_agop(lambda v, W2=W2: W2 @ v, H))
            G = np.stack(G) if agop_shape is None else np.ones(agop_shape)
            arr = group.create_array(f"layers/{layer}/agop", shape=G.shape, dtype="float64")
            arr[...] = G
    return run


def test_nfa_over_steps_matches_compare(tmp_path):
    run = record_run(tmp_path / "run.zarr")
    df = nfa_over_steps(run, "0")
    assert list(df.columns) == ["layer", "step", "measure", "power", "value", "init", "nfm_change"]
    assert len(df) == len(run.steps) * 3 * 2 and list(df["step"].unique()) == [0, 2, 4, 6]
    W, G = run.weights("0"), run.agop("0")
    for t, step in enumerate(run.steps):
        ref = compare(nfm(W[t]), G[t], M0=nfm(W[0]), G0=G[0]).to_frame()
        got = df[df["step"] == step].reset_index(drop=True)
        np.testing.assert_allclose(got[["value", "init", "nfm_change"]], ref.iloc[:, 2:], atol=0)
    first = df[df["step"] == 0]
    np.testing.assert_allclose(first["value"], first["init"], atol=0)
    np.testing.assert_allclose(first["nfm_change"], 1.0, atol=1e-12)
    # Output layer f = W2 h: J = W2, so AGOP = W2ᵀW2 = NFM exactly at power 1.
    out = nfa_over_steps(run, "2", powers=[1])
    np.testing.assert_allclose(out[out["measure"] == "pearson"]["value"], 1.0, atol=1e-6)


def test_nfa_over_steps_of_some_steps_equals_those_rows_of_the_full_table(tmp_path):
    run = record_run(tmp_path / "run.zarr")
    for sub in (False, True):
        full = nfa_over_steps(run, "0", subtract_init=sub)
        part = nfa_over_steps(run, "0", subtract_init=sub, steps=[4, 6])
        want = full[full["step"].isin([4, 6])].reset_index(drop=True)
        pd.testing.assert_frame_equal(part, want)
    assert nfa_over_steps(run, "0", steps=[]).empty
    with pytest.raises(StepNotFoundError, match="no snapshot at step 3"):
        nfa_over_steps(run, "0", steps=[3])


def test_nfa_over_steps_subtract_init_and_plot(tmp_path):
    run = record_run(tmp_path / "run.zarr")
    df = nfa_over_steps(run, "0", powers=(0.5,), subtract_init=True)
    assert df["init"].isna().all()
    assert df[df["step"] == 0]["value"].isna().all()  # dM = 0 at init
    W, G = run.weights("0"), run.agop("0")
    last = df[(df["step"] == 6) & (df["measure"] == "cosine")]["value"].item()
    ref = rho_cos(nfm(W[-1], W[0], subtract_init=True), matrix_power_psd(G[-1], 0.5))
    assert last == pytest.approx(ref, abs=1e-12)
    change = df[(df["step"] == 6) & (df["measure"] == "cosine")]["nfm_change"].item()
    assert change == pytest.approx(rho_cos(nfm(W[-1]), nfm(W[0])), abs=1e-12)  # M_t, not dM
    both = pd.concat([nfa_over_steps(run, "0"), nfa_over_steps(run, "2")])
    path = plot_nfa(both, tmp_path / "nfa.png")
    assert path.stat().st_size > 10_000


def test_nfa_over_steps_errors_and_edge_cases(tmp_path):
    no_agop = record_run(tmp_path / "a.zarr", agop=False)
    with pytest.raises(AGOPNotRecordedError, match=r"no AGOP for layer '0'.*Recorder\(.*agop=True"):
        nfa_over_steps(no_agop, "0")
    with pytest.raises(LayerNotInRunError, match="No layer 'fc'"):
        nfa_over_steps(no_agop, "fc")
    bad = record_run(tmp_path / "b.zarr", agop_shape=(4, 3, 3))
    with pytest.raises(ShapeMismatchError, match=r"AGOP of layer '0' must be \(5, 5\)"):
        nfa_over_steps(bad, "0")
    late = record_run(tmp_path / "c.zarr", every=[2, 4])
    with pytest.warns(UserWarning, match="first snapshot of '0' is step 2, not 0"):
        assert list(nfa_over_steps(late, "0")["step"].unique()) == [2, 4, 6]
    net = nn.Sequential(nn.Linear(2, 2))
    with Recorder(net, layers=["0"], store=tmp_path / "e.zarr", probe=torch.ones(3, 2),
                  weights=True, final_snapshot=False) as rec:  # fmt: skip
        rec.step()
    assert nfa_over_steps(probe.open_run(tmp_path / "e.zarr"), "0").empty
