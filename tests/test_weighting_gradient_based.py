"""Weighting methods driven by gradient statistics: GradNorm, learning-rate annealing,
gradient-norm balancing (expert's guide) and NTK weighting.

The closed-form tests use quadratic or linear losses whose gradients are written out by hand.
"""

from __future__ import annotations

import math

import pytest
import torch

from autobalance import methods
from autobalance.errors import HyperparameterError, LossValueError
from autobalance.losses import NamedLosses
from autobalance.methods.weighting.ntk import mean_tangent_kernel_trace

F64 = torch.float64


# ------------------------------------------------------------------------------------ GradNorm
def _gradnorm_reference(steps: int, alpha: float, lr: float, weight_lr: float) -> list[list[float]]:
    """GradNorm by hand on L_1 = 3‖W‖² + ‖b‖², L_2 = ‖W − c‖² (W ∈ R^(1×2) shared), SGD for
    the network and the weights: G_k = w_k‖∇_W L_k‖, ∂L_grad/∂w_k = sign(G_k − Ḡ r_k^α)‖∇_W L_k‖."""
    w_mat, bias, c = [1.0, 2.0], [0.5, -1.0], [0.0, 1.0]
    weights, used, initial = [1.0, 1.0], [], None
    for _ in range(steps):
        losses = [
            3 * sum(x * x for x in w_mat) + sum(x * x for x in bias),
            sum((x - y) ** 2 for x, y in zip(w_mat, c, strict=True)),
        ]
        initial = initial or losses
        grad_w = [[6 * x for x in w_mat], [2 * (x - y) for x, y in zip(w_mat, c, strict=True)]]
        norms = [math.hypot(*g) for g in grad_w]
        used.append(list(weights))
        g = [w * n for w, n in zip(weights, norms, strict=True)]
        g_bar = sum(g) / 2
        rel = [v / v0 for v, v0 in zip(losses, initial, strict=True)]
        rates = [r / (sum(rel) / 2) for r in rel]
        signs = [math.copysign(1.0, gk - g_bar * r**alpha) for gk, r in zip(g, rates, strict=True)]
        # network step with the weights of this step
        w_mat = [
            x - lr * (weights[0] * a + weights[1] * b)
            for x, a, b in zip(w_mat, grad_w[0], grad_w[1], strict=True)
        ]
        bias = [x - lr * weights[0] * 2 * x for x in bias]
        new = [
            max(w - weight_lr * s * n, 1e-6) for w, s, n in zip(weights, signs, norms, strict=True)
        ]
        weights = [2 * x / sum(new) for x in new]
    return used


def test_gradnorm_closed_form_two_steps_and_default_shared_layer() -> None:
    w_mat = torch.nn.Parameter(torch.tensor([[1.0, 2.0]], dtype=F64))
    bias = torch.nn.Parameter(torch.tensor([0.5, -1.0], dtype=F64))
    c = torch.tensor([[0.0, 1.0]], dtype=F64)
    m = methods.create(
        "gradnorm", [w_mat, bias], base="sgd", lr=0.01, weight_optimizer="sgd", weight_lr=0.01
    )
    assert m.weighting.shared_index == 0  # the last parameter with ≥ 2 dims, not the last parameter
    got = []
    for _ in range(4):
        losses = {
            "a": 3 * w_mat.square().sum() + bias.square().sum(),
            "b": (w_mat - c).square().sum(),
        }
        info = m.step(losses)
        got.append([info.weights["a"], info.weights["b"]])
        assert info.backward_passes == 2 and info.needs_grad_matrix
    expected = _gradnorm_reference(4, alpha=1.5, lr=0.01, weight_lr=0.01)
    assert all(min(e) > 0.01 for e in expected)  # the floor is not reached
    assert got[0] == [1.0, 1.0]
    for g, e in zip(got, expected, strict=True):
        assert g == pytest.approx(e, rel=1e-10)
    # the loss with the larger shared-layer gradient (a: ‖6W‖ > ‖2(W − c)‖) is weighted down
    assert got[1][0] < 1.0 < got[1][1]
    assert sum(got[-1]) == pytest.approx(2.0, rel=1e-12)


