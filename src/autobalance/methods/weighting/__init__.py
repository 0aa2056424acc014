"""Loss-weighting methods: weights ``w_k`` → one backward of ``Σ_k w_k L_k`` → one optimizer."""

from autobalance.methods.weighting import fixed

__all__ = ["fixed"]
