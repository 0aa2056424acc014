"""MultiAdam and MTAdam: hand-computed updates, written-out references, properties, checkpoints."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autobalance import methods
from autobalance.errors import HyperparameterError, LossNameError, NonFiniteLossError
from autobalance.methods.multistate.mtadam import MTAdam
from autobalance.methods.multistate.multiadam import MultiAdam, pde_vs_rest

# ---------------------------------------------------------------------------------- MultiAdam


def test_pde_vs_rest_grouping() -> None:
    names = ["residual", "boundary", "initial", "momentum_x", "data"]
    assert pde_vs_rest()(names) == {
        "pde": ["residual", "momentum_x"],
        "rest": ["boundary", "initial", "data"],
    }
    assert pde_vs_rest(["data"])(names) == {
        "pde": ["data"],
        "rest": ["residual", "boundary", "initial", "momentum_x"],
    }
    assert pde_vs_rest()(["boundary"]) == {"rest": ["boundary"]}


def _linear_losses(w: torch.Tensor) -> dict[str, torch.Tensor]:
    # constant gradients: residual (2, -1), boundary (0.5, 0), initial (-3, 4)
    return {
        "residual": 2 * w[0] - w[1],
        "boundary": 0.5 * w[0],
        "initial": -3 * w[0] + 4 * w[1],
    }


def test_multiadam_first_step_by_hand() -> None:
    """Step 1: m̂ = g, v̂ = g², so each group's update is lr·g/(|g|+ε) ≈ lr·sign(g).

    Groups: pde = {residual}: g = (2, −1); rest = {boundary, initial}: g = (0.5 − 3, 4) =
    (−2.5, 4).  Mean of the two group updates: lr·((1 − 1)/2, (−1 + 1)/2) = (0, 0) up to ε.
    """
    w = torch.zeros(2, requires_grad=True)
    opt = MultiAdam([w], lr=0.1, eps=0.0)
    info = opt.step(_linear_losses(w))
    torch.testing.assert_close(w.detach(), torch.zeros(2), atol=1e-7, rtol=0)
    assert info.losses["boundary"].state == "rest" and info.losses["residual"].state == "pde"
    assert info.losses["initial"].update_norm == pytest.approx(0.1 * math.sqrt(2))


def _multiadam_reference(
    grads_per_step: list[dict[str, np.ndarray]],
    groups: dict[str, list[str]],
    lr: float,
    betas: tuple[float, float],
    eps: float,
) -> np.ndarray:
    """MultiAdam Alg. 1 written out: per-group moments, mean of the bias-corrected updates."""
    beta1, beta2 = betas
    m = {g: 0.0 for g in groups}
    v = {g: 0.0 for g in groups}
    theta = np.zeros_like(next(iter(grads_per_step[0].values())))
    for t, grads in enumerate(grads_per_step, start=1):
        total = np.zeros_like(theta)
        for group, members in groups.items():
            g = sum(grads[n] for n in members)
            m[group] = beta1 * m[group] + (1 - beta1) * g
            v[group] = beta2 * v[group] + (1 - beta2) * g * g
            m_hat = m[group] / (1 - beta1**t)
            v_hat = v[group] / (1 - beta2**t)
            total = total + m_hat / (np.sqrt(v_hat) + eps)
        theta = theta - lr * total / len(groups)
    return theta


def test_multiadam_matches_written_out_reference_on_quadratics() -> None:
    a = np.array([[2.0, 0.3], [0.3, 0.5]])
    b = np.array([1.0, -2.0])
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    at, bt = torch.tensor(a), torch.tensor(b)
    opt = MultiAdam([w], lr=0.05, betas=(0.9, 0.95), eps=1e-8)
    grads_seen = []
    for _ in range(6):
        wn = w.detach().numpy().copy()
        grads_seen.append({"residual": a @ wn - b, "boundary": 4 * wn, "initial": wn - 1})
        opt.step(
            {
                "residual": 0.5 * w @ at @ w - bt @ w,
                "boundary": 2 * (w @ w),
                "initial": 0.5 * ((w - 1) @ (w - 1)),
            }
        )
    # the reference replays the same gradients (they depend on the iterate, recorded above)
    expected = _multiadam_reference(
        grads_seen,
        {"pde": ["residual"], "rest": ["boundary", "initial"]},
        lr=0.05,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    np.testing.assert_allclose(w.detach().numpy(), expected, rtol=1e-12, atol=1e-14)


def test_multiadam_per_term_and_explicit_pde_terms() -> None:
    w = torch.zeros(2, requires_grad=True)
    opt = MultiAdam([w], grouping="per-term")
    info = opt.step(_linear_losses(w))
    assert [s.state for s in info.losses.values()] == ["residual", "boundary", "initial"]
    w2 = torch.zeros(2, requires_grad=True)
    info = MultiAdam([w2], pde_terms=["initial"]).step(_linear_losses(w2))
    assert info.losses["initial"].state == "pde" and info.losses["residual"].state == "rest"
    with pytest.raises(HyperparameterError, match="not among the losses"):
        MultiAdam([torch.zeros(2, requires_grad=True)], pde_terms=["pde"]).step(
            _linear_losses(torch.zeros(2, requires_grad=True))
        )
    with pytest.raises(HyperparameterError, match="grouping must be one of"):
        MultiAdam([w], grouping="pairs")


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(min_value=1e-3, max_value=1e3))
def test_multiadam_is_invariant_to_scaling_a_group(scale: float) -> None:
    """Adam's update is invariant to the scale of its gradient (ε = 0): so is each group's."""

    def run(c: float) -> torch.Tensor:
        torch.manual_seed(0)
        net = torch.nn.Linear(3, 1).double()
        x = torch.randn(8, 3, dtype=torch.float64)
        opt = methods.create("multiadam", net.parameters(), lr=1e-2, eps=0.0)
        for _ in range(3):
            opt.step({"residual": net(x).pow(2).mean(), "boundary": c * (net(x) - 1).abs().mean()})
        return torch.cat([p.detach().reshape(-1) for p in net.parameters()])

    torch.testing.assert_close(run(scale), run(1.0), rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------------------ MTAdam


def test_mtadam_first_step_by_hand() -> None:
    """g_0 = (3, 4) (norm 5, the anchor), g_1 = (0, 10) (norm 10) → g̃_1 = (0, 5).

    Step 1: m̂_i = g̃_i, d_i = |g̃_i| (ε = 0), D = max(d_0, d_1) = (3, 5), so
    Δ = lr·((3 + 0)/3, (4 + 5)/5) = lr·(1, 1.8).
    """
    w = torch.zeros(2, requires_grad=True)
    opt = MTAdam([w], lr=0.1, eps=0.0)
    info = opt.step({"a": 3 * w[0] + 4 * w[1], "b": 10 * w[1]})
    torch.testing.assert_close(w.detach(), torch.tensor([-0.1, -0.18]))
    assert info.losses["a"].grad_norm == pytest.approx(5.0)
    assert info.losses["b"].grad_norm == pytest.approx(10.0)
    # term updates: lr·(3/3, 4/5) and lr·(0/3, 5/5)
    assert info.losses["a"].update_norm == pytest.approx(0.1 * math.hypot(1.0, 0.8))
    assert info.losses["b"].update_norm == pytest.approx(0.1)
    assert info.backward_passes == 2
    # The shared statistics: cos(g_0, g_1) = 40/50; u_0 = lr·(1, 0.8), u_1 = lr·(0, 1) give
    # cos(u_0, u_1) = 0.8/√1.64; Δ = lr·(1, 1.8), cos(g_0, Δ) = (3 + 7.2)/(5·√4.24).
    assert info.grad_cosines[0][1] == pytest.approx(0.8)
    assert info.update_cosines[0][1] == pytest.approx(0.8 / math.sqrt(1.64))
    assert info.update_norm == pytest.approx(0.1 * math.sqrt(4.24))
    assert info.losses["a"].cosine == pytest.approx(10.2 / (5 * math.sqrt(4.24)))
    assert [s.state for s in info.losses.values()] == ["a", "b"]


def _mtadam_reference(
    grads_per_step: list[list[list[np.ndarray]]],
    lr: float,
    betas: tuple[float, float, float],
    eps: float,
    ranks: list[float],
    theta0: list[np.ndarray],
) -> list[np.ndarray]:
    """MTAdam written out per parameter tensor ("layer"): grads[step][term][param]."""
    beta1, beta2, beta3 = betas
    num_terms, num_params = len(grads_per_step[0]), len(grads_per_step[0][0])
    shapes = [g.shape for g in grads_per_step[0][0]]
    theta = [t.copy() for t in theta0]
    m = [[np.zeros(s) for s in shapes] for _ in range(num_terms)]
    v = [[np.zeros(s) for s in shapes] for _ in range(num_terms)]
    n = [[None] * num_params for _ in range(num_terms)]
    for t, grads in enumerate(grads_per_step, start=1):
        for j in range(num_params):
            for i in range(num_terms):
                norm = np.linalg.norm(grads[i][j])
                n[i][j] = norm if n[i][j] is None else beta3 * n[i][j] + (1 - beta3) * norm
            anchor = next(i for i in range(num_terms) if n[i][j] > 1e-10)
            denominators, numerators = [], []
            for i in range(num_terms):
                g = grads[i][j]
                if n[i][j] > 1e-10:
                    g = g * ranks[i] * n[anchor][j] / n[i][j]
                m[i][j] = beta1 * m[i][j] + (1 - beta1) * g
                v[i][j] = beta2 * v[i][j] + (1 - beta2) * g * g
                denominators.append(np.sqrt(v[i][j]) / math.sqrt(1 - beta2**t) + eps)
                numerators.append(m[i][j])
            big = np.max(np.stack(denominators), axis=0)
            theta[j] = theta[j] - lr / (1 - beta1**t) * sum(numerators) / big
    return theta


def test_mtadam_matches_written_out_reference() -> None:
    """Two layers (a: 2, b: 3), two quadratic terms of different scales, ranks (1, 2), 5 steps."""
    a0, b0 = np.array([0.3, -0.2]), np.array([0.1, 0.2, 0.3])
    a = torch.tensor(a0, requires_grad=True)
    b = torch.tensor(b0, requires_grad=True)
    ca, cb = torch.tensor([1.0, -2.0], dtype=torch.float64), torch.tensor([0.5, 1.0, -1.5])
    cb = cb.double()
    opt = MTAdam([a, b], lr=0.05, betas=(0.8, 0.9, 0.7), eps=1e-8, ranks={"l0": 1.0, "l1": 2.0})
    recorded = []
    for _ in range(5):
        an, bn = a.detach().numpy().copy(), b.detach().numpy().copy()
        # l0 = ½‖a − ca‖² + ½‖b − cb‖²,  l1 = 100·(½‖a‖² + (b·1)²)
        recorded.append(
            [
                [an - ca.numpy(), bn - cb.numpy()],
                [100 * an, 100 * 2 * bn.sum() * np.ones(3)],
            ]
        )
        opt.step(
            {
                "l0": 0.5 * ((a - ca) @ (a - ca)) + 0.5 * ((b - cb) @ (b - cb)),
                "l1": 100 * (0.5 * (a @ a) + b.sum() ** 2),
            }
        )
    expected = _mtadam_reference(recorded, 0.05, (0.8, 0.9, 0.7), 1e-8, [1.0, 2.0], [a0, b0])
    np.testing.assert_allclose(a.detach().numpy(), expected[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.detach().numpy(), expected[1], rtol=1e-10, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(min_value=1e-3, max_value=1e3))
def test_mtadam_is_invariant_to_scaling_a_non_anchor_term(scale: float) -> None:
    """g̃_i = (n_a/n_i)·g_i does not change when L_i is multiplied by c > 0."""

    def run(c: float) -> torch.Tensor:
        torch.manual_seed(0)
        net = torch.nn.Linear(3, 2).double()
        x = torch.randn(8, 3, dtype=torch.float64)
        opt = methods.create("mtadam", net.parameters(), lr=1e-2)
        for _ in range(3):
            opt.step({"residual": net(x).pow(2).mean(), "boundary": c * (net(x) - 1).pow(2).mean()})
        return torch.cat([p.detach().reshape(-1) for p in net.parameters()])

    torch.testing.assert_close(run(scale), run(1.0), rtol=1e-9, atol=1e-12)


def test_mtadam_unreached_parameter_is_left_alone() -> None:
    w = torch.zeros(2, requires_grad=True)
    c = torch.ones(1, requires_grad=True)  # reached only by "data"
    frozen = torch.ones(1, requires_grad=True)  # reached by nothing
    opt = MTAdam([w, c, frozen], lr=0.1)
    for _ in range(2):
        opt.step({"residual": (w - 1).pow(2).sum(), "data": (w.sum() * c - 3).pow(2).sum()})
    assert frozen.item() == 1.0 and frozen not in opt.state
    assert opt.state[c]["exp_avg"][0].abs().sum() == 0  # "residual" never reached c


# ----------------------------------------------------------------------- shared behaviour


def _net_and_losses():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1))
    x, y = torch.randn(12, 2), torch.randn(5, 2)

    def losses():
        return {"residual": net(x).pow(2).mean(), "boundary": (net(y) - 1).pow(2).mean()}

    return net, losses


@pytest.mark.parametrize("name", ["multiadam", "mtadam"])
def test_checkpoint_round_trip_is_bit_identical(name: str) -> None:
    net, losses = _net_and_losses()
    opt = methods.create(name, net.parameters(), lr=1e-2)
    for _ in range(4):
        opt.step(losses())
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    net2, losses2 = _net_and_losses()
    net2.load_state_dict(net.state_dict())
    opt2 = methods.create(name, net2.parameters(), lr=1e-2)
    opt2.load_state_dict(torch.load(buf, weights_only=True))
    for _ in range(4):
        opt.step(losses())
        opt2.step(losses2())
    for p, q in zip(net.parameters(), net2.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["multiadam", "mtadam"])
def test_bad_input_is_named(name: str) -> None:
    net, losses = _net_and_losses()
    opt = methods.create(name, net.parameters(), lr=1e-2)
    opt.step(losses())
    renamed = losses()
    renamed["data"] = renamed.pop("boundary")
    with pytest.raises(LossNameError, match="'data'"):
        opt.step(renamed)
    bad = losses()
    bad["boundary"] = bad["boundary"] * float("inf")
    with pytest.raises(NonFiniteLossError, match="'boundary'.*step 2"):
        opt.step(bad)
    with pytest.raises(HyperparameterError):
        methods.create(name, net.parameters(), lr=-1.0)


def test_mtadam_rejects_bad_betas_and_ranks() -> None:
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(HyperparameterError, match="betas must be"):
        MTAdam([w], betas=(0.9, 0.999))
    with pytest.raises(HyperparameterError, match=r"betas\[2\]"):
        MTAdam([w], betas=(0.9, 0.999, 1.0))
    opt = MTAdam([w], ranks={"a": 1.0})
    with pytest.raises(HyperparameterError, match="no weight for losses \\['b'\\]"):
        opt.step({"a": w.sum(), "b": w.pow(2).sum()})


def test_multiadam_and_mtadam_train_helmholtz_without_nan() -> None:
    from autobalance import nets, problems

    problem = problems.create("helmholtz", a2=1, n_residual=64, n_boundary=32)
    for name in ("multiadam", "mtadam"):
        torch.manual_seed(0)
        model = nets.create("mlp", 2, 1, width=12, depth=2)
        opt = methods.create(name, model.parameters(), lr=5e-3)
        gen = torch.Generator().manual_seed(0)
        first = last = None
        for _ in range(60):
            info = opt.step(problem.losses(model, problem.sample(gen, "cpu", torch.float32)))
            first = first if first is not None else info.total_loss
            last = info.total_loss
        assert last is not None and first is not None
        assert math.isfinite(last) and last < first
