"""``dtype = "float64"`` reaches everything: every problem (points, references, unknowns), network,
method (its states), variant, phase and diagnostic computes and keeps float64, a few steps each.

Step counters are exempt: AutoBalance keeps them as float32 counts by design
(:mod:`autobalance.optim.adam_rule`), torch's Adam as float32 scalars.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from autobalance import methods, nets, problems
from autobalance.diagnostics.hessian import full_hessian, named_loss
from autobalance.diagnostics.preconditioning import method_preconditioner
from autobalance.experiments import runner, train
from autobalance.experiments.config_files import parse_value
from autobalance.experiments.training_run import TrainingRun
from autobalance.phases import PHASES, create_phase, parse_phase, problem_objective, run_phase
from test_run_matrix import NETWORK_OPTIONS, SMALL, VARIANT_SPECS

F64 = torch.float64
#: State entries that count steps (kept as float32 or int by design).
COUNTERS = ("step", "steps")


@pytest.fixture(autouse=True)
def _no_solution_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner.TrainingRun, "write_plot", lambda self: None)


def floating_tensors(state: Any, path: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every floating-point tensor of a nested state with its path, step counters left out."""
    if isinstance(state, torch.Tensor):
        if torch.is_floating_point(state) and path.rsplit(".", 1)[-1] not in COUNTERS:
            yield path, state
    elif isinstance(state, dict):
        for key, value in state.items():
            yield from floating_tensors(value, f"{path}.{key}")
    elif isinstance(state, (list, tuple)):
        for i, value in enumerate(state):
            yield from floating_tensors(value, f"{path}.{i}")


def assert_float64(state: Any, what: str) -> None:
    found = list(floating_tensors(state))
    bad = [(p, t.dtype) for p, t in found if t.dtype != F64]
    assert not bad, f"{what}: not float64: {bad[:5]}"


def small(problem: str) -> dict[str, Any]:
    known = problems.parameters(problem)
    return {k: v for k, v in SMALL.items() if k in known}


def _config(problem: str, **overrides: Any) -> Any:
    from autobalance.experiments import RunConfig

    fields: dict[str, Any] = {
        "problem": problem,
        "problem_params": small(problem),
        "net_params": {"width": 6, "depth": 1},
        "method": "autobalance",
        "steps": 2,
        "eval_every": 2,
        "log_every": 1,
        "device": "cpu",
        "dtype": "float64",
        "resample_every": 0,  # the checkpoint keeps the points
        "phases": ["lbfgs:iters=2", "gauss_newton:iters=1"],
    }
    return RunConfig(**{**fields, **overrides})


@pytest.mark.parametrize("problem", problems.names())
def test_every_problem_trains_and_finishes_in_float64(problem: str, tmp_path: Path) -> None:
    config = _config(problem)
    run = TrainingRun(config, tmp_path / "objects")
    assert run.eval_points.dtype == F64 and run.eval_reference.dtype == F64
    assert run.predict().dtype == F64
    assert_float64(run.next_batch(), "points")
    metrics = train(config, tmp_path / "run", progress=False)
    assert metrics["status"] == "ok" and metrics["dtype"] == "float64"
    assert math.isfinite(metrics["rel_l2"]) and metrics["phase_iterations"] == 3
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    for key in ("model", "balancer", "unknowns", "batch", "variants"):
        assert_float64(ckpt[key], key)
    assert all(d["name"] for d in ckpt["phases"]["done"])


@pytest.mark.parametrize(("net", "options"), NETWORK_OPTIONS, ids=lambda v: str(v))
def test_every_network_computes_in_float64(net: str, options: list[str]) -> None:
    params: dict[str, Any] = {"width": 8}
    for option in options:
        key, _, value = option.removeprefix("--net-param=").partition("=")
        params[key] = parse_value(value)
    model = nets.create(net, 2, 1, input_names=("x", "t"), **params).to(F64)
    assert_float64(model.state_dict(), net)
    assert model(torch.rand(5, 2, dtype=F64)).dtype == F64


@pytest.mark.parametrize("method", methods.names())
def test_every_method_keeps_float64_states(method: str) -> None:
    problem = problems.create("helmholtz", n_residual=16, n_boundary=8)
    torch.manual_seed(0)
    model = nets.create("mlp", 2, 1, width=6, depth=1).to(F64)
    batch = problem.sample(torch.Generator().manual_seed(0), "cpu", F64)
    example = dict(methods.spec(method).example_params)
    balancer = methods.create(method, list(model.parameters()), lr=1e-3, **example)
    for _ in range(3):
        info = balancer.step(problem.losses(model, batch))
    assert all(math.isfinite(v) for v in info.values.values())
    assert_float64(model.state_dict(), "parameters")
    assert_float64(balancer.state_dict(), f"{method} state")


@pytest.mark.parametrize(("variant", "problem"), VARIANT_SPECS, ids=[v for v, _ in VARIANT_SPECS])
def test_every_variant_keeps_float64(variant: str, problem: str, tmp_path: Path) -> None:
    name, _, body = variant.partition(":")
    spec: dict[str, Any] = {"name": name}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition("=")
        spec[key] = float(value) if "." in value else int(value)
    config = _config(problem, variants=[spec], phases=["lbfgs:iters=1"])
    metrics = train(config, tmp_path, progress=False)
    assert metrics["status"] == "ok"
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    for key in ("model", "balancer", "variants"):
        assert_float64(ckpt[key], key)


@pytest.mark.parametrize("name", PHASES.names())
def test_every_phase_keeps_float64(name: str) -> None:
    problem = problems.create("helmholtz", n_residual=24, n_boundary=8)
    torch.manual_seed(0)
    model = nets.create("mlp", 2, 1, width=5, depth=1).to(F64)
    batch = problem.sample(torch.Generator().manual_seed(0), "cpu", F64)
    spec = parse_phase(f"{name}:iters=2")
    phase = create_phase(spec, model.parameters())
    result = run_phase(phase, problem_objective(problem, model, batch), spec)
    assert result.records and all(math.isfinite(r.loss) for r in result.records)
    assert_float64(phase.state_dict(), name)
    assert_float64(model.state_dict(), "parameters")


def test_diagnostics_compute_in_float64() -> None:
    problem = problems.create("helmholtz", n_residual=16, n_boundary=8)
    torch.manual_seed(0)
    model = nets.create("mlp", 2, 1, width=3, depth=1).to(F64)
    batch = problem.sample(torch.Generator().manual_seed(0), "cpu", F64)
    params = list(model.parameters())
    balancer = methods.create("autobalance", params, lr=1e-3, base="adam")
    balancer.step(problem.losses(model, batch))
    for loss in ("residual", "boundary"):
        hessian = full_hessian(named_loss(lambda: problem.losses(model, batch), loss), params)
        n = sum(p.numel() for p in params)
        assert hessian.dtype == F64 and hessian.shape == (n, n)
        assert method_preconditioner(balancer, loss, params).dtype == F64
