"""Dense BFGS, SSBFGS and SSBroyden: the update formulas and the phases on known problems."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autobalance.errors import ConfigError, NonFiniteLossError
from autobalance.phases import (
    Objective,
    bfgs_update,
    create_phase,
    parse_phase,
    run_phase,
    ssbfgs_update,
    ssbroyden_update,
)

UPDATES = {
    "bfgs": lambda H, s, y, g, a: bfgs_update(H, s, y),
    "ssbfgs": ssbfgs_update,
    "ssbroyden": ssbroyden_update,
}


def _spd(n: int, seed: int, condition: float = 50.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    eig = torch.logspace(0, torch.log10(torch.tensor(condition)).item(), n, dtype=torch.float64)
    return q @ torch.diag(eig) @ q.T


@pytest.mark.parametrize("name", sorted(UPDATES))
def test_exact_line_search_on_a_quadratic_terminates_in_n_steps(name: str) -> None:
    """Broyden-class methods with exact line searches are conjugate-direction methods: on
    ``½xᵀAx − bᵀx`` they reach the minimiser in at most n steps (Nocedal & Wright, Thm 6.4 for
    BFGS; scaling H keeps the directions' conjugacy)."""
    n = 6
    A = _spd(n, 1)
    b = torch.arange(1.0, n + 1, dtype=torch.float64)
    x = torch.zeros(n, dtype=torch.float64)
    H = torch.eye(n, dtype=torch.float64)
    g = A @ x - b
    steps = 0
    while g.norm() > 1e-10 * b.norm() and steps < 2 * n:
        p = -H @ g
        alpha = float(-(g @ p) / (p @ A @ p))
        s = alpha * p
        x = x + s
        g_new = A @ x - b
        H = UPDATES[name](H, s, g_new - g, g, alpha)
        g = g_new
        steps += 1
    assert steps <= n
    torch.testing.assert_close(x, torch.linalg.solve(A, b), rtol=1e-9, atol=1e-9)
    if name == "bfgs":  # the hereditary property: after n conjugate steps H = A⁻¹
        torch.testing.assert_close(H, torch.linalg.inv(A), rtol=1e-7, atol=1e-9)


def test_bfgs_update_is_the_textbook_product_form() -> None:
    n = 5
    H = _spd(n, 2)
    gen = torch.Generator().manual_seed(3)
    s = torch.randn(n, generator=gen, dtype=torch.float64)
    y = _spd(n, 4) @ s
    rho = 1 / (y @ s)
    eye = torch.eye(n, dtype=torch.float64)
    expected = (eye - rho * torch.outer(s, y)) @ H @ (eye - rho * torch.outer(y, s))
    expected = expected + rho * torch.outer(s, s)
    torch.testing.assert_close(bfgs_update(H, s, y), expected, rtol=1e-12, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(sorted(UPDATES)),
    seed=st.integers(0, 10_000),
    n=st.integers(2, 8),
    alpha=st.floats(1e-3, 10.0),
    condition=st.floats(1.0, 1e4),
)
def test_every_update_keeps_the_secant_equation_symmetry_and_definiteness(
    name: str, seed: int, n: int, alpha: float, condition: float
) -> None:
    H = _spd(n, seed, condition)
    gen = torch.Generator().manual_seed(seed + 1)
    g = torch.randn(n, generator=gen, dtype=torch.float64)
    s = alpha * (-H @ g)  # the quasi-Newton step α p, p = −H g
    y = _spd(n, seed + 2, condition) @ s  # yᵀs > 0
    new = UPDATES[name](H, s, y, g, alpha)
    torch.testing.assert_close(new @ y, s, rtol=1e-7, atol=1e-9 * float(s.norm()))
    torch.testing.assert_close(new, new.T, rtol=1e-12, atol=1e-12 * float(new.abs().max()))
    assert torch.linalg.eigvalsh(new).min() > 0


def _rosenbrock(x: torch.Tensor) -> torch.Tensor:
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


@pytest.mark.parametrize("name", ["bfgs", "ssbfgs", "ssbroyden"])
@pytest.mark.parametrize("n", [2, 10])
def test_rosenbrock_reaches_a_tiny_gradient(name: str, n: int) -> None:
    x = torch.tensor([-1.2, 1.0] * (n // 2), dtype=torch.float64, requires_grad=True)
    objective = Objective(losses=lambda batch: {"f": _rosenbrock(x)})
    spec = parse_phase(f"{name}:iters=500")
    phase = create_phase(spec, [x])
    run_phase(phase, objective, spec)
    (grad,) = torch.autograd.grad(_rosenbrock(x), x)
    assert grad.norm() <= 1e-10
    torch.testing.assert_close(x.detach(), torch.ones(n, dtype=torch.float64), rtol=0, atol=1e-9)
    assert phase.iteration < 500
    counts = phase.evaluations
    assert counts.functions == counts.gradients >= phase.iteration
    assert [r.iteration for r in phase.history] == list(range(1, phase.iteration + 1))


@pytest.mark.parametrize("name", ["bfgs", "ssbfgs", "ssbroyden"])
def test_a_quadratic_is_solved_over_several_parameter_tensors(name: str) -> None:
    """Two losses ``½(x − x*)ᵀA_k(x − x*)`` over a vector and a matrix parameter (sums of
    squares, so that the loss values resolve the minimum to full precision)."""
    A1, A2 = _spd(7, 5, condition=1e3), _spd(7, 6, condition=10.0)
    target = torch.linspace(-1, 1, 7, dtype=torch.float64)
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    v = torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)

    def losses(batch: object) -> dict[str, torch.Tensor]:
        e = torch.cat([w, v.reshape(-1)]) - target
        return {"first": 0.5 * e @ A1 @ e, "second": 0.5 * e @ A2 @ e}

    spec = parse_phase(f"{name}:iters=200")
    phase = create_phase(spec, [w, v])
    run_phase(phase, Objective(losses=losses), spec)
    x = torch.cat([w, v.reshape(-1)]).detach()
    torch.testing.assert_close(x, target, rtol=0, atol=1e-9)
    assert set(phase.history[-1].losses) == {"first", "second"}


def test_float32_parameters_keep_float32() -> None:
    x = torch.tensor([-1.2, 1.0], requires_grad=True)
    spec = parse_phase("ssbroyden:iters=40")
    phase = create_phase(spec, [x])
    run_phase(phase, Objective(losses=lambda b: {"f": _rosenbrock(x)}), spec)
    assert phase.H.dtype == torch.float32 and x.dtype == torch.float32
    assert float(_rosenbrock(x.detach())) < 1e-3


def test_too_many_parameters_is_a_clear_error() -> None:
    params = [torch.zeros(30, requires_grad=True)]
    with pytest.raises(ConfigError, match=r"30 parameters exceed max_params=20.*lbfgs"):
        create_phase(parse_phase("ssbroyden:max_params=20"), params)
    assert create_phase(parse_phase("ssbroyden:max_params=30"), params).n == 30
    with pytest.raises(ConfigError, match="max_params=5000"):
        create_phase("bfgs", [torch.zeros(5001, requires_grad=True)])


def test_a_nonfinite_start_is_a_named_error() -> None:
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    objective = Objective(losses=lambda b: {"bad": x.sum() * float("nan")})
    phase = create_phase("bfgs", [x])
    with pytest.raises(NonFiniteLossError, match="'bad'"):
        phase.step(objective)


def _quadratic_objective(x: torch.Tensor) -> Objective:
    """``½ xᵀ A x − bᵀx`` with ``A``, ``b`` taken from the batch (a redraw changes them)."""

    def losses(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"q": 0.5 * x @ batch["A"] @ x - batch["b"] @ x}

    return Objective(losses=losses, batch=_quadratic_batch(0))


def _quadratic_batch(iteration: int) -> dict[str, torch.Tensor]:
    """A well-conditioned objective up to iteration 4, then one 1e4 times stiffer."""
    scale = 1.0 if iteration < 4 else 1e4
    return {"A": scale * _spd(5, 3 + iteration), "b": torch.ones(5, dtype=torch.float64)}


@pytest.mark.parametrize("name", ["bfgs", "ssbfgs", "ssbroyden"])
def test_a_redraw_keeps_a_positive_definite_inverse_hessian_and_resets_any_other(
    name: str,
) -> None:
    """After a redraw ``H`` is symmetrised and kept while positive definite, restarted at ``I``
    when not (the code of Urbán et al.), and always restarted with ``reset_on_redraw=true``."""
    x = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    spec = parse_phase(f"{name}:iters=4")
    phase = create_phase(spec, [x])
    run_phase(phase, _quadratic_objective(x), spec)
    assert phase.updates == 4
    skew = torch.zeros(5, 5, dtype=torch.float64)
    skew[0, 1], skew[1, 0] = 1e-3, -1e-3
    built = phase.H.clone()
    phase.H = built + skew
    phase.points_changed(4)
    assert phase.updates == 4 and phase.redraw_resets == 0
    torch.testing.assert_close(phase.H, built, rtol=0, atol=1e-15)  # symmetrised, kept
    eye = torch.eye(5, dtype=torch.float64)
    phase.H = built - 2 * float(torch.linalg.eigvalsh(built).max()) * eye  # negative definite
    phase.points_changed(8)
    assert phase.updates == 0 and phase.redraw_resets == 1 and phase.resets == 0
    torch.testing.assert_close(phase.H, eye, rtol=0, atol=0)
    always = create_phase(parse_phase(f"{name}:iters=4,reset_on_redraw=true"), [x])
    always.H = 2.0 * always.H
    always.points_changed(4)
    assert always.redraw_resets == 1 and torch.equal(always.H, eye)


@pytest.mark.parametrize("reset", [False, True])
@pytest.mark.parametrize("name", ["bfgs", "ssbfgs", "ssbroyden"])
def test_after_a_redraw_to_a_stiffer_objective_the_phase_still_converges(
    name: str, reset: bool
) -> None:
    """Five iterations on one objective, then the points change to one 1e4 times stiffer; with
    ``H`` kept or restarted the phase reaches the new minimiser ``A⁻¹b``, and the record
    counts the restarts."""
    x = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    phase = create_phase(parse_phase(f"{name}:reset_on_redraw={reset}"), [x])
    objective = _quadratic_objective(x)
    run_phase(phase, objective, parse_phase(f"{name}:iters=5"))
    phase.points_changed()
    stiff = _quadratic_batch(4)
    result = run_phase(phase, objective.with_batch(stiff), parse_phase(f"{name}:iters=60"))
    expected = torch.linalg.solve(stiff["A"], stiff["b"])
    torch.testing.assert_close(x.detach(), expected, rtol=1e-7, atol=1e-12)
    assert phase.history[-1].extra["redraw_resets"] == int(reset), result.reason
