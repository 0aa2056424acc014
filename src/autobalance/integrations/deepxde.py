"""Train a DeepXDE model (PyTorch backend) with any autobalance method, its loss terms by name.

DeepXDE computes one loss per term, in a fixed order: each equation of the PDE, then each
condition (``DirichletBC``, ``NeumannBC``, ``IC``, ``PointSetBC``, ...) in the order given to
``dde.data.PDE`` / ``dde.data.TimePDE``, and adds them into one loss for its optimizer.
:func:`compile_balanced` compiles the model with the method's optimizer and replaces DeepXDE's
training step by :class:`BalancedTrainStep`, which hands the terms to the method *by name*::

    data = dde.data.PDE(geometry, pde, [bc], num_domain=1024, num_boundary=256)
    model = dde.Model(data, dde.nn.FNN([2] + [50] * 4 + [1], "tanh", "Glorot normal"))
    step = compile_balanced(model, AutoBalance(model.net.parameters(), base="adam", lr=1e-3))
    model.train(iterations=15000)          # each step: {"pde": L_pde, "dirichlet_bc": L_bc}
    step.loss_names, step.last_info        # the names used, the method's last StepInfo

Everything else stays DeepXDE's: ``loss_weights`` (applied before the terms are handed over),
callbacks such as ``PDEPointResampler``, ``decay`` (its scheduler acts on the method's
learning rate), metrics, the loss history and ``model.predict``.  The method's optimizer is the
one DeepXDE compiles with, so ``model.save`` stores it: for AutoBalance, every per-loss state; for
a pre-combine method, only its base optimizer (save ``balancer.state_dict()`` for the rest).

Term names (:func:`term_names`): ``"pde"`` for a single equation, ``"pde_0"``, ``"pde_1"``, ...
for a system; each condition by its class in snake case (``"dirichlet_bc"``, ``"ic"``,
``"point_set_bc"``), numbered when a class occurs more than once (``"dirichlet_bc_0"``, ...);
``"l1"`` for DeepXDE's L1 regularisation term.  Give ``names=`` to choose them.

DeepXDE picks its backend when first imported: this module sets ``DDE_BACKEND=pytorch`` unless
it is already set, and refuses another backend.  Note that DeepXDE, on import, makes CUDA (or
MPS) torch's default device where one is available.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from torch import Tensor

from autobalance.errors import ConfigError, LossNameError
from autobalance.methods import Balancer
from autobalance.step_info import StepInfo

# DeepXDE chooses its backend when first imported.
os.environ.setdefault("DDE_BACKEND", "pytorch")
import deepxde as dde

if dde.backend.backend_name != "pytorch":
    raise ImportError(
        "autobalance.integrations.deepxde needs DeepXDE's PyTorch backend, but DeepXDE runs on "
        f"{dde.backend.backend_name!r}; set DDE_BACKEND=pytorch before importing deepxde"
    )

__all__ = ["BalancedTrainStep", "FreshPoints", "compile_balanced", "term_names"]


def _snake_case(name: str) -> str:
    """``"DirichletBC"`` → ``"dirichlet_bc"``, ``"PointSetBC"`` → ``"point_set_bc"``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def term_names(model: Any, n_terms: int) -> list[str]:
    """Names of DeepXDE's ``n_terms`` loss terms, in its order (see the module docstring).

    Args:
        model: a ``dde.Model``; its ``data`` lists the conditions (``data.bcs``) and its
            ``net.regularizer`` tells whether an L1 term follows them.
        n_terms: how many terms DeepXDE computed (the equations are the rest).
    """
    conditions = list(getattr(model.data, "bcs", []))
    regularizer = getattr(model.net, "regularizer", None)
    l1 = ["l1"] if regularizer is not None and regularizer[0] == "l1" else []
    n_equations = n_terms - len(conditions) - len(l1)
    if n_equations < 0:
        raise ConfigError(
            f"DeepXDE computed {n_terms} loss terms but the model has {len(conditions)} "
            f"conditions{' and an L1 term' if l1 else ''}; give names= explicitly"
        )
    if not hasattr(model.data, "bcs"):  # a data set without conditions: plain numbering
        return ["loss"] if n_terms == 1 else [f"loss_{i}" for i in range(n_terms)]
    equations = ["pde"] if n_equations == 1 else [f"pde_{i}" for i in range(n_equations)]
    kinds = [_snake_case(type(c).__name__) for c in conditions]
    counts, seen = Counter(kinds), Counter[str]()
    named_conditions = []
    for kind in kinds:
        named_conditions.append(kind if counts[kind] == 1 else f"{kind}_{seen[kind]}")
        seen[kind] += 1
    return equations + named_conditions + l1


