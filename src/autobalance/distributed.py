"""Data-parallel training: per-loss gradients and loss values averaged over the ranks of a group.

``torch.nn.parallel.DistributedDataParallel`` averages gradients in a hook of ``.backward()``;
the per-loss gradients of every multi-loss method here come from ``torch.autograd.grad``, which
that hook never sees.  So the averaging is done by the methods themselves: give any optimizer or
method of the library a ``process_group=`` (``None``, the default, is one process, unchanged) and
each rank ``r`` of the ``R`` ranks, evaluating its own share of the points, uses

    L_k   = (1/R) Σ_r L_k^(r)          (loss values: one all-reduce of the K numbers)
    ∇L_k  = (1/R) Σ_r ∇L_k^(r)         (per-loss gradients: one all-reduce of one flat buffer)

**The rule that makes this exact.**  When every ``L_k^(r)`` is the *mean* over rank ``r``'s
points of loss ``k`` and every rank has the *same number* of points of that loss, the average
over ranks is the mean over all the points: the single-process loss and gradient, up to the
order of the floating-point sums.  :func:`shard_points` cuts a point set (drawn identically on
every rank, e.g. from the same seed) into such equal shares and refuses counts that do not
divide.  A loss that is a *sum* over points, or unequal shares, gives a different (weighted)
objective.

**Collectives per step** (sums with ``all_reduce``, divided by ``R``; NCCL has no float64
average on every version):

* the loss values, in float64, before anything else: every rank then takes the same decision
  on a NaN/Inf loss (raise or skip) and the weightings see the same values;
* the gradients, all losses × all parameters in **one** flat buffer (plus one flag per loss and
  parameter: whether any rank's loss reached it), after the backward passes: AutoBalance and
  the multi-state methods (MultiAdam, MTAdam, M-ConFIG), the aggregators (which then work on the
  Gram matrix of the averaged gradients) and the weightings that use per-loss gradients;
  weighting methods that take one backward pass of ``Σ_k w_k L_k`` (and the plain summed loss)
  average ``.grad`` instead, also as one flat buffer;
* NTK weighting also averages its kernel-trace estimates (``K`` numbers, on its update steps);
* at the first step only, the ranks check (``all_gather_object``) that they give the same loss
  names and parameter shapes, so that a mismatch is an error rather than a silent misalignment.

Everything after the averages is computed identically on every rank (weights, states, the
``StepInfo``), so parameters, optimizer states and ``state_dict()`` agree across ranks: rank 0
can write the checkpoints and every rank can load them.

**Per-point weights** (residual-based attention, self-adaptive weights) stay with their rank's
points: each rank keeps and updates the weights of the fixed share it evaluates, with no
collective (a checkpoint must then hold every rank's share).  Two of their statistics span all
points and are not averaged here, so these variants train close to one process, not exactly
like it: RBA's normaliser ``max_j |r_j|`` is the rank's own maximum, and SA-PINN's ascent
gradient ``∂L/∂λ_i`` divides by the rank's point count (``R`` times the global gradient, a scale
its Adam ascent nearly ignores).

**Launching.**  :func:`init_from_env` joins the process group described by the environment that
``torchrun`` sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``),
with NCCL when GPUs are visible and gloo otherwise; without that environment it returns a
single-process :class:`Launch` whose ``group`` is ``None``, so one script runs both ways.
:meth:`Launch.close` (or leaving ``with init_from_env() as launch:``) leaves the group cleanly:
barrier, ``destroy_process_group``, garbage collection; without it a gloo rank can abort at
exit (SIGABRT, ``terminate called without an active exception``: :mod:`autobalance.launching`
says why).

Recipe for your own loop (run it with ``python recipe.py`` or
``torchrun --nproc-per-node 2 recipe.py``: both give the same parameters, to float rounding)::

    import torch
    from autobalance import AutoBalance
    from autobalance.distributed import broadcast_parameters, init_from_env, shard_points

    launch = init_from_env()  # torchrun: join the group (NCCL on GPUs, gloo on CPUs); else None
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(1, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    net = net.double().to(launch.device)
    broadcast_parameters(net.parameters(), launch.group)  # every rank starts from rank 0's
    opt = AutoBalance(net.parameters(), lr=1e-2, process_group=launch.group)
    edges = torch.tensor([[0.0], [1.0]], dtype=torch.float64)

    for step in range(100):  # -u'' = π² sin(πx) on [0, 1], u(0) = u(1) = 0
        seeded = torch.Generator().manual_seed(step)  # every rank draws the same 256 points
        points = torch.rand(256, 1, dtype=torch.float64, generator=seeded)
        x = shard_points(points, launch.group).to(launch.device).requires_grad_()  # its share
        u = net(x)
        (u_x,) = torch.autograd.grad(u.sum(), x, create_graph=True)
        (u_xx,) = torch.autograd.grad(u_x.sum(), x, create_graph=True)
        losses = {  # means over this rank's points: their average over ranks is the global mean
            "residual": (u_xx + torch.pi**2 * torch.sin(torch.pi * x)).pow(2).mean(),
            "boundary": net(shard_points(edges, launch.group).to(launch.device)).pow(2).mean(),
        }
        info = opt.step(losses)  # per-loss gradients and values averaged over the ranks

    if launch.is_main:  # one rank reports (and writes checkpoints: opt.state_dict() is the same)
        print(f"residual {info.values['residual']:.3e}, boundary {info.values['boundary']:.3e}")
    del opt
    launch.close()  # leave the group cleanly: barrier, destroy, collect (autobalance.launching)

Every method of :mod:`autobalance.methods` takes the same argument:
``methods.create("upgrad", net.parameters(), lr=1e-3, process_group=launch.group)``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from autobalance.errors import DistributedError
from autobalance.launching import Launch, default_backend, init_from_env

__all__ = [
    "Launch",
    "RankAverage",
    "broadcast_parameters",
    "check_process_group",
    "default_backend",
    "init_from_env",
    "rank_share",
    "shard_points",
]

PerLossGradients = list[list[Tensor | None]]
Points = TypeVar("Points", Tensor, Mapping[str, Tensor])


def check_process_group(group: Any) -> dist.ProcessGroup | None:
    """Return ``group`` if it is ``None`` or a usable process group, else a clear error."""
    if group is None:
        return None
    if not dist.is_available():
        raise DistributedError("process_group was given but this torch build has no distributed")
    if not isinstance(group, dist.ProcessGroup):
        raise DistributedError(
            "process_group must be a torch.distributed.ProcessGroup (e.g. "
            f"torch.distributed.group.WORLD after init_process_group) or None, got {group!r}"
        )
    if not dist.is_initialized():
        raise DistributedError(
            "process_group was given but torch.distributed is not initialised: call "
            "autobalance.distributed.init_from_env() or torch.distributed.init_process_group()"
        )
    return group


class RankAverage:
    """Averages over the ranks of one process group, each in one collective (module docstring).

    Args:
        group: an initialised process group (e.g. ``torch.distributed.group.WORLD``).
    """

    def __init__(self, group: dist.ProcessGroup) -> None:
        checked = check_process_group(group)
        if checked is None:
            raise DistributedError("RankAverage needs a process group, got None")
        self.group = checked
        self.world_size = dist.get_world_size(checked)
        self.rank = dist.get_rank(checked)
        self.backend = str(dist.get_backend(checked))
        self._shapes_agreed = False

    # ------------------------------------------------------------------------- the averages
    def loss_values(self, losses: Mapping[str, Tensor]) -> dict[str, float]:
        """``(1/R) Σ_r L_k^(r)`` for every loss, in float64 (one all-reduce, one device sync)."""
        device = self._device(next(iter(losses.values())).device)
        values = torch.stack(
            [loss.detach().reshape(()).to(device, torch.float64) for loss in losses.values()]
        )
        self._average_(values)
        return dict(zip(losses.keys(), values.tolist(), strict=True))

    def floats(self, numbers: Sequence[float]) -> list[float]:
        """The average over ranks of a few numbers (e.g. per-loss statistics), in float64."""
        device = self._device(torch.device("cpu"))
        buffer = torch.tensor(list(numbers), dtype=torch.float64, device=device)
        self._average_(buffer)
        return [float(x) for x in buffer.tolist()]

    def per_loss_gradients(
        self, per_loss: PerLossGradients, params: Sequence[Tensor]
    ) -> PerLossGradients:
        """``(1/R) Σ_r ∇L_k^(r)`` for every loss and parameter, in one all-reduce.

        ``per_loss[k][j]`` is ``∂L_k/∂θ_j`` on this rank, or ``None`` where the loss does not
        reach the parameter.  The buffer holds every entry (zeros for ``None``) in the promoted
        dtype of the parameters, then one flag per (loss, parameter); an entry is ``None`` in the
        result only when no rank's loss reached the parameter.  The results are views into the
        buffer, in each parameter's dtype.
        """
        sizes = [p.numel() for p in params]
        self._agree_on_shapes(len(per_loss), params)
        dtype = _promoted_dtype(params)
        device = self._device(params[0].device)
        pieces = [
            _flat_or_zeros(g, n, dtype, device)
            for grads in per_loss
            for g, n in zip(grads, sizes, strict=True)
        ]
        reached = [float(g is not None) for grads in per_loss for g in grads]
        pieces.append(torch.tensor(reached, dtype=dtype, device=device))
        buffer = torch.cat(pieces)
        self._average_(buffer)
        total = len(per_loss) * sum(sizes)
        hits = buffer[total:].view(len(per_loss), len(params)).gt(0).tolist()
        rows = buffer[:total].view(len(per_loss), sum(sizes))
        return [
            [
                piece.view_as(p).to(device=p.device, dtype=p.dtype) if hit else None
                for piece, p, hit in zip(row.split(sizes), params, row_hits, strict=True)
            ]
            for row, row_hits in zip(rows, hits, strict=True)
        ]

    def grads_(self, params: Sequence[Tensor]) -> None:
        """Replace every ``p.grad`` by its average over ranks, in one all-reduce (in place).

        For the methods that take one backward pass of a combined loss; ``p.grad`` stays
        ``None`` only where it is ``None`` on every rank.
        """
        averaged = self.per_loss_gradients([[p.grad for p in params]], params)[0]
        for p, g in zip(params, averaged, strict=True):
            p.grad = None if g is None else g.to(device=p.device, dtype=p.dtype, copy=True)

    # ------------------------------------------------------------------------------ checks
    def agree(self, what: str, value: Any) -> None:
        """Raise :class:`DistributedError` on every rank unless all ranks give the same
        ``value`` (a picklable object; one ``all_gather_object``)."""
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value, group=self.group)
        differing = [r for r, v in enumerate(gathered) if v != gathered[0]]
        if differing:
            raise DistributedError(
                f"the ranks disagree on the {what}: rank 0 has {gathered[0]!r}, "
                + ", ".join(f"rank {r} has {gathered[r]!r}" for r in differing)
            )

    def _agree_on_shapes(self, num_losses: int, params: Sequence[Tensor]) -> None:
        if not self._shapes_agreed:
            shapes = [tuple(p.shape) for p in params]
            self.agree("number of losses and parameter shapes", (num_losses, shapes))
            self._shapes_agreed = True

    # ------------------------------------------------------------------------------ helpers
    def _average_(self, buffer: Tensor) -> None:
        if self.world_size > 1:
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM, group=self.group)
            buffer.div_(self.world_size)

    def _device(self, preferred: torch.device) -> torch.device:
        """Where a buffer must live for this group's backend (NCCL: the current GPU)."""
        if self.backend == "nccl" and preferred.type != "cuda":
            return torch.device("cuda", torch.cuda.current_device())
        return preferred

    def __repr__(self) -> str:
        return f"RankAverage(rank={self.rank}, world_size={self.world_size}, {self.backend})"


