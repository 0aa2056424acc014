"""Inverse Poisson: exact source, data, losses, per-output errors; unknowns in the runner."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from autobalance import problems
from autobalance.derivatives import laplacian
from autobalance.errors import ConfigError
from autobalance.experiments import RunConfig, train
from autobalance.losses import NamedLosses
from autobalance.problems import input_columns
from autobalance.problems.helmholtz import Helmholtz
from autobalance.problems.poisson_inverse import PoissonInverse

F64 = torch.float64


def _batch(problem: problems.Problem, dtype: torch.dtype = F64) -> dict[str, torch.Tensor]:
    return problem.sample(torch.Generator().manual_seed(0), "cpu", dtype)


def test_source_matches_autograd_of_the_exact_fields() -> None:
    """f = −∇·(a∇u) by autograd of the exact u and a equals the hand-derived formula."""
    pts = _batch(problems.create("poisson-inverse"))["residual"]
    x, y = input_columns(pts)
    xy = torch.cat([x, y], dim=1)
    u, a = PoissonInverse.exact_u(xy), PoissonInverse.exact_a(xy)
    u_x, u_y = torch.autograd.grad(u.sum(), (x, y), create_graph=True)
    flux_x = torch.autograd.grad((a * u_x).sum(), x, retain_graph=True)[0]
    flux_y = torch.autograd.grad((a * u_y).sum(), y)[0]
    torch.testing.assert_close(
        -(flux_x + flux_y), PoissonInverse.source(pts), rtol=1e-12, atol=1e-12
    )


def test_exact_fields_have_zero_residual_and_losses() -> None:
    problem = problems.create("poisson-inverse", noise_std=0.0)
    batch = _batch(problem)
    residual = problem.pde_residual(problem.reference, batch["residual"]).detach()
    assert PoissonInverse.source(batch["residual"]).abs().max() > 5
    assert residual.abs().max() < 1e-12
    losses = problem.losses(problem.reference, batch)
    assert isinstance(losses, NamedLosses)
    assert list(losses) == list(problem.loss_names) == ["residual", "data", "boundary_a"]
    assert all(v.item() < 1e-26 for v in losses.values())
    assert len(losses.coords["residual"]) == 2
    wrong_a = problem.pde_residual(
        lambda p: torch.cat([PoissonInverse.exact_u(p), torch.ones_like(p[:, :1])], 1),
        batch["residual"],
    )
    assert wrong_a.abs().max() > 1.0  # a = 1 is not the coefficient


def test_observations_follow_pinnacle() -> None:
    problem = problems.create("poisson-inverse")
    pts = problem.data_points
    assert pts.shape == (2500, 2)
    axis = torch.linspace(0, 1, 50, dtype=F64)  # boundary included
    torch.testing.assert_close(torch.unique(pts[:, 0]), axis)
    noise = problem.observations - PoissonInverse.exact_u(pts)
    assert 0.09 < noise.std().item() < 0.11 and abs(noise.mean().item()) < 0.01
    again = problems.create("poisson-inverse")
    assert torch.equal(again.observations, problem.observations)  # deterministic from the seed
    other = problems.create("poisson-inverse", noise_seed=1)
    assert not torch.equal(other.observations, problem.observations)
    losses = problem.losses(problem.reference, _batch(problem))
    assert losses["data"].item() == pytest.approx(noise.pow(2).mean().item(), rel=1e-12)
    assert losses["boundary_a"].item() < 1e-28
    batch = _batch(problem)
    assert torch.equal(batch["data"], pts) and batch["boundary_a"].shape == (256, 2)


def test_per_output_errors_and_held_out_grid() -> None:
    problem = problems.create("poisson-inverse", n_eval=21)
    grid = problem.evaluation_points("cpu", F64)
    assert grid.shape == (441, 2)
    assert torch.cdist(_batch(problem)["residual"], grid).min() > 0
    ref = problem.reference(grid)
    pred = ref.clone()
    pred[:, 1] += 0.1
    errs = problem.extra_errors(pred, ref)
    assert errs["rel_l2_u"] == 0 and errs["linf_a"] == pytest.approx(0.1)
    assert errs["mse_a"] == pytest.approx(0.01)
    assert set(errs) == {
        f"{e}_{f}" for e in ("rel_l2", "rel_l1", "mse", "linf") for f in ("u", "a")
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"noise_std": -0.1}, "'noise_std' must be a finite number >= 0"),
        ({"n_boundary": 10}, "multiple of 4"),
        ({"n_data_side": 1}, "'n_data_side' must be >= 2"),
        ({"noise_seed": 1.5}, "'noise_seed' must be an integer"),
        ({"sigma": 0.1}, "unknown parameter 'sigma'"),
    ],
)
def test_bad_params(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        problems.create("poisson-inverse", **params)


def test_smoke_training_reduces_both_errors(tmp_path: Path) -> None:
    config = RunConfig(
        problem="poisson-inverse",
        problem_params={"n_residual": 256, "n_boundary": 64, "n_eval": 21},
        net_params={"width": 20, "depth": 2},
        method="adam",
        lr=1e-2,
        steps=200,
        eval_every=100,
        checkpoint_every=0,
        device="cpu",
    )
    metrics = train(config, tmp_path, progress=False)
    assert metrics["status"] == "ok"
    evals = (tmp_path / "eval.csv").read_text().splitlines()
    assert evals[0].startswith("step,wall_s,rel_l2,rel_l1,mse,linf,rel_l2_u,rel_l1_u,mse_u,linf_u")
    first = dict(zip(evals[0].split(","), map(float, evals[1].split(",")), strict=True))
    assert metrics["rel_l2_u"] < 0.5 * first["rel_l2_u"]
    assert metrics["rel_l2_a"] < 0.5 * first["rel_l2_a"]
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["rel_l2_a"] == pytest.approx(metrics["rel_l2_a"])


class _LearnK(Helmholtz):
    """Helmholtz with an unknown wave number ``k`` learnt from exact data (a test problem)."""

    loss_names = ("residual", "boundary", "data")

    def unknowns(self) -> dict[str, nn.Parameter]:
        if not hasattr(self, "_k_hat"):
            self._k_hat = nn.Parameter(torch.tensor(0.5))
        return {"k": self._k_hat}

    def losses(self, model: Any, batch: Any) -> NamedLosses:
        k = self.unknowns()["k"]
        x, y = input_columns(batch["residual"])
        u = model(torch.cat([x, y], dim=1))
        residual = laplacian(u, (x, y)) + k**2 * u - self.source(batch["residual"])
        data = model(batch["residual"]) - self.reference(batch["residual"])
        pointwise = {"residual": residual, "boundary": model(batch["boundary"]), "data": data}
        return NamedLosses({n: r.pow(2).mean() for n, r in pointwise.items()}, pointwise=pointwise)

    def extra_errors(self, prediction: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
        return {"abs_err_k": abs(self.unknowns()["k"].item() - self.k)}


@pytest.fixture
def learn_k() -> Iterator[str]:
    problems.CATALOG.add("learn_k", _LearnK)
    yield "learn_k"
    problems.CATALOG.remove("learn_k")


def _k_config(**overrides: Any) -> RunConfig:
    fields: dict[str, Any] = {
        "problem": "learn_k",
        "problem_params": {"a2": 1, "k": 2.0, "n_residual": 64, "n_boundary": 32, "n_eval": 11},
        "net_params": {"width": 16, "depth": 2},
        "method": "adam",
        "lr": 1e-2,
        "steps": 60,
        "eval_every": 30,
        "checkpoint_every": 0,
        "device": "cpu",
        "dtype": "float64",
    }
    fields.update(overrides)
    return RunConfig(**fields)


def test_runner_trains_checkpoints_and_resumes_unknowns(learn_k: str, tmp_path: Path) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    full = train(_k_config(), straight, progress=False)
    ckpt = torch.load(straight / "checkpoint.pt", weights_only=True)
    k_final = ckpt["unknowns"]["k"]
    assert k_final.dtype == F64 and k_final.item() != 0.5  # it was optimised
    assert full["abs_err_k"] == pytest.approx(abs(k_final.item() - 2.0))
    train(_k_config(steps=30), split, progress=False)
    resumed = train(_k_config(), split, progress=False, resume=True)
    again = torch.load(split / "checkpoint.pt", weights_only=True)
    assert torch.equal(again["unknowns"]["k"], k_final)
    for name, tensor in ckpt["model"].items():
        assert torch.equal(again["model"][name], tensor), name
    assert resumed["abs_err_k"] == full["abs_err_k"]
    assert math.isfinite(resumed["rel_l2"])
