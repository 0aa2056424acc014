"""MTAdam (Malkiel & Wolf 2020): per-term Adam moments on layer-wise rescaled gradients.

I. Malkiel, L. Wolf, "MTAdam: Automatic Balancing of Multiple Training Loss Terms",
arXiv:2006.14683, Alg. 1.  For every parameter tensor ``p`` (the paper's "layer") and every loss
term ``i`` (term 0 is the anchor)::

    g_i = ∇_p L_i
    n_i ← ‖g_i‖ at the first step, then  n_i ← β3 n_i + (1 − β3) ‖g_i‖      (norm EMA)
    g̃_i = r_i · (n_a / n_i) · g_i          a = the first term with n_a > 1e-10 (the anchor)
    m_i ← β1 m_i + (1 − β1) g̃_i            v_i ← β2 v_i + (1 − β2) g̃_i²
    d_i = sqrt(v_i) / sqrt(1 − β2^t) + ε
    p   ← p − lr / (1 − β1^t) · Σ_i m_i / max_j d_j          (a shared max denominator)

``r_i`` are optional per-term weights ("ranks", default 1); ``(β1, β2, β3) = (0.9, 0.999, 0.9)``.
Weight decay is coupled L2 (``g̃_i += λ p``), as in the reference implementation.

Deliberate deviations, both for well-definedness: the anchor norm is taken after every term's
norm EMA of this step has been updated (the reference implementation updates them term by term,
so a later term's anchor may read a stale norm); a term that does not reach ``p`` (gradient
``None``) neither updates its moments nor enters the sum or the max for ``p``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from autobalance.errors import (
    AutoBalanceError,
    HyperparameterError,
    StateDictError,
    check_in_range,
    check_positive,
)
from autobalance.losses import LossDict
from autobalance.optim.bases import nonempty_params
from autobalance.state_checks import (
    check_tensor,
    describe_param,
    require_keys,
    restore_on_error,
    saved_param_states,
)
from autobalance.step_front import StepFront
from autobalance.step_info import StepInfo, build_step_info, joint_gram

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

__all__ = ["MTAdam"]

_NORM_FLOOR = 1e-10


class MTAdam(torch.optim.Optimizer):
    """MTAdam as a ``torch.optim.Optimizer`` whose ``step`` takes the named losses.

    Args:
        params: parameters or parameter groups.
        lr: learning rate (1e-3).
        betas: ``(β1, β2, β3)``: moment, second-moment and gradient-norm EMA factors.
        eps: ``ε`` (1e-8).
        weight_decay: coupled L2 penalty (0).
        ranks: optional mapping loss name → weight ``r_i`` (default 1 for every loss).
        nonfinite: "raise" (default) or "skip" on NaN/Inf losses or gradients.
        process_group: average losses and per-loss gradients over its ranks (data-parallel
            training, :mod:`autobalance.distributed`); ``None``: one process.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float, float] = (0.9, 0.999, 0.9),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        ranks: Mapping[str, float] | None = None,
        nonfinite: str = "raise",
        process_group: ProcessGroup | None = None,
    ) -> None:
        check_positive("lr", lr)
        check_positive("eps", eps, allow_zero=True)
        check_positive("weight_decay", weight_decay, allow_zero=True)
        if not isinstance(betas, tuple | list) or len(betas) != 3:
            raise HyperparameterError(f"mtadam: betas must be (β1, β2, β3), got {betas!r}")
        for k, b in enumerate(betas):
            check_in_range(f"betas[{k}]", b, 0.0, 1.0, closed="[)")
        self._front = StepFront(nonfinite, process_group=process_group)
        self._ranks = (
            {str(k): check_positive(f"rank of {k!r}", v, allow_zero=True) for k, v in ranks.items()}
            if ranks is not None
            else None
        )
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        super().__init__(nonempty_params(params, "MTAdam"), defaults)

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """Itself (the Balancer protocol: schedulers act on its ``param_groups``)."""
        return self

    def _rank_vector(self, names: list[str]) -> list[float]:
        if self._ranks is None:
            return [1.0] * len(names)
        missing = [n for n in names if n not in self._ranks]
        if missing:
            raise HyperparameterError(f"mtadam: ranks give no weight for losses {missing}")
        return [self._ranks[n] for n in names]

    # deliberately not torch's ``step(closure)`` contract: named losses in, a StepInfo out
    def step(self, losses: LossDict) -> StepInfo:  # type: ignore[override]
        """Back-propagate each loss, rescale, update the per-term moments, apply the update."""
        batch = self._front.start(losses)
        names = batch.names
        ranks = self._rank_vector(names)
        skipped = self._front.nonfinite_loss(batch, states=names)
        if skipped is not None:
            return skipped
        params = [p for g in self.param_groups for p in g["params"]]
        columns = list(zip(*batch.per_loss_gradients(params), strict=True))  # one per parameter
        grad_rows = [_rows(column, p) for column, p in zip(columns, params, strict=True)]
        grad_gram = torch.zeros(len(names), len(names), dtype=torch.float64)
        for matrix in grad_rows:
            grad_gram += (matrix @ matrix.T).cpu()
        for name, sq in zip(names, grad_gram.diagonal().tolist(), strict=True):
            if not math.isfinite(sq):
                return self._front.refuse(
                    batch.values, name, sq, what="gradient of loss", states=names
                )
        update_gram = torch.zeros(len(names) + 1, 2 * len(names) + 1, dtype=torch.float64)
        index = 0
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    column, matrix = columns[index], grad_rows[index]
                    index += 1
                    moved = self._update_param(p, list(column), ranks, group)
                    if moved is not None:  # rows of z: u_1 … u_K, Δ
                        updates, delta = moved
                        z = torch.cat([updates.reshape(len(names), -1), delta.reshape(1, -1)])
                        z = z.to(torch.float64)
                        update_gram += torch.cat([z @ matrix.T, z @ z.T], dim=1).cpu()
        return build_step_info(
            self._front.finish(names),
            batch.values,
            gram=joint_gram(grad_gram, update_gram),
            num_updates=len(names),
            combined="update",
            states=names,
            weights=ranks,
            backward_passes=len(names),
            needs_grad_matrix=True,
        )

    def _update_param(
        self,
        p: Tensor,
        column: list[Tensor | None],
        ranks: list[float],
        group: dict[str, Any],
    ) -> tuple[Tensor, Tensor] | None:
        """Update the per-term states of ``p`` and ``p`` itself; return the ``(K, *p.shape)``
        updates of the terms (zero rows for the terms that do not reach ``p``) and their sum."""
        reached = [k for k, g in enumerate(column) if g is not None]
        if not reached:
            return None
        num_terms = len(column)
        beta1, beta2, beta3 = group["betas"]
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"] = torch.zeros(num_terms, *p.shape, dtype=p.dtype, device=p.device)
            state["exp_avg_sq"] = torch.zeros_like(state["exp_avg"])
            # NaN: the term has not reached p yet (its first norm initialises the EMA).
            state["norm_ema"] = torch.full((num_terms,), math.nan, dtype=p.dtype, device="cpu")
        state["step"] += 1
        t = float(state["step"])
        norms = state["norm_ema"]
        for k in reached:
            g = column[k]
            assert g is not None
            norm = float(g.double().norm())
            previous = float(norms[k])
            norms[k] = norm if math.isnan(previous) else beta3 * previous + (1 - beta3) * norm
        norm_list = norms.tolist()
        anchor = next((k for k in range(num_terms) if norm_list[k] > _NORM_FLOOR), None)
        bc1, bc2 = 1 - beta1**t, 1 - beta2**t
        step_size = group["lr"] / bc1
        numerators: dict[int, Tensor] = {}
        denominator: Tensor | None = None
        for k in reached:
            g = column[k]
            assert g is not None
            if anchor is not None and norm_list[k] > _NORM_FLOOR:
                g = g * (ranks[k] * norm_list[anchor] / norm_list[k])
            if group["weight_decay"] != 0:
                g = g.add(p, alpha=group["weight_decay"])
            m, v = state["exp_avg"][k], state["exp_avg_sq"][k]
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            d = v.sqrt().div_(math.sqrt(bc2)).add_(group["eps"])
            denominator = d if denominator is None else torch.maximum(denominator, d)
            numerators[k] = m
        assert denominator is not None
        stacked = torch.stack([m.mul(step_size).div_(denominator) for m in numerators.values()])
        delta = stacked.sum(dim=0)
        p.sub_(delta)
        if len(reached) == num_terms:
            return stacked, delta
        updates = stacked.new_zeros(num_terms, *p.shape)
        updates[reached] = stacked
        return updates, delta

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["mtadam"] = self._front.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a :meth:`state_dict` (copied, not shared).

        Transactional: the whole state dict is checked first (loss names, step count,
        parameter groups and their hyperparameters, every parameter's state keys and tensor
        shapes); one that does not fit raises :class:`~autobalance.errors.StateDictError`
        naming the parameter and both shapes, and leaves the optimizer exactly as it was.
        """
        meta, torch_part = self._checked_state(state_dict)
        before = (self.state, self.param_groups)
        front = self._front.state_dict()

        def restore() -> None:
            self.state, self.param_groups = before
            self._front.load_state_dict(front)

        with restore_on_error("the MTAdam state dict", restore):
            super().load_state_dict(torch_part)
            for state in self.state.values():  # the torch loader may alias the source's tensors
                for key, value in list(state.items()):
                    if isinstance(value, Tensor):
                        state[key] = value.clone()
                state["norm_ema"] = state["norm_ema"].cpu()
            self._front.load_state_dict(meta)

    def _checked_state(self, state_dict: Any) -> tuple[Mapping[str, Any], dict[str, Any]]:
        """The front state and the torch part of ``state_dict``, checked; changes nothing."""
        what = "the MTAdam state dict"
        require_keys(what, state_dict)
        if "mtadam" not in state_dict:
            raise StateDictError("this state dict was not made by MTAdam.state_dict()")
        meta = state_dict["mtadam"]
        names, _ = StepFront.check_state_dict(meta, f"{what}: 'mtadam'")
        torch_part = {k: v for k, v in state_dict.items() if k != "mtadam"}
        per_param = saved_param_states(what, torch_part, self.param_groups)
        for i, group in enumerate(torch_part["param_groups"]):
            require_keys(f"{what}: parameter group {i}", group, tuple(self.defaults))
            try:
                MTAdam([torch.zeros(1)], **{k: group[k] for k in self.defaults})
            except AutoBalanceError as exc:
                raise StateDictError(f"{what}: parameter group {i}: {exc}") from None
        if names is None and per_param:
            raise StateDictError(f"{what} holds parameter states but no loss names")
        params = [p for g in self.param_groups for p in g["params"]]
        for i, state in per_param.items():
            if not state:
                continue
            p, where = params[i], f"{what}: {describe_param(i, params[i])}"
            assert names is not None
            if sorted(map(str, state)) != sorted(_STATE_KEYS):
                raise StateDictError(
                    f"{where} has state keys {sorted(map(str, state))}, but MTAdam keeps "
                    f"{sorted(_STATE_KEYS)}"
                )
            check_tensor(f"{where}: 'step'", state["step"], ())
            for key in ("exp_avg", "exp_avg_sq"):
                check_tensor(f"{where}: {key!r}", state[key], (len(names), *p.shape))
            check_tensor(f"{where}: 'norm_ema'", state["norm_ema"], (len(names),))
        return meta, torch_part


_STATE_KEYS = ("step", "exp_avg", "exp_avg_sq", "norm_ema")


def _rows(column: Sequence[Tensor | None], p: Tensor) -> Tensor:
    """The ``(K, p.numel())`` float64 matrix of the terms' gradients for ``p`` (zeros: ``None``)."""
    zeros: Tensor | None = None
    rows: list[Tensor] = []
    for g in column:
        if g is not None:
            rows.append(g.reshape(-1).double())
            continue
        if zeros is None:
            zeros = torch.zeros(p.numel(), dtype=torch.float64, device=p.device)
        rows.append(zeros)
    return torch.stack(rows)
