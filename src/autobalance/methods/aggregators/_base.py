"""An aggregator is a weighting of the Gram matrix (the shape of TorchJD's aggregators).

With the per-loss gradients stacked as ``G`` (``K × P``) and their Gram matrix ``M = G Gᵀ``
(``K × K``, float64, :func:`._gram.gram`), every aggregator computes weights ``w`` (``K``) from
``M`` — and from the loss values where it needs them (MGDA's ``normalize="loss"``) — and the
direction is their combination::

    w = agg.weights(M, losses)          d = wᵀ G = Σ_k w_k g_k

:meth:`Aggregator.aggregate` is the one place that applies ``w``; the training method records the
same ``w`` in each step's statistics.  Aggregators that are not a function of ``M`` alone keep
what else they need as state: PCGrad's and GradVac's random visiting order (a seeded generator),
GradVac's EMA targets, Nash-MTL's warm start.  Stateful aggregators override
:meth:`~Aggregator.state_dict` / :meth:`~Aggregator.load_state_dict` so checkpoints resume them.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from autobalance.errors import HyperparameterError
from autobalance.methods.aggregators._gram import combine, gram

__all__ = ["Aggregator", "check_gradient_matrix", "check_positive_int", "loss_array"]


def check_gradient_matrix(G: Tensor, name: str = "G") -> Tensor:
    """Raise a clear error unless ``G`` is a finite 2-D ``(K, P)`` floating tensor with K ≥ 1."""
    if not isinstance(G, Tensor):
        raise HyperparameterError(f"{name} must be a torch.Tensor, got {type(G).__name__}")
    if G.dim() != 2 or G.shape[0] < 1 or G.shape[1] < 1:
        raise HyperparameterError(
            f"{name} must be a (K losses × P parameters) matrix, got shape {tuple(G.shape)}"
        )
    if not G.is_floating_point():
        raise HyperparameterError(f"{name} must be floating point, got {G.dtype}")
    if not bool(torch.isfinite(G).all()):
        raise HyperparameterError(f"{name} has NaN or infinite entries")
    return G


def check_positive_int(name: str, value: Any) -> int:
    """``int(value)`` for an integer ``>= 1`` (``3.0`` counts; ``True``, ``inf``, "3" do not)."""
    ok = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and int(value) == value
        and value >= 1
    )
    if not ok:
        raise HyperparameterError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def loss_array(losses: Tensor | Sequence[float] | np.ndarray | None, K: int) -> np.ndarray | None:
    """The ``K`` loss values as a float64 array (``None`` stays ``None``)."""
    if losses is None:
        return None
    if isinstance(losses, Tensor):
        losses = losses.detach().to(torch.float64).cpu().numpy()
    values = np.asarray(losses, dtype=np.float64).reshape(-1)
    if values.shape != (K,):
        raise HyperparameterError(
            f"losses must hold one value per gradient row ({K}), got {values.size}"
        )
    return values


class Aggregator(abc.ABC):
    """Per-loss gradients ``G`` (``K × P``) → weights ``w`` from ``M = G Gᵀ`` → ``d = wᵀG``.

    Subclasses implement :meth:`weights`.  Calling an aggregator returns the direction::

        d = agg(G)                  # or agg(G, losses=values)
        d, w = agg.aggregate(G)     # the direction and the weights that made it
    """

    #: Registered name, used in messages (set by each subclass).
    name = ""

    @abc.abstractmethod
    def weights(self, M: np.ndarray, losses: np.ndarray | None = None) -> np.ndarray:
        """The weights ``w`` (``K``, float64) from the float64 Gram matrix ``M`` (``K × K``)."""

    def aggregate(
        self, G: Tensor, losses: Tensor | Sequence[float] | np.ndarray | None = None
    ) -> tuple[Tensor, np.ndarray]:
        """``(d, w)``: the weights of ``G``'s Gram matrix and ``d = wᵀG`` in ``G``'s dtype."""
        G = check_gradient_matrix(G)
        K = G.shape[0]
        w = np.asarray(self.weights(gram(G), loss_array(losses, K)), dtype=np.float64)
        if w.shape != (K,) or not bool(np.all(np.isfinite(w))):
            raise FloatingPointError(
                f"aggregator {self.name or type(self).__name__!r} returned invalid weights {w}"
            )
        d = combine(w, G)
        if not bool(torch.isfinite(d).all()):
            raise FloatingPointError(
                f"aggregator {self.name or type(self).__name__!r}: the direction overflows "
                f"{G.dtype} (weights {w})"
            )
        return d, w

    def __call__(
        self, G: Tensor, losses: Tensor | Sequence[float] | np.ndarray | None = None
    ) -> Tensor:
        """The direction ``d = wᵀG`` (``P``)."""
        return self.aggregate(G, losses)[0]

    def state_dict(self) -> dict[str, Any]:
        """State beyond the hyperparameters (generators, EMAs), for checkpoints."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027
        """Inverse of :meth:`state_dict`."""
