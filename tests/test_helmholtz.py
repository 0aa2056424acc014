"""The Helmholtz problem: exact solution, samplers, evaluation grid, registry errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from autobalance import problems
from autobalance.errors import ConfigError, UnknownNameError
from autobalance.problems.helmholtz import Helmholtz

F64 = torch.float64


def _batch(problem: problems.Problem, seed: int = 0, dtype: torch.dtype = F64):
    return problem.sample(torch.Generator().manual_seed(seed), "cpu", dtype)


@pytest.mark.parametrize(("a1", "a2", "k"), [(1, 4, 1), (2, 3, 5.5), (3, 1, 0)])
def test_exact_solution_has_zero_residual(a1: float, a2: float, k: float) -> None:
    problem = problems.create("helmholtz", a1=a1, a2=a2, k=k)
    batch = _batch(problem)
    residual = problem.pde_residual(problem.reference, batch["residual"]).detach()
    q_scale = problem.source(batch["residual"]).abs().max()
    assert q_scale > 1.0
    assert residual.abs().max() / q_scale < 1e-8
    losses = problem.losses(problem.reference, batch)
    assert list(losses) == ["residual", "boundary"] == list(problem.loss_names)
    assert math.sqrt(losses["residual"].item()) / q_scale < 1e-8
    assert losses["boundary"].item() < 1e-24


def test_residual_detects_a_wrong_solution() -> None:
    """The check above can fail: twice the exact solution leaves the residual 2q − q = q."""
    problem = problems.create("helmholtz", k=2.0)
    batch = _batch(problem)
    residual = problem.pde_residual(lambda p: 2 * problem.reference(p), batch["residual"])
    torch.testing.assert_close(residual.detach(), problem.source(batch["residual"]))
    shifted = problem.losses(lambda p: problem.reference(p) + 0.1, batch)
    assert shifted["boundary"].item() == pytest.approx(0.01, rel=1e-6)


def test_samplers_stay_in_the_domain_and_are_fresh() -> None:
    problem = problems.create("helmholtz", n_residual=500, n_boundary=200)
    gen = torch.Generator().manual_seed(1)
    first = problem.sample(gen, "cpu", torch.float32)
    second = problem.sample(gen, "cpu", torch.float32)
    interior, boundary = first["residual"], first["boundary"]
    assert interior.shape == (500, 2) and interior.dtype == torch.float32
    assert interior.min() >= -1 and interior.max() <= 1
    assert boundary.shape == (200, 2)
    assert boundary.min() >= -1 and boundary.max() <= 1
    on_edge = (boundary.abs() == 1).any(dim=1)
    assert bool(on_edge.all())
    edges = [
        (boundary[:, 0] == -1).sum(),
        (boundary[:, 0] == 1).sum(),
        (boundary[:, 1] == -1).sum(),
        (boundary[:, 1] == 1).sum(),
    ]
    assert [int(e) for e in edges] == [50, 50, 50, 50]
    assert not torch.equal(interior, second["residual"])
    assert not torch.equal(boundary, second["boundary"])
    again = problem.sample(torch.Generator().manual_seed(1), "cpu", torch.float32)
    assert torch.equal(again["residual"], interior)


def test_evaluation_grid_is_uniform_and_not_the_training_points() -> None:
    problem = problems.create("helmholtz", n_eval=51)
    grid = problem.evaluation_points("cpu", F64)
    assert grid.shape == (51 * 51, 2) and problem.evaluation_shape == (51, 51)
    axis = torch.linspace(-1, 1, 51, dtype=F64)
    torch.testing.assert_close(torch.unique(grid[:, 0]), axis)
    torch.testing.assert_close(torch.unique(grid[:, 1]), axis)
    torch.testing.assert_close(grid.reshape(51, 51, 2)[:, 0, 0], axis)  # "ij" order: x first
    train = _batch(problem)["residual"]
    nearest = torch.cdist(train, grid).min(dim=1).values
    assert nearest.min() > 0
    again = problem.evaluation_points("cpu", F64)
    assert torch.equal(grid, again)


def test_reference_and_source_match_the_formula() -> None:
    problem = problems.create("helmholtz", a1=2, a2=3, k=1.5)
    pts = _batch(problem)["residual"]
    x, y = pts[:, 0].numpy(), pts[:, 1].numpy()
    u = np.sin(2 * np.pi * x) * np.sin(3 * np.pi * y)
    q = (1.5**2 - (2 * np.pi) ** 2 - (3 * np.pi) ** 2) * u
    np.testing.assert_allclose(problem.reference(pts)[:, 0].numpy(), u, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(problem.source(pts)[:, 0].numpy(), q, rtol=1e-12, atol=1e-12)


def test_defaults_and_params() -> None:
    problem = problems.create("helmholtz")
    assert isinstance(problem, Helmholtz)
    assert problem.params == {
        "a1": 1.0,
        "a2": 4.0,
        "k": 1.0,
        "n_residual": 1024,
        "n_boundary": 256,
        "n_eval": 201,
    }
    assert problem.input_names == ("x", "y") and problem.output_names == ("u",)
    assert "helmholtz" in problems.names()


def test_losses_have_separate_graphs() -> None:
    """Back-propagating one loss (freeing its graph) leaves the other loss differentiable."""
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    problem = problems.create("helmholtz", n_residual=32, n_boundary=16)
    losses = problem.losses(net, _batch(problem, dtype=torch.float32))
    params = list(net.parameters())
    g_res = torch.autograd.grad(losses["residual"], params)
    g_bnd = torch.autograd.grad(losses["boundary"], params)
    assert all(torch.isfinite(g).all() for g in (*g_res, *g_bnd))


def test_unknown_parameter_error_names_it() -> None:
    with pytest.raises(ConfigError, match=r"'a3'.*Known parameters: a1, a2, k"):
        problems.create("helmholtz", a3=1)
    with pytest.raises(ConfigError, match="'k' must be a number"):
        problems.create("helmholtz", k="one")
    with pytest.raises(ConfigError, match="'a1' must be a nonzero integer"):
        problems.create("helmholtz", a1=1.5)
    with pytest.raises(ConfigError, match="'a2' must be a nonzero integer"):
        problems.create("helmholtz", a2=0)  # u ≡ 0: no relative error
    with pytest.raises(ConfigError, match="'k' must be a finite number"):
        problems.create("helmholtz", k=math.nan)
    with pytest.raises(ConfigError, match="multiple of 4"):
        problems.create("helmholtz", n_boundary=30)
    with pytest.raises(UnknownNameError, match="Did you mean 'helmholtz'"):
        problems.create("helmholz")
