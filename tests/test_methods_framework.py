"""The pre-combine method protocol: weighting and aggregator methods over one base optimizer."""

from __future__ import annotations

import math

import pytest
import torch

from autobalance import methods
from autobalance.errors import HyperparameterError, NonFiniteLossError, UnknownNameError
from autobalance.losses import NamedLosses


def _model_and_losses(seed: int = 0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    x, y = torch.randn(16, 2), torch.randn(6, 2)

    def losses():
        return {"residual": net(x).pow(2).mean(), "boundary": (net(y) - 1).pow(2).mean()}

    return net, losses


def _train(method: str, steps: int = 5, **kw):
    net, losses = _model_and_losses()
    m = methods.create(method, net.parameters(), lr=1e-2, **kw)
    infos = [m.step(losses()) for _ in range(steps)]
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()]), infos


def test_ew_equals_adam_on_the_sum() -> None:
    ew, infos = _train("ew")
    adam, _ = _train("adam")
    torch.testing.assert_close(ew, adam, rtol=0, atol=0)
    assert infos[-1].weights == {"residual": 1.0, "boundary": 1.0}
    assert infos[-1].backward_passes == 1 and not infos[-1].needs_grad_matrix


def test_fixed_weights_equal_adam_on_the_weighted_sum() -> None:
    fixed, infos = _train("fixed", weights={"residual": 0.5, "boundary": 3.0})
    net, losses = _model_and_losses()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(5):
        opt.zero_grad()
        parts = losses()
        (0.5 * parts["residual"] + 3.0 * parts["boundary"]).backward()
        opt.step()
    expected = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    torch.testing.assert_close(fixed, expected, rtol=0, atol=0)
    assert infos[0].weights == {"residual": 0.5, "boundary": 3.0}


def test_sum_aggregator_matches_summed_backward_and_reports_statistics() -> None:
    agg, infos = _train("sum")
    adam, _ = _train("adam")
    torch.testing.assert_close(agg, adam, rtol=1e-6, atol=1e-7)
    info = infos[0]
    assert info.backward_passes == 2 and info.needs_grad_matrix
    # cos(g_k, g_1 + g_2) from the reported norms and the gradient cosine
    g1, g2 = info.losses["residual"].grad_norm, info.losses["boundary"].grad_norm
    c12 = info.grad_cosines[0][1]
    norm_d = math.sqrt(g1**2 + g2**2 + 2 * g1 * g2 * c12)
    assert info.losses["residual"].cosine == pytest.approx((g1 + g2 * c12) / norm_d, rel=1e-5)


def test_aggregator_standalone_and_base_choice() -> None:
    G = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    torch.testing.assert_close(methods.aggregator("mean")(G), torch.tensor([0.5, 1.0]))
    net, losses = _model_and_losses()
    m = methods.create("mean", net.parameters(), base="sgd", lr=0.1)
    assert isinstance(m.optimizer, torch.optim.SGD)
    m.step(losses())


def test_unreached_parameter_gets_no_gradient() -> None:
    net, losses = _model_and_losses()
    extra = torch.nn.Parameter(torch.ones(3))
    m = methods.create("sum", [*net.parameters(), extra], lr=1e-2)
    m.step(losses())
    assert extra.grad is None
    torch.testing.assert_close(extra.detach(), torch.ones(3))


