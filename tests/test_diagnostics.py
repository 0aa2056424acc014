"""Tests of autobalance.diagnostics: HVPs, Lanczos/SLQ, preconditioners, quadratic, balance."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call, hessian

from autobalance.diagnostics.balance import BalanceLogger, balance_stats, stats_from_step_info
from autobalance.diagnostics.hessian import (
    HessianOperator,
    HessianSizeError,
    extreme_eigenvalues,
    full_hessian,
    hessian_vector_product,
    lanczos,
    named_loss,
    spectral_density,
)
from autobalance.diagnostics.preconditioning import (
    PreconditionedOperator,
    adam_preconditioner,
    autobalance_preconditioner,
    curvature_measures,
    effective_condition_number,
    mass_condition_number,
    median_spread,
    preconditioned_hessian,
    summarize_spectrum,
)
from autobalance.diagnostics.quadratic import (
    QuadraticModel,
    linear_iterations,
    make_quadratic,
    run_linear,
)
from autobalance.errors import AutoBalanceError, LossNameError, LossValueError
from autobalance.nets.mlp import MLP
from autobalance.optim.autobalance import AutoBalance


def _tiny() -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = MLP(2, 1, width=4, depth=2).double()
    for p in model.parameters():  # nonzero biases: a generic point
        p.data.add_(0.1 * torch.randn_like(p))
    x = torch.randn(16, 2, dtype=torch.float64)
    return model, x


def _loss(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return (model(x).pow(2) + model(x).sin()).mean()


def _reference_hessian(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    names = [n for n, _ in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    shapes = [p.shape for p in model.parameters()]

    def f(vec: torch.Tensor) -> torch.Tensor:
        pieces, i = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            k = math.prod(shape)
            pieces[name] = vec[i : i + k].reshape(shape)
            i += k
        out = functional_call(model, pieces, (x,))
        return (out.pow(2) + out.sin()).mean()

    return hessian(f)(flat)


def test_hvp_and_full_hessian_match_torch_func() -> None:
    model, x = _tiny()
    ref = _reference_hessian(model, x)
    params = list(model.parameters())
    v = torch.randn(ref.shape[0], dtype=torch.float64)
    hv = hessian_vector_product(lambda: _loss(model, x), params, v)
    torch.testing.assert_close(hv, ref @ v, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(full_hessian(lambda: _loss(model, x), params), ref)


def test_lanczos_extreme_eigenvalues_match_dense_spectrum() -> None:
    model, x = _tiny()
    op = HessianOperator(lambda: _loss(model, x), list(model.parameters()))
    exact = torch.linalg.eigvalsh(op.dense())
    gen = torch.Generator().manual_seed(0)
    # Full Krylov space with full reorthogonalisation: exact up to rounding (1e-8 of ‖H‖).
    lo, hi = extreme_eigenvalues(op, op.dim, num_iters=op.dim, k=2, generator=gen)
    scale = float(exact.abs().max())
    assert torch.allclose(hi, exact[-2:], atol=1e-8 * scale)
    assert torch.allclose(lo, exact[:2], atol=1e-8 * scale)


def test_lanczos_partial_converges_on_the_extremes() -> None:
    # Known spectrum with separated ends: 30 of 200 steps give both ends to 1e-6 (relative).
    gen = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(200, 200, generator=gen, dtype=torch.float64))
    eigs = torch.cat([torch.tensor([-5.0]), torch.linspace(0, 1, 198), torch.tensor([10.0])])
    mat = (q * eigs) @ q.T
    result = lanczos(lambda v: mat @ v, 200, 30, generator=gen, keep_basis=True)
    assert result.basis is not None
    ortho = result.basis.T @ result.basis
    assert torch.allclose(ortho, torch.eye(ortho.shape[0], dtype=torch.float64), atol=1e-10)
    assert abs(result.ritz_values[-1] - 10.0) < 1e-5
    assert abs(result.ritz_values[0] + 5.0) < 1e-5


def test_slq_density_is_normalised_and_has_the_right_mean() -> None:
    gen = torch.Generator().manual_seed(2)
    eigs = torch.linspace(1, 3, 100, dtype=torch.float64)
    density = spectral_density(lambda v: eigs * v, 100, num_iters=40, num_probes=8, generator=gen)
    step = float(density.grid[1] - density.grid[0])
    assert abs(float(density.density.sum()) * step - 1.0) < 1e-3
    mean = float((density.nodes * density.weights).sum(dim=1).mean())
    assert abs(mean - 2.0) < 0.1  # trace/n, estimated from 8 probes


def test_bad_input_messages() -> None:
    model, x = _tiny()
    with pytest.raises(HessianSizeError, match="lanczos"):
        full_hessian(lambda: _loss(model, x), list(model.parameters()), max_params=10)
    fn = named_loss(lambda: {"residual": _loss(model, x), "boundary": _loss(model, x)}, "bc")
    with pytest.raises(LossNameError, match="'residual', 'boundary'"):
        fn()


def test_quadratic_matrices_match_the_2x2_hand_derivation() -> None:
    # A = [[1, 1], [0, 1]], AᵀA = [[1, 1], [1, 2]], w0 = (1, 1): ∇L1 = (1, 1), ∇L2 = (2, 3),
    # D = (3, 4): M_adam = [[2/3, 1/3], [1/4, 3/4]], M_ab = I + diag(1/2, 1/3)·AᵀA.
    a = torch.tensor([[1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    model = QuadraticModel(a=a, w0=torch.ones(2, dtype=torch.float64), c=0.0, kind="rotated")
    its = linear_iterations(model, eps=0.0)
    m_adam = torch.tensor([[2 / 3, 1 / 3], [1 / 4, 3 / 4]], dtype=torch.float64)
    m_ab = torch.tensor([[3 / 2, 1 / 2], [1 / 3, 5 / 3]], dtype=torch.float64)
    torch.testing.assert_close(its["adam"].matrix, m_adam)
    torch.testing.assert_close(its["autobalance"].matrix, m_ab)
    for name in ("adam", "autobalance"):  # the symmetric form has M's (real) eigenvalues
        direct = torch.linalg.eigvals(its[name].matrix).real.sort().values
        torch.testing.assert_close(its[name].eigenvalues, direct)
    # Best step: spectral radius of I − η*M equals (κ−1)/(κ+1); the iteration converges.
    it = its["autobalance"]
    radius = torch.linalg.eigvals(torch.eye(2) - it.best_lr * it.matrix).abs().max()
    assert abs(float(radius) - it.rate) < 1e-12
    assert run_linear(model, it.matrix, it.best_lr, 200)[-1] < 1e-20
    assert run_linear(model, it.matrix, 1.01 * it.max_stable_lr, 2000)[-1] > 1.0


def test_quadratic_diagonal_case_is_a_tie() -> None:
    # With V = I, M_adam = diag(1/|w0|) and M_ab = 2·diag(1/|w0|) (eps → 0): equal κ.
    its = linear_iterations(make_quadratic(6, 2.0, kind="diagonal", seed=3), eps=0.0)
    assert its["adam"].kappa == pytest.approx(its["autobalance"].kappa, rel=1e-9)


def test_adam_preconditioner_matches_torch_adam() -> None:
    model, x = _tiny()
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=1e-2, betas=(0.8, 0.9), eps=1e-6)
    v = [torch.zeros_like(p) for p in params]
    t = 3
    for _ in range(t):
        opt.zero_grad()
        _loss(model, x).backward()
        for vi, p in zip(v, params, strict=True):
            vi.mul_(0.9).addcmul_(p.grad, p.grad, value=0.1)
        before = [p.detach().clone() for p in params]
        opt.step()
    expected = torch.cat([(vi / (1 - 0.9**t)).sqrt().reshape(-1) + 1e-6 for vi in v])
    pre = adam_preconditioner(opt, params)
    torch.testing.assert_close(pre, expected)
    # The last step moved the parameters by lr · m̂ / P.
    m_hat = torch.cat([opt.state[p]["exp_avg"].reshape(-1) / (1 - 0.8**t) for p in params])
    moved = torch.cat([(b - p.detach()).reshape(-1) for b, p in zip(before, params, strict=True)])
    torch.testing.assert_close(moved, 1e-2 * m_hat / pre)


def test_autobalance_preconditioner_per_loss() -> None:
    model, x = _tiny()
    params = list(model.parameters())
    ab = AutoBalance(params, base="adam", lr=1e-3, eps=1e-7)
    losses = {"a": _loss(model, x), "b": 10 * model(x).mean() ** 2}
    grads = {k: torch.autograd.grad(v, params, retain_graph=True) for k, v in losses.items()}
    ab.step(losses)
    for name in ("a", "b"):  # after one step v̂_k = g_k², so P_k = |g_k| + eps
        expected = torch.cat([g.abs().reshape(-1) for g in grads[name]]) + 1e-7
        torch.testing.assert_close(autobalance_preconditioner(ab, name, params), expected)
    with pytest.raises(LossNameError, match="'a', 'b'"):
        autobalance_preconditioner(ab, "c", params)
    with pytest.raises(AutoBalanceError, match="not taken a step"):
        autobalance_preconditioner(AutoBalance(params, base="adam"), "a", params)


def test_preconditioned_hessian_and_summary() -> None:
    h = torch.tensor([[4.0, 2.0], [2.0, 9.0]], dtype=torch.float64)
    p = torch.tensor([4.0, 9.0], dtype=torch.float64)
    ph = preconditioned_hessian(h, p)
    torch.testing.assert_close(ph, torch.tensor([[1.0, 1 / 3], [1 / 3, 1.0]], dtype=torch.float64))
    s = summarize_spectrum(torch.tensor([-1.0, 1e-9, 0.5, 2.0, 4.0]), rel_threshold=1e-3)
    assert s.kappa_eff == pytest.approx(8.0)
    assert s.negative_mass == pytest.approx(1.0 / 7.5, rel=1e-6)
    assert s.frac_below_threshold == pytest.approx(0.4)


def test_balance_stats_by_hand() -> None:
    grads = {"r": torch.tensor([3.0, 4.0]), "b": torch.tensor([-8.0, 6.0])}
    updates = {"r": torch.tensor([1.0, 0.0]), "b": torch.tensor([1.0, 1.0])}
    s = balance_stats(grads, updates)
    assert s["r_grad_norm"] == pytest.approx(5.0)
    assert s["grad_ratio_r/b"] == pytest.approx(0.5)
    assert s["grad_spread"] == pytest.approx(2.0)
    assert s["grad_cos_r/b"] == pytest.approx(0.0)
    assert s["update_ratio_r/b"] == pytest.approx(1 / math.sqrt(2))
    assert s["update_cos_r/b"] == pytest.approx(1 / math.sqrt(2))


def test_balance_logger_reads_step_info() -> None:
    model, x = _tiny()
    ab = AutoBalance(list(model.parameters()), base="adam", lr=1e-3)
    logger = BalanceLogger(every=2)
    for _ in range(4):
        logger(ab.step({"r": _loss(model, x), "b": model(x).mean() ** 2}))
    assert [r["step"] for r in logger.rows] == [1.0, 2.0, 4.0]
    row = logger.rows[0]
    # Step 1: u_k = lr·g_k/(|g_k|+eps), so both update norms are ≈ lr·sqrt(n).
    assert row["update_ratio_r/b"] == pytest.approx(1.0, rel=1e-3)
    assert -1.0 <= row["grad_cos_r/b"] <= 1.0


# -- curvature measures that do not saturate ----------------------------------------------------


def test_curvature_measures_closed_form() -> None:
    # Positive eigenvalues, largest first: 10, 6, 3, 1, 1e-10 (positive mass 20 + 1e-10);
    # cumulative shares 0.5, 0.8, 0.95, ≈1, 1.  Negative: −2, −1e-9.
    eigs = torch.tensor([-2.0, -1e-9, 0.0, 1e-10, 1.0, 3.0, 6.0, 10.0], dtype=torch.float64)
    m = curvature_measures(eigs, thresholds=(1e-2, 1e-12), fractions=(0.6, 0.9, 0.99))
    assert m["kappa_mass@0.6"] == pytest.approx(10 / 6)  # 0.8 ≥ 0.6 first at μ = 6
    assert m["kappa_mass@0.9"] == pytest.approx(10 / 3)  # 0.95 ≥ 0.9 first at μ = 3
    assert m["kappa_mass@0.99"] == pytest.approx(10.0)  # ≈1 ≥ 0.99 first at μ = 1
    assert m["kappa_eff@0.01"] == pytest.approx(10.0)  # min{λ > 0.1} = 1
    assert m["kappa_eff@1e-12"] == pytest.approx(1e11)  # min{λ > 1e-11} = 1e-10
    assert m["median_spread"] == pytest.approx(10 / 3)  # median of (1e-10, 1, 3, 6, 10)
    assert m["negative_mass"] == pytest.approx((2 + 1e-9) / (22 + 1e-9 + 1e-10))
    assert m["frac_below_threshold"] == pytest.approx(4 / 8)  # at τ = 1e-6: ≤ 1e-5
    assert mass_condition_number(-eigs.abs(), 0.9) != mass_condition_number(-eigs.abs(), 0.9)


def test_mass_condition_number_ignores_the_null_space_where_kappa_eff_saturates() -> None:
    # A continuous spectrum 1 … 1e-8 (ratio 10^-0.01): κ_eff(τ) ≈ 1/τ for every τ tried.
    base = torch.logspace(0, -8, 801, dtype=torch.float64)
    for tau in (1e-2, 1e-4, 1e-6):
        assert 0.97 / tau <= effective_condition_number(base, tau) <= 1 / tau
    # κ_mass: scale-free, unchanged by 2000 round-off eigenvalues of either sign (≤ 1e-14).
    noise = 1e-14 * torch.randn(2000, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    for q in (0.9, 0.99):
        ref = mass_condition_number(base, q)
        assert 1 < ref < 1e3  # carried by the top few decades, far below 1/τ
        assert mass_condition_number(7.0 * base, q) == pytest.approx(ref)
        assert mass_condition_number(torch.cat([base, noise]), q) == pytest.approx(ref)
    # … whereas the median spread measures the null space: it explodes.
    assert median_spread(torch.cat([base, noise])) > 1e10


def test_weighted_measures_match_dense_and_slq() -> None:
    eigs = torch.tensor([-0.5, 0.01, 0.2, 1.0, 4.0], dtype=torch.float64)
    dense = curvature_measures(eigs)
    # Uniform weights change nothing; a weight of 2 equals a duplicated eigenvalue.
    assert curvature_measures(eigs, torch.full((5,), 0.2)) == pytest.approx(dense)
    dup = torch.cat([eigs, eigs[2:3]])
    w = torch.tensor([1.0, 1.0, 2.0, 1.0, 1.0], dtype=torch.float64)
    for key in ("kappa_mass@0.9", "kappa_mass@0.99", "median_spread", "negative_mass"):
        assert curvature_measures(eigs, w)[key] == pytest.approx(curvature_measures(dup)[key])
    # Full Lanczos from q = 1/sqrt(n) on diag(eigs): Ritz values = eigs, weights τ² = 1/n.
    res = lanczos(lambda v: eigs * v, 5, 5, start=torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(res.ritz_weights, torch.full((5,), 0.2, dtype=torch.float64))
    slq = curvature_measures(res.ritz_values, res.ritz_weights)
    assert slq == pytest.approx(dense, rel=1e-8)
    # Exact ties (the weighted median of an even count) do not depend on rounding of weights.
    nudged = torch.full((5,), 0.2, dtype=torch.float64) * (
        1 + 1e-15 * torch.tensor([1, -1, 1, -1, 1])
    )
    assert median_spread(eigs, nudged) == pytest.approx(dense["median_spread"])
    with pytest.raises(AutoBalanceError, match="one per eigenvalue"):
        curvature_measures(eigs, torch.ones(3))


def test_preconditioned_operator_lanczos_matches_dense() -> None:
    model, x = _tiny()
    params = list(model.parameters())
    op = HessianOperator(lambda: _loss(model, x), params)
    p = torch.rand(op.dim, generator=torch.Generator().manual_seed(4), dtype=torch.float64) + 0.1
    exact = torch.linalg.eigvalsh(preconditioned_hessian(op.dense(), p))
    res = lanczos(PreconditionedOperator(op, p), op.dim, op.dim, generator=torch.Generator())
    scale = float(exact.abs().max())
    assert abs(float(res.ritz_values[-1] - exact[-1])) < 1e-8 * scale
    assert abs(float(res.ritz_values[0] - exact[0])) < 1e-8 * scale
    with pytest.raises(AutoBalanceError, match="entries"):
        PreconditionedOperator(op, p[:-1])


def test_autobalance_preconditioner_state_that_misses_a_parameter() -> None:
    # Loss "b" never reaches `extra`: its state has step 0 there; P = eps (what the optimizer
    # divides by), instead of an error that hid every other parameter's preconditioner.
    model, x = _tiny()
    extra = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    params = [*model.parameters(), extra]
    ab = AutoBalance(params, base="adam", lr=1e-3, eps=1e-7)
    losses = {"a": _loss(model, x) + extra.pow(2).sum(), "b": model(x).mean() ** 2}
    grad_b = torch.autograd.grad(losses["b"], params[:-1], retain_graph=True)
    ab.step(losses)
    pre = autobalance_preconditioner(ab, "b", params)
    expected = torch.cat([g.abs().reshape(-1) for g in grad_b]) + 1e-7
    torch.testing.assert_close(pre[:-3], expected)
    torch.testing.assert_close(pre[-3:], torch.full((3,), 1e-7, dtype=torch.float64))


def test_stats_from_step_info_picks_and_orders_losses() -> None:
    model, x = _tiny()
    ab = AutoBalance(list(model.parameters()), base="adam", lr=1e-3)
    info = ab.step({"r": _loss(model, x), "b": model(x).mean() ** 2, "c": model(x).sum()})
    full = stats_from_step_info(info)
    picked = stats_from_step_info(info, ["c", "r"])
    assert picked["grad_ratio_c/r"] == pytest.approx(full["c_grad_norm"] / full["r_grad_norm"])
    assert picked["grad_cos_c/r"] == pytest.approx(full["grad_cos_r/c"])
    assert picked["update_cos_c/r"] == pytest.approx(full["update_cos_r/c"])
    assert "b_grad_norm" not in picked
    with pytest.raises(LossValueError, match="'r', 'b', 'c'"):
        stats_from_step_info(info, ["r", "x"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_hessian_tools_on_cuda() -> None:
    model, x = _tiny()
    model, x = model.cuda(), x.cuda()
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    _loss(model, x).backward()
    opt.step()
    pre = adam_preconditioner(opt, params)
    assert pre.is_cuda
    ab = AutoBalance(params, base="adam", lr=1e-3)
    ab.step({"a": _loss(model, x), "b": model(x).mean() ** 2})
    assert autobalance_preconditioner(ab, "b", params).is_cuda
    # Operators are built after the last in-place parameter update (they hold its graph).
    op = HessianOperator(lambda: _loss(model, x), params)
    dense = op.dense()
    assert dense.is_cuda
    res = lanczos(op, op.dim, op.dim, generator=torch.Generator(device="cuda").manual_seed(0))
    exact = torch.linalg.eigvalsh(dense).cpu()
    assert abs(float(res.ritz_values[-1] - exact[-1])) < 1e-8 * float(exact.abs().max())
    pres = torch.linalg.eigvalsh(preconditioned_hessian(dense, pre)).cpu()
    res = lanczos(PreconditionedOperator(op, pre), op.dim, op.dim)
    assert abs(float(res.ritz_values[-1] - pres[-1])) < 1e-8 * float(pres.abs().max())
    density = spectral_density(op, op.dim, num_iters=10, num_probes=2)
    assert torch.isfinite(density.density).all()
