"""Tests of autobalance.diagnostics: HVPs, Lanczos/SLQ, preconditioners, quadratic, balance."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call, hessian

from autobalance.diagnostics.balance import BalanceLogger, balance_stats
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
    adam_preconditioner,
    autobalance_preconditioner,
    preconditioned_hessian,
    summarize_spectrum,
)
from autobalance.diagnostics.quadratic import (
    QuadraticModel,
    linear_iterations,
    make_quadratic,
    run_linear,
)
from autobalance.errors import AutoBalanceError, LossNameError
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
