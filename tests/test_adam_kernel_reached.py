"""The multi-state Adam kernel when states miss parameters (a gradient that is ``None``).

A loss made of derivatives only (Kovasznay's continuity, the convection and wave residuals) does
not reach the output layer's bias; its state must leave that bias's moments and step count alone.
"""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autobalance.optim.adam_rule import _bias_corrections, _expand, multi_state_adam

SIZES = [6, 1, 4, 2]


@settings(max_examples=40, deadline=None)
@given(
    states=st.integers(1, 3),
    pattern=st.lists(st.lists(st.booleans(), min_size=4, max_size=4), min_size=6, max_size=6),
    amsgrad=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_each_reached_state_and_parameter_is_its_own_torch_adam(
    states: int, pattern: list[list[bool]], amsgrad: bool, seed: int
) -> None:
    """State ``s`` and parameter ``j`` step like a ``torch.optim.Adam`` of their own that steps
    only when ``s`` reaches ``j``; elsewhere the moments and the count stay, the update is 0."""
    gen = torch.Generator().manual_seed(seed)
    hyper = {"lr": 0.01, "betas": (0.9, 0.99), "eps": 1e-8, "amsgrad": amsgrad}
    refs = [
        [torch.zeros(n, dtype=torch.float64, requires_grad=True) for n in SIZES]
        for _ in range(states)
    ]
    opts = [[torch.optim.Adam([p], **hyper) for p in row] for row in refs]
    shape = (states, sum(SIZES))
    exp_avg, exp_avg_sq, vmax = (torch.zeros(shape, dtype=torch.float64) for _ in range(3))
    counts = torch.zeros(states, len(SIZES))
    for row in pattern:
        reached = torch.tensor([row[s:] + row[:s] for s in range(states)])  # one per state
        grads = torch.randn(shape, generator=gen, dtype=torch.float64)
        grads = torch.where(_expand(SIZES, reached), grads, torch.zeros(()))  # None → zeros
        moments = (exp_avg.clone(), exp_avg_sq.clone())
        updates = multi_state_adam(
            grads, exp_avg, exp_avg_sq, vmax if amsgrad else None, counts, reached,
            sizes=SIZES, lr=0.01, beta1=0.9, beta2=0.99, eps=1e-8,
        )  # fmt: skip
        for s in range(states):
            pieces = zip(
                grads[s].split(SIZES), updates[s].split(SIZES), refs[s], opts[s], strict=True
            )
            for j, (g, u, p, opt) in enumerate(pieces):
                if not reached[s, j]:
                    assert torch.equal(u, torch.zeros_like(u))
                    continue
                before = p.detach().clone()
                p.grad = g.clone()
                opt.step()
                torch.testing.assert_close(u, before - p.detach(), rtol=1e-9, atol=1e-12)
        for s in range(states):
            old_m, old_v = (t[s].split(SIZES) for t in moments)
            new_m, new_v = exp_avg[s].split(SIZES), exp_avg_sq[s].split(SIZES)
            for j, p in enumerate(refs[s]):
                state = opts[s][j].state[p]
                if reached[s, j]:  # bit for bit torch's moments and count
                    assert torch.equal(new_m[j], state["exp_avg"])
                    assert torch.equal(new_v[j], state["exp_avg_sq"])
                else:
                    assert torch.equal(new_m[j], old_m[j]) and torch.equal(new_v[j], old_v[j])
                assert counts[s, j].item() == (state["step"].item() if state else 0.0)


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.lists(st.integers(0, 50), min_size=4, max_size=4), min_size=1, max_size=3),
    pattern=st.lists(st.lists(st.booleans(), min_size=4, max_size=4), min_size=3, max_size=3),
)
def test_bias_corrections_of_reached_parameters_are_the_per_element_values(
    counts: list[list[int]], pattern: list[list[bool]]
) -> None:
    """Where the reached parameters of each state share a count, one value per state is used:
    bit for bit the per-element value at every reached element."""
    steps = torch.tensor(counts, dtype=torch.float32)
    reached = [pattern[s % 3] for s in range(len(counts))]
    like = torch.zeros(len(counts), sum(SIZES), dtype=torch.float64)  # float32 hides ulps
    args = (steps, SIZES, like, 0.01, 0.9, 0.999)
    expected = [t.expand_as(like) for t in _bias_corrections(*args)]  # per element (or state)
    got = [t.expand_as(like) for t in _bias_corrections(*args, reached=reached)]
    mask = _expand(SIZES, torch.tensor(reached))
    for e, g in zip(expected, got, strict=True):
        assert torch.equal(e[mask], g[mask])