def test_gradnorm_shared_param_choice_and_errors() -> None:
    w_mat = torch.nn.Parameter(torch.ones(2, 2))
    vec = torch.nn.Parameter(torch.ones(2))
    assert methods.create("gradnorm", [w_mat, vec], shared_param=-1).weighting.shared_index == 1
    with pytest.raises(HyperparameterError, match="shared_param=5 is out of range"):
        methods.create("gradnorm", [w_mat, vec], shared_param=5)
    with pytest.raises(HyperparameterError, match="no parameter has >= 2 dimensions"):
        methods.create("gradnorm", [vec])


# ---------------------------------------------------------------------------- lr annealing
def _linear_losses(theta: torch.Tensor, grads: dict[str, list[float]]) -> dict[str, torch.Tensor]:
    return {n: (theta * torch.tensor(g, dtype=F64)).sum() for n, g in grads.items()}


GRADS = {"residual": [4.0, -8.0, 2.0], "boundary": [0.5, -0.5, 0.5], "initial": [0.0, 1.0, -2.0]}


def test_lr_annealing_converges_to_the_target_not_its_square_root() -> None:
    theta = torch.nn.Parameter(torch.zeros(3, dtype=F64))
    m = methods.create("lr-annealing", [theta], base="sgd", lr=1e-3)
    # λ̂_k = max|∇L_r| / mean|∇L_k|: boundary 8/0.5 = 16, initial 8/1 = 8
    first = m.step(_linear_losses(theta, GRADS)).weights
    assert first["residual"] == 1.0
    assert first["boundary"] == pytest.approx(0.1 * 1 + 0.9 * 16, rel=1e-12)
    assert first["initial"] == pytest.approx(0.1 * 1 + 0.9 * 8, rel=1e-12)
    for _ in range(30):
        info = m.step(_linear_losses(theta, GRADS))
    # converged to λ̂ = (16, 8); the ∇(λL) bug would give √16 = 4 and √8
    assert info.weights["boundary"] == pytest.approx(16.0, rel=1e-12)
    assert info.weights["initial"] == pytest.approx(8.0, rel=1e-12)
    # the update is Σ_k λ_k ∇L_k
    assert info.needs_grad_matrix and info.backward_passes == 3


def test_lr_annealing_updates_every_steps_and_finds_the_reference() -> None:
    theta = torch.nn.Parameter(torch.zeros(3, dtype=F64))
    grads = {"bc": GRADS["boundary"], "pde": GRADS["residual"]}
    m = methods.create("lr-annealing", [theta], base="sgd", lr=1e-3, every=3, reference="pde")
    infos = [m.step(_linear_losses(theta, grads)) for _ in range(4)]
    assert [i.needs_grad_matrix for i in infos] == [True, False, False, True]
    assert [i.backward_passes for i in infos] == [2, 1, 1, 2]
    assert infos[1].weights == infos[0].weights and infos[0].weights["pde"] == 1.0
    assert infos[3].weights["bc"] == pytest.approx(0.1 * (0.1 + 0.9 * 16) + 0.9 * 16)
    no_residual = methods.create("lr-annealing", [theta])
    with pytest.raises(HyperparameterError, match="none of \\['bc', 'pde'\\] contains 'residual'"):
        no_residual.step(_linear_losses(theta, grads))
    wrong = methods.create("lr-annealing", [theta], reference="pdee")
    with pytest.raises(HyperparameterError, match="reference='pdee' is not one of the losses"):
        wrong.step(_linear_losses(theta, grads))


