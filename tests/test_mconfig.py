"""Issue 4: M-ConFIG (momentum ConFIG, one backward pass per step)."""

from __future__ import annotations

import io
import math

import pytest
import torch

from autobalance import methods
from autobalance.errors import HyperparameterError
from autobalance.methods.aggregators.conflict_free import config_direction


def _quadratic():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.tensor([1.0, 1.0], dtype=torch.float64))
    a, b = (
        torch.tensor([1.0, 0.0], dtype=torch.float64),
        torch.tensor([0.0, 2.0], dtype=torch.float64),
    )

    def losses():
        return {"r": (a @ w), "b": (b @ w)}  # constant gradients a, b

    return w, losses


def test_closed_form_round_robin_and_bias_correction() -> None:
    # gradients (1,0) and (0,2) are constant, so after both momenta exist m̂ = g exactly and
    # ConFIG(m̂) = (3/2, 3/2).  Without the second moment SGD(lr=1) applies exactly that.
    w, losses = _quadratic()
    m = methods.create("m-config", [w], lr=1.0, second_moment=False)
    info = m.step(losses())  # only "r" back-propagated: direction 0
    assert info.backward_passes == 1 and not info.needs_grad_matrix
    torch.testing.assert_close(w.detach(), torch.tensor([1.0, 1.0], dtype=torch.float64))
    m.step(losses())
    torch.testing.assert_close(w.detach(), torch.tensor([-0.5, -0.5], dtype=torch.float64))
    # with the pseudo second moment, step t=1: m̃ = g_c(1-β1), g̃ = g_c, ŝ = g_c², so the
    # direction is g_c/(|g_c| + eps) = (1, 1) (Adam's first step)
    w, losses = _quadratic()
    m = methods.create("m-config", [w], lr=0.1)
    m.step(losses())
    m.step(losses())
    torch.testing.assert_close(w.detach(), torch.tensor([0.9, 0.9], dtype=torch.float64))


def test_uses_shared_config_math() -> None:
    G = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    torch.testing.assert_close(config_direction(G), torch.tensor([1.5, 1.5]))
    assert methods.registry.spec("m-config").family == "multi-state"


def test_hyperparameter_errors() -> None:
    w, _ = _quadratic()
    with pytest.raises(HyperparameterError, match="beta1"):
        methods.create("m-config", [w], lr=0.1, beta1=1.0)


def _helmholtz(seed: int = 0):
    from autobalance import nets, problems

    torch.manual_seed(seed)
    problem = problems.create("helmholtz", n_residual=128, n_boundary=64)
    return problem, nets.create("mlp", 2, 1, width=20, depth=2)


def _run(m, problem, model, gen, steps: int) -> None:
    for _ in range(steps):
        info = m.step(problem.losses(model, problem.sample(gen, "cpu", torch.float32)))
        assert info.backward_passes == 1
        assert all(math.isfinite(s.value) for s in info.losses.values())


def test_trains_and_checkpoints() -> None:
    torch.set_num_threads(1)
    problem, model = _helmholtz()
    m = methods.create("m-config", model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    _run(m, problem, model, gen, 30)
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    buf = io.BytesIO()
    torch.save({"m": m.state_dict(), "net": model.state_dict(), "gen": gen.get_state()}, buf)
    buf.seek(0)
    ck = torch.load(buf, weights_only=True)
    _run(m, problem, model, gen, 3)
    expected = [p.detach().clone() for p in model.parameters()]
    _, model2 = _helmholtz(seed=1)
    model2.load_state_dict(ck["net"])
    m2 = methods.create("m-config", model2.parameters(), lr=1e-3)
    m2.load_state_dict(ck["m"])
    gen2 = torch.Generator()
    gen2.set_state(ck["gen"])
    _run(m2, problem, model2, gen2, 3)
    for p, q in zip(model2.parameters(), expected, strict=True):
        torch.testing.assert_close(p.detach(), q, rtol=0, atol=0)


def test_loaded_moments_follow_the_parameters() -> None:
    """Moments from a checkpoint with another dtype/device (map_location) are moved to the
    parameters' dtype and device, like the base optimizer's state, and are not aliased."""
    w, losses = _quadratic()
    m = methods.create("m-config", [w], lr=0.1)
    for _ in range(3):
        m.step(losses())
    state = m.state_dict()
    extra = state["extra"]
    extra["m"] = [t.float() for t in extra["m"]]
    extra["s"], extra["fake_m"] = extra["s"].float(), extra["fake_m"].float()
    w2, _ = _quadratic()
    m2 = methods.create("m-config", [w2], lr=0.1)
    m2.load_state_dict(state)
    loaded = m2.extra_state()
    for t in [*loaded["m"], loaded["s"], loaded["fake_m"]]:
        assert t.dtype == w2.dtype and t.device == w2.device
    assert loaded["reached"].device.type == "cpu"
