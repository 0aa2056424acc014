"""The CUDA path: every method, AutoBalance and the diagnostics give the CPU's numbers on a GPU.

Skipped without a CUDA device (CI has none).  In float64 the same model, the same points and the
same losses must give the same trajectory on both devices up to rounding, for every
deterministic method; randomised methods (their draws come from the device's generator) must
stay finite.  ``tests/test_run_matrix.py`` runs every problem, network and variant on CUDA too.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import Tensor, nn

from autobalance import AutoBalance, methods, nets, problems
from autobalance.diagnostics.hessian import HessianOperator, full_hessian, lanczos
from autobalance.losses import NamedLosses

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

F64 = torch.float64


def three_losses(model: nn.Module, x: Tensor) -> NamedLosses:
    """Three mean-square terms of very different scales on a 2-input, 1-output model."""
    u = model(x)
    pointwise = {
        "residual": u - torch.sin(3 * x[:, :1]),
        "boundary": 10.0 * u[:4],
        "initial": math.sqrt(1e-3) * u,
    }
    return NamedLosses({k: r.pow(2).mean() for k, r in pointwise.items()}, pointwise=pointwise)


def trajectory(method: str, device: str, seed: int = 0, steps: int = 4) -> list[Tensor]:
    torch.manual_seed(0)
    model = nets.create("mlp", 2, 1, width=8, depth=2).to(F64)
    model = copy.deepcopy(model).to(device)
    x = torch.linspace(-1, 1, 32, dtype=F64).reshape(16, 2).to(device)
    torch.manual_seed(seed)
    kwargs = dict(methods.spec(method).example_params)
    if "weights" in kwargs:
        kwargs["weights"] = {"residual": 1.0, "boundary": 0.5, "initial": 2.0}
    balancer = methods.create(method, model.parameters(), lr=1e-2, **kwargs)
    for _ in range(steps):
        balancer.step(three_losses(model, x))
    return [p.detach().cpu() for p in model.parameters()]


def same(a: list[Tensor], b: list[Tensor], tol: float = 1e-9) -> bool:
    return all(torch.allclose(p, q, rtol=tol, atol=tol) for p, q in zip(a, b, strict=True))


@pytest.mark.parametrize("method", methods.names())
def test_every_method_matches_the_cpu(method: str) -> None:
    cpu = trajectory(method, "cpu")
    gpu = trajectory(method, "cuda")
    assert all(torch.isfinite(p).all() for p in gpu)
    randomised = not same(cpu, trajectory(method, "cpu", seed=1), tol=0.0)
    if not randomised:
        assert same(cpu, gpu), f"{method}: CUDA trajectory differs from the CPU's"


@pytest.mark.parametrize("base", ["adam", "adamw"])
def test_autobalance_float32_on_cuda_follows_the_cpu(base: str) -> None:
    torch.manual_seed(0)
    cpu_model = nets.create("mlp", 2, 1, width=16, depth=3)
    gpu_model = copy.deepcopy(cpu_model).cuda()
    x = torch.rand(64, 2) * 2 - 1
    cpu_opt = AutoBalance(cpu_model.parameters(), base=base, lr=1e-3)
    gpu_opt = AutoBalance(gpu_model.parameters(), base=base, lr=1e-3)
    for _ in range(20):
        info_cpu = cpu_opt.step(three_losses(cpu_model, x))
        info_gpu = gpu_opt.step(three_losses(gpu_model, x.cuda()))
    for p, q in zip(cpu_model.parameters(), gpu_model.parameters(), strict=True):
        torch.testing.assert_close(p, q.cpu(), rtol=1e-4, atol=1e-5)
    for name, value in info_cpu.values.items():
        assert math.isclose(value, info_gpu.values[name], rel_tol=1e-4, abs_tol=1e-6)
    state = gpu_opt.state_dict()
    restored = AutoBalance(gpu_model.parameters(), base=base, lr=1e-3)
    restored.load_state_dict(state)
    restored.step(three_losses(gpu_model, x.cuda()))


def test_hessian_instruments_on_cuda() -> None:
    torch.manual_seed(0)
    model = nets.create("mlp", 2, 1, width=6, depth=2).to(F64)
    x = torch.rand(32, 2, dtype=F64)
    results = {}
    for device in ("cpu", "cuda"):
        m = copy.deepcopy(model).to(device)
        xs = x.to(device)
        params = list(m.parameters())

        def loss(m: nn.Module = m, xs: Tensor = xs) -> Tensor:
            return three_losses(m, xs)["residual"]

        dense = full_hessian(loss, params)
        op = HessianOperator(loss, params)
        gen = torch.Generator(device=device).manual_seed(0)
        ritz = lanczos(op.matvec, op.dim, 30, generator=gen, device=device).ritz_values
        results[device] = (dense.cpu(), torch.linalg.eigvalsh(dense).cpu(), ritz.cpu())
    torch.testing.assert_close(results["cpu"][0], results["cuda"][0], rtol=1e-9, atol=1e-10)
    eig = results["cuda"][1]
    assert results["cuda"][2].max().item() == pytest.approx(eig.max().item(), rel=1e-6)


@pytest.mark.parametrize("name", problems.names())
def test_reference_and_losses_on_cuda_equal_the_cpu(name: str) -> None:
    small = {"n_residual": 16, "n_initial": 8, "n_boundary": 8, "n_data_side": 10}
    problem = problems.create(
        name, **{k: v for k, v in small.items() if k in problems.parameters(name)}
    )
    torch.manual_seed(0)
    model = nets.create("mlp", problem.in_dim, problem.out_dim, width=8, depth=2).to(F64)
    batch = problem.sample(torch.Generator().manual_seed(0), "cpu", F64)
    cpu_losses = problem.losses(model, batch)
    gpu_losses = problem.losses(
        copy.deepcopy(model).cuda(), {k: v.cuda() for k, v in batch.items()}
    )
    for key, value in cpu_losses.items():
        assert gpu_losses[key].device.type == "cuda"
        assert gpu_losses[key].item() == pytest.approx(value.item(), rel=1e-9, abs=1e-12), key
    points = problem.evaluation_points("cpu", F64)[:50]
    torch.testing.assert_close(
        problem.reference(points.cuda()).cpu(), problem.reference(points), rtol=1e-9, atol=1e-12
    )
