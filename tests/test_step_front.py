"""The shared front half of a step (names, scalars, NaN/Inf policy) and the gradients module."""

from __future__ import annotations

import math

import pytest
import torch

from autobalance.errors import (
    HyperparameterError,
    LossNameError,
    LossValueError,
    NonFiniteLossError,
)
from autobalance.gradients import checked_gradients, gradient_matrix
from autobalance.step_front import StepFront


def _losses(theta: torch.Tensor, **scale: float) -> dict[str, torch.Tensor]:
    """L_a = s_a·θ₀², L_b = s_b·(θ₀ + θ₁)²."""
    return {
        "a": scale.get("a", 1.0) * theta[0] ** 2,
        "b": scale.get("b", 1.0) * (theta[0] + theta[1]) ** 2,
    }


def test_names_are_fixed_by_the_first_step_taken_in_its_order() -> None:
    theta = torch.tensor([1.0, 2.0], requires_grad=True)
    front = StepFront("skip")
    skipped = front.nonfinite_loss(front.start(_losses(theta, a=math.nan)))
    assert skipped is not None and skipped.skipped and front.names is None
    renamed = {"x": theta.sum(), "y": theta.prod()}
    assert front.start(renamed).names == ["x", "y"]  # a skipped step fixes nothing
    batch = front.start(dict(reversed(list(_losses(theta).items()))))
    assert batch.names == ["b", "a"] and batch.step == 1
    assert batch.values == {"b": 9.0, "a": 1.0}
    assert front.finish(batch.names) == 1 and front.names == ["b", "a"]
    again = front.start(_losses(theta))
    assert again.names == ["b", "a"] and list(again.losses) == ["b", "a"] and again.step == 2
    with pytest.raises(LossNameError, match=r"step 2: unknown loss name\(s\) 'x'"):
        front.start(renamed)


def test_nonfinite_policy_raises_with_name_and_step_or_skips() -> None:
    theta = torch.tensor([1.0, 2.0], requires_grad=True)
    front = StepFront()
    front.finish(["a", "b"])
    with pytest.raises(NonFiniteLossError, match="loss 'b' is inf at step 2") as err:
        front.nonfinite_loss(front.start(_losses(theta, b=math.inf)))
    assert (err.value.loss, err.value.step) == ("b", 2)
    skip = StepFront("skip")
    skip.finish(["a", "b"])
    info = skip.refuse({"a": 1.0, "b": 2.0}, "a", math.nan, what="gradient of loss", states="s")
    assert info.skipped and info.step == 1
    assert info.reason == "gradient of loss 'a' is nan at step 2"
    assert [s.state for s in info.losses.values()] == ["s", "s"] and info.values["b"] == 2.0
    assert skip.nonfinite_loss(skip.start(_losses(theta))) is None
    with pytest.raises(HyperparameterError, match="nonfinite must be 'raise' or 'skip'"):
        StepFront("ignore")


def test_bad_losses_are_named() -> None:
    front = StepFront()
    with pytest.raises(LossValueError, match="'a' is not a scalar: shape \\(2,\\)"):
        front.start({"a": torch.ones(2)})
    with pytest.raises(LossValueError, match="losses is empty"):
        front.start({})


def test_state_dict_round_trip() -> None:
    front = StepFront()
    front.finish(["a", "b"])
    front.finish(["a", "b"])
    other = StepFront()
    other.load_state_dict(front.state_dict())
    assert (other.names, other.steps) == (["a", "b"], 2)


def test_per_loss_gradients_closed_form() -> None:
    # ∇L_a = (2θ₀, 0) = (2, 0); ∇L_b = 2(θ₀ + θ₁)·(1, 1) = (6, 6); an unreached parameter → None.
    theta = torch.tensor([1.0, 2.0], requires_grad=True)
    unused = torch.zeros(3, requires_grad=True)
    front = StepFront()
    grads = front.start(_losses(theta)).per_loss_gradients([theta, unused])
    torch.testing.assert_close(grads[0][0], torch.tensor([2.0, 0.0]))
    torch.testing.assert_close(grads[1][0], torch.tensor([6.0, 6.0]))
    assert grads[0][1] is None and grads[1][1] is None
    gm = gradient_matrix(grads, [theta, unused])
    torch.testing.assert_close(gm.matrix, torch.tensor([[2.0, 0, 0, 0, 0], [6, 6, 0, 0, 0]]))
    assert gm.reached.tolist() == [[True, False], [True, False]] and gm.sizes == [2, 3]


def test_gradient_matrix_promotes_mixed_dtypes() -> None:
    a = torch.zeros(2, dtype=torch.float32)
    b = torch.zeros(1, dtype=torch.float64)
    gm = gradient_matrix([[torch.ones(2), None]], [a, b])
    assert gm.matrix.dtype == torch.float64 and gm.matrix.tolist() == [[1.0, 1.0, 0.0]]


def test_checked_gradients() -> None:
    params = [torch.zeros(2, dtype=torch.float64), torch.zeros(1)]
    checked = checked_gradients("a", [torch.ones(2), None], params)
    assert checked[0] is not None and checked[0].dtype == torch.float64 and checked[1] is None
    with pytest.raises(LossValueError, match=r"grads\['a'\]\[0\] has shape \(3,\)"):
        checked_gradients("a", [torch.ones(3), None], params)
    with pytest.raises(LossValueError, match="None for every parameter"):
        checked_gradients("a", [None, None], params)
    with pytest.raises(LossValueError, match="one entry .* expected 2, got 1"):
        checked_gradients("a", [torch.ones(2)], params)