def test_lr_annealing_keeps_the_weights_when_the_residual_gradient_is_zero() -> None:
    # L_r = ‖θ‖² has ∇L_r = 2θ = 0 at θ = 0: λ̂ = 0/mean|∇L_k| would zero the other terms and,
    # with α = 1, the whole update for good.  The weights are kept at step 1 instead.
    theta = torch.nn.Parameter(torch.zeros(3, dtype=F64))
    g_b = torch.tensor([0.5, -0.5, 1.0], dtype=F64)
    m = methods.create("lr-annealing", [theta], base="sgd", lr=0.1, alpha=1.0)

    def losses() -> dict[str, torch.Tensor]:
        return {"residual": theta.square().sum(), "boundary": (theta * g_b).sum()}

    first = m.step(losses())
    assert first.weights == {"residual": 1.0, "boundary": 1.0}
    # θ1 = −0.1·(0 + 1·g_b) = (−0.05, 0.05, −0.1); ∇L_r = 2θ1, max|·| = 0.2; mean|g_b| = 2/3
    torch.testing.assert_close(theta.detach(), -0.1 * g_b)
    second = m.step(losses())
    assert second.weights["boundary"] == pytest.approx(0.2 / (2 / 3), rel=1e-12)


# --------------------------------------------------------------------------- grad-norm (guide)
def test_grad_norm_balancing_closed_form() -> None:
    theta = torch.nn.Parameter(torch.zeros(3, dtype=F64))
    m = methods.create("grad-norm", [theta], base="sgd", lr=1e-3, every=2)
    norms = [math.sqrt(sum(x * x for x in g)) for g in GRADS.values()]
    hat = [sum(norms) / n for n in norms]
    infos = [m.step(_linear_losses(theta, GRADS)) for _ in range(3)]
    lam1 = [0.9 + 0.1 * h for h in hat]
    assert list(infos[0].weights.values()) == pytest.approx(lam1, rel=1e-12)
    assert infos[1].weights == infos[0].weights
    assert [i.backward_passes for i in infos] == [3, 1, 3]
    lam3 = [0.9 * x + 0.1 * h for x, h in zip(lam1, hat, strict=True)]
    assert list(infos[2].weights.values()) == pytest.approx(lam3, rel=1e-12)


def test_grad_norm_warm_start_equalises_weighted_gradient_norms() -> None:
    theta = torch.nn.Parameter(torch.zeros(3, dtype=F64))
    m = methods.create("grad-norm", [theta], base="sgd", lr=1e-3, warm_start=True)
    info = m.step(_linear_losses(theta, GRADS))
    weighted = [info.weights[n] * info.losses[n].grad_norm for n in GRADS]
    total = sum(info.losses[n].grad_norm for n in GRADS)
    assert weighted == pytest.approx([total] * 3, rel=1e-12)


# ----------------------------------------------------------------------------------------- NTK
def _linear_pointwise(theta: torch.Tensor, features: dict[str, torch.Tensor]) -> NamedLosses:
    pointwise = {n: x @ theta for n, x in features.items()}
    return NamedLosses({n: r.square().mean() for n, r in pointwise.items()}, pointwise=pointwise)


def test_ntk_closed_form_upweights_the_smaller_trace() -> None:
    theta = torch.nn.Parameter(torch.tensor([0.3, -0.2], dtype=F64))
    # r_k = X_k θ: ∂r_i/∂θ = X_i, Tr(K_kk) = mean_i ‖X_i‖²
    feats = {
        "residual": torch.tensor([[3.0, 4.0], [0.0, 5.0]], dtype=F64),  # mean 25
        "boundary": torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=F64),  # mean 4/3
        "initial": torch.tensor([[2.0, 0.0]], dtype=F64),  # mean 4
    }
    m = methods.create("ntk", [theta], base="sgd", lr=1e-3, every=2)
    infos = [m.step(_linear_pointwise(theta, feats)) for _ in range(2)]
    total = 25 + 4 / 3 + 4
    expected = {"residual": total / 25, "boundary": total / (4 / 3), "initial": total / 4}
    assert infos[0].weights == pytest.approx(expected, rel=1e-12)
    assert infos[1].weights == infos[0].weights
    assert [i.backward_passes for i in infos] == [1 + 2 + 3 + 1, 1]
    assert m.weighting.last_traces == pytest.approx([25, 4 / 3, 4], rel=1e-12)
    # the smaller trace gets the larger weight (not the dominant term)
    assert infos[0].weights["boundary"] > infos[0].weights["initial"] > 1 > 0
    assert infos[0].weights["residual"] == pytest.approx(min(infos[0].weights.values()))


