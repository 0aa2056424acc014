"""Helpers shared by the adaptive weighting methods: stable softmax, seeded generators, learnable
weight vectors with their own optimizer, and update schedules.

Every piece of state here round-trips through ``torch.save`` / ``torch.load(weights_only=True)``
(tensors, numbers, strings, lists, dicts only), so that checkpoints resume bit-identically:
:class:`SeededGenerator` and :class:`LearnableVector` save and load themselves with
``state_dict()`` / ``load_state_dict()``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from autobalance.errors import HyperparameterError, check_positive

__all__ = [
    "LearnableVector",
    "SeededGenerator",
    "check_every",
    "check_int",
    "is_update_step",
    "softmax",
]


def softmax(logits: Sequence[float]) -> list[float]:
    """``exp(x_k − max x) / Σ_j exp(x_j − max x)`` in double precision (never overflows).

    Logits of ``+inf`` (an overflowed ratio or rate) are the limit: they share the whole mass
    equally and every finite logit gets 0; ``−inf`` logits get 0.  NaN logits are an error.
    """
    if any(math.isnan(x) for x in logits):
        raise FloatingPointError(f"softmax of NaN logits {list(logits)}")
    top = max(logits)
    if top == math.inf:
        share = 1.0 / sum(1 for x in logits if x == math.inf)
        return [share if x == math.inf else 0.0 for x in logits]
    exps = [math.exp(x - top) for x in logits]
    total = math.fsum(exps)
    return [e / total for e in exps]


def check_int(name: str, value: Any, *, minimum: int) -> int:
    """``int(value)`` for an integer ``≥ minimum`` (``int`` or e.g. ``numpy.int64``, not
    ``bool`` nor a float), else :class:`HyperparameterError`."""
    if not isinstance(value, bool):
        try:
            number = operator.index(value)
        except TypeError:
            pass
        else:
            if number >= minimum:
                return number
    raise HyperparameterError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_every(value: Any) -> int:
    """Validate an update period ``every`` (an integer ``≥ 1``)."""
    return check_int("every", value, minimum=1)


def is_update_step(step: int, every: int) -> bool:
    """Steps ``1, 1 + every, 1 + 2·every, …`` (1-based): the first step always updates."""
    return (step - 1) % every == 0


class SeededGenerator:
    """A CPU ``torch.Generator`` seeded with ``seed`` whose state goes in checkpoints."""

    def __init__(self, seed: Any) -> None:
        self.generator = torch.Generator()
        self.generator.manual_seed(check_int("seed", seed, minimum=0))

    def state_dict(self) -> Tensor:
        """The generator's state (a byte tensor)."""
        return self.generator.get_state()

    def load_state_dict(self, state: Tensor) -> None:
        self.generator.set_state(state.cpu())  # map_location may have moved it


_WEIGHT_OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


class LearnableVector:
    """A vector of ``K`` learnable scalars (loss weights, log-variances) with its own optimizer.

    The vector is created at the first step (when ``K`` is known) or when a checkpoint is loaded.
    Its gradient is given in closed form by the method (:meth:`apply_gradient`), so no autograd
    graph is built for it.  Values are kept in float64 on the CPU.

    Args:
        what: name used in error messages (e.g. ``"gradnorm weights"``).
        lr: learning rate of the vector's optimizer (the methods' ``weight_lr``).
        optimizer: ``"adam"`` (default betas) or ``"sgd"`` (plain ``x ← x − lr·g``); the
            methods' ``weight_optimizer``.
    """

    def __init__(self, what: str, lr: float, optimizer: str) -> None:
        if optimizer not in _WEIGHT_OPTIMIZERS:
            raise HyperparameterError(
                f"weight_optimizer (optimizer of the {what}) must be one of "
                f"{sorted(_WEIGHT_OPTIMIZERS)}, got {optimizer!r}"
            )
        self.what = what
        self.lr = check_positive(f"weight_lr (learning rate of the {what})", lr)
        self.optimizer_name = optimizer
        self.values: Tensor | None = None
        self._optimizer: torch.optim.Optimizer | None = None

    @property
    def ready(self) -> bool:
        return self.values is not None

    def create(self, initial: Sequence[float]) -> None:
        """Create the vector with the given initial values (and a fresh optimizer)."""
        self.values = torch.tensor(list(initial), dtype=torch.float64, requires_grad=True)
        self._optimizer = _WEIGHT_OPTIMIZERS[self.optimizer_name]([self.values], lr=self.lr)

    def tolist(self) -> list[float]:
        assert self.values is not None
        return [float(x) for x in self.values.detach().tolist()]

    def apply_gradient(self, grad: Sequence[float]) -> None:
        """One optimizer step with the given gradient."""
        assert self.values is not None and self._optimizer is not None
        self.values.grad = torch.tensor(list(grad), dtype=torch.float64)
        self._optimizer.step()
        self.values.grad = None

    def assign(self, new_values: Sequence[float]) -> None:
        """Overwrite the values in place (the optimizer's moments are kept)."""
        assert self.values is not None
        with torch.no_grad():
            self.values.copy_(torch.tensor(list(new_values), dtype=torch.float64))

    def state_dict(self) -> dict[str, Any]:
        if self.values is None or self._optimizer is None:
            return {}
        return {
            "values": self.values.detach().clone(),
            "optimizer": self._optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            self.values = None
            self._optimizer = None
            return
        self.create(state["values"].tolist())
        assert self._optimizer is not None
        # The vector lives on the CPU whatever ``map_location`` the checkpoint was loaded with
        # (torch leaves an optimizer's ``step`` tensors where they were loaded).
        self._optimizer.load_state_dict(_to_cpu(state["optimizer"]))


def _to_cpu(value: Any) -> Any:
    """``value`` with every tensor in it (nested dicts and lists) moved to the CPU."""
    if isinstance(value, Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_cpu(v) for v in value)
    return value
