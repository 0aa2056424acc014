"""Issue 4: the aggregator family — closed forms, properties, degenerate inputs, training."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from autobalance import methods
from autobalance.errors import AutoBalanceError, HyperparameterError
from autobalance.methods.aggregators._qp import min_norm_simplex

NEW = [
    "pcgrad",
    "mgda",
    "cagrad",
    "imtl-g",
    "nashmtl",
    "aligned-mtl",
    "config",
    "upgrad",
    "gradvac",
    "dcgd",
]
# IMTL-G only when D Uᵀ is non-singular (test_imtl_g_permutation_invariance_full_rank)
PERM_INVARIANT = ["mgda", "cagrad", "nashmtl", "aligned-mtl", "config", "upgrad"]
# Nash-MTL's default is homogeneous of degree 0 (see test_nashmtl_scale)
HOMOGENEOUS = [*(n for n in PERM_INVARIANT if n != "nashmtl"), "imtl-g", "pcgrad", "dcgd"]


def agg(name: str, **kw):
    return methods.aggregator(name, **kw)


def T(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def close(a, b, tol: float = 1e-9) -> None:
    torch.testing.assert_close(
        a, T(b) if not isinstance(b, torch.Tensor) else b, rtol=tol, atol=tol
    )


PROP = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROP_SCALE = settings(max_examples=15, deadline=None)


# ------------------------------------------------------------------------------ closed forms
def test_pcgrad_closed_form() -> None:
    # g1·g2 = -1: g1' = g1 + g2/2 = (.5, .5); g2' = g2 + g1 = (0, 1)
    close(agg("pcgrad", shuffle=False)(T([[1, 0], [-1, 1]])), [0.5, 1.5])
    close(agg("pcgrad")(T([[1, 0], [0, 1]])), [1.0, 1.0])  # no conflict: the sum


def test_pcgrad_projects_on_the_original_gradients() -> None:
    # Algorithm 1 projects g_i^PC on the normal plane of the ORIGINAL g_j.  Order j = 0, 1, 2:
    # g0 = (1,0): ·g1 = -1 → (1,0) + (-1,1)/2 = (.5,.5); ·g2 = -.5 → (.5,.5) - .5·(0,1) = (.5,0)
    # g1 = (-1,1): ·g0 = -1 → (0,1); ·g2 = -1 → (0,1) + (0,-1) = (0,0)
    # g2 = (0,-1): ·g0 = 0; ·g1 = -1 → (0,-1) + (-1,1)/2 = (-.5,-.5)
    # sum (0, -.5).  (Projecting on the already-projected rows would give (.5, -1).)
    a = agg("pcgrad", shuffle=False)
    G = T([[1, 0], [-1, 1], [0, -1]])
    close(a.project(G), [[0.5, 0.0], [0.0, 0.0], [-0.5, -0.5]])
    close(a(G), [0.0, -0.5])


def test_mgda_closed_form() -> None:
    # min_t ‖t(1,0) + (1-t)(0,2)‖² = t² + 4(1-t)² at t = 4/5
    d, w = agg("mgda").aggregate(T([[1, 0], [0, 2]]))
    close(d, [0.8, 0.4])
    assert w == pytest.approx([0.8, 0.2])
    # hull of e1, e2, (1,1): min-norm point (1/2, 1/2)
    close(agg("mgda")(T([[1, 0], [0, 1], [1, 1]])), [0.5, 0.5])
    # l2: unit rows → α = (1/2, 1/2) applied to the raw rows
    close(agg("mgda", normalize="l2")(T([[1, 0], [0, 2]])), [0.5, 1.0])
    # loss: ĝ = (1/2, 0), (0, 2/4) → α = 1/2
    close(agg("mgda", normalize="loss")(T([[1, 0], [0, 2]]), losses=T([2, 4])), [0.5, 1.0])
    with pytest.raises(HyperparameterError, match="loss values"):
        agg("mgda", normalize="loss")(T([[1, 0], [0, 2]]))
    with pytest.raises(HyperparameterError, match="normalize"):
        agg("mgda", normalize="l1")


def test_cagrad_closed_form() -> None:
    # e1, e2: by symmetry w = (1/2,1/2), g_w = g0 = (1/2,1/2), d = (1 + c) g0
    close(agg("cagrad", rescale=0)(T([[1, 0], [0, 1]])), [0.75, 0.75])
    close(agg("cagrad")(T([[1, 0], [0, 1]])), [0.6, 0.6])  # / (1 + c²)
    close(agg("cagrad", c=0.0, rescale=0)(T([[1, 0], [0, 3]])), [0.5, 1.5])  # c = 0: mean
    with pytest.raises(HyperparameterError):
        agg("cagrad", rescale=3)


def test_cagrad_zero_in_hull_gives_g0() -> None:
    # rows e4, e4, e3, -2e4: 0 is in the hull, so g_w* = 0 and d = g0 = (0, 0, 1/4, 0) — which
    # is primal optimal (min_i g_i·d = 0, the best possible).  Regression: a round-off sized g_w*
    # (‖g_w*‖ ≈ 1e-16) used to be normalised, adding a noise direction of length r = c‖g0‖ (and
    # breaking permutation invariance).
    G = T([[0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 1, 0], [0, 0, 0, -2]])
    for perm in ([0, 1, 2, 3], [0, 1, 3, 2], [3, 2, 1, 0]):
        close(agg("cagrad", rescale=0)(G[perm]), [0.0, 0.0, 0.25, 0.0])
    close(agg("cagrad")(G), [0.0, 0.0, 0.25 / 1.25, 0.0])


def test_imtl_g_closed_form() -> None:
    # D = (1,-2), U = (1,-1): α2 = g1Uᵀ/(DUᵀ) = 1/3, α1 = 2/3
    d, w = agg("imtl-g").aggregate(T([[1, 0], [0, 2]]))
    close(d, [2 / 3, 2 / 3])
    assert w == pytest.approx([2 / 3, 1 / 3])


def test_nashmtl_closed_form() -> None:
    # M = diag(1, 4): Mα = 1/α gives α_i = 1/√M_ii = (1, 1/2), d = (1, 1) (Theorem 5.1, and the
    # authors' code, whose constraints multiply the Frobenius normalisation back)
    d, w = agg("nashmtl").aggregate(T([[1, 0], [0, 2]]))
    close(d, [1.0, 1.0])
    assert w == pytest.approx([1.0, 0.5])
    # the variant normalize_gram=True solves (M/‖M‖_F)α = 1/α: α scaled by ‖M‖_F^{1/2} = 17^{1/4}
    close(agg("nashmtl", normalize_gram=True)(T([[1, 0], [0, 2]])), [17**0.25, 17**0.25])


@PROP_SCALE
@given(st.floats(1e-12, 1e12))
def test_nashmtl_scale(c: float) -> None:
    # default: d(cG) = d(G) and ‖d‖² = αᵀMα = Σ_i α_i (Mα)_i = K, at any gradient scale
    G = T([[1, 0, 1], [0, 2, -1], [1, 1, 3]])
    a = agg("nashmtl")
    d = a(c * G)
    assert a.last_converged
    close(d, agg("nashmtl")(G), tol=1e-8)
    assert float(d @ d) == pytest.approx(3.0, rel=1e-8)
    # normalize_gram=True: homogeneous of degree 1
    close(
        agg("nashmtl", normalize_gram=True)(c * G),
        c * agg("nashmtl", normalize_gram=True)(G),
        tol=1e-8 * c,
    )


def test_aligned_mtl_closed_form() -> None:
    # M = diag(1, 4): B = diag(1, 1/2), d = B1 · G = (1, 1)
    close(agg("aligned-mtl")(T([[1, 0], [0, 2]])), [1.0, 1.0])
    close(agg("aligned-mtl", scale="rmse")(T([[1, 0], [0, 2]])), [2.5**0.5, 2.5**0.5])


def test_config_closed_form() -> None:
    # U = I, d_u = (1,1), length = Σ g_i·d̂ = 3/√2 → d = (3/2, 3/2)
    close(agg("config")(T([[1, 0], [0, 2]])), [1.5, 1.5])
    # u1 = (1,0), u2 = (0.6, 0.8): d_u solves d·u_i = 1 → (1, 1/2); d̂=(2,1)/√5
    d = agg("config")(T([[2, 0], [3, 4]]))
    close(d, (4 / math.sqrt(5) + 10 / math.sqrt(5)) * T([2, 1]) / math.sqrt(5))


def test_upgrad_closed_form() -> None:
    # cone {v_x ≥ 0, v_y ≥ v_x}: π(1,0) = (.5,.5), π(-1,1) = (0,1); mean (.25,.75)
    close(agg("upgrad")(T([[1, 0], [-1, 1]])), [0.25, 0.75])


def test_gradvac_closed_form() -> None:
    # φ = -1/√2 < φ̂ = 0: g1' = g1 + (1/√2)/√2 g2 = (.5,.5); g2' = g2 + g1 = (0,1)
    a = agg("gradvac", shuffle=False)
    close(a(T([[1, 0], [-1, 1]])), [0.5, 1.5])
    assert a.targets[0][1] == pytest.approx(-0.01 / math.sqrt(2))
    assert a.targets[1][0] == pytest.approx(-0.01 / math.sqrt(2))


def test_dcgd_closed_forms() -> None:
    G = T([[1, 0], [-2, 1]])  # g = (-1, 1) conflicts with g_r
    close(agg("dcgd", variant="proj")(G), [0.0, 1.0])  # g_b − (g_r·g_b/‖g_r‖²) g_r
    close(agg("dcgd", variant="average")(G), [0.1, 0.7])  # mean of (0,1) and (.2,.4)
    close(agg("dcgd")(T([[2, 0], [0, 1]])), [1.5, 1.5])  # c = (1,1), g·c/‖c‖² = 3/2
    close(agg("dcgd", variant="proj")(T([[2, 0], [0, 1]])), [2.0, 1.0])  # inside: g
    # K = 3, num_pde = 2: g_r = (1,0)+(1,0)... grouped sums
    close(agg("dcgd", variant="proj", num_pde=2)(T([[1, 0], [0, 0], [-2, 1]])), [0.0, 1.0])
    with pytest.raises(HyperparameterError, match="boundary group"):
        agg("dcgd", num_pde=2)(T([[1, 0], [0, 1]]))


# ------------------------------------------------------------------------------ properties
@st.composite
def matrices(draw, full_rank: bool = False):
    K = draw(st.integers(2, 4))
    P = draw(st.integers(K, 6))
    vals = draw(
        st.lists(st.floats(-10, 10, allow_nan=False, width=32), min_size=K * P, max_size=K * P)
    )
    G = T(vals).reshape(K, P)
    norms = G.norm(dim=1)
    assume(bool((norms > 1e-3).all()))
    if full_rank:
        U = G / norms[:, None]
        assume(float(torch.linalg.svdvals(U)[-1]) > 1e-2)
    return G


@PROP
@given(matrices())
def test_upgrad_and_pcgrad_do_not_conflict(G: torch.Tensor) -> None:
    scale = float(G.norm()) ** 2
    assert float((G @ agg("upgrad")(G)).min()) >= -1e-9 * scale
    assert float((G @ agg("upgrad", normalize_rows=True)(G)).min()) >= -1e-9 * scale
    if G.shape[0] == 2:
        assert float((G @ agg("pcgrad")(G)).min()) >= -1e-9 * scale


@PROP
@given(matrices())
def test_pcgrad_guarantees_for_any_k(G: torch.Tensor) -> None:
    a = agg("pcgrad", seed=3)
    Gp = a.project(G)
    scale = float(G.norm()) ** 2
    assert bool((Gp.norm(dim=1) <= G.norm(dim=1) * (1 + 1e-12)).all())
    for i, order in enumerate(a.last_orders):
        assert float(Gp[i] @ G[order[-1]]) >= -1e-9 * scale  # last visited: no conflict
    if bool(((G @ G.T) >= 0).all()):
        close(Gp.sum(0), G.sum(0))


def _pg_min_norm(M: np.ndarray, iters: int = 20000) -> float:
    """Brute force: projected gradient on the simplex, run to convergence."""
    K = M.shape[0]
    a = np.full(K, 1.0 / K)
    step = 1.0 / max(np.linalg.eigvalsh(M).max(), 1e-300)
    for _ in range(iters):
        v = a - step * (M @ a)
        u = np.sort(v)[::-1]
        css = np.cumsum(u) - 1
        rho = np.nonzero(u - css / np.arange(1, K + 1) > 0)[0][-1]
        a = np.maximum(v - css[rho] / (rho + 1), 0)
    return float(a @ M @ a)


@settings(max_examples=15, deadline=None)
@given(matrices())
def test_mgda_is_the_min_norm_point(G: torch.Tensor) -> None:
    d = agg("mgda")(G)
    M = (G @ G.T).numpy()
    best = _pg_min_norm(M)
    assert float(d @ d) <= best * (1 + 1e-9) + 1e-12 * np.trace(M)
    # optimality (KKT): g_k·d ≥ ‖d‖² for every k
    assert float((G @ d).min()) >= float(d @ d) - 1e-9 * np.trace(M)


def test_mgda_matches_dense_simplex_grid_k3() -> None:
    rng = np.random.default_rng(0)
    G = rng.normal(size=(3, 2))
    M = G @ G.T
    t = np.linspace(0, 1, 401)
    a1, a2 = np.meshgrid(t, t)
    ok = a1 + a2 <= 1
    A = np.stack([a1[ok], a2[ok], 1 - a1[ok] - a2[ok]], 1)
    grid = np.einsum("ni,ij,nj->n", A, M, A).min()
    alpha = min_norm_simplex(M)
    assert alpha @ M @ alpha <= grid + 1e-12
    assert alpha @ M @ alpha >= grid - 1e-3 * np.trace(M)


@PROP
@given(matrices(full_rank=True))
def test_imtl_g_equal_projections_and_config_equal_cosines(G: torch.Tensor) -> None:
    U = G / G.norm(dim=1, keepdim=True)
    p = U @ agg("imtl-g")(G)
    close(p, p.mean().expand_as(p), tol=1e-6 * float(p.abs().max()))
    d = agg("config")(G)
    cos = U @ d / d.norm()
    assert float(cos.min()) > 0
    close(cos, cos.mean().expand_as(cos), tol=1e-7)


@PROP
@given(matrices(full_rank=True))
def test_aligned_mtl_norm_and_nash_equation(G: torch.Tensor) -> None:
    lam = torch.linalg.eigvalsh(G @ G.T)
    d = agg("aligned-mtl")(G)
    assert float(d @ d) == pytest.approx(G.shape[0] * float(lam[0]), rel=1e-6)  # ĜĜᵀ = λ_min I
    a = agg("nashmtl", normalize_gram=False)
    alpha = T(a.aggregate(G)[1])
    assert a.last_converged and bool((alpha > 0).all()), G.tolist()
    close((G @ G.T) @ alpha, 1 / alpha, tol=1e-7)


@PROP
@given(matrices(), st.integers(0, 2**31 - 1))
def test_cagrad_solves_the_primal(G: torch.Tensor, seed: int) -> None:
    c = 0.5
    d = agg("cagrad", rescale=0, c=c)(G)
    g0 = G.mean(0)
    r = c * float(g0.norm())
    assert float((d - g0).norm()) <= r * (1 + 1e-9) + 1e-12
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(2000, G.shape[1], generator=gen, dtype=G.dtype)
    v = (
        g0
        + r
        * v
        / v.norm(dim=1, keepdim=True)
        * torch.rand(2000, 1, generator=gen, dtype=G.dtype) ** 0.1
    )
    best_sampled = float((v @ G.T).min(dim=1).values.max())
    assert float((G @ d).min()) >= best_sampled - 1e-9 * float(G.norm()) ** 2


@PROP
@given(matrices(), st.permutations(range(4)))
def test_permutation_invariance(G: torch.Tensor, perm: list[int]) -> None:
    perm = [p for p in perm if p < G.shape[0]]
    for name in PERM_INVARIANT:
        close(agg(name)(G[perm]), agg(name)(G), tol=1e-6 * float(G.norm()))


@PROP
@given(matrices(full_rank=True), st.permutations(range(4)))
def test_imtl_g_permutation_invariance_full_rank(G: torch.Tensor, perm: list[int]) -> None:
    perm = [p for p in perm if p < G.shape[0]]
    close(agg("imtl-g")(G[perm]), agg("imtl-g")(G), tol=1e-6 * float(G.norm()))


@PROP
@given(matrices(), st.floats(0.01, 100))
def test_homogeneity(G: torch.Tensor, c: float) -> None:
    for name in HOMOGENEOUS:
        close(agg(name)(c * G), c * agg(name)(G), tol=1e-6 * c * float(G.norm()))


# ------------------------------------------------------------------------------ degenerate
DEGENERATE = {
    "zero": T([[0, 0, 0], [0, 0, 0]]),
    "zero3": T([[0, 0, 0]] * 3),
    "parallel": T([[1, 2, 3], [2, 4, 6]]),
    "anti-parallel": T([[1, 2, 3], [-2, -4, -6]]),
    "k>p": T([[1, 0], [0, 1], [1, 1], [-1, 2]]),
    "zero-row": T([[1, 2, 0], [0, 0, 0], [0, 1, 1]]),
}


@pytest.mark.parametrize("case", list(DEGENERATE))
@pytest.mark.parametrize("name", NEW)
def test_degenerate_inputs_give_finite_directions(name: str, case: str) -> None:
    G = DEGENERATE[case]
    d = agg(name)(G, losses=torch.ones(G.shape[0], dtype=G.dtype))
    assert d.shape == (G.shape[1],) and bool(torch.isfinite(d).all())
    d32 = agg(name)(G.float())
    assert d32.dtype == torch.float32 and bool(torch.isfinite(d32).all())


def _ill_conditioned() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    b = torch.randn(200, dtype=torch.float64, generator=g)
    n = torch.randn(3, 200, dtype=torch.float64, generator=g)
    scale = T([1.0, 10.0, 100.0])
    return {
        # two rows nearly parallel to b (cosine ≈ 1 − 1e-9): Gram eigenvalue ratio ≈ 1e-9
        "near-parallel": torch.stack([b + 1e-4 * n[0], 3 * b + 1e-4 * n[1], -0.5 * b + n[2]]),
        # K > P: the Gram matrix has exact rank 3 < 5
        "k>p": torch.randn(5, 3, dtype=torch.float64, generator=g) * scale,
    }


@pytest.mark.parametrize("case", ["near-parallel", "k>p"])
@pytest.mark.parametrize("name", ["config", "aligned-mtl", "nashmtl", "upgrad", "mgda", "cagrad"])
def test_float32_input_gives_the_float64_answer(name: str, case: str) -> None:
    """A float32 G must give the direction computed in float64 from the same (rounded) rows.

    Regression: the Gram matrix used to be formed in G's dtype; in float32 its round-off
    (≈ 1e-7·‖g_i‖‖g_j‖) swamps the small eigenvalues of these systems, and ConFIG, IMTL-G and
    Aligned-MTL inverted that noise (relative errors of order 1: Aligned-MTL's λ_min became noise
    and the step collapsed).
    """
    G32 = _ill_conditioned()[case].float()
    d32 = agg(name)(G32)
    d64 = agg(name)(G32.double())
    assert d32.dtype == torch.float32
    assert float((d32.double() - d64).norm()) <= 1e-3 * float(d64.norm())


def test_float32_imtl_g_near_parallel() -> None:
    G32 = _ill_conditioned()["near-parallel"].float()
    d64 = agg("imtl-g")(G32.double())
    assert float((agg("imtl-g")(G32).double() - d64).norm()) <= 1e-3 * float(d64.norm())


def test_bad_input_raises_library_errors() -> None:
    for name in NEW:
        with pytest.raises(AutoBalanceError):
            agg(name)(torch.ones(3))
        with pytest.raises(AutoBalanceError):
            agg(name)(T([[1, float("nan")], [0, 1]]))
    with pytest.raises(HyperparameterError):
        agg("gradvac", beta=0)
    for bad in (0, 1.5, "2", True, float("inf")):
        with pytest.raises(HyperparameterError, match="update_every"):
            agg("nashmtl", update_every=bad)
        with pytest.raises(HyperparameterError, match="num_pde"):
            agg("dcgd", num_pde=bad)
    with pytest.raises(HyperparameterError, match="max_iter"):
        agg("nashmtl", max_iter=0)


# ------------------------------------------------------------------------------ training
def _helmholtz(seed: int = 0):
    from autobalance import nets, problems

    torch.manual_seed(seed)
    problem = problems.create("helmholtz", n_residual=128, n_boundary=64)
    model = nets.create("mlp", 2, 1, width=20, depth=2)
    return problem, model


def _run(method, problem, model, gen, steps: int) -> None:
    for _ in range(steps):
        info = method.step(problem.losses(model, problem.sample(gen, "cpu", torch.float32)))
        assert all(math.isfinite(s.value) for s in info.losses.values())


@pytest.mark.parametrize("name", NEW)
def test_trains_30_steps_on_helmholtz(name: str) -> None:
    torch.set_num_threads(1)
    problem, model = _helmholtz()
    m = methods.create(name, model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    _run(m, problem, model, gen, 30)
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_nashmtl_update_every_reuses_alpha() -> None:
    a = agg("nashmtl", update_every=2)
    w1 = a.aggregate(T([[1, 0], [0, 2]]))[1]
    assert list(a.aggregate(T([[3, 0], [0, 1]]))[1]) == list(w1)
    assert list(a.aggregate(T([[3, 0], [0, 1]]))[1]) != list(w1)


@pytest.mark.parametrize("name", ["pcgrad", "gradvac", "nashmtl"])
def test_checkpoint_round_trip(name: str) -> None:
    torch.set_num_threads(1)
    problem, model = _helmholtz()
    m = (
        methods.create(name, model.parameters(), lr=1e-3, update_every=2)
        if name == "nashmtl"
        else methods.create(name, model.parameters(), lr=1e-3)
    )
    gen = torch.Generator().manual_seed(0)
    _run(m, problem, model, gen, 3)
    buf = io.BytesIO()
    torch.save({"m": m.state_dict(), "net": model.state_dict(), "gen": gen.get_state()}, buf)
    buf.seek(0)
    ck = torch.load(buf, weights_only=True)
    _run(m, problem, model, gen, 3)
    expected = [p.detach().clone() for p in model.parameters()]
    _, model2 = _helmholtz(seed=1)
    model2.load_state_dict(ck["net"])
    m2 = (
        methods.create(name, model2.parameters(), lr=1e-3, update_every=2)
        if name == "nashmtl"
        else methods.create(name, model2.parameters(), lr=1e-3)
    )
    m2.load_state_dict(ck["m"])
    gen2 = torch.Generator()
    gen2.set_state(ck["gen"])
    _run(m2, problem, model2, gen2, 3)
    for p, q in zip(model2.parameters(), expected, strict=True):
        torch.testing.assert_close(p.detach(), q, rtol=0, atol=0)


def test_imtl_g_parallel_gradients_give_the_first_gradient_at_any_scale() -> None:
    """Equal unit gradients: D Uᵀ is round-off only, so α = (1, 0) (minimum-norm correction)."""
    G = T([[0.0, 3.0], [0.0, 1.0]])
    for c in (1e-8, 0.01, 1.0, 1e8):
        close(agg("imtl-g")(c * G), c * G[0], tol=1e-12 * c)


def test_config_anti_parallel_gradients_give_zero_at_any_scale() -> None:
    """u_2 = −u_1: U⁺1 = 0 exactly, so no direction is conflict-free: d = 0, never noise."""
    G = T([[0.0, -3.25], [0.0, 1.0]])
    for c in (1e-8, 0.01171875, 1.0, 1e8):
        close(agg("config")(c * G), [0.0, 0.0], tol=1e-12 * c)
