"""Loss-weighting methods: weights ``w_k`` → one backward of ``Σ_k w_k L_k`` → one optimizer."""

from autobalance.methods.weighting import (
    dwa,
    fixed,
    grad_norm_balance,
    gradnorm,
    lr_annealing,
    ntk,
    relobralo,
    rlw,
    softadapt,
    uncertainty,
)

__all__ = [
    "dwa",
    "fixed",
    "grad_norm_balance",
    "gradnorm",
    "lr_annealing",
    "ntk",
    "relobralo",
    "rlw",
    "softadapt",
    "uncertainty",
]
