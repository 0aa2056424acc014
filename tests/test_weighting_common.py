"""Contracts every adaptive weighting method keeps: registered with a summary, reports the weights
it used, works with 2 and 3 losses, resumes bit-identically from a weights-only checkpoint,
rejects bad hyperparameters by name, and trains the Helmholtz PINN without NaN."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from autobalance import methods, nets, problems
from autobalance.errors import AutoBalanceError, HyperparameterError
from autobalance.losses import NamedLosses
from autobalance.methods.weighting._common import check_int, softmax

#: Each method with hyperparameters that exercise its updates within a few steps.
ADAPTIVE = {
    "dwa": {},
    "uncertainty": {},
    "rlw": {"seed": 1},
    "gradnorm": {},
    "lr-annealing": {"every": 2},
    "grad-norm": {"every": 2},
    "ntk": {"every": 2, "n_points": 3},
    "softadapt": {"normalize": True},
    "relobralo": {"expected_rho": 0.5, "alpha": 0.9},
}
NAMES = ["residual", "boundary", "initial"]


def _setup(n_losses: int, seed: int = 0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(2, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1))
    data = [torch.randn(5 + i, 2) for i in range(n_losses)]
    targets = [float(i) for i in range(n_losses)]

    def losses() -> NamedLosses:
        pointwise = {
            NAMES[i]: (3.0**i) * (net(x).squeeze(1) - t)
            for i, (x, t) in enumerate(zip(data, targets, strict=True))
        }
        return NamedLosses(
            {n: r.square().mean() for n, r in pointwise.items()}, pointwise=pointwise
        )

    return net, losses


def _flat(net: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()])


def test_every_method_is_registered_with_a_summary() -> None:
    specs = {s.name: s for s in methods.describe()}
    for name in ADAPTIVE:
        assert specs[name].family == "weighting" and len(specs[name].summary) > 20


@pytest.mark.parametrize("n_losses", [2, 3])
@pytest.mark.parametrize("method", list(ADAPTIVE))
def test_reported_weights_are_the_weights_used(method: str, n_losses: int) -> None:
    net, losses = _setup(n_losses)
    m = methods.create(method, net.parameters(), base="sgd", lr=0.05, **ADAPTIVE[method])
    for _ in range(4):
        before = _flat(net)
        parts = losses()
        grads = [
            torch.cat(
                [
                    g.reshape(-1)
                    for g in torch.autograd.grad(v, list(net.parameters()), retain_graph=True)
                ]
            )
            for v in parts.values()
        ]
        info = m.step(parts)
        w = list(info.weights.values())
        assert len(w) == n_losses and all(math.isfinite(x) and x >= 0 for x in w)
        expected = before - 0.05 * sum(wk * g for wk, g in zip(w, grads, strict=True))
        # float32: the two sums round differently (seen up to 1.5e-6 on another CPU)
        torch.testing.assert_close(_flat(net), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n_losses", [2, 3])
@pytest.mark.parametrize("method", list(ADAPTIVE))
def test_checkpoint_resumes_bit_identically(method: str, n_losses: int) -> None:
    kw = ADAPTIVE[method]
    net, losses = _setup(n_losses)
    m = methods.create(method, net.parameters(), lr=1e-2, **kw)
    for _ in range(3):
        m.step(losses())
    buffer = io.BytesIO()
    torch.save(m.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    net2, losses2 = _setup(n_losses)
    net2.load_state_dict(net.state_dict())
    m2 = methods.create(method, net2.parameters(), lr=1e-2, **kw)
    m2.load_state_dict(state)
    for _ in range(4):
        a, b = m.step(losses()), m2.step(losses2())
        assert a.weights == b.weights
    torch.testing.assert_close(_flat(net), _flat(net2), rtol=0, atol=0)


BAD = [
    ("dwa", {"temperature": 0}, "temperature must be"),
    ("dwa", {"every": 0}, "every must be an integer >= 1"),
    ("uncertainty", {"init": math.inf}, "init .* must be finite"),
    ("uncertainty", {"init": -800.0}, r"init .* must be finite and >= -700"),
    ("uncertainty", {"weight_lr": -1.0}, r"weight_lr \(learning rate of the uncertainty"),
    ("uncertainty", {"weight_optimizer": "lbfgs"}, "weight_optimizer .* must be one of"),
    ("gradnorm", {"weight_lr": 0.0}, r"weight_lr \(learning rate of the gradnorm weights\)"),
    ("gradnorm", {"weight_optimizer": "adamw"}, "weight_optimizer .* must be one of"),
    ("rlw", {"seed": -1}, "seed must be an integer >= 0"),
    ("rlw", {"seed": 1.5}, "seed must be an integer"),
    ("rlw", {"seed": True}, "seed must be an integer"),
    ("gradnorm", {"alpha": -0.5}, "alpha must be"),
    ("gradnorm", {"shared_param": "last"}, "shared_param must be an integer"),
    ("lr-annealing", {"alpha": 0.0}, r"alpha must lie in \(0.0, 1.0\]"),
    ("lr-annealing", {"reference": 3}, "reference must be a loss name"),
    ("grad-norm", {"alpha": 1.0}, r"alpha must lie in \[0.0, 1.0\)"),
    ("grad-norm", {"every": 2.5}, "every must be an integer"),
    ("ntk", {"n_points": 0}, "n_points must be an integer >= 1"),
    ("ntk", {"ema": 1.0}, "ema must lie in"),
    ("softadapt", {"beta": math.nan}, "beta must be a finite number"),
    ("softadapt", {"eps": 0.0}, "eps must be a finite number > 0"),
    ("relobralo", {"expected_rho": 1.5}, "expected_rho must lie in"),
    ("relobralo", {"temperature": -1.0}, "temperature must be"),
    ("relobralo", {"alpha": 2.0}, "alpha must lie in"),
]


@pytest.mark.parametrize(("method", "kw", "match"), BAD)
def test_bad_hyperparameters_are_named(method: str, kw: dict, match: str) -> None:
    net, _ = _setup(2)
    with pytest.raises(HyperparameterError, match=match):
        methods.create(method, net.parameters(), **kw)


@pytest.mark.parametrize("method", list(ADAPTIVE))
def test_one_loss_is_rejected(method: str) -> None:
    net, losses = _setup(2)
    m = methods.create(method, net.parameters(), **ADAPTIVE[method])
    with pytest.raises(AutoBalanceError, match="balances several losses but got 1"):
        m.step(NamedLosses({"residual": losses()["residual"]}))


def test_helmholtz_smoke_fifty_steps_without_nan() -> None:
    for method in ADAPTIVE:
        torch.manual_seed(0)
        problem = problems.create("helmholtz", n_residual=128, n_boundary=64)
        model = nets.create("mlp", 2, 1, width=20, depth=2)
        params = {"every": 10} if method == "ntk" else {}
        m = methods.create(method, model.parameters(), lr=1e-3, **params)
        gen = torch.Generator().manual_seed(0)
        for _ in range(50):
            info = m.step(problem.losses(model, problem.sample(gen, "cpu", torch.float32)))
            assert not info.skipped
            values = [*info.values.values(), *info.weights.values()]
            assert all(math.isfinite(v) for v in values), (method, info)
        assert all(torch.isfinite(p).all() for p in model.parameters()), method


def test_uncertainty_accepts_the_smallest_init_and_its_weight_is_finite() -> None:
    net, losses = _setup(2)
    m = methods.create("uncertainty", net.parameters(), init=-700.0)
    info = m.step(losses())
    assert info.weights["residual"] == pytest.approx(0.5 * math.exp(700.0), rel=1e-12)


# ------------------------------------------------------------------------------ shared helpers
def test_softmax_is_the_limit_for_infinite_logits() -> None:
    # finite logits: e^(x − max) / Σ; (0, ln 3) → (1/4, 3/4)
    assert softmax([0.0, math.log(3.0)]) == pytest.approx([0.25, 0.75], rel=1e-15)
    # +inf logits share the mass (the limit of softmax(c·x), c → ∞); −inf gets 0
    assert softmax([math.inf, 5.0]) == [1.0, 0.0]
    assert softmax([math.inf, -math.inf, math.inf]) == [0.5, 0.0, 0.5]
    assert softmax([-math.inf, 0.0]) == [0.0, 1.0]
    with pytest.raises(FloatingPointError, match="NaN logits"):
        softmax([math.nan, 1.0])


def test_integer_hyperparameters_accept_numpy_integers_only() -> None:
    assert check_int("every", np.int64(7), minimum=1) == 7
    assert type(check_int("every", np.int64(7), minimum=1)) is int
    for bad in (np.float64(7.0), 7.0, True, "7", 0):
        with pytest.raises(HyperparameterError, match="every must be an integer >= 1"):
            check_int("every", bad, minimum=1)


# ------------------------------------------------------------------------------------- devices
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", list(ADAPTIVE))
def test_methods_run_on_the_parameters_device_and_resume(
    method: str, device: str, dtype: torch.dtype
) -> None:
    """Every tensor a method makes lives on the parameters' device and dtype; a checkpoint saved
    on the device and loaded weights-only resumes bit-identically; the weights match the CPU
    run of the same dtype."""

    def run(dev: str, dt: torch.dtype, steps: int, state: dict | None = None):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(2, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1))
        net = net.to(device=dev, dtype=dt)
        gen = torch.Generator().manual_seed(1)
        data = [torch.randn(5 + i, 2, generator=gen).to(dev, dt) for i in range(3)]

        def losses() -> NamedLosses:
            pointwise = {NAMES[i]: (3.0**i) * (net(x).squeeze(1) - i) for i, x in enumerate(data)}
            return NamedLosses(
                {n: r.square().mean() for n, r in pointwise.items()}, pointwise=pointwise
            )

        m = methods.create(method, net.parameters(), base="sgd", lr=1e-2, **ADAPTIVE[method])
        if state is not None:
            net.load_state_dict(state["net"])
            m.load_state_dict(state["method"])
        weights = []
        for _ in range(steps):
            info = m.step(losses())
            assert not info.skipped
            weights.extend(info.weights.values())
        for p in net.parameters():
            assert p.device.type == dev and p.dtype == dt
            assert p.grad is None or (p.grad.device.type == dev and p.grad.dtype == dt)
        buffer = io.BytesIO()
        torch.save({"net": net.state_dict(), "method": m.state_dict()}, buffer)
        buffer.seek(0)
        return weights, torch.load(buffer, weights_only=True, map_location=dev)

    straight, _ = run(device, dtype, 5)
    first, state = run(device, dtype, 3)
    rest, _ = run(device, dtype, 2, state)
    assert first + rest == straight  # bit-identical resume on the device
    reference, _ = run("cpu", dtype, 5)
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    assert straight == pytest.approx(reference, rel=tol, abs=tol)
