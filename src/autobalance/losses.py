"""Checks on named losses, shared by every optimizer and method.

Losses travel as ``Mapping[str, Tensor]``: named and ordered.  The first step fixes the names;
later steps must give the same names (order may differ; the first step's order is kept).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from autobalance.errors import LossNameError, LossValueError, NonFiniteLossError

__all__ = [
    "LossDict",
    "NamedLosses",
    "check_loss_names",
    "check_scalar_losses",
    "find_nonfinite",
    "loss_values",
    "nonfinite_error",
]

LossDict = Mapping[str, Tensor]


class NamedLosses(dict[str, Tensor]):
    """Named scalar losses that also carry the pointwise terms they were reduced from.

    It *is* a ``dict[str, Tensor]`` of scalar losses, so every optimizer and method accepts it.
    Methods and PINN variants that need per-point information (NTK weighting, residual-based
    attention, causal weights, gPINN) read the optional extras, each keyed by loss name:

    * :attr:`pointwise`: the per-point tensor ``r`` (``(N,)`` or ``(N, C)``) whose mean square
      is the loss, ``L = mean(r²)``, still attached to the autograd graph;
    * :attr:`points`: the ``(N, d)`` points ``r`` was evaluated at (detached);
    * :attr:`coords`: the ``d`` input column leaves ``(N, 1)`` (``requires_grad``) that ``r`` was
      computed from, for terms whose derivatives with respect to the inputs are needed (PDE
      residuals); see :func:`autobalance.problems.base.input_columns`.

    Problems return it from ``losses(model, batch)``.
    """

    def __init__(
        self,
        losses: Mapping[str, Tensor] | None = None,
        *,
        pointwise: Mapping[str, Tensor] | None = None,
        points: Mapping[str, Tensor] | None = None,
        coords: Mapping[str, Sequence[Tensor]] | None = None,
    ) -> None:
        super().__init__(losses or {})
        self.pointwise: dict[str, Tensor] = dict(pointwise or {})
        self.points: dict[str, Tensor] = dict(points or {})
        self.coords: dict[str, list[Tensor]] = {k: list(v) for k, v in (coords or {}).items()}


def check_scalar_losses(losses: LossDict) -> None:
    """Raise :class:`LossValueError` unless ``losses`` is a non-empty mapping of scalar tensors."""
    if not isinstance(losses, Mapping):
        raise LossValueError(
            f"losses must be a mapping from names to scalar tensors, got {type(losses).__name__}"
        )
    if len(losses) == 0:
        raise LossValueError("losses is empty: give at least one named loss")
    for name, loss in losses.items():
        if not isinstance(name, str):
            raise LossValueError(f"loss names must be strings, got {name!r}")
        if not isinstance(loss, Tensor):
            raise LossValueError(f"loss {name!r} is a {type(loss).__name__}, not a torch.Tensor")
        if loss.numel() != 1:
            raise LossValueError(
                f"loss {name!r} is not a scalar: shape {tuple(loss.shape)}; reduce it first "
                "(e.g. .mean())"
            )


def check_loss_names(given: Sequence[str], expected: Sequence[str], *, step: int) -> None:
    """Raise :class:`LossNameError` unless ``given`` holds exactly the names in ``expected``."""
    given_set, expected_set = set(given), set(expected)
    if given_set == expected_set:
        return
    unknown = [n for n in given if n not in expected_set]
    missing = [n for n in expected if n not in given_set]
    parts = []
    if unknown:
        parts.append(f"unknown loss name(s) {', '.join(map(repr, unknown))}")
    if missing:
        parts.append(f"missing loss name(s) {', '.join(map(repr, missing))}")
    raise LossNameError(
        f"at step {step}: {'; '.join(parts)}. The losses were fixed at the first step as "
        f"{', '.join(map(repr, expected))}; every step must give the same names."
    )


def find_nonfinite(values: Mapping[str, float]) -> str | None:
    """Return the first name whose value is NaN or infinite, or ``None``."""
    for name, value in values.items():
        if value != value or value in (float("inf"), float("-inf")):
            return name
    return None


def nonfinite_error(
    name: str, value: float, *, step: int, what: str = "loss"
) -> NonFiniteLossError:
    """Build the error for a non-finite loss (or gradient) ``name`` at ``step``."""
    return NonFiniteLossError(
        f"{what} {name!r} is {value} at step {step}; the parameters were not changed. "
        "Lower the learning rate, check the loss, or pass nonfinite='skip' to skip such steps.",
        loss=name,
        step=step,
    )


def loss_values(losses: LossDict) -> dict[str, float]:
    """Detach every loss and return Python floats, with one device synchronisation."""
    tensors = [loss.detach().reshape(()) for loss in losses.values()]
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) > 1 or {t.device for t in tensors} != {tensors[0].device}:
        tensors = [t.to("cpu", torch.float64) for t in tensors]
    # float16/32 → Python float is exact, so no float64 conversion is needed for one dtype.
    return dict(zip(losses.keys(), torch.stack(tensors).tolist(), strict=True))