def _promoted_dtype(params: Sequence[Tensor]) -> torch.dtype:
    return functools.reduce(torch.promote_types, (p.dtype for p in params))


def _flat_or_zeros(
    g: Tensor | None, numel: int, dtype: torch.dtype, device: torch.device
) -> Tensor:
    if g is None:
        return torch.zeros(numel, dtype=dtype, device=device)
    return g.detach().reshape(-1).to(device=device, dtype=dtype)


# ------------------------------------------------------------------------------- user helpers
def shard_points(points: Points, process_group: dist.ProcessGroup | None) -> Points:
    """This rank's equal, contiguous share of ``points`` (rows), or ``points`` in one process.

    ``points`` is a tensor of ``N`` rows or a mapping of such tensors (e.g. a batch with one
    point set per loss).  Rank ``r`` of ``R`` gets rows ``r·N/R … (r+1)·N/R − 1``; ``N`` must be
    divisible by ``R`` (the rule of the module docstring), else :class:`DistributedError`.
    """
    group = check_process_group(process_group)
    if group is None:
        return points
    return rank_share(points, dist.get_rank(group), dist.get_world_size(group))


def rank_share(points: Points, rank: int, world_size: int) -> Points:
    """Rows ``rank·N/R … (rank+1)·N/R − 1`` of ``points`` (a tensor or a mapping of tensors).

    The shares of ranks ``0 … R−1``, concatenated, are ``points``; :class:`DistributedError`
    when ``N`` is not divisible by ``R`` or ``rank`` is not one of ``0 … R−1``.
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise DistributedError(f"world_size must be an integer >= 1, got {world_size!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise DistributedError(f"rank must be an integer in [0, {world_size}), got {rank!r}")
    if isinstance(points, Mapping):
        return {name: _share(t, rank, world_size, name) for name, t in points.items()}
    return _share(points, rank, world_size, "points")


def _share(points: Tensor, rank: int, world_size: int, what: str) -> Tensor:
    if not isinstance(points, Tensor) or points.dim() == 0:
        raise DistributedError(f"{what} must be a tensor with one row per point, got {points!r}")
    count = points.shape[0]
    if count % world_size:
        raise DistributedError(
            f"{what}: {count} points cannot be split equally over {world_size} ranks; use a "
            f"multiple of {world_size} (equal shares keep the average over ranks exact)"
        )
    size = count // world_size
    return points[rank * size : (rank + 1) * size]


def broadcast_parameters(params: Iterable[Tensor], process_group: dist.ProcessGroup | None) -> None:
    """Copy the first rank's values of ``params`` to every rank (one broadcast; in place).

    A no-op in one process.  Use it once after building the model, unless every rank builds it
    from the same seed.
    """
    group = check_process_group(process_group)
    tensors = list(params)
    if group is None or not tensors:
        return
    dtype = _promoted_dtype(tensors)
    device = RankAverage(group)._device(tensors[0].device)
    with torch.no_grad():
        buffer = torch.cat([t.detach().reshape(-1).to(device, dtype) for t in tensors])
        dist.broadcast(buffer, src=dist.get_global_rank(group, 0), group=group)
        for t, piece in zip(tensors, buffer.split([t.numel() for t in tensors]), strict=True):
            t.copy_(piece.view_as(t))
