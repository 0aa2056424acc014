"""PINN variants: each transformation by hand, composition, balancers, runner resume."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from autobalance import methods, nets, problems, variants
from autobalance.derivatives import gradient
from autobalance.errors import ConfigError, HyperparameterError, UnknownNameError
from autobalance.experiments import RunConfig, train
from autobalance.losses import NamedLosses
from autobalance.problems.base import Batch, Box, Model, Problem, input_columns
from autobalance.variants import VariantStack


@dataclass(eq=False, kw_only=True)
class Advection(Problem):
    """Tiny time-dependent test problem: u_t + u_x = 0 on [0,1]², u(x, 0) = sin(2πx)."""

    name = "advection-test"
    input_names = ("x", "t")
    output_names = ("u",)
    loss_names = ("residual", "initial")

    n: int = 16

    @property
    def domain(self) -> Box:
        return Box((0.0, 0.0), (1.0, 1.0))

    @property
    def evaluation_shape(self) -> tuple[int, ...]:
        return (5, 5)

    def sample(self, generator: torch.Generator, device: Any, dtype: torch.dtype) -> dict:
        initial = self.domain.sample_face(1, 0, self.n, generator, device, dtype)
        return {
            "residual": self.domain.sample_interior(self.n, generator, device, dtype),
            "initial": initial,
        }

    def losses(self, model: Model, batch: Batch) -> NamedLosses:
        x, t = input_columns(batch["residual"])
        u = model(torch.cat([x, t], dim=1))
        residual = gradient(u, t) + gradient(u, x)
        initial = model(batch["initial"]) - torch.sin(2 * math.pi * batch["initial"][:, :1])
        pointwise = {"residual": residual, "initial": initial}
        return NamedLosses(
            {k: r.pow(2).mean() for k, r in pointwise.items()},
            pointwise=pointwise,
            points={k: batch[k] for k in pointwise},
            coords={"residual": [x, t]},
        )

    def reference(self, points: Tensor) -> Tensor:
        return torch.sin(2 * math.pi * (points[:, :1] - points[:, 1:]))


def fixed_losses(r: Tensor, points: Tensor | None = None) -> NamedLosses:
    """NamedLosses with one loss ``residual = mean(r²)`` and a constant ``boundary``."""
    pts = points if points is not None else torch.zeros(r.shape[0], 2)
    return NamedLosses(
        {"residual": r.pow(2).mean(), "boundary": torch.tensor(0.5)},
        pointwise={"residual": r, "boundary": torch.ones(3, 1)},
        points={"residual": pts, "boundary": torch.zeros(3, 2)},
    )


def small_helmholtz() -> Problem:
    return problems.create("helmholtz", a2=1, n_residual=32, n_boundary=16, n_eval=11)


def test_registry() -> None:
    assert variants.names() == ["causal", "gpinn", "hard_constraint", "rba", "self_adaptive"]
    assert variants.parameters("rba") == {
        "loss": "residual",
        "gamma": 0.999,
        "eta": 0.01,
        "init": 0.0,
    }
    assert {e.name: e.summary for e in variants.describe()}["causal"].startswith("Causal weighting")
    with pytest.raises(UnknownNameError, match="Did you mean 'rba'"):
        variants.create("rbaa")
    with pytest.raises(ConfigError, match="parameter 'eta'"):
        variants.create("rba", eta="big")
    with pytest.raises(HyperparameterError, match="'gamma' must lie in"):
        variants.create("rba", gamma=1.0)
    with pytest.raises(ConfigError, match="'mask'"):
        variants.create("self_adaptive", mask="cube")
    with pytest.raises(ConfigError, match="variants\\[0\\] must be a mapping"):
        variants.resolve_specs([{"eta": 1}])


def test_rba_multipliers_after_two_updates() -> None:
    rba = variants.create("rba", gamma=0.9, eta=0.5, init=1.0)
    r1 = torch.tensor([[1.0], [-2.0], [4.0]], requires_grad=True)
    out = rba.transform_losses(fixed_losses(r1), step=1)
    lam1 = 0.9 * 1.0 + 0.5 * torch.tensor([[0.25], [0.5], [1.0]])
    torch.testing.assert_close(rba.lambdas, lam1)
    torch.testing.assert_close(out["residual"], ((lam1 * r1) ** 2).mean())
    assert out["boundary"] is not None and "residual" in out.pointwise
    r2 = torch.tensor([[2.0], [0.0], [-1.0]])
    out2 = rba.transform_losses(fixed_losses(r2), step=2)
    lam2 = 0.9 * lam1 + 0.5 * torch.tensor([[1.0], [0.0], [0.5]])
    torch.testing.assert_close(rba.lambdas, lam2)
    torch.testing.assert_close(out2["residual"], ((lam2 * r2) ** 2).mean())
    # The multipliers carry no gradient: d loss / d r = 2 λ² r / N.
    (grad,) = torch.autograd.grad(out["residual"], r1)
    torch.testing.assert_close(grad, 2 * lam1**2 * r1.detach() / 3)
    with pytest.raises(ConfigError, match="must stay fixed"):
        rba.transform_losses(fixed_losses(torch.ones(4, 1)), step=3)


def test_rba_and_self_adaptive_keep_their_points_fixed() -> None:
    for variant in (variants.create("rba"), variants.create("self_adaptive")):
        first = variant.transform_batch({"residual": torch.rand(4, 2), "b": torch.rand(2, 2)}, 1)
        fresh = {"residual": torch.rand(4, 2), "b": torch.rand(2, 2)}
        second = variant.transform_batch(fresh, 2)
        assert torch.equal(second["residual"], first["residual"])
        assert second["b"] is fresh["b"]
        with pytest.raises(ConfigError, match="samples no points for loss 'residual'"):
            variant.transform_batch({"b": torch.rand(2, 2)}, 3)


def test_causal_weights_by_hand() -> None:
    torch.testing.assert_close(
        variants.causal_weights(torch.tensor([1.0, 2.0, 0.5]), epsilon=0.5),
        torch.tensor([1.0, math.exp(-0.5), math.exp(-1.5)]),
    )
    causal = variants.create("causal", chunks=2, epsilon=1.0)
    causal.setup(Advection(), nn.Linear(2, 1))
    t = torch.tensor([0.1, 0.2, 0.6, 0.9, 0.7])
    points = torch.stack([torch.rand(5), t], dim=1)
    r = torch.tensor([[1.0], [3.0], [2.0], [0.0], [1.0]], requires_grad=True)
    out = causal.transform_losses(fixed_losses(r, points), step=1)
    l1, l2 = (1 + 9) / 2, (4 + 0 + 1) / 3
    w2 = math.exp(-l1)
    expected = 0.5 * (l1 + w2 * l2)
    assert out["residual"].item() == pytest.approx(expected, rel=1e-6)
    torch.testing.assert_close(causal.last_weights, torch.tensor([1.0, w2]))
    torch.testing.assert_close(out.pointwise["residual"].pow(2).mean(), out["residual"])
    # Gradient through the chunk losses only: d/dr_j = w_b r_j / (M n_b) · 2.
    (grad,) = torch.autograd.grad(out["residual"], r)
    scale = torch.tensor([[1 / 4], [1 / 4], [w2 / 6], [w2 / 6], [w2 / 6]])
    torch.testing.assert_close(grad, 2 * scale * r.detach())


@pytest.mark.parametrize("name", ["causal", "rba"])
def test_a_phase_objective_refuses_weights_recomputed_without_gradient(name: str) -> None:
    """Causal weights and RBA multipliers are recomputed from the residuals at every
    evaluation, without gradient: the weighted loss moves with θ but its autograd gradient does
    not follow, so a line search on it is ill-posed.  A phase objective refuses them by name."""
    from autobalance.phases import problem_objective

    torch.manual_seed(0)
    problem = Advection()
    batch = problem.sample(torch.Generator().manual_seed(0), "cpu", torch.float64)
    stack = variants.from_specs([{"name": "gpinn", "coordinates": ["x"]}, {"name": name}])
    net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    model = stack.setup(problem, net)
    with pytest.raises(ConfigError, match=f"variant '{name}' recomputes its loss weights"):
        problem_objective(problem, model, batch, variants=stack)
    # The ill-posedness itself: the loss's slope along a direction is not its autograd
    # directional derivative.
    theta = [p.detach().clone() for p in model.parameters()]
    direction = [torch.randn_like(p) for p in theta]

    def along(alpha: float) -> Tensor:
        with torch.no_grad():
            for p, p0, d in zip(model.parameters(), theta, direction, strict=True):
                p.copy_(p0 + alpha * d)
        weighted = stack.variants[1].transform_losses(problem.losses(model, batch), 0)
        return weighted["residual"]

    along(0.0)  # RBA: multipliers of the first call
    loss = along(0.0)
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    pairs = zip(grads, direction, strict=True)
    slope = sum(float((g * d).sum()) for g, d in pairs if g is not None)
    finite = (float(along(1e-4).detach()) - float(along(-1e-4).detach())) / 2e-4
    assert abs(finite - slope) > 1e-3 * abs(slope)


def test_a_phase_objective_applies_variants_with_a_gradient() -> None:
    """gPINN adds a loss that is an ordinary function of θ: the phase objective has it."""
    from autobalance.phases import problem_objective

    torch.manual_seed(0)
    problem = Advection()
    batch = problem.sample(torch.Generator().manual_seed(0), "cpu", torch.float64)
    stack = variants.from_specs([{"name": "gpinn", "coordinates": ["x"]}])
    model = stack.setup(problem, nets.create("mlp", 2, 1, width=8, depth=2).double())
    objective = problem_objective(problem, model, batch, variants=stack)
    expected = stack.transform_losses(problem.losses(model, batch), 0)
    got = objective.losses(batch)
    assert list(got) == ["residual", "initial", "residual_grad"] == list(expected)
    for key, value in got.items():
        torch.testing.assert_close(value, expected[key])
    assert set(objective.residuals(batch)) == set(expected)  # type: ignore[misc]


def test_causal_needs_a_time_input() -> None:
    with pytest.raises(ConfigError, match="problem 'helmholtz' has no time input 't'"):
        variants.create("causal").setup(small_helmholtz(), nn.Linear(2, 1))


class KnownFunction(nn.Module):
    """``u(x, y) = sin(x) · y²`` (no parameters): residual r = u."""

    def forward(self, xy: Tensor) -> Tensor:
        return torch.sin(xy[:, :1]) * xy[:, 1:] ** 2


def test_gpinn_against_the_analytic_derivative() -> None:
    pts = torch.rand(7, 2, dtype=torch.float64)
    x, y = input_columns(pts)
    r = KnownFunction()(torch.cat([x, y], dim=1))
    losses = NamedLosses(
        {"residual": r.pow(2).mean()},
        pointwise={"residual": r},
        points={"residual": pts},
        coords={"residual": [x, y]},
    )
    gp = variants.create("gpinn", weight=0.1)
    gp.setup(small_helmholtz(), nn.Linear(2, 1).double())
    out = gp.transform_losses(losses, step=1)
    dx = torch.cos(pts[:, 0]) * pts[:, 1] ** 2
    dy = 2 * torch.sin(pts[:, 0]) * pts[:, 1]
    assert list(out) == ["residual", "residual_grad"]
    torch.testing.assert_close(out["residual_grad"], 0.1 * (dx.pow(2).mean() + dy.pow(2).mean()))
    torch.testing.assert_close(out.pointwise["residual_grad"].pow(2).mean(), out["residual_grad"])
    per = variants.create("gpinn", coordinates=["y"], per_coordinate=True)
    per.setup(small_helmholtz(), nn.Linear(2, 1))
    out = per.transform_losses(losses, step=1)
    assert list(out) == ["residual", "residual_grad_y"]
    torch.testing.assert_close(out["residual_grad_y"], dy.pow(2).mean())
    with pytest.raises(ConfigError, match="unknown coordinate"):
        variants.create("gpinn", coordinates=["z"]).setup(small_helmholtz(), nn.Linear(2, 1))
    no_coords = NamedLosses({"residual": r.pow(2).mean()}, pointwise={"residual": r})
    with pytest.raises(ConfigError, match="carries no input columns"):
        gp.transform_losses(no_coords, step=1)


def test_hard_constraint_is_exact_on_the_boundary() -> None:
    problem = small_helmholtz()
    net = nets.create("mlp", 2, 1, width=8, depth=2)
    hard = variants.create("hard_constraint")
    model = hard.setup(problem, net)
    boundary = problem.domain.sample_boundary(
        8, torch.Generator().manual_seed(0), "cpu", torch.float32
    )
    assert torch.equal(model(boundary), torch.zeros(32, 1))
    inside = torch.tensor([[0.3, -0.5]])
    torch.testing.assert_close(model(inside), (1 - 0.09) * (1 - 0.25) * net(inside))
    batch = problem.sample(torch.Generator().manual_seed(1), "cpu", torch.float32)
    out = hard.transform_losses(problem.losses(model, batch), step=1)
    assert list(out) == ["residual"] and "boundary" not in out.pointwise
    kept = variants.create("hard_constraint", drop=False)
    kept.setup(problem, net)
    assert list(kept.transform_losses(problem.losses(model, batch), 1)) == [
        "residual",
        "boundary",
    ]
    with pytest.raises(ConfigError, match="problem 'advection-test' has no hard constraint"):
        variants.create("hard_constraint").setup(Advection(), net)
    # scale: u = T(x, scale · N(x)), exact on the boundary still
    scaled = variants.create("hard_constraint", scale=100.0).setup(problem, net)
    torch.testing.assert_close(scaled(inside), 100 * (1 - 0.09) * (1 - 0.25) * net(inside))
    assert torch.equal(scaled(boundary), torch.zeros(32, 1))
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(HyperparameterError, match="scale"):
            variants.create("hard_constraint", scale=bad)


def test_self_adaptive_ascent_step() -> None:
    sa = variants.create("self_adaptive", mask="square", lr=0.1, init=2.0)
    sa.setup(small_helmholtz(), nn.Linear(2, 1))
    r = torch.tensor([[1.0], [-3.0]], requires_grad=True)
    out = sa.transform_losses(fixed_losses(r), step=1)
    torch.testing.assert_close(out["residual"], (4.0 * r.detach() ** 2).mean())
    assert sa.parameters() == []  # λ is not the balancer's
    (grad,) = torch.autograd.grad(out["residual"], r)
    torch.testing.assert_close(grad, 2 * 4.0 * r.detach() / 2)
    sa.after_step(1)
    # Adam's first step moves each weight by lr in the direction of +∂L/∂λ (ascent).
    assert sa.weights is not None
    torch.testing.assert_close(sa.weights.detach(), torch.tensor([2.1, 2.1]))
    ident = variants.create("self_adaptive", mask="identity", init=0.5)
    ident.setup(small_helmholtz(), nn.Linear(2, 1))
    out = ident.transform_losses(fixed_losses(r), step=1)
    torch.testing.assert_close(out["residual"], (0.5 * r.detach() ** 2).mean())


def test_causal_then_gpinn_compose() -> None:
    problem = Advection(n=24)
    torch.manual_seed(0)
    model = nets.create("mlp", 2, 1, width=8, depth=2)
    stack = variants.from_specs(
        [{"name": "causal", "chunks": 4}, {"name": "gpinn", "weight": 0.5, "coordinates": ["x"]}]
    )
    model = stack.setup(problem, model)
    batch = stack.transform_batch(problem.sample(torch.Generator(), "cpu", torch.float32), 1)
    raw = problem.losses(model, batch)
    out = stack.transform_losses(raw, step=1)
    assert list(out) == ["residual", "initial", "residual_grad"]
    causal = stack.variants[0]
    assert isinstance(causal, variants.CausalWeighting) and causal.last_weights is not None
    # gPINN differentiates the causally weighted terms: ∂(f r)/∂x = f ∂r/∂x (f detached).
    factor = (out.pointwise["residual"] / raw.pointwise["residual"]).detach()
    x = raw.coords["residual"][0]
    dr = torch.autograd.grad(raw.pointwise["residual"].sum(), x, retain_graph=True)[0]
    torch.testing.assert_close(out["residual_grad"], 0.5 * (factor * dr).pow(2).mean())
    assert out["initial"] is raw["initial"]


@pytest.mark.parametrize(
    ("method", "specs"),
    [
        ("autobalance", [{"name": "rba"}]),
        ("adam", [{"name": "hard_constraint"}]),
        ("autobalance", [{"name": "hard_constraint"}, {"name": "gpinn", "weight": 0.01}]),
        ("adam", [{"name": "self_adaptive"}, {"name": "rba", "loss": "boundary"}]),
    ],
    ids=["rba-autobalance", "hard-adam", "hard-gpinn-autobalance", "sa-rba-adam"],
)
def test_variants_train_with_a_balancer(method: str, specs: list) -> None:
    problem = small_helmholtz()
    stack = variants.from_specs(specs)
    model = stack.setup(problem, nets.create("mlp", 2, 1, width=10, depth=2))
    balancer = methods.create(method, model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for step in range(1, 4):
        batch = stack.transform_batch(problem.sample(gen, "cpu", torch.float32), step)
        losses = stack.transform_losses(problem.losses(model, batch), step)
        info = balancer.step(losses)
        stack.after_step(step)
        assert all(math.isfinite(v) for v in info.values.values())
    names = list(info.values)
    assert ("boundary" in names) != any(s["name"] == "hard_constraint" for s in specs)


def test_time_dependent_problem_with_causal_and_autobalance() -> None:
    problem = Advection()
    stack = VariantStack([variants.create("causal", chunks=4)])
    model = stack.setup(problem, nets.create("modified_mlp", 2, 1, width=8, depth=2))
    balancer = methods.create("autobalance", model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    first = last = math.nan
    for step in range(1, 11):
        losses = stack.transform_losses(
            problem.losses(model, problem.sample(gen, "cpu", torch.float32)), step
        )
        info = balancer.step(losses)
        first = info.values["initial"] if step == 1 else first
        last = info.values["initial"]
    assert last < first


def run_config(steps: int, specs: list) -> RunConfig:
    return RunConfig(
        problem="helmholtz",
        problem_params={"a2": 1, "n_residual": 32, "n_boundary": 16, "n_eval": 11},
        net="mlp",
        net_params={"width": 8, "depth": 2},
        method="adam",
        lr=1e-2,
        steps=steps,
        eval_every=5,
        log_every=5,
        checkpoint_every=0,
        device="cpu",
        variants=specs,
    )


def test_runner_resume_with_variants_is_bit_identical(tmp_path: Path) -> None:
    specs = [{"name": "self_adaptive"}, {"name": "rba", "loss": "boundary", "init": 1.0}]
    full = tmp_path / "full"
    split = tmp_path / "split"
    train(run_config(12, specs), full, progress=False)
    train(run_config(6, specs), split, progress=False)
    train(run_config(12, specs), split, progress=False, resume=True)
    a = torch.load(full / "checkpoint.pt", weights_only=True)
    b = torch.load(split / "checkpoint.pt", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    sa_a, sa_b = a["variants"]["states"][0], b["variants"]["states"][0]
    assert torch.equal(sa_a["weights"], sa_b["weights"])
    assert not torch.equal(sa_a["weights"], torch.ones_like(sa_a["weights"]))
    assert torch.equal(a["variants"]["states"][1]["lambdas"], b["variants"]["states"][1]["lambdas"])
    assert a["final_losses"] == b["final_losses"]
    config = RunConfig.from_json(full / "config.json")
    assert config.variants[0] == {"name": "self_adaptive", **variants.parameters("self_adaptive")}
    with pytest.raises(ConfigError, match="variants"):
        train(run_config(14, specs[:1]), split, progress=False, resume=True)


def test_runner_hard_constraint_and_errors(tmp_path: Path) -> None:
    metrics = train(run_config(3, [{"name": "hard_constraint"}]), tmp_path, progress=False)
    assert set(metrics["final_losses"]) == {"residual"}
    assert metrics["variants"] == ["hard_constraint"]
    with pytest.raises(ConfigError, match="no time input"):
        train(run_config(3, [{"name": "causal"}]), tmp_path / "c", progress=False)
    with pytest.raises(UnknownNameError, match="unknown variant"):
        train(run_config(3, [{"name": "nope"}]), tmp_path / "n", progress=False)
    with pytest.raises(ConfigError, match="variants must be a list"):
        run_config(3, [{"eta": 1.0}]).validate()


def test_burgers_hard_constraint_is_exact() -> None:
    problem = problems.create("burgers")
    model = variants.create("hard_constraint").setup(problem, nets.create("mlp", 2, 1, width=6))
    x = torch.linspace(-1, 1, 9)
    initial = torch.stack([x, torch.zeros(9)], dim=1)
    torch.testing.assert_close(model(initial), -torch.sin(math.pi * x)[:, None])
    edges = torch.tensor([[-1.0, 0.3], [1.0, 0.8]])
    torch.testing.assert_close(model(edges), torch.zeros(2, 1), atol=1e-6, rtol=0)
