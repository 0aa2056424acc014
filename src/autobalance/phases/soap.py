"""SOAP and Shampoo from ``pytorch_optimizer`` (the optional extra ``autobalance[soap]``).

SOAP (Vyas et al., "SOAP: Improving and stabilizing Shampoo using Adam", arXiv:2409.11321,
ICLR 2025) runs Adam in the eigenbasis of Shampoo's Kronecker-factored preconditioner
(Gupta, Koren & Singer, "Shampoo: Preconditioned stochastic tensor optimization", ICML 2018).
Wang et al. ("Gradient alignment in physics-informed neural networks: a second-order
optimization perspective", arXiv:2502.00604, NeurIPS 2025) report 2–10× lower errors than Adam
on ten PINN benchmarks with it.

The classes are the library's own (``pytorch_optimizer.SOAP`` and ``.Shampoo``), returned as
they are: they are ``torch.optim.Optimizer`` subclasses whose ``step`` needs no closure, so they
serve as a plain optimizer (``--method soap``) and as AutoBalance's per-loss base (``--base
soap``).  Nothing is reimplemented here.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch

from autobalance.errors import UnknownNameError, unknown_name_message

__all__ = ["OPTIONAL_OPTIMIZERS", "SOAP_PINN_DEFAULTS", "optional_optimizer"]

#: Our name → the class name in ``pytorch_optimizer``.
OPTIONAL_OPTIMIZERS: dict[str, str] = {"soap": "SOAP", "shampoo": "Shampoo"}

#: Hyperparameters for PINNs, our choice: weight decay off (as for every method here; the
#: library's default is 1e-2), Adam's betas and learning rate, and the preconditioner's
#: eigenbasis refreshed every 2 steps (cheap for PINN-sized matrices).
SOAP_PINN_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3,
    "betas": (0.9, 0.999),
    "weight_decay": 0.0,
    "precondition_frequency": 2,
}


def optional_optimizer(name: str) -> type[torch.optim.Optimizer]:
    """The optimizer class ``name`` (``"soap"`` or ``"shampoo"``) of ``pytorch_optimizer``.

    Raises:
        UnknownNameError: ``name`` is not one of :data:`OPTIONAL_OPTIMIZERS`.
        ImportError: the extra is not installed (the message says how to install it).
    """
    try:
        class_name = OPTIONAL_OPTIMIZERS[name.lower()]
    except KeyError:
        raise UnknownNameError(
            unknown_name_message("optional optimizer", name, OPTIONAL_OPTIMIZERS)
        ) from None
    try:
        module = importlib.import_module("pytorch_optimizer")
    except ImportError as exc:
        raise ImportError(
            f"the {name!r} optimizer comes from the package pytorch_optimizer: install it with "
            "`pip install 'autobalance[soap]'` (or `pip install pytorch_optimizer`)"
        ) from exc
    cls = getattr(module, class_name)
    assert isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)
    return cls
