"""M-ConFIG: the momentum version of ConFIG (Liu, Chu & Thuerey, "ConFIG: Towards Conflict-free
Training of Physics Informed Neural Networks", ICLR 2025, §3.3, Algorithm 2).

One first-moment estimate ``m_k`` per loss; each step back-propagates **one** loss, chosen round
robin (``k = (t − 1) mod K``), and updates only its momentum::

    m_k ← β₁ m_k + (1 − β₁) g_k,        t_k ← t_k + 1
    m̂_j = m_j / (1 − β₁^{t_j})                     (bias correction with each loss's own count)
    g_c = ConFIG(m̂_1, …, m̂_K)          (:func:`~..aggregators.conflict_free.config_direction`)

and, with the paper's pseudo second moment (``second_moment=True``, default): ``t`` counts the
steps since every momentum was initialised, ``m̃ = g_c (1 − β₁^t)``, the pseudo gradient
``g̃ = (m̃ − β₁ m̃_prev)/(1 − β₁)``, ``s ← β₂ s + (1 − β₂) g̃²``, ``ŝ = s/(1 − β₂^t)`` and the direction
handed to the base optimizer is ``g_c / (√ŝ + ε)``.  The first ``K − 1`` steps (some momentum
still empty) give a zero direction, as in the authors' code.

Base optimizer: ``"sgd"`` by default — a deliberate choice following the paper and its reference
code (the direction is already an Adam-like normalised momentum; a momentum-based base would apply
momentum twice).  ``second_moment=False`` hands ``g_c`` itself to the base (then ``base="adam"`` is
the natural choice).  Each step costs one backward pass; ``StepInfo`` has no gradient matrix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from autobalance.errors import StateDictError, check_in_range, check_positive
from autobalance.methods.aggregators.conflict_free import config_direction
from autobalance.methods.base import CombineResult, GradientMatrix, LossBatch, PreCombineMethod
from autobalance.state_checks import check_count, check_tensor, require_keys
from autobalance.step_info import StepInfo

__all__ = ["MConFIG"]


class MConFIG(PreCombineMethod):
    """M-ConFIG over one base optimizer (see the module docstring).

    Args:
        params: parameters or parameter groups.
        base: base optimizer ("sgd" by default).
        beta1, beta2: moment decay rates (0.9, 0.999 as in the paper).
        eps: added to ``√ŝ`` (1e-8).
        second_moment: apply the paper's pseudo second moment (default) or not.
        **kwargs: ``nonfinite``, ``process_group`` (data-parallel training: the gradient of the
            step's loss is averaged over the ranks) and the base optimizer's hyperparameters.
    """

    method_name = "m-config"

    def __init__(
        self,
        params: Any,
        base: Any = "sgd",
        *,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        second_moment: bool = True,
        nonfinite: str = "raise",
        **kwargs: Any,
    ) -> None:
        self.beta1 = check_in_range("m-config beta1", beta1, 0.0, 1.0, closed="[)")
        self.beta2 = check_in_range("m-config beta2", beta2, 0.0, 1.0, closed="[)")
        self.eps = check_positive("m-config eps", eps)
        self.second_moment = bool(second_moment)
        super().__init__(params, base, nonfinite=nonfinite, **kwargs)
        self._m: list[Tensor] | None = None
        self._counts: list[int] = []
        self._t = 0
        self._s: Tensor | None = None
        self._fake_m: Tensor | None = None
        self._reached: Tensor | None = None

    def _combine(self, batch: LossBatch) -> CombineResult | StepInfo:
        K = len(batch.names)
        k = (batch.step - 1) % K
        name = batch.names[k]
        gm = self.gradients({name: batch.losses[name]})
        skipped = self.check_gradients_finite(gm, batch, [name])
        if skipped is not None:
            return skipped
        g = gm.matrix[0]
        if self._m is None:
            self._m = [torch.zeros_like(g) for _ in range(K)]
            self._counts = [0] * K
            self._s = torch.zeros_like(g)
            self._fake_m = torch.zeros_like(g)
            self._reached = torch.zeros(gm.reached.shape[1], dtype=torch.bool)
        assert self._s is not None and self._fake_m is not None and self._reached is not None
        with torch.no_grad():
            self._m[k].mul_(self.beta1).add_(g, alpha=1.0 - self.beta1)
            self._counts[k] += 1
            self._reached |= gm.reached[0].cpu()
            if min(self._counts) == 0:
                direction = torch.zeros_like(g)
            else:
                self._t += 1
                m_hat = torch.stack(
                    [m / (1.0 - self.beta1**c) for m, c in zip(self._m, self._counts, strict=True)]
                )
                direction = config_direction(m_hat)
                if self.second_moment:
                    fake_m = direction * (1.0 - self.beta1**self._t)
                    fake_g = (fake_m - self.beta1 * self._fake_m) / (1.0 - self.beta1)
                    self._fake_m = fake_m
                    self._s.mul_(self.beta2).addcmul_(fake_g, fake_g, value=1.0 - self.beta2)
                    s_hat = self._s / (1.0 - self.beta2**self._t)
                    direction = direction / (s_hat.sqrt() + self.eps)
        full = GradientMatrix(direction[None], self._reached[None].clone(), gm.sizes)
        self.set_gradient(direction, full)
        return CombineResult(1, False, None, None, direction)

    def extra_state(self) -> dict[str, Any]:
        return {
            "m": None if self._m is None else [m.clone() for m in self._m],
            "counts": list(self._counts),
            "t": self._t,
            "s": None if self._s is None else self._s.clone(),
            "fake_m": None if self._fake_m is None else self._fake_m.clone(),
            "reached": None if self._reached is None else self._reached.clone(),
        }

    def check_extra_state(self, state: Mapping[str, Any], names: list[str] | None) -> None:
        """Momenta ``m`` (one ``(P,)`` vector per loss), their counts, ``t``, ``s`` and the
        pseudo momentum ``(P,)``, and which parameters were reached (one flag per parameter)."""
        if not state:
            return
        what = "the m-config state"
        require_keys(what, state, ("m", "counts", "t", "s", "fake_m", "reached"))
        size = sum(p.numel() for p in self._params)
        num_losses = None if names is None else len(names)
        momenta = state["m"]
        if momenta is not None:
            if not isinstance(momenta, list | tuple):
                raise StateDictError(f"{what}: 'm' must be a list, got {type(momenta).__name__}")
            if num_losses is not None and len(momenta) != num_losses:
                raise StateDictError(
                    f"{what}: 'm' holds {len(momenta)} momenta, but there are {num_losses} losses"
                )
            for k, m in enumerate(momenta):
                check_tensor(f"{what}: 'm'[{k}]", m, (size,))
        counts = state["counts"]
        if not isinstance(counts, list | tuple) or (
            momenta is not None and len(counts) != len(momenta)
        ):
            raise StateDictError(f"{what}: 'counts' must hold one count per loss, got {counts!r}")
        for c in counts:
            check_count(f"{what}: 'counts'", c)
        check_count(f"{what}: 't'", state["t"])
        for key in ("s", "fake_m"):
            if state[key] is not None:
                check_tensor(f"{what}: {key!r}", state[key], (size,))
        if state["reached"] is not None:
            check_tensor(
                f"{what}: 'reached'", state["reached"], (len(self._params),), floating=False
            )

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`extra_state`; the moments move to the parameters' device and dtype
        (as the base optimizer's state does), whatever ``map_location`` the checkpoint had."""
        if not state:
            return
        ref = self._params[0]

        def to_params(x: Tensor) -> Tensor:
            return x.to(device=ref.device, dtype=ref.dtype, copy=True)

        self._m = None if state["m"] is None else [to_params(m) for m in state["m"]]
        self._counts = [int(c) for c in state["counts"]]
        self._t = int(state["t"])
        self._s = None if state["s"] is None else to_params(state["s"])
        self._fake_m = None if state["fake_m"] is None else to_params(state["fake_m"])
        self._reached = None if state["reached"] is None else state["reached"].cpu().clone()
