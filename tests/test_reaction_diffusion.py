"""Reaction–diffusion: spectral/ETDRK4 reference (convergence, closed forms), losses, training."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from autobalance import problems
from autobalance.errors import ConfigError
from autobalance.experiments import RunConfig, train
from autobalance.problems import spectral
from autobalance.problems.reaction_diffusion import ReactionDiffusion, initial_condition

F64 = torch.float64
TWO_PI = 2 * math.pi


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOBALANCE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "rd-cache"))


def _random_points(n: int, seed: int = 0, t_min: float = 0.0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.tensor(np.c_[rng.uniform(0, TWO_PI, n), rng.uniform(t_min, 1, n)])


def test_two_resolutions_agree() -> None:
    coarse = problems.create("reaction-diffusion", n_modes=256, n_steps=500)
    fine = problems.create("reaction-diffusion", n_modes=512, n_steps=1000)
    pts = _random_points(300)
    diff = (coarse.reference(pts) - fine.reference(pts)).abs().max().item()
    assert diff < 1e-6
    ref = fine.reference(pts)
    assert ref.min() > 0 and ref.max() <= 1 + 1e-12 and ref.shape == (300, 1)


def test_pure_reaction_matches_the_logistic_closed_form() -> None:
    """ν = 0: every node follows u = u0 e^{ρt} / (1 − u0 + u0 e^{ρt}); arbitrary t too."""
    problem = problems.create("reaction-diffusion", nu=0.0, rho=5.0, n_modes=128, n_steps=500)
    x = torch.tensor(spectral.nodes(128), dtype=F64)
    t = torch.tensor([0.0, 0.0137, 0.31415, 0.5, 0.999, 1.0], dtype=F64)
    pts = torch.cartesian_prod(x, t)
    u0 = torch.tensor(initial_condition(pts[:, 0].numpy()))
    growth = torch.exp(5.0 * pts[:, 1])
    exact = u0 * growth / (1 - u0 + u0 * growth)
    assert (problem.reference(pts)[:, 0] - exact).abs().max() < 1e-6


def test_pure_diffusion_matches_the_heat_closed_form() -> None:
    """ρ = 0: u = Σ_k c_k e^{−νk²t} e^{ikx}, c_k the Fourier coefficients of u0."""
    nu = 3.0
    problem = problems.create("reaction-diffusion", nu=nu, rho=0.0, n_modes=256, n_steps=100)
    fine = 2**14  # trapezoid = DFT: error ~ (jump of u0') · h² ≈ 1e-11
    c = np.fft.rfft(initial_condition(spectral.nodes(fine))) / fine
    k = np.arange(c.size)
    pts = _random_points(200, seed=1, t_min=1e-3)
    x, t = pts[:, 0].numpy(), pts[:, 1].numpy()
    terms = c[None, :] * np.exp(-nu * k[None, :] ** 2 * t[:, None] + 1j * np.outer(x, k))
    exact = terms[:, 0].real + 2 * terms[:, 1:].sum(axis=1).real
    assert np.abs(problem.reference(pts)[:, 0].numpy() - exact).max() < 1e-6
    at_zero = torch.tensor([[0.3, 0.0], [math.pi, 0.0], [TWO_PI, 0.0]], dtype=F64)
    np.testing.assert_allclose(
        problem.reference(at_zero)[:, 0].numpy(), initial_condition(at_zero[:, 0].numpy())
    )


def test_reference_has_small_finite_difference_residual() -> None:
    """u_t − ν u_xx − ρ u(1 − u) of the reference by central differences (step δ = 1e-2)."""
    problem = problems.create("reaction-diffusion")
    delta = 1e-2
    x = torch.linspace(0.1, TWO_PI - 0.1, 24, dtype=F64)
    t = torch.tensor([0.2, 0.5, 0.9], dtype=F64)
    base = torch.cartesian_prod(x, t)
    shifts = {
        "c": (0.0, 0.0),
        "xp": (delta, 0.0),
        "xm": (-delta, 0.0),
        "tp": (0.0, delta),
        "tm": (0.0, -delta),
    }
    u = {
        key: problem.reference(base + torch.tensor(s, dtype=F64))[:, 0] for key, s in shifts.items()
    }
    u_t = (u["tp"] - u["tm"]) / (2 * delta)
    u_xx = (u["xp"] - 2 * u["c"] + u["xm"]) / delta**2
    residual = u_t - 3.0 * u_xx - 5.0 * u["c"] * (1 - u["c"])
    assert u_t.abs().max() > 0.5  # the check has something to check
    assert residual.abs().max() < 2e-3  # O(δ²) truncation


def test_residual_code_on_closed_form_solutions() -> None:
    """The autograd residual vanishes on exact solutions: logistic (ν = 0), heat mode (ρ = 0)."""
    pts = _random_points(64, seed=2)
    logistic = problems.create("reaction-diffusion", nu=0.0, rho=2.0)

    def logistic_u(p: torch.Tensor) -> torch.Tensor:
        x, t = p[:, 0:1], p[:, 1:2]
        u0 = 0.2 + 0.1 * torch.sin(x)
        return u0 * torch.exp(2.0 * t) / (1 - u0 + u0 * torch.exp(2.0 * t))

    assert logistic.pde_residual(logistic_u, pts).abs().max() < 1e-12
    heat = problems.create("reaction-diffusion", nu=0.7, rho=0.0)

    def heat_u(p: torch.Tensor) -> torch.Tensor:
        return torch.exp(-0.7 * 4 * p[:, 1:2]) * torch.cos(2 * p[:, 0:1])

    assert heat.pde_residual(heat_u, pts).abs().max() < 1e-12
    wrong = heat.pde_residual(lambda p: heat_u(p) + p[:, 1:2], pts)  # u_t gains 1
    torch.testing.assert_close(wrong.detach(), torch.ones_like(wrong))


@pytest.mark.parametrize("derivative", [False, True])
def test_losses(derivative: bool) -> None:
    problem = problems.create(
        "reaction-diffusion",
        n_residual=50,
        n_initial=40,
        n_boundary=30,
        boundary_derivative=derivative,
    )
    batch = problem.sample(torch.Generator().manual_seed(0), "cpu", F64)
    assert batch["residual"].shape == (50, 2) and batch["initial"].shape == (40, 2)
    assert bool((batch["initial"][:, 1] == 0).all()) and bool((batch["boundary"][:, 0] == 0).all())

    def periodic(p: torch.Tensor) -> torch.Tensor:  # periodic in x, equal to u0 at t = 0
        x, t = p[:, 0:1], p[:, 1:2]
        u0 = torch.exp(-((x - math.pi) ** 2) / (2 * (math.pi / 4) ** 2))
        return u0 + t * torch.sin(x)

    losses = problem.losses(periodic, batch)
    assert list(losses) == list(problem.loss_names) == ["residual", "initial", "boundary"]
    assert losses["initial"].item() < 1e-28
    # u0 is periodic in value; its x-derivative jumps by ≈ 3.4e-3 at x = 0 ≡ 2π.
    if derivative:
        assert losses.pointwise["boundary"].shape == (30, 2)
        jump = losses.pointwise["boundary"][:, 1].abs()
        assert 3e-3 < jump.max().item() < 4e-3
    else:
        assert losses["boundary"].item() < 1e-28
    assert losses.coords["residual"][0].requires_grad
    shifted = problem.losses(lambda p: periodic(p) + 0.5 * p[:, 0:1], batch)
    assert shifted["boundary"].item() > 1.0  # u(0) − u(2π) = −π


def test_evaluation_grid_and_params() -> None:
    problem = problems.create("reaction-diffusion", n_eval_x=21, n_eval_t=11)
    assert isinstance(problem, ReactionDiffusion)
    grid = problem.evaluation_points("cpu", F64)
    assert grid.shape == (21 * 11, 2) and problem.evaluation_shape == (21, 11)
    assert grid[:, 0].max() == pytest.approx(TWO_PI) and grid[:, 1].max() == 1.0
    train_pts = problem.sample(torch.Generator().manual_seed(0), "cpu", F64)["residual"]
    assert torch.cdist(train_pts, grid).min() > 0
    params = problems.parameters("reaction-diffusion")
    assert params["nu"] == 3.0 and params["rho"] == 5.0
    assert problems.create("reaction-diffusion", nu=1).params["nu"] == 1.0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"nu": -1.0}, "'nu' must be a finite number >= 0"),
        ({"rho": "five"}, "'rho' must be a number"),
        ({"n_modes": 15}, "'n_modes' must be even"),
        ({"n_steps": 15}, "'n_steps' must be a positive multiple of 10"),
        ({"n_boundary": 0}, "'n_boundary' must be >= 1"),
        ({"boundary_derivative": 1}, "'boundary_derivative' must be true or false"),
        ({"mu": 1.0}, "unknown parameter 'mu'"),
    ],
)
def test_bad_params(params: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        problems.create("reaction-diffusion", **params)


def test_reference_rejects_times_outside_the_domain() -> None:
    problem = problems.create("reaction-diffusion", n_modes=32, n_steps=10)
    with pytest.raises(ValueError, match="t must lie in"):
        problem.reference(torch.tensor([[1.0, 1.5]], dtype=F64))


def test_smoke_training_reduces_the_error(tmp_path: Path) -> None:
    """ν = ρ = 1 (the defaults ν = 3, ρ = 5 are a known PINN failure mode: 200 steps of Adam
    leave the error at ~1.0)."""
    config = RunConfig(
        problem="reaction-diffusion",
        problem_params={
            "nu": 1.0,
            "rho": 1.0,
            "n_residual": 256,
            "n_initial": 64,
            "n_boundary": 64,
            "n_eval_x": 33,
            "n_eval_t": 11,
        },
        net_params={"width": 20, "depth": 2},
        method="adam",
        lr=1e-2,
        steps=200,
        eval_every=100,
        checkpoint_every=0,
        device="cpu",
        sampler="lhs",
    )
    metrics = train(config, tmp_path, progress=False)
    assert metrics["status"] == "ok" and metrics["steps"] == 200
    assert set(metrics["final_losses"]) == {"residual", "initial", "boundary"}
    assert metrics["rel_l2"] < 0.5 * metrics["initial"]["rel_l2"]


def _slope_jump(problem: ReactionDiffusion, t: float) -> float:
    """``u_x(0, t) − u_x(2π, t)`` of the hard-constrained output with ``N = 0``."""
    x = torch.tensor([[0.0, t], [2 * math.pi, t]], dtype=torch.float64, requires_grad=True)
    u = problem.hard_constraint(x, torch.zeros(2, 1, dtype=torch.float64))
    (du,) = torch.autograd.grad(u.sum(), x)
    return float(du[0, 0] - du[1, 0])


def test_periodic_lift_keeps_the_initial_condition_and_removes_the_slope_jump() -> None:
    """``u = u0 + (1 − e^{−t/δ})(ū0 − u0) + tN``: exactly ``u0`` at ``t = 0``, the slope jump
    of ``u0`` at ``x = 0 ≡ 2π`` (``2 · 16/π · e^{−8}``) scaled by ``e^{−t/δ}``; ``δ = 0`` is the
    plain ``u0 + tN``."""
    plain, lifted = ReactionDiffusion(), ReactionDiffusion(periodic_lift=0.02)
    x = torch.linspace(0, 2 * math.pi, 17, dtype=torch.float64)[:, None]
    at_zero = torch.cat([x, torch.zeros_like(x)], dim=1)
    output = torch.randn(17, 1, dtype=torch.float64)
    assert torch.equal(lifted.hard_constraint(at_zero, output), lifted.initial_values(x))
    jump = 2 * 16 / math.pi * math.exp(-8)
    for t in (0.0, 0.01, 0.05, 0.5):
        assert _slope_jump(plain, t) == pytest.approx(jump, rel=1e-12)
        assert _slope_jump(lifted, t) == pytest.approx(jump * math.exp(-t / 0.02), rel=1e-9)
    # ū0 is 2π-periodic with its derivative, and within e^{-8} of u0.
    ends = torch.tensor([[0.0], [2 * math.pi]], dtype=torch.float64, requires_grad=True)
    bar = lifted.periodic_initial_values(ends).detach()
    (slope,) = torch.autograd.grad(lifted.periodic_initial_values(ends).sum(), ends)
    assert float(bar[0] - bar[1]) == pytest.approx(0.0, abs=1e-15)
    assert float(slope[0] - slope[1]) == pytest.approx(0.0, abs=1e-15)
    gap = lifted.periodic_initial_values(x) - lifted.initial_values(x)
    assert float(gap.min()) >= 0 and float(gap.max()) == pytest.approx(math.exp(-8), rel=1e-12)
    t = torch.full_like(x, 0.3)
    points = torch.cat([x, t], dim=1)
    torch.testing.assert_close(
        plain.hard_constraint(points, output), lifted.initial_values(x) + 0.3 * output
    )
    with pytest.raises(ConfigError, match="periodic_lift"):
        ReactionDiffusion(periodic_lift=-1.0)
