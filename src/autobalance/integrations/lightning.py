"""Any autobalance method as a PyTorch Lightning optimizer.

Lightning's automatic optimisation calls ``optimizer.step(closure=closure)``; the closure runs
``training_step``, clears the gradients and back-propagates the *one* loss ``training_step``
returned.  A balancer needs the *named* losses instead, and makes its own backward passes (one per
loss for AutoBalance, ``Δ = Σ_k u_k(∇L_k)``; a gradient matrix for an aggregator; ...).
:class:`LightningBalancer` wraps any method (``AutoBalance(...)`` or
``autobalance.methods.create(name, params, **hp)``) so that both modes of Lightning work:

* **automatic optimisation**: ``training_step`` returns ``self.optimizers().hand_over(losses)``.
  The named losses are kept for the coming step, and Lightning receives a *stand-in*: a detached
  leaf holding ``Σ_k L_k`` (for its progress bar and logs), so Lightning's own backward pass reaches
  no parameter.  ``step(closure)`` runs the closure (so ``training_step``), then steps the balancer
  on the handed-over losses::

      class Model(L.LightningModule):
          def training_step(self, batch, batch_idx):
              losses = {"residual": ..., "boundary": ...}
              return self.optimizers().hand_over(losses)

          def configure_optimizers(self):
              return LightningBalancer(AutoBalance(self.parameters(), lr=1e-3))

* **manual optimisation** (``self.automatic_optimization = False``): ``training_step`` calls
  ``self.optimizers().step(losses=losses)``; Lightning counts the step (``global_step``) and runs
  its hooks as for any optimizer.

``state_dict()`` and ``load_state_dict()`` are the balancer's own (for AutoBalance, every loss's
moments and step counter; for a weighting method, its weights and loss history), so checkpoints
made by Lightning's ``Trainer`` resume every per-loss state.  ``param_groups`` and ``state`` are the
balancer's optimizer's, so learning-rate schedulers returned by ``configure_optimizers`` act on the
balancer's learning rates.

Not supported: gradient accumulation (``Trainer(accumulate_grad_batches > 1)``; an error says so)
and Lightning's gradient clipping (``Trainer(gradient_clip_val=...)`` would clip the stand-in's
empty gradients, not the balancer's); clip inside the method instead.  With ``16-mixed``
precision Lightning steps the optimizer without a closure; use manual optimisation there.

This module needs no import of Lightning: it works with ``lightning.pytorch`` and
``pytorch_lightning`` alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from autobalance.errors import LossValueError
from autobalance.losses import check_scalar_losses
from autobalance.methods import Balancer
from autobalance.step_info import StepInfo

__all__ = ["LightningBalancer"]


class _Slot:
    """What passes between ``hand_over`` and ``step``, and the last step's report.

    Kept in one object mutated in place: Lightning hands ``training_step`` a proxy of the optimizer
    (``LightningOptimizer``) whose own attributes are not the optimizer's, but which reads missing
    attributes from it, so the proxy and the optimizer reach the same slot.
    """

    def __init__(self) -> None:
        self.losses: dict[str, Tensor] | None = None
        self.info: StepInfo | None = None


class LightningBalancer(torch.optim.Optimizer):
    """A balancer (any ``step(losses)`` method) behind the ``torch.optim.Optimizer`` contract.

    Args:
        balancer: ``AutoBalance(...)`` or ``autobalance.methods.create(name, params, **hp)``:
            anything with ``step(losses)``, ``state_dict()``, ``load_state_dict()`` and an
            ``optimizer`` whose ``param_groups`` hold the learning rates.

    See the module docstring for the two ways of using it in a ``LightningModule``.
    """

    def __init__(self, balancer: Balancer) -> None:
        if not isinstance(balancer, Balancer):
            raise TypeError(
                "LightningBalancer wraps an autobalance method (AutoBalance(...) or "
                "autobalance.methods.create(name, params, ...)) with step(losses), state_dict(), "
                f"load_state_dict() and .optimizer; got {type(balancer).__name__}"
            )
        self._balancer = balancer
        self._slot = _Slot()
        # No Optimizer.__init__: it would build parameter groups of its own.  This is the state a
        # torch optimizer is rebuilt from when unpickled (defaults, hooks, the profiled step);
        # ``param_groups`` and ``state`` are read from the balancer's optimizer (properties below).
        self.__setstate__({"defaults": dict(balancer.optimizer.defaults)})

    # -- what Lightning, schedulers and checkpoints see ----------------------------------------
    @property
    def balancer(self) -> Balancer:
        """The wrapped method."""
        return self._balancer

    # read-only views of the balancer's optimizer, where torch's Optimizer has assignable
    # attributes: rebinding them here would detach this wrapper from the optimizer it drives
    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """The balancer's optimizer's parameter groups (schedulers set their ``lr``)."""
        return self._balancer.optimizer.param_groups

    @property
    def state(self) -> Any:  # type: ignore[override]  # read-only view, as param_groups
        """The balancer's optimizer's per-parameter state (Lightning moves it across devices)."""
        return self._balancer.optimizer.state

    @property
    def last_info(self) -> StepInfo | None:
        """The :class:`~autobalance.step_info.StepInfo` of the last step (``None`` before it)."""
        return self._slot.info

    def state_dict(self) -> dict[str, Any]:
        """The balancer's state dict (every per-loss state, the loss names, the step count)."""
        return self._balancer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        self._balancer.load_state_dict(state_dict)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add the group to the balancer's optimizer."""
        self._balancer.optimizer.add_param_group(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of the balancer's parameters."""
        self._balancer.optimizer.zero_grad(set_to_none=set_to_none)

    # -- the step ------------------------------------------------------------------------------
    def hand_over(self, losses: Mapping[str, Tensor]) -> Tensor:
        """Keep the named ``losses`` for the coming :meth:`step`; return Lightning's stand-in.

        Call it from ``training_step`` under automatic optimisation and return its result.  The
        stand-in is a leaf tensor holding ``Σ_k L_k`` (detached): Lightning logs it, and its
        backward pass reaches no parameter, since the balancer makes its own.
        """
        check_scalar_losses(losses)
        if self._slot.losses is not None:
            raise LossValueError(
                "hand_over() was called twice without a step in between: gradient accumulation "
                "(Trainer(accumulate_grad_batches > 1)) is not supported by LightningBalancer, "
                "each step balances the losses of one batch"
            )
        self._slot.losses = dict(losses)
        total = torch.stack([loss.detach().reshape(()) for loss in losses.values()]).sum()
        return total.requires_grad_()

    def step(
        self,
        closure: Callable[[], Any] | None = None,
        *,
        losses: Mapping[str, Tensor] | None = None,
    ) -> Any:
        """Run ``closure`` (if any), then one balancer step on the named losses.

        The losses are ``losses`` (manual optimisation: ``self.optimizers().step(losses=...)``)
        or those ``training_step`` handed over while the closure ran (automatic optimisation).
        Returns what the closure returned; the balancer's report is :attr:`last_info`.
        """
        returned = None
        if closure is not None:
            with torch.enable_grad():
                returned = closure()
        handed, self._slot.losses = self._slot.losses, None
        if losses is not None and handed is not None:
            raise LossValueError(
                "step(losses=...) was given losses while training_step also handed some over "
                "with hand_over(); use one of the two"
            )
        named = losses if losses is not None else handed
        if named is None:
            raise LossValueError(
                "LightningBalancer.step has no losses: under automatic optimisation, "
                "training_step must return self.optimizers().hand_over(losses); under manual "
                "optimisation, call self.optimizers().step(losses=losses)"
            )
        self._slot.info = self._balancer.step(named)
        return returned

    def __repr__(self) -> str:
        return f"LightningBalancer({self._balancer!r})"
