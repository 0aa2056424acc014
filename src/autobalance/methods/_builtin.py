"""Importing this module imports :mod:`autobalance.methods`, which catalogues every method.

Kept for :mod:`autobalance.methods.aggregation`'s lazy import; nothing else needs it.
"""
