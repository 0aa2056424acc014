"""Gradient aggregators: per-loss gradient matrix ``G`` → one direction → one optimizer."""

from autobalance.methods.aggregators import (
    aligned_mtl,
    cagrad,
    config,
    dcgd,
    gradvac,
    imtl,
    mgda,
    nashmtl,
    pcgrad,
    simple,
    upgrad,
)

__all__ = [
    "aligned_mtl",
    "cagrad",
    "config",
    "dcgd",
    "gradvac",
    "imtl",
    "mgda",
    "nashmtl",
    "pcgrad",
    "simple",
    "upgrad",
]
