"""Gradient aggregators: per-loss gradient matrix ``G`` → one direction → one optimizer."""

from autobalance.methods.aggregators import simple

__all__ = ["simple"]
