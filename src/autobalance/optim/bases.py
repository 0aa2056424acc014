"""Base optimizers by name, and checks that a base optimizer and its hyperparameters are usable."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from autobalance.errors import (
    BaseOptimizerError,
    HyperparameterError,
    UnknownNameError,
    unknown_name_message,
)

__all__ = [
    "BASE_OPTIMIZERS",
    "base_defaults",
    "make_base_optimizer",
    "named_base_defaults",
    "nonempty_params",
    "resolve_base",
]

#: Registered base-optimizer names.  Any other ``torch.optim.Optimizer`` subclass can be passed as
#: a class.
BASE_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "nadam": torch.optim.NAdam,
    "radam": torch.optim.RAdam,
    "adamax": torch.optim.Adamax,
    "adagrad": torch.optim.Adagrad,
    "adadelta": torch.optim.Adadelta,
    "rmsprop": torch.optim.RMSprop,
    "sgd": torch.optim.SGD,
}

# Optimizers whose step needs to re-evaluate the loss, or that need sparse gradients: they cannot
# turn one precomputed gradient into one update, so they cannot keep one state per loss.
_NEEDS_CLOSURE_HINT = "it re-evaluates the loss through a closure inside step()"


def _optional(name: str) -> type[torch.optim.Optimizer] | None:
    """The optional optimizer ``name`` ("soap", "shampoo": :mod:`autobalance.phases.soap`), or
    ``None`` for another name; a missing extra is a :class:`BaseOptimizerError` saying what to
    install."""
    from autobalance.phases.soap import OPTIONAL_OPTIMIZERS, optional_optimizer

    if name.lower() not in OPTIONAL_OPTIMIZERS:
        return None
    try:
        return optional_optimizer(name)
    except ImportError as exc:
        raise BaseOptimizerError(str(exc)) from None


def named_base_defaults(base: type[torch.optim.Optimizer] | str) -> dict[str, Any]:
    """Hyperparameters a base given by name starts from (given ones override them): our PINN
    defaults for SOAP (:data:`~autobalance.phases.soap.SOAP_PINN_DEFAULTS` but the learning
    rate: weight decay off, Adam's betas, eigenbasis refreshed every 2 steps); none otherwise."""
    from autobalance.phases.soap import SOAP_PINN_DEFAULTS

    if isinstance(base, str) and base.lower() == "soap":
        return {k: v for k, v in SOAP_PINN_DEFAULTS.items() if k != "lr"}
    return {}


def resolve_base(base: type[torch.optim.Optimizer] | str) -> type[torch.optim.Optimizer]:
    """Turn a base name or class into a usable ``torch.optim.Optimizer`` subclass.

    Names: :data:`BASE_OPTIMIZERS`, and ``"soap"`` / ``"shampoo"`` from the optional extra
    ``autobalance[soap]`` (``pytorch_optimizer``).
    """
    if isinstance(base, str):
        cls = BASE_OPTIMIZERS.get(base.lower()) or _optional(base) or _unregistered(base)
    else:
        cls = base
    if not (inspect.isclass(cls) and issubclass(cls, torch.optim.Optimizer)):
        raise BaseOptimizerError(
            f"base must be a torch.optim.Optimizer subclass or one of "
            f"{', '.join(sorted(BASE_OPTIMIZERS))}; got {base!r}"
        )
    if issubclass(cls, torch.optim.SparseAdam):
        raise BaseOptimizerError("SparseAdam needs sparse gradients; PINN losses give dense ones")
    if _needs_closure(cls):
        raise BaseOptimizerError(
            f"{cls.__name__} cannot be used as a per-loss base optimizer: {_NEEDS_CLOSURE_HINT}, "
            "so it cannot turn one loss's gradient into one update. Use a first-order optimizer "
            "(e.g. 'adam', 'adamw', 'rmsprop'), or run "
            f"{cls.__name__} on the summed loss after AutoBalance."
        )
    return cls


def _unregistered(name: str) -> type[torch.optim.Optimizer]:
    """A ``torch.optim`` class that ``name`` spells but the registry lacks: closure-only and
    sparse ones (``"lbfgs"``) to be refused with their reason; any other is an unknown name
    whose message says to pass the class itself."""
    found = [
        cls
        for attr in dir(torch.optim)
        if attr.lower() == name.lower()
        and inspect.isclass(cls := getattr(torch.optim, attr))
        and issubclass(cls, torch.optim.Optimizer)
    ]
    message = unknown_name_message("base optimizer", name, BASE_OPTIMIZERS)
    if not found:
        raise UnknownNameError(message)
    (cls,) = found
    if issubclass(cls, torch.optim.SparseAdam) or _needs_closure(cls):
        return cls  # refused by resolve_base with the reason
    raise UnknownNameError(
        f"{message} torch.optim.{cls.__name__} is not registered by name; pass the class "
        f"itself: base=torch.optim.{cls.__name__}."
    )


def _needs_closure(cls: type[torch.optim.Optimizer]) -> bool:
    closure = inspect.signature(cls.step).parameters.get("closure")
    return closure is not None and closure.default is inspect.Parameter.empty


def _hyperparameter_names(cls: type[torch.optim.Optimizer]) -> list[str]:
    sig = inspect.signature(cls.__init__)
    return [n for n in sig.parameters if n not in ("self", "params")]


def make_base_optimizer(
    base: type[torch.optim.Optimizer] | str,
    params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
    hyperparameters: Mapping[str, Any],
) -> torch.optim.Optimizer:
    """Instantiate ``base`` over ``params``; torch's errors become ones that name the problem.

    A base given by name starts from :func:`named_base_defaults`."""
    cls = resolve_base(base)
    hyperparameters = {**named_base_defaults(base), **hyperparameters}
    known = _hyperparameter_names(cls)
    takes_kwargs = any(
        p.kind is inspect.Parameter.VAR_KEYWORD
        for p in inspect.signature(cls.__init__).parameters.values()
    )
    if not takes_kwargs:
        unknown = [k for k in hyperparameters if k not in known]
        if unknown:
            raise HyperparameterError(
                f"{cls.__name__} has no hyperparameter {', '.join(map(repr, unknown))}; "
                f"its hyperparameters are: {', '.join(known)}"
            )
    try:
        return cls(params, **hyperparameters)
    except (ValueError, TypeError) as exc:
        if "empty parameter list" in str(exc):
            raise HyperparameterError(
                f"{cls.__name__} was given no parameters to optimise"
            ) from exc
        raise HyperparameterError(f"invalid hyperparameter for {cls.__name__}: {exc}") from exc


def base_defaults(
    base: type[torch.optim.Optimizer] | str, hyperparameters: Mapping[str, Any]
) -> dict[str, Any]:
    """Validate ``hyperparameters`` for ``base`` and return its full defaults with them applied."""
    probe = make_base_optimizer(base, [torch.zeros(1, requires_grad=True)], hyperparameters)
    return dict(probe.defaults)


def nonempty_params(params: Any, owner: str) -> Any:
    """``params`` as a list (a tensor as given: torch names that mistake), or a
    :class:`~autobalance.errors.HyperparameterError` when it holds no parameter."""
    if isinstance(params, torch.Tensor):
        return params
    items = list(params)
    if not items:
        raise HyperparameterError(f"{owner} was given no parameters to optimise")
    return items
