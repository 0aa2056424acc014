"""The error metrics of a run, by hand."""

from __future__ import annotations

import math

import pytest
import torch

from autobalance.metrics import ERROR_NAMES, error_metrics


def test_error_metrics_by_hand() -> None:
    reference = torch.tensor([[2.0], [-2.0], [4.0]])
    prediction = torch.tensor([[1.0], [-2.0], [6.0]])  # errors -1, 0, 2
    out = error_metrics(prediction, reference)
    assert set(out) == set(ERROR_NAMES)
    assert out["rel_l2"] == pytest.approx(math.sqrt(5) / math.sqrt(24), rel=1e-15)
    assert out["rel_l1"] == pytest.approx(3 / 8, rel=1e-15)
    assert out["mse"] == pytest.approx(5 / 3, rel=1e-15)
    assert out["linf"] == 2.0


def test_suffix_and_float64_accumulation() -> None:
    reference = torch.full((4,), 1e4, dtype=torch.float32)
    prediction = reference + torch.tensor([1e-3, 0.0, 0.0, 0.0])
    out = error_metrics(prediction, reference, suffix="_u")
    assert set(out) == {f"{name}_u" for name in ERROR_NAMES}
    # 1e4 + 1e-3 is not representable in float32: the error is the float32 round-off, exactly
    e = float(prediction[0].double() - 1e4)
    assert out["rel_l1_u"] == pytest.approx(abs(e) / 4e4, rel=1e-12)
