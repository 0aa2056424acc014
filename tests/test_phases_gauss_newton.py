"""Gauss–Newton (Levenberg–Marquardt) and ENGD: the damped solve, exact linear least squares,
a nonlinear fit, and the residual Jacobian of a PINN."""

from __future__ import annotations

import itertools

import pytest
import torch

from autobalance import nets, problems
from autobalance.errors import ConfigError
from autobalance.phases import (
    DampedLeastSquares,
    Evaluator,
    Objective,
    chunk_batch,
    create_phase,
    damped_least_squares,
    parse_phase,
    problem_objective,
    run_phase,
    stacked_residuals,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(("m", "n"), [(12, 5), (4, 9)])
def test_damped_solve_matches_the_normal_equations_in_both_forms(m: int, n: int) -> None:
    J = torch.randn(m, n, generator=_gen(0), dtype=torch.float64)
    rho = torch.randn(m, generator=_gen(1), dtype=torch.float64)
    lam = 0.3
    expected = -torch.linalg.solve(J.T @ J + lam * torch.eye(n, dtype=torch.float64), J.T @ rho)
    system = DampedLeastSquares(J, rho)
    assert system.primal == (m >= n)
    torch.testing.assert_close(system.solve(lam), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(system.pseudo_solve(lam), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("m", "n"), [(12, 5), (4, 9)])
def test_undamped_solve_is_the_minimum_norm_least_squares_step(m: int, n: int) -> None:
    J = torch.randn(m, n, generator=_gen(2), dtype=torch.float64)
    rho = torch.randn(m, generator=_gen(3), dtype=torch.float64)
    expected = -torch.linalg.pinv(J) @ rho
    torch.testing.assert_close(damped_least_squares(J, rho, 0.0), expected, rtol=1e-9, atol=1e-11)


def _linear_objective(m: int, n: int) -> tuple[Objective, torch.Tensor, torch.Tensor, torch.Tensor]:
    A = torch.randn(m, n, generator=_gen(4), dtype=torch.float64)
    b = torch.randn(m, generator=_gen(5), dtype=torch.float64)
    x = torch.zeros(n, dtype=torch.float64, requires_grad=True)

    def residuals(batch: object) -> dict[str, torch.Tensor]:
        return {"fit": A[: m // 2] @ x - b[: m // 2], "rest": A[m // 2 :] @ x - b[m // 2 :]}

    def losses(batch: object) -> dict[str, torch.Tensor]:
        return {k: r.pow(2).mean() for k, r in residuals(batch).items()}

    return Objective(losses=losses, residuals=residuals), A, b, x


@pytest.mark.parametrize(
    "spec", ["gauss_newton:damping=0,adaptive_damping=false", "engd:damping=0"]
)
@pytest.mark.parametrize(("m", "n"), [(20, 5), (4, 7)])
def test_linear_least_squares_is_solved_in_one_step(spec: str, m: int, n: int) -> None:
    objective, A, b, x = _linear_objective(m, n)
    # the loss weighs the two halves 1/(m/2) each, as the plain least squares does
    phase = create_phase(spec, [x])
    phase.step(objective)
    expected = torch.linalg.pinv(A) @ b  # least squares; minimum norm when m < n (x₀ = 0)
    torch.testing.assert_close(x.detach(), expected, rtol=1e-9, atol=1e-10)
    assert phase.history[0].step_size == 1.0
    assert phase.evaluations.jacobians == 1


def test_weights_enter_the_stacked_residuals() -> None:
    objective, A, b, x = _linear_objective(10, 3)
    weighted = Objective(
        losses=objective.losses, residuals=objective.residuals, weights={"fit": 4.0}
    )
    create_phase("gauss_newton:damping=0,adaptive_damping=false", [x]).step(weighted)
    W = torch.diag(torch.tensor([4.0] * 5 + [1.0] * 5, dtype=torch.float64))
    expected = torch.linalg.solve(A.T @ W @ A, A.T @ W @ b)
    torch.testing.assert_close(x.detach(), expected, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", ["gauss_newton", "engd"])
def test_a_nonlinear_curve_fit_converges(name: str) -> None:
    t = torch.linspace(0, 2, 30, dtype=torch.float64)
    data = 2.0 * torch.exp(-1.5 * t) + 0.3 * torch.sin(3 * t)
    theta = torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64, requires_grad=True)

    def residuals(batch: object) -> dict[str, torch.Tensor]:
        model = theta[0] * torch.exp(theta[1] * t) + theta[2] * torch.sin(3 * t)
        return {"data": model - data}

    objective = Objective(
        losses=lambda b: {k: r.pow(2).mean() for k, r in residuals(b).items()},
        residuals=residuals,
    )
    spec = parse_phase(f"{name}:iters=60")
    phase = create_phase(spec, [theta])
    run_phase(phase, objective, spec)
    expected = torch.tensor([2.0, -1.5, 0.3], dtype=torch.float64)
    torch.testing.assert_close(theta.detach(), expected, rtol=0, atol=1e-8)
    losses = [r.loss for r in phase.history]
    assert all(b <= a for a, b in itertools.pairwise(losses))


def _small_pinn() -> tuple[problems.Problem, torch.nn.Module, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    problem = problems.create("helmholtz", n_residual=50, n_boundary=12)
    model = nets.create("mlp", 2, 1, width=6, depth=2).double()
    batch = problem.sample(_gen(0), "cpu", torch.float64)
    return problem, model, batch


def test_chunked_jacobian_is_the_whole_batch_jacobian_and_gives_the_gradient() -> None:
    problem, model, batch = _small_pinn()
    objective = problem_objective(problem, model, batch, weights={"boundary": 3.0})
    params = list(model.parameters())
    whole = stacked_residuals(objective, params, chunk=0)
    chunked = stacked_residuals(objective, params, chunk=7)
    assert whole.jacobian is not None and chunked.jacobian is not None
    # chunks reorder the rows within each loss; JᵀJ, Jᵀρ and the values do not change
    torch.testing.assert_close(
        chunked.jacobian.T @ chunked.jacobian, whole.jacobian.T @ whole.jacobian
    )
    torch.testing.assert_close(chunked.jacobian.T @ chunked.rho, whole.jacobian.T @ whole.rho)
    evaluation = Evaluator(params).evaluate(objective)
    assert whole.total == pytest.approx(evaluation.total, rel=1e-13)
    assert evaluation.grad is not None
    torch.testing.assert_close(2 * whole.jacobian.T @ whole.rho, evaluation.grad)
    assert whole.values == pytest.approx(evaluation.values, rel=1e-13)


def test_chunk_batch_keeps_every_point_set_in_every_piece() -> None:
    batch = {"a": torch.arange(10.0).reshape(10, 1), "b": torch.arange(3.0).reshape(3, 1)}
    pieces = chunk_batch(batch, 2)
    assert len(pieces) == 3  # limited by the 3 points of "b"
    for key, value in batch.items():
        assert all(p[key].shape[0] >= 1 for p in pieces)
        assert torch.equal(torch.cat([p[key] for p in pieces]), value)
    assert chunk_batch(batch, 0) == [batch]
    assert chunk_batch({}, 4) == [{}]


def test_gauss_newton_lowers_a_pinn_loss() -> None:
    problem, model, batch = _small_pinn()
    objective = problem_objective(problem, model, batch)
    spec = parse_phase("gauss_newton:iters=10,damping=1e-3")  # far from a solution
    phase = create_phase(spec, model.parameters())
    start = Evaluator(list(model.parameters())).evaluate(objective, gradient=False).total
    run_phase(phase, objective, spec)
    losses = [start] + [r.loss for r in phase.history]
    assert all(b < a for a, b in itertools.pairwise(losses))
    assert losses[-1] < 0.7 * start
    assert phase.evaluations.jacobians == phase.iteration


def test_missing_residuals_and_too_many_parameters_are_clear_errors() -> None:
    x = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    objective = Objective(losses=lambda b: {"f": x.pow(2).sum()})
    with pytest.raises(ConfigError, match="residuals"):
        create_phase("gauss_newton", [x]).step(objective)
    with pytest.raises(ConfigError, match="3 parameters exceed max_params=2"):
        create_phase("engd:max_params=2", [x])
    with pytest.raises(ConfigError, match="adaptive damping needs damping > 0"):
        parse_phase("gauss_newton:damping=0")