def test_ntk_subsample_ema_and_multi_component_terms() -> None:
    theta = torch.nn.Parameter(torch.tensor([0.3, -0.2], dtype=F64))
    x = torch.arange(20, dtype=F64).reshape(10, 2) / 10
    y = torch.tensor([[1.0, 1.0]], dtype=F64)
    pointwise = {"a": x @ theta, "b": torch.stack([y @ theta, 2 * (y @ theta)], dim=1)}
    named = NamedLosses({n: r.square().mean() for n, r in pointwise.items()}, pointwise=pointwise)
    m = methods.create("ntk", [theta], n_points=4, seed=5, ema=0.5, every=1)
    info = m.step(named)
    rows = torch.randperm(10, generator=torch.Generator().manual_seed(5))[:4]
    tr_a = float(x[rows].square().sum(dim=1).mean())
    tr_b = (2 + 4 * 2) / 2  # entries (y·θ, 2y·θ): ‖y‖² = 2 and 4‖y‖² = 8, mean 5
    assert m.weighting.last_traces == pytest.approx([tr_a, tr_b], rel=1e-12)
    first = [(tr_a + tr_b) / tr_a, (tr_a + tr_b) / tr_b]
    assert list(info.weights.values()) == pytest.approx(first, rel=1e-12)
    # second update: λ ← ½λ + ½λ̂ with a fresh subsample
    pointwise = {"a": x @ theta, "b": torch.stack([y @ theta, 2 * (y @ theta)], dim=1)}
    named = NamedLosses({n: r.square().mean() for n, r in pointwise.items()}, pointwise=pointwise)
    info = m.step(named)
    tr = m.weighting.last_traces
    hat = [sum(tr) / t for t in tr]
    assert list(info.weights.values()) == pytest.approx(
        [0.5 * f + 0.5 * h for f, h in zip(first, hat, strict=True)], rel=1e-12
    )


def test_ntk_trace_matches_a_loop_over_points_on_a_pinn_residual() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1))
    pts = torch.rand(5, 2, requires_grad=True)
    u = net(pts)
    du = torch.autograd.grad(u.sum(), pts, create_graph=True)[0]
    lap = sum(
        torch.autograd.grad(du[:, i].sum(), pts, create_graph=True)[0][:, i] for i in range(2)
    )
    r = lap + u.squeeze(1)
    params = list(net.parameters())
    loop = []
    for i in range(5):
        gs = torch.autograd.grad(r[i], params, retain_graph=True, allow_unused=True)
        loop.append(sum(float(g.square().sum()) for g in gs if g is not None))
    assert mean_tangent_kernel_trace(r, params) == pytest.approx(sum(loop) / 5, rel=1e-5)


def test_ntk_needs_pointwise_terms() -> None:
    theta = torch.nn.Parameter(torch.ones(2))
    m = methods.create("ntk", [theta])
    plain = {"a": theta.sum() ** 2, "b": theta.square().sum()}
    with pytest.raises(LossValueError, match="needs the pointwise terms"):
        m.step(plain)
    partial = NamedLosses(plain, pointwise={"a": theta * 2})
    with pytest.raises(LossValueError, match="missing for 'b'"):
        m.step(partial)
    detached = NamedLosses(plain, pointwise={"a": theta * 2, "b": torch.ones(3)})
    with pytest.raises(LossValueError, match="pointwise\\['b'\\] must be"):
        m.step(detached)
