"""Properties AutoBalance promises, checked over many random cases (hypothesis)."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autobalance import AutoBalance


def _trajectory(scale_b: float, seed: int, combine: str = "sum") -> list[torch.Tensor]:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(2, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1)
    ).double()
    x = torch.randn(20, 2, dtype=torch.float64)
    opt = AutoBalance(net.parameters(), base="adam", lr=1e-2, eps=1e-30, combine=combine)
    for _ in range(15):
        opt.step(
            {"a": (net(x) - x[:, :1]).pow(2).mean(), "b": scale_b * net(x).sin().pow(2).mean()}
        )
    return [p.detach().clone() for p in net.parameters()]


@settings(max_examples=20, deadline=None)
@given(scale=st.floats(1e-4, 1e4), seed=st.integers(0, 1000))
def test_scaling_one_loss_leaves_the_trajectory_unchanged(scale: float, seed: int) -> None:
    """Adam's update is invariant to the scale of its gradient, and so is each state's u_k:
    a static weight on one loss does nothing inside AutoBalance (METHOD.md, scale invariance)."""
    for p, q in zip(_trajectory(1.0, seed), _trajectory(scale, seed), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-11)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), num_losses=st.integers(1, 5))
def test_sum_equals_mean_with_lr_times_k(seed: int, num_losses: int) -> None:
    """combine="sum" at lr is exactly combine="mean" at lr·K (compare them at equal tuned lr)."""

    def run(combine: str, lr: float) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        net = torch.nn.Linear(3, 2).double()
        x = torch.randn(10, 3, dtype=torch.float64)
        opt = AutoBalance(net.parameters(), base="adam", lr=lr, combine=combine)
        for _ in range(10):
            opt.step({f"l{k}": (net(x) - k).pow(2).mean() for k in range(num_losses)})
        return [p.detach().clone() for p in net.parameters()]

    for p, q in zip(run("sum", 1e-3), run("mean", 1e-3 * num_losses), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