def test_checkpoint_round_trip_is_bit_identical() -> None:
    net, losses = _model_and_losses()
    m = methods.create("fixed", net.parameters(), lr=1e-2, weights={"residual": 1, "boundary": 2})
    for _ in range(3):
        m.step(losses())
    state = m.state_dict()
    net2, losses2 = _model_and_losses()
    net2.load_state_dict(net.state_dict())
    m2 = methods.create("fixed", net2.parameters(), lr=1e-2, weights={"residual": 1, "boundary": 2})
    m2.load_state_dict(state)
    for _ in range(3):
        m.step(losses())
        m2.step(losses2())
    for p, q in zip(net.parameters(), net2.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_named_losses_carry_pointwise_terms_and_are_accepted() -> None:
    net, losses = _model_and_losses()
    parts = losses()
    named = NamedLosses(parts, pointwise={"residual": torch.zeros(3)})
    assert dict(named) == parts and "residual" in named.pointwise
    methods.create("ew", net.parameters(), lr=1e-2).step(named)


def test_bad_input_is_named() -> None:
    net, losses = _model_and_losses()
    with pytest.raises(UnknownNameError, match="pcgrad|aggregator 'pcgrd'"):
        methods.aggregator("pcgrd")
    with pytest.raises(HyperparameterError, match="has no hyperparameter 'bogus'"):
        methods.aggregator("sum", bogus=1)
    with pytest.raises(HyperparameterError, match="needs weights"):
        methods.create("fixed", net.parameters())
    m = methods.create("fixed", net.parameters(), weights={"residual": 1.0, "data": 1.0})
    with pytest.raises(HyperparameterError, match="no weight for \\['boundary'\\]"):
        m.step(losses())
    one = methods.create("ew", net.parameters())
    with pytest.raises(HyperparameterError, match="balances several losses but got 1"):
        one.step({"residual": losses()["residual"]})
    with pytest.raises(HyperparameterError, match=r"G must be a \(K losses"):
        methods.aggregator("sum")(torch.ones(3))
    m = methods.create("sum", net.parameters())
    bad = losses()
    bad["boundary"] = bad["boundary"] * float("nan")
    with pytest.raises(NonFiniteLossError, match="'boundary'.*step 1"):
        m.step(bad)
    skip = methods.create("sum", net.parameters(), nonfinite="skip")
    assert skip.step(bad).skipped


@pytest.mark.parametrize("method", ["lr-annealing", "grad-norm", "sum"])
def test_mixed_dtype_parameters_get_gradients_of_their_own_dtype(method: str) -> None:
    # The gradient matrix is float64 (float32 promoted); each .grad is cast back to its parameter.
    a = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float32))
    b = torch.nn.Parameter(torch.tensor([0.5], dtype=torch.float64))
    m = methods.create(method, [a, b], base="sgd", lr=0.1)
    losses = {
        "residual": a.square().sum().double() + b.square().sum(),
        "boundary": (a.sum().double() - b.sum()) ** 2,
    }
    info = m.step(losses)
    assert a.grad.dtype == torch.float32 and b.grad.dtype == torch.float64
    # g_r = (2a, 2b) = (2, 4 | 1); g_b = 2(a1 + a2 − b)·(1, 1 | −1) = (5, 5 | −5)
    w = list(info.weights.values()) if method != "sum" else [1.0, 1.0]
    g = [w[0] * 2 + w[1] * 5, w[0] * 4 + w[1] * 5, w[0] * 1 - w[1] * 5]
    torch.testing.assert_close(a.grad, torch.tensor(g[:2], dtype=torch.float32))
    torch.testing.assert_close(b.grad, torch.tensor(g[2:], dtype=torch.float64))


def test_large_finite_float32_gradients_are_not_reported_as_non_finite() -> None:
    # ‖g‖² = 2·(1e20)² overflows float32, but every entry is finite: the step must be taken.
    theta = torch.nn.Parameter(torch.zeros(2, dtype=torch.float32))
    m = methods.create("grad-norm", [theta], base="sgd", lr=1e-25, every=1, alpha=0.0)
    info = m.step({"residual": 1e20 * theta.sum(), "boundary": theta.sum()})
    assert not info.skipped
    # λ̂ = (‖g_r‖ + ‖g_b‖)/‖g_k‖ = (1e20 + 1)/1e20 and (1e20 + 1)/1 (float32 norms in float64)
    assert info.weights["boundary"] == pytest.approx(1e20, rel=1e-6)
    bad = methods.create("grad-norm", [theta], nonfinite="skip")
    skipped = bad.step({"residual": 1e20 * theta.sum() * 1e20, "boundary": theta.sum()})
    assert skipped.skipped and "gradient of loss 'residual' is inf" in skipped.reason


def test_summed_loss_names_a_bad_nonfinite_mode() -> None:
    net, _ = _model_and_losses()
    with pytest.raises(HyperparameterError, match="nonfinite must be 'raise' or 'skip'"):
        methods.create("adam", net.parameters(), nonfinite="ignore")
