"""The derivative helpers against analytic derivatives and against autograd's Hessian."""

from __future__ import annotations

import math

import pytest
import torch

from autobalance.derivatives import derivative, gradient, gradients, laplacian
from autobalance.nets import MLP


def _columns(n: int = 64, d: int = 2, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    pts = torch.rand(n, d, generator=gen, dtype=torch.float64) * 2 - 1
    return [pts[:, j : j + 1].clone().requires_grad_() for j in range(d)]


def test_gradient_of_polynomial() -> None:
    x, y = _columns()
    u = x**3 + 2 * x * y**2 - 5 * y
    ux, uy = gradients(u, (x, y))
    torch.testing.assert_close(ux, 3 * x.detach() ** 2 + 2 * y.detach() ** 2)
    torch.testing.assert_close(uy, 4 * x.detach() * y.detach() - 5)
    torch.testing.assert_close(gradient(u, x), ux)


def test_higher_derivatives_of_sine() -> None:
    (x,) = _columns(d=1)
    u = torch.sin(2 * x)
    xd = x.detach()
    torch.testing.assert_close(derivative(u, x, 0), u)
    torch.testing.assert_close(derivative(u, x, 1), 2 * torch.cos(2 * xd))
    torch.testing.assert_close(derivative(u, x, 2), -4 * torch.sin(2 * xd))
    torch.testing.assert_close(derivative(u, x, 3), -8 * torch.cos(2 * xd))


def test_laplacian_of_sines_and_polynomial() -> None:
    x, y = _columns()
    u = torch.sin(math.pi * x) * torch.sin(2 * math.pi * y)
    expected = -(math.pi**2 + 4 * math.pi**2) * u.detach()
    torch.testing.assert_close(laplacian(u, (x, y)), expected)
    v = x**2 * y + y**3
    torch.testing.assert_close(laplacian(v, (x, y)), 2 * y.detach() + 6 * y.detach())


def test_laplacian_of_network_matches_hessian_trace() -> None:
    torch.manual_seed(3)
    net = MLP(3, 1, width=16, depth=3).double()
    cols = _columns(n=8, d=3, seed=1)
    lap = laplacian(net(torch.cat(cols, dim=1)), cols).detach().reshape(-1)
    pts = torch.cat([c.detach() for c in cols], dim=1)
    for i in range(pts.shape[0]):
        hess = torch.autograd.functional.hessian(lambda p: net(p.unsqueeze(0)).sum(), pts[i])
        torch.testing.assert_close(lap[i], torch.trace(hess))


def test_constant_and_linear_give_zeros() -> None:
    x, y = _columns()
    u = 3 * x + 0 * y  # linear: second derivatives vanish, first derivative is constant
    torch.testing.assert_close(laplacian(u, (x, y)), torch.zeros_like(x))
    torch.testing.assert_close(derivative(u, x, 2), torch.zeros_like(x))
    w = 2 * y
    torch.testing.assert_close(gradient(w, x), torch.zeros_like(x))


def test_derivatives_keep_the_graph_to_parameters() -> None:
    """d/dθ mean(Δ(θ·x³)) = mean(6x): the residual must be differentiable in the parameters."""
    (x,) = _columns(d=1)
    theta = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    loss = laplacian(theta * x**3, (x,)).mean()
    (g,) = torch.autograd.grad(loss, theta)
    torch.testing.assert_close(g, (6 * x.detach()).mean())


def test_input_without_grad_is_rejected() -> None:
    x = torch.linspace(0, 1, 5).reshape(-1, 1)
    with pytest.raises(ValueError, match="requires_grad_"):
        gradient(x**2, x)
