"""The one statistics builder: every StepInfo statistic read from one Gram matrix."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autobalance.step_info import build_step_info, joint_gram

VALUES = {"a": 1.0, "b": 2.0}


def _gram(*rows: list[float]) -> torch.Tensor:
    phi = torch.tensor(rows, dtype=torch.float64)
    return phi @ phi.T


def test_closed_form_statistics_of_a_multi_state_step() -> None:
    # ∇L_a = (3, 4), ∇L_b = (0, 2); u_1 = (1, 0), u_2 = (0, 2); Δ = u_1 + u_2 = (1, 2).
    gram = _gram([3, 4], [0, 2], [1, 0], [0, 2], [1, 2])
    info = build_step_info(
        7, VALUES, gram=gram, num_updates=2, combined="update", states=["s1", "s2"],
        weights=[1.0, 0.5], backward_passes=2, needs_grad_matrix=True,
    )  # fmt: skip
    a, b = info.losses["a"], info.losses["b"]
    assert (a.grad_norm, b.grad_norm) == (5.0, 2.0)
    assert (a.update_norm, b.update_norm) == (1.0, 2.0)
    assert a.cosine == pytest.approx(11 / (5 * math.sqrt(5)))  # (3·1 + 4·2) / (5·√5)
    assert b.cosine == pytest.approx(4 / (2 * math.sqrt(5)))
    assert info.update_norm == pytest.approx(math.sqrt(5))
    assert info.grad_cosines == ((1.0, 0.8), (0.8, 1.0))
    assert info.update_cosines == ((1.0, 0.0), (0.0, 1.0))
    assert (a.state, b.state, a.weight, b.weight) == ("s1", "s2", 1.0, 0.5)
    assert (info.step, info.backward_passes, info.needs_grad_matrix) == (7, 2, True)
    assert not info.skipped and info.values == VALUES


def test_shared_state_and_a_combined_gradient() -> None:
    # Two losses own update row 0; the last row is a gradient for a base optimizer, not Δ.
    gram = _gram([3, 4], [0, 2], [2, 0], [1, 1])
    info = build_step_info(
        1, VALUES, gram=gram, num_updates=1, combined="gradient", update_of_loss=[0, 0]
    )
    assert info.losses["a"].update_norm == info.losses["b"].update_norm == 2.0
    assert info.losses["a"].cosine == pytest.approx(7 / (5 * math.sqrt(2)))
    assert math.isnan(info.update_norm)
    assert info.update_cosines == ((1.0,),)


def test_zero_vectors_give_nan_cosines_and_no_gram_gives_values_only() -> None:
    info = build_step_info(1, VALUES, gram=_gram([0, 0], [1, 0], [1, 0]), combined="update")
    assert math.isnan(info.losses["a"].cosine) and info.losses["b"].cosine == 1.0
    assert math.isnan(info.grad_cosines[0][1]) and info.grad_cosines[1][1] == 1.0
    bare = build_step_info(3, VALUES, states="sum", backward_passes=1)
    assert bare.grad_cosines == () and bare.update_cosines == ()
    assert all(math.isnan(s.grad_norm) and s.state == "sum" for s in bare.losses.values())
    skipped = build_step_info(3, VALUES, skipped_reason="loss 'a' is nan at step 4")
    assert skipped.skipped and skipped.reason == "loss 'a' is nan at step 4"


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match=r"gram must be 3 × 3 \(2 gradients, 0 updates, 1 comb"):
        build_step_info(1, VALUES, gram=_gram([1, 0], [0, 1]), combined="update")
    with pytest.raises(ValueError, match="combined must be one of"):
        build_step_info(1, VALUES, gram=_gram([1, 0], [0, 1], [1, 1]), combined="delta")
    with pytest.raises(ValueError, match="2 losses but 1 states and 2 weights"):
        build_step_info(1, VALUES, states=["x"])
    with pytest.raises(ValueError, match="update_of_loss must give each of 2 losses a row < 1"):
        build_step_info(1, VALUES, gram=_gram([1], [2], [3]), num_updates=1, update_of_loss=[0, 1])


def test_joint_gram_assembles_the_blocks() -> None:
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(3, 7, generator=gen, dtype=torch.float64)
    z = torch.randn(2, 7, generator=gen, dtype=torch.float64)
    full = torch.cat([m, z])
    blocks = joint_gram(m @ m.T, z @ full.T)
    torch.testing.assert_close(
        torch.tensor(blocks, dtype=torch.float64), full @ full.T, rtol=0, atol=1e-12
    )


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(1, 4),
    s=st.integers(0, 3),
    n=st.integers(1, 6),
    seed=st.integers(0, 2**16),
    scale=st.floats(1e-3, 1e3),
)
def test_statistics_are_norms_and_scale_free_cosines(
    k: int, s: int, n: int, seed: int, scale: float
) -> None:
    gen = torch.Generator().manual_seed(seed)
    phi = torch.randn(k + s + 1, n, generator=gen, dtype=torch.float64)
    values = {f"l{i}": float(i) for i in range(k)}
    owner = {"num_updates": s, "update_of_loss": [i % s for i in range(k)] if s else None}
    info = build_step_info(1, values, gram=phi @ phi.T, combined="update", **owner)
    norms = phi.norm(dim=1).tolist()
    for i, stats in enumerate(info.losses.values()):
        assert stats.grad_norm == pytest.approx(norms[i], rel=1e-9)
        assert -1 - 1e-12 <= stats.cosine <= 1 + 1e-12
        if s:
            assert stats.update_norm == pytest.approx(norms[k + i % s], rel=1e-9)
    assert info.update_norm == pytest.approx(norms[-1], rel=1e-9)
    table = torch.tensor(info.grad_cosines, dtype=torch.float64)
    torch.testing.assert_close(table, table.T)
    torch.testing.assert_close(table.diagonal(), torch.ones(k, dtype=torch.float64))
    # Cosines do not change when one gradient is scaled by a positive number.
    phi[0] *= scale
    scaled = build_step_info(1, values, gram=phi @ phi.T, combined="update", **owner)
    first = next(iter(values))
    assert scaled.losses[first].cosine == pytest.approx(info.losses[first].cosine, abs=1e-9)
    torch.testing.assert_close(torch.tensor(scaled.grad_cosines, dtype=torch.float64), table)
