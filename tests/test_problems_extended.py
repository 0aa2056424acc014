"""Burgers, Allen–Cahn, Klein–Gordon, wave, convection and Kovasznay: references, losses, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from autobalance import nets, problems, variants
from autobalance.errors import ConfigError
from autobalance.problems import spectral
from autobalance.problems.allen_cahn import AllenCahnReference
from autobalance.problems.burgers import cole_hopf_solution
from autobalance.variants.hard import HardConstraint

F64 = torch.float64
EXACT = ("klein-gordon", "wave", "convection", "kovasznay")
ALL = ("burgers", "allen-cahn", *EXACT)
#: Small point counts so that every test stays fast.
SMALL: dict[str, dict[str, int]] = {
    "burgers": {"n_residual": 64, "n_initial": 32, "n_boundary": 32},
    "allen-cahn": {"n_residual": 64, "n_initial": 32, "n_boundary": 32},
    "klein-gordon": {"n_residual": 64, "n_initial": 32, "n_boundary": 32},
    "wave": {"n_residual": 64, "n_initial": 32, "n_boundary": 32},
    "convection": {"n_residual": 64, "n_initial": 32, "n_boundary": 32},
    "kovasznay": {"n_residual": 64, "n_boundary": 32},
}


def _batch(problem: problems.Problem, seed: int = 0, dtype: torch.dtype = F64):
    return problem.sample(torch.Generator().manual_seed(seed), "cpu", dtype)


# --- exact solutions: zero residual under the library's autograd derivatives -----------------


@pytest.mark.parametrize("name", EXACT)
def test_exact_solution_has_zero_residual(name: str) -> None:
    problem = problems.create(name)
    batch = _batch(problem)
    losses = problem.losses(problem.reference, batch)
    assert list(losses) == list(problem.loss_names)
    for key, r in losses.pointwise.items():
        assert r.detach().abs().max().item() < 1e-8, (name, key)
    # the check can fail: a wrong solution leaves a residual
    wrong = problem.losses(lambda p: 1.1 * problem.reference(p), batch)
    assert max(v.item() for v in wrong.values()) > 1e-3


def test_klein_gordon_source_and_conditions_by_hand() -> None:
    problem = problems.create("klein-gordon")
    pts = _batch(problem)["residual"]
    x, t = pts[:, 0].numpy(), pts[:, 1].numpy()
    u = x * np.cos(5 * np.pi * t) + (x * t) ** 3
    f = -25 * np.pi**2 * x * np.cos(5 * np.pi * t) + 6 * x**3 * t - 6 * x * t**3 + u**3
    np.testing.assert_allclose(problem.source(pts)[:, 0].numpy(), f, rtol=1e-12, atol=1e-12)
    with torch.enable_grad():
        residual = problem.pde_residual(problem.reference, pts)
    assert residual.abs().max().item() < 1e-9


def test_kovasznay_lambda_pressure_mask_and_field_errors() -> None:
    problem = problems.create("kovasznay")
    assert problem.lam == pytest.approx(10 - math.sqrt(100 + 4 * math.pi**2), rel=1e-15)
    assert problem.out_dim == 3 and problem.output_names == ("u", "v", "p")
    boundary = _batch(problem)["boundary"]
    mask = problem.pressure_mask(boundary)[:, 0]
    assert torch.equal(mask.bool(), boundary[:, 0] == 1.0) and int(mask.sum()) == 64
    assert problems.create("kovasznay", pressure_boundary="all").pressure_mask(boundary).all()
    # the pressure error counts only on the outflow edge by default
    losses = problem.losses(
        lambda p: problem.reference(p) + torch.tensor([0, 0, 1.0]), {**_batch(problem)}
    )
    assert losses["boundary"].item() == pytest.approx(64 / (3 * 256), rel=1e-12)
    grid = problem.evaluation_points("cpu", F64)
    ref = problem.reference(grid)
    errors = problem.extra_errors(ref + 0.01, ref)
    assert set(errors) >= {"rel_l2_u", "rel_l2_v", "rel_l2_p"}
    assert errors["linf_p"] == pytest.approx(0.01)


# --- Burgers: Cole–Hopf quadrature ------------------------------------------------------------


def test_burgers_quadrature_converges_and_matches_known_values() -> None:
    nu = 0.01 / math.pi
    x, t = np.meshgrid(np.linspace(-1, 1, 81), np.linspace(0.01, 1, 21), indexing="ij")
    coarse = cole_hopf_solution(x, t, nu, n_nodes=100)
    fine = cole_hopf_solution(x, t, nu, n_nodes=200)
    assert np.abs(coarse - fine).max() < 1e-12  # measured 3e-15
    # t → 0: the initial condition; x = ±1: the boundary condition
    xs = np.linspace(-1, 1, 101)
    np.testing.assert_allclose(
        cole_hopf_solution(xs, np.full(101, 1e-9), nu), -np.sin(np.pi * xs), atol=1e-6
    )
    at_zero = cole_hopf_solution(xs, np.zeros(101), nu)
    np.testing.assert_allclose(at_zero, -np.sin(np.pi * xs), rtol=0, atol=1e-15)
    ends = cole_hopf_solution(np.array([-1.0, 1.0] * 5), np.linspace(0.1, 1, 10), nu)
    assert np.abs(ends).max() < 1e-13
    # the steepest slope, u_x(0, 1.6037/π) = −152.00516 (Basdevant et al. 1986)
    h = 1e-6
    u = cole_hopf_solution(np.array([-h, h]), np.full(2, 1.6037 / math.pi), nu)
    assert (u[1] - u[0]) / (2 * h) == pytest.approx(-152.00516, abs=1e-4)


def test_burgers_reference_satisfies_the_pde_by_finite_differences() -> None:
    nu = 0.01 / math.pi
    x, t = np.meshgrid(np.linspace(-0.9, 0.9, 37), np.linspace(0.1, 0.9, 9), indexing="ij")
    x, t = x[np.abs(x) > 0.1], t[np.abs(x) > 0.1]  # away from the shock

    def u(dx: float = 0.0, dt: float = 0.0) -> np.ndarray:
        return cole_hopf_solution(x + dx, t + dt, nu)

    h = 1e-4
    u_t = (u(dt=h) - u(dt=-h)) / (2 * h)
    u_x = (u(dx=h) - u(dx=-h)) / (2 * h)
    u_xx = (u(dx=h) - 2 * u() + u(dx=-h)) / h**2
    residual = u_t + u() * u_x - nu * u_xx
    assert np.abs(residual).max() < 1e-5  # terms are O(1)

    problem = problems.create("burgers")
    pts = torch.tensor(np.stack([x, t], axis=1))
    np.testing.assert_allclose(problem.reference(pts)[:, 0].numpy(), u(), rtol=0, atol=1e-15)


# --- Allen–Cahn: spectral reference -----------------------------------------------------------


def test_allen_cahn_two_resolutions_agree() -> None:
    x, t = np.meshgrid(np.linspace(-1, 1, 101), np.linspace(0, 1, 101), indexing="ij")
    common = {"diffusion": 1e-4, "reaction": 5.0, "n_steps": 500, "save_every": 5}
    coarse = AllenCahnReference(n_modes=1024, **common)(x, t)
    fine = AllenCahnReference(n_modes=2048, **common)(x, t)
    later = t.reshape(-1) >= 0.01
    assert np.abs(coarse - fine)[later].max() < 1e-5  # measured 5.9e-6 (2048 vs 8192: 3e-7)
    assert np.abs(coarse - fine).max() < 2e-3  # t < 0.01: the kink of u0 at x = ±1
    # t = 0 is the initial condition exactly; u is periodic in x
    assert np.array_equal(fine[t.reshape(-1) == 0], (x**2 * np.cos(np.pi * x))[t == 0])
    assert np.abs(fine.reshape(101, 101)[0] - fine.reshape(101, 101)[-1])[1:].max() < 1e-10


def test_allen_cahn_dense_output_matches_direct_steps_and_the_pde() -> None:
    problem = problems.create("allen-cahn")
    ref = problem.solution
    rng = np.random.default_rng(0)
    xs, ts = rng.uniform(-1, 1, 40), rng.uniform(0.01, 1, 40)
    # exact ETDRK4 steps from the saved coefficients to each time, vs Hermite interpolation
    direct = spectral.PeriodicSolution(
        coefficients=ref.coefficients,
        times=ref.times,
        n=ref.n_modes,
        substeps=ref.save_every,
        linear=ref.linear,
        nonlinear=ref._nonlinear,
        length=2.0,
        x0=-1.0,
    )
    assert np.abs(ref(xs, ts) - direct(xs, ts)).max() < 1e-7  # measured 2e-8
    # the PDE by central differences at scattered points (loose: FD error near interfaces)
    h = 1e-4
    u_t = (ref(xs, ts + h) - ref(xs, ts - h)) / (2 * h)
    u_xx = (ref(xs + h, ts) - 2 * ref(xs, ts) + ref(xs - h, ts)) / h**2
    u = ref(xs, ts)
    residual = u_t - 1e-4 * u_xx + 5 * (u**3 - u)
    assert np.abs(residual).max() < 1e-3  # terms up to ~5
    # scattered and grid evaluations agree; the cache returns the same arrays
    grid = problem.evaluation_points("cpu", F64)[::997]
    torch.testing.assert_close(problem.reference(grid)[:, 0], torch.tensor(ref(*grid.T.numpy())))
    again = problems.create("allen-cahn").solution
    assert np.array_equal(again.coefficients, ref.coefficients)


# --- every problem: samples, losses, parameters, training ------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_samples_and_losses_shapes_dtypes_devices(name: str) -> None:
    problem = problems.create(name, **SMALL[name])
    batch = _batch(problem, dtype=torch.float32)
    lo, hi = problem.domain.lower, problem.domain.upper
    for key, pts in batch.items():
        assert pts.dtype == torch.float32 and pts.device.type == "cpu" and pts.shape[1] == 2
        for j in range(2):
            assert lo[j] <= pts[:, j].min() and pts[:, j].max() <= hi[j] + 1e-6, (key, j)
    if "initial" in batch:
        assert bool((batch["initial"][:, 1] == 0).all())
    net = nets.create("mlp", problem.in_dim, problem.out_dim, width=8, depth=1)
    losses = problem.losses(net, batch)
    assert list(losses) == list(problem.loss_names)
    for key, loss in losses.items():
        assert loss.shape == () and loss.dtype == torch.float32 and loss.requires_grad
        r = losses.pointwise[key]
        assert r.shape[0] == losses.points[key].shape[0]
        torch.testing.assert_close(loss, r.pow(2).mean())
    assert "residual" in losses.coords or "continuity" in losses.coords
    ref = problem.reference(problem.evaluation_points("cpu", torch.float32)[:50])
    assert ref.shape == (50, problem.out_dim) and ref.dtype == torch.float32
    assert problem.evaluation_points("cpu", F64).shape[0] == math.prod(problem.evaluation_shape)
    assert name in problems.names()


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("burgers", {"nu": 0.0}, "'nu' must be > 0"),
        ("burgers", {"n_boundary": 7}, "'n_boundary' must be even"),
        ("allen-cahn", {"n_modes": 1001}, "'n_modes' must be even"),
        ("allen-cahn", {"n_steps": 1001}, "multiple of 'save_every'"),
        ("allen-cahn", {"d": -1.0}, "'d' must be > 0"),
        ("klein-gordon", {"k": 0}, "'k' must be an integer >= 1"),
        ("klein-gordon", {"k": 2.5}, "'k' must be an integer"),
        ("wave", {"c": 0.0}, "'c' must be > 0"),
        ("wave", {"n_initial": 0}, "'n_initial' must be >= 1"),
        ("convection", {"n_eval_t": 1}, "'n_eval_t' must be >= 2"),
        ("convection", {"speed": 1.0}, "'speed'"),
        ("kovasznay", {"re": -20.0}, "'re' must be > 0"),
        ("kovasznay", {"pressure_boundary": "inlet"}, "'outflow', 'all'"),
        ("kovasznay", {"n_boundary": 30}, "multiple of 4"),
        ("kovasznay", {"re": math.inf}, "'re' must be a finite number"),
        ("burgers", {"nu": math.inf}, "'nu' must be a finite number"),
        ("allen-cahn", {"rho": math.nan}, "'rho' must be a finite number"),
        ("klein-gordon", {"gamma": math.nan}, "'gamma' must be a finite number"),
        ("wave", {"a": math.inf}, "'a' must be a finite number"),
        ("convection", {"beta": -math.inf}, "'beta' must be a finite number"),
    ],
)
def test_bad_parameters_raise_config_error(name: str, params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        problems.create(name, **params)


def test_defaults_are_the_literature_values() -> None:
    assert problems.parameters("burgers")["nu"] == pytest.approx(0.01 / math.pi)
    ac = problems.parameters("allen-cahn")
    assert (ac["d"], ac["rho"]) == (1e-4, 5.0)
    kg = problems.parameters("klein-gordon")
    assert (kg["alpha"], kg["beta"], kg["gamma"], kg["k"]) == (-1.0, 0.0, 1.0, 3)
    assert problems.parameters("wave")["c"] == 2.0
    wave = problems.create("wave")
    xt = torch.tensor([[0.3, 0.7], [0.55, 0.15]], dtype=F64)
    x, t = xt[:, 0], xt[:, 1]
    pi = math.pi
    expected = torch.sin(pi * x) * torch.cos(2 * pi * t) + 0.5 * torch.sin(3 * pi * x) * torch.cos(
        6 * pi * t
    )
    assert torch.allclose(wave.reference(xt).squeeze(-1), expected, atol=1e-14)
    assert problems.parameters("convection")["beta"] == 30.0
    assert problems.parameters("kovasznay")["re"] == 20.0
    domains = {
        "burgers": ((-1.0, 0.0), (1.0, 1.0)),
        "allen-cahn": ((-1.0, 0.0), (1.0, 1.0)),
        "klein-gordon": ((0.0, 0.0), (1.0, 1.0)),
        "wave": ((0.0, 0.0), (1.0, 1.0)),
        "convection": ((0.0, 0.0), (2 * math.pi, 1.0)),
        "kovasznay": ((-0.5, -0.5), (1.0, 1.5)),
    }
    for name, (lower, upper) in domains.items():
        box = problems.create(name).domain
        assert (box.lower, box.upper) == (lower, upper)


@pytest.mark.parametrize("name", ALL)
def test_short_training_lowers_the_loss(name: str) -> None:
    torch.manual_seed(0)
    problem = problems.create(name, **SMALL[name])
    net = nets.create("mlp", problem.in_dim, problem.out_dim, width=20, depth=2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    fixed = problem.sample(torch.Generator().manual_seed(123), "cpu", torch.float32)

    def total() -> float:
        return sum(v.item() for v in problem.losses(net, fixed).values())

    before = total()
    for _ in range(200):
        losses = problem.losses(net, problem.sample(gen, "cpu", torch.float32))
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    after = total()
    assert math.isfinite(after) and after < 0.9 * before, (before, after)


# --- hard constraints (variant "hard_constraint") ---------------------------------------------

#: The losses each problem's hard constraint enforces exactly (and the variant drops).
HARD: dict[str, tuple[str, ...]] = {
    "helmholtz": ("boundary",),
    "burgers": ("initial", "boundary"),
    "wave": ("initial", "boundary"),
    "klein-gordon": ("initial", "boundary"),
    "convection": ("initial",),
    "reaction-diffusion": ("initial",),
    "allen-cahn": ("initial",),
    "poisson-inverse": ("boundary_a",),
    "kovasznay": ("boundary",),
}
HARD_SMALL: dict[str, dict[str, object]] = {
    **SMALL,
    "helmholtz": {"n_residual": 64, "n_boundary": 32},
    "reaction-diffusion": {"n_residual": 64, "n_initial": 32, "n_boundary": 32},
    "poisson-inverse": {"n_residual": 64, "n_boundary": 32, "n_data_side": 6},
}


def _hard_model(problem: problems.Problem, seed: int = 0) -> tuple[HardConstraint, nn.Module]:
    torch.manual_seed(seed)
    net = nets.create("mlp", problem.in_dim, problem.out_dim, width=8, depth=2).double()
    hard = variants.create("hard_constraint")
    assert isinstance(hard, HardConstraint)
    return hard, hard.setup(problem, net)


def test_every_problem_has_a_hard_constraint() -> None:
    assert sorted(HARD) == problems.names()


@pytest.mark.parametrize("name", sorted(HARD))
def test_hard_constraint_zeroes_exactly_the_dropped_losses(name: str) -> None:
    problem = problems.create(name, **HARD_SMALL[name])
    assert problem.hard_constrained_losses == HARD[name]
    assert set(HARD[name]) < set(problem.loss_names)
    hard, model = _hard_model(problem)
    batch = _batch(problem, seed=3)
    raw = problem.losses(model, batch)
    for key in problem.loss_names:
        worst = raw.pointwise[key].detach().abs().max().item()
        if key in HARD[name]:
            assert worst <= 1e-15, (key, worst)  # exact up to the rounding of the data
        else:
            assert worst > 1e-6, (key, worst)  # a loss the transform does not enforce
    kept = hard.transform_losses(raw, step=1)
    assert list(kept) == [k for k in problem.loss_names if k not in HARD[name]]
    assert set(kept.pointwise) == set(kept) and not set(HARD[name]) & set(kept.points)
    # the lift uses only initial/boundary data: N = 0 is not the solution in the interior
    inside = problem.domain.lower[0] + 0.37 * (problem.domain.upper[0] - problem.domain.lower[0])
    pts = torch.tensor([[inside, 0.61 * problem.domain.upper[1]]], dtype=F64)
    if name not in ("allen-cahn", "reaction-diffusion", "burgers"):  # analytic references
        lifted = problem.hard_constraint(pts, torch.zeros(1, problem.out_dim, dtype=F64))
        assert (lifted - problem.reference(pts)).abs().max().item() > 1e-2


def test_wave_hard_constraint_initial_value_velocity_and_edges() -> None:
    problem = problems.create("wave")
    _, model = _hard_model(problem, seed=1)
    x = torch.linspace(0, 1, 17, dtype=F64)[:, None]
    xc, tc = x.clone().requires_grad_(), torch.zeros_like(x).requires_grad_()
    u = model(torch.cat([xc, tc], dim=1))
    (u_t,) = torch.autograd.grad(u.sum(), tc)
    assert torch.equal(u.detach(), problem.initial_condition(torch.cat([x, 0 * x], dim=1)))
    assert torch.equal(u_t, torch.zeros_like(u_t))  # u_t(x, 0) = 0 exactly
    t = torch.rand(9, 1, dtype=F64, generator=torch.Generator().manual_seed(0))
    edges = torch.cat([torch.cat([0 * t, t], 1), torch.cat([0 * t + 1, t], 1)])
    assert model(edges).abs().max().item() < 1e-15
    # second derivatives go through the transform: u = u0 + c x(1 − x) t² for N ≡ c
    pts = torch.tensor([[0.3, 0.4], [0.8, 0.9]], dtype=F64)
    c = 0.7
    residual = problem.pde_residual(lambda p: problem.hard_constraint(p, c + 0 * p[:, :1]), pts)
    xs, ts = pts[:, 0:1], pts[:, 1:2]
    u0_xx = -(math.pi**2) * torch.sin(math.pi * xs) - 0.5 * 9 * math.pi**2 * torch.sin(
        3 * math.pi * xs
    )
    expected = 2 * c * xs * (1 - xs) - 4.0 * (u0_xx - 2 * c * ts**2)
    torch.testing.assert_close(residual, expected, rtol=1e-12, atol=1e-12)


def test_klein_gordon_hard_constraint_data_and_exact_network() -> None:
    problem = problems.create("klein-gordon")
    _, model = _hard_model(problem, seed=2)
    x = torch.linspace(0, 1, 11, dtype=F64)[:, None]
    xc, tc = x.clone().requires_grad_(), torch.zeros_like(x).requires_grad_()
    u = model(torch.cat([xc, tc], dim=1))
    (u_t,) = torch.autograd.grad(u.sum(), tc)
    assert torch.equal(u.detach(), x) and torch.equal(u_t, torch.zeros_like(u_t))
    t = torch.linspace(0, 1, 11, dtype=F64)[:, None]
    assert torch.equal(model(torch.cat([0 * t, t], 1)), torch.zeros_like(t))
    right = torch.cat([0 * t + 1, t], 1)
    assert torch.equal(model(right), torch.cos(5 * math.pi * t) + t**3)
    assert torch.equal(model(right), problem.reference(right))
    # N = −(1 + x) t gives the exact solution: every loss vanishes through the transform
    batch = _batch(problem, seed=4)

    def exact(p: torch.Tensor) -> torch.Tensor:
        return problem.hard_constraint(p, -(1 + p[:, 0:1]) * p[:, 1:2])

    for key, r in problem.losses(exact, batch).pointwise.items():
        assert r.detach().abs().max().item() < 1e-9, key


@pytest.mark.parametrize("pressure_boundary", ["outflow", "all"])
def test_kovasznay_hard_constraint_matches_the_dirichlet_data(pressure_boundary: str) -> None:
    problem = problems.create("kovasznay", pressure_boundary=pressure_boundary)
    _, model = _hard_model(problem, seed=5)
    gen = torch.Generator().manual_seed(6)
    boundary = problem.domain.sample_boundary(16, gen, "cpu", F64)
    error = (model(boundary) - problem.reference(boundary)).detach()
    assert error[:, :2].abs().max().item() < 1e-15
    mask = problem.pressure_mask(boundary)[:, 0] == 1
    assert error[mask, 2].abs().max().item() < 1e-15
    if pressure_boundary == "outflow":
        assert error[~mask, 2].abs().min().item() > 0  # p is free elsewhere


def test_poisson_inverse_hard_constraint_leaves_u_free() -> None:
    problem = problems.create("poisson-inverse", n_data_side=6)
    _, model = _hard_model(problem, seed=7)
    pts = torch.rand(20, 2, dtype=F64, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(model(pts)[:, 0], model.net(pts)[:, 0], rtol=0, atol=0)
    boundary = problem.domain.sample_boundary(8, torch.Generator().manual_seed(9), "cpu", F64)
    assert (model(boundary)[:, 1:] - problem.exact_a(boundary)).abs().max().item() < 1e-15


@pytest.mark.parametrize("name", ["convection", "reaction-diffusion", "allen-cahn"])
def test_periodic_problems_hard_constraint_is_the_initial_condition(name: str) -> None:
    problem = problems.create(name, **HARD_SMALL[name])
    _, model = _hard_model(problem, seed=10)
    initial = _batch(problem, seed=11)["initial"]
    raw = problem.losses(model, _batch(problem, seed=11))
    assert torch.equal(raw.pointwise["initial"], torch.zeros_like(raw.pointwise["initial"]))
    inside = initial + torch.tensor([0.0, 0.5], dtype=F64)
    shift = model(inside) - model(initial)
    torch.testing.assert_close(shift, 0.5 * model.net(inside), rtol=1e-12, atol=1e-14)
