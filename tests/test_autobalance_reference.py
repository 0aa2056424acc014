"""AutoBalance against an independent, written-out per-loss Adam on small quadratic problems.

The reference keeps, for every (state, parameter) pair, its own moments and its own step count,
in plain float64 numpy, with gradients from closed-form formulas (no autograd).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from autobalance import AutoBalance

# Two parameter tensors: w (3,) shared by every loss, c (2,) reached only by some losses.
A = [np.diag([1.0, 10.0, 100.0]), np.array([[2.0, 1.0, 0.0], [1.0, 3.0, 0.5], [0.0, 0.5, 0.2]])]
T = [np.array([1.0, -1.0, 0.5]), np.array([0.0, 2.0, -1.0])]


def _grads(w: np.ndarray, c: np.ndarray, step: int) -> dict[str, dict[str, np.ndarray | None]]:
    """Closed-form gradients of three losses.

    residual = ½(w−t0)ᵀA0(w−t0)                       reaches w only
    boundary = ½(w−t1)ᵀA1(w−t1) + ½·5‖c − 1‖²          reaches w and c
    data     = ½‖c − (−2)‖²·3 on even steps only (c), ½‖w‖² on odd steps (w): reach varies
    """
    out: dict[str, dict[str, np.ndarray | None]] = {
        "residual": {"w": A[0] @ (w - T[0]), "c": None},
        "boundary": {"w": A[1] @ (w - T[1]), "c": 5.0 * (c - 1.0)},
    }
    out["data"] = {"w": None, "c": 3.0 * (c + 2.0)} if step % 2 == 0 else {"w": w.copy(), "c": None}
    return out


def _losses_torch(w: torch.Tensor, c: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
    a0, a1 = (torch.tensor(a) for a in A)
    t0, t1 = (torch.tensor(t) for t in T)
    out = {
        "residual": 0.5 * (w - t0) @ a0 @ (w - t0),
        "boundary": 0.5 * (w - t1) @ a1 @ (w - t1) + 2.5 * (c - 1.0).pow(2).sum(),
    }
    out["data"] = 1.5 * (c + 2.0).pow(2).sum() if step % 2 == 0 else 0.5 * w.pow(2).sum()
    return out


def reference(
    steps: int,
    *,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
    decoupled: bool,
    states: dict[str, list[str]],
    weights: dict[str, float],
) -> tuple[np.ndarray, np.ndarray]:
    params = {"w": np.array([0.3, -0.2, 0.1]), "c": np.array([0.5, -0.5])}
    b1, b2 = betas
    moments = {
        (s, name): {"m": np.zeros_like(v), "v": np.zeros_like(v), "t": 0}
        for s in states
        for name, v in params.items()
    }
    for step in range(steps):
        g = _grads(params["w"], params["c"], step)
        delta = {name: np.zeros_like(v) for name, v in params.items()}
        reached_any = dict.fromkeys(params, False)
        for s, members in states.items():
            for name, value in params.items():
                parts = [g[loss][name] for loss in members if g[loss][name] is not None]
                if not parts:
                    continue  # no gradient: no state update, no update from this state
                reached_any[name] = True
                grad = sum(parts)
                if weight_decay and not decoupled:
                    grad = grad + weight_decay * value
                st = moments[(s, name)]
                st["t"] += 1
                st["m"] = b1 * st["m"] + (1 - b1) * grad
                st["v"] = b2 * st["v"] + (1 - b2) * grad * grad
                m_hat = st["m"] / (1 - b1 ** st["t"])
                v_hat = st["v"] / (1 - b2 ** st["t"])
                delta[name] += weights[s] * lr * m_hat / (np.sqrt(v_hat) + eps)
        for name in params:
            if decoupled and weight_decay and reached_any[name]:
                params[name] = params[name] * (1 - lr * weight_decay)
            params[name] = params[name] - delta[name]
    return params["w"], params["c"]


def _autobalance(steps: int, **kw) -> tuple[np.ndarray, np.ndarray]:
    w = torch.nn.Parameter(torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64))
    c = torch.nn.Parameter(torch.tensor([0.5, -0.5], dtype=torch.float64))
    opt = AutoBalance([w, c], **kw)
    for step in range(steps):
        opt.step(_losses_torch(w, c, step))
    return w.detach().numpy(), c.detach().numpy()


HYPER = {"lr": 0.05, "betas": (0.9, 0.99), "eps": 1e-8}
PER_LOSS = {"residual": ["residual"], "boundary": ["boundary"], "data": ["data"]}


@pytest.mark.parametrize("combine", ["sum", "mean"])
@pytest.mark.parametrize(
    ("base", "weight_decay", "decoupled"),
    [("adam", 0.0, False), ("adam", 0.1, False), ("adamw", 0.1, True)],
)
def test_per_loss_adam_matches_written_out_reference(
    combine, base, weight_decay, decoupled
) -> None:
    weights = dict.fromkeys(PER_LOSS, 1.0 if combine == "sum" else 1 / 3)
    ref = reference(
        25,
        weight_decay=weight_decay,
        decoupled=decoupled,
        states=PER_LOSS,
        weights=weights,
        **HYPER,
    )
    got = _autobalance(25, base=base, combine=combine, weight_decay=weight_decay, **HYPER)
    for r, g in zip(ref, got, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-13)


def test_fixed_weights_and_groups_match_reference() -> None:
    states = {"pde": ["residual"], "rest": ["boundary", "data"]}
    weights = {"pde": 2.0, "rest": 0.5}
    ref = reference(20, weight_decay=0.0, decoupled=False, states=states, weights=weights, **HYPER)
    got = _autobalance(
        20,
        base="adam",
        groups={"rest": ["boundary", "data"]},
        combine={"residual": 2.0, "rest": 0.5},
        **HYPER,
    )
    # The ungrouped loss "residual" keeps a state named after itself.
    for r, g in zip(ref, got, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-13)


def test_stock_path_matches_reference_with_unreached_parameters() -> None:
    class PlainAdam(torch.optim.Adam):
        """Forces the stock (one instance per state) path."""

    ref = reference(
        15,
        weight_decay=0.0,
        decoupled=False,
        states=PER_LOSS,
        weights=dict.fromkeys(PER_LOSS, 1.0),
        **HYPER,
    )
    got = _autobalance(15, base=PlainAdam, **HYPER)
    for r, g in zip(ref, got, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-13)


def test_unreached_parameter_keeps_zero_state_and_step_count() -> None:
    w = torch.nn.Parameter(torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64))
    c = torch.nn.Parameter(torch.tensor([0.5, -0.5], dtype=torch.float64))
    opt = AutoBalance([w, c], base="adamw", weight_decay=0.1, **HYPER)
    for step in range(4):
        opt.step(_losses_torch(w, c, step))
    state_c = opt.state[c]
    names = opt.layout.state_names
    residual = names.index("residual")
    assert torch.equal(state_c["exp_avg"][residual], torch.zeros(2, dtype=torch.float64))
    assert state_c["step"].tolist() == [0.0, 4.0, 2.0]  # residual never, boundary always, data 2/4
    assert opt.state[w]["step"].tolist() == [4.0, 4.0, 2.0]


def test_frozen_and_unused_parameters_do_not_move() -> None:
    torch.manual_seed(0)
    used = torch.nn.Parameter(torch.randn(4))
    frozen = torch.nn.Parameter(torch.randn(4), requires_grad=False)
    unused = torch.nn.Parameter(torch.randn(4))
    frozen0, unused0 = frozen.detach().clone(), unused.detach().clone()
    opt = AutoBalance([used, frozen, unused], base="adamw", lr=0.1, weight_decay=0.5)
    for _ in range(3):
        opt.step({"a": (used * frozen).sum() ** 2, "b": used.pow(2).sum()})
    assert torch.equal(frozen, frozen0)
    assert torch.equal(unused, unused0)  # no gradient: no update and no weight decay


def test_weight_decay_applied_once_on_disjoint_losses() -> None:
    """Two losses on disjoint parameters = one AdamW on their sum (decay once, not twice)."""
    torch.manual_seed(3)
    p0, q0 = torch.randn(5, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    p1, q1 = torch.nn.Parameter(p0.clone()), torch.nn.Parameter(q0.clone())
    p2, q2 = torch.nn.Parameter(p0.clone()), torch.nn.Parameter(q0.clone())
    single = torch.optim.AdamW([p1, q1], lr=0.05, weight_decay=0.3)
    ab = AutoBalance([p2, q2], base="adamw", lr=0.05, weight_decay=0.3)

    def losses(p: torch.Tensor, q: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"a": (p.sin() - 0.3).pow(2).sum(), "b": 10 * (q - 2).pow(4).sum()}

    for _ in range(20):
        single.zero_grad()
        sum(losses(p1, q1).values()).backward()
        single.step()
        ab.step(losses(p2, q2))
    torch.testing.assert_close(p2, p1, rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(q2, q1, rtol=1e-13, atol=1e-14)


def test_grouped_losses_equal_one_state_on_their_sum() -> None:
    """groups={"pde": [r1, r2]} behaves exactly like one loss r1 + r2 with its own state."""
    torch.manual_seed(4)
    net1 = torch.nn.Sequential(
        torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)
    ).double()
    net2 = torch.nn.Sequential(
        torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)
    ).double()
    net2.load_state_dict(net1.state_dict())
    x = torch.randn(16, 2, dtype=torch.float64)
    grouped = AutoBalance(net1.parameters(), base="adam", lr=1e-2, groups={"pde": ["r1", "r2"]})
    merged = AutoBalance(net2.parameters(), base="adam", lr=1e-2)
    for _ in range(10):
        grouped.step(
            {
                "r1": net1(x).pow(2).mean(),
                "r2": net1(x).sin().mean() ** 2,
                "b": (net1(x) - 1).pow(2).mean(),
            }
        )
        merged.step(
            {
                "pde": net2(x).pow(2).mean() + net2(x).sin().mean() ** 2,
                "b": (net2(x) - 1).pow(2).mean(),
            }
        )
    assert grouped.layout.state_names == ("pde", "b")
    for p, q in zip(net1.parameters(), net2.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_info_reports_norms_and_cosines() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    opt = AutoBalance([w], base="adam", lr=0.1)
    # ∇a = (2, 0)·... : a = (w0)², b = 3·w1 → ∇a = (2, 0), ∇b = (0, 3).
    info = opt.step({"a": w[0] ** 2, "b": 3 * w[1]})
    # First Adam step: u_k = lr·sign(g_k) where g_k ≠ 0 → u_a = (0.1, 0), u_b = (0, 0.1).
    assert info.losses["a"].grad_norm == pytest.approx(2.0)
    assert info.losses["b"].grad_norm == pytest.approx(3.0)
    assert info.losses["a"].update_norm == pytest.approx(0.1, rel=1e-6)
    assert info.losses["b"].update_norm == pytest.approx(0.1, rel=1e-6)
    assert info.update_norm == pytest.approx(0.1 * math.sqrt(2), rel=1e-6)
    assert info.losses["a"].cosine == pytest.approx(1 / math.sqrt(2), rel=1e-6)
    assert info.losses["a"].value == 1.0 and info.losses["b"].value == 6.0
    assert info.backward_passes == 2 and info.needs_grad_matrix
    torch.testing.assert_close(w.detach(), torch.tensor([0.9, 1.9], dtype=torch.float64))
