"""Imports every built-in method module so that their ``@register`` decorators run."""

from autobalance.methods import aggregators, multi_state, multistate, single, weighting

__all__ = ["aggregators", "multi_state", "multistate", "single", "weighting"]