class BalancedTrainStep:
    """DeepXDE's training step, with the loss terms handed to a method by name.

    Installed as ``model.train_step`` by :func:`compile_balanced`; DeepXDE calls it once per
    iteration with the current training points.  It evaluates DeepXDE's per-term losses
    (``model.outputs_losses_train``, weights applied), names them, calls ``balancer.step`` and
    steps DeepXDE's learning-rate scheduler, as DeepXDE's own step does.

    Args:
        model: a compiled ``dde.Model``.
        balancer: the method, over ``model.net``'s parameters.
        names: the terms' names in DeepXDE's order; by default :func:`term_names`.
    """

    def __init__(self, model: Any, balancer: Balancer, names: Sequence[str] | None = None) -> None:
        if names is not None:
            names = list(names)
            duplicated = sorted(n for n, c in Counter(names).items() if c > 1)
            if duplicated:
                raise LossNameError(f"names= repeats {duplicated}: each term needs its own name")
        self._model = model
        self._balancer = balancer
        self._names: list[str] | None = names
        self.last_info: StepInfo | None = None

    @property
    def loss_names(self) -> list[str] | None:
        """The terms' names (``None`` before the first step unless given)."""
        return None if self._names is None else list(self._names)

    def named_losses(self, inputs: Any, targets: Any, auxiliary_vars: Any) -> dict[str, Tensor]:
        """DeepXDE's per-term training losses at these points, by name."""
        _, losses = self._model.outputs_losses_train(inputs, targets, auxiliary_vars)
        terms = list(losses.unbind(0))
        if self._names is None:
            self._names = term_names(self._model, len(terms))
        if len(terms) != len(self._names):
            raise LossNameError(
                f"DeepXDE computed {len(terms)} loss terms but {len(self._names)} names were "
                f"given ({', '.join(self._names)})"
            )
        return dict(zip(self._names, terms, strict=True))

    def __call__(self, inputs: Any, targets: Any, auxiliary_vars: Any) -> None:
        self.last_info = self._balancer.step(self.named_losses(inputs, targets, auxiliary_vars))
        if self._model.lr_scheduler is not None:
            self._model.lr_scheduler.step()


class FreshPoints(dde.callbacks.Callback):
    """A DeepXDE callback: fresh collocation and boundary points after every ``period`` steps.

    As autobalance's own problems sample them.  DeepXDE's ``PDEPointResampler`` does the same but
    stops training when the number of boundary points changes, which random sampling
    (``train_distribution="pseudo"``) can produce: an interior point drawn within DeepXDE's
    tolerance of the boundary counts as a boundary point.  With the PyTorch backend the losses
    read the counts at every step, so a change is harmless and this callback allows it.
    """

    def __init__(self, period: int = 1) -> None:
        super().__init__()
        if period < 1:
            raise ConfigError(f"FreshPoints: period must be >= 1, got {period}")
        self.period = period
        self._since = 0

    def on_epoch_end(self) -> None:
        self._since += 1
        if self._since >= self.period:
            self._since = 0
            self.model.data.resample_train_points(pde_points=True, bc_points=True)


def compile_balanced(
    model: Any,
    balancer: Balancer,
    *,
    names: Sequence[str] | None = None,
    **compile_kwargs: Any,
) -> BalancedTrainStep:
    """Compile ``model`` so that ``model.train`` steps ``balancer`` on the named loss terms.

    Args:
        model: a ``dde.Model`` (PyTorch backend), not yet trained with another optimizer.
        balancer: ``AutoBalance(model.net.parameters(), ...)`` or
            ``autobalance.methods.create(name, model.net.parameters(), ...)``.
        names: the terms' names in DeepXDE's order (default: :func:`term_names`).
        **compile_kwargs: the rest of ``model.compile``'s arguments (``loss``, ``metrics``,
            ``decay``, ``loss_weights``, ...); not ``optimizer`` or ``lr``, which are the
            method's.

    Returns:
        The installed :class:`BalancedTrainStep` (``loss_names``, ``last_info``).
    """
    if not isinstance(model, dde.Model):
        raise TypeError(f"compile_balanced needs a deepxde Model, got {type(model).__name__}")
    if not isinstance(balancer, Balancer):
        raise TypeError(
            "compile_balanced needs an autobalance method (AutoBalance(...) or "
            f"autobalance.methods.create(...)), got {type(balancer).__name__}"
        )
    for key in ("optimizer", "lr"):
        if key in compile_kwargs:
            raise ConfigError(
                f"compile_balanced: {key!r} is the method's; set it when creating the method"
            )
    net_params = {id(p) for p in model.net.parameters()}
    method_params = {id(p) for g in balancer.optimizer.param_groups for p in g["params"]}
    if not net_params <= method_params:
        raise ConfigError(
            "compile_balanced: the method does not optimise every parameter of model.net; "
            "create it over model.net.parameters()"
        )
    if dde.config.mixed:
        raise ConfigError("compile_balanced does not support DeepXDE's mixed precision")
    # DeepXDE accepts a torch optimizer instance: its scheduler (decay=) and model.save see the
    # method's optimizer.
    model.compile(balancer.optimizer, **compile_kwargs)
    step = BalancedTrainStep(model, balancer, names)
    model.train_step = step
    return step
