"""One training run's objects and files: what :func:`~autobalance.experiments.runner.train`
builds from a :class:`~autobalance.experiments.config.RunConfig`, checkpoints, restores and
evaluates.  The learning rate follows ``lr(t) = lr · decay^(t / decay_steps)``.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from autobalance import methods, nets, problems, variants
from autobalance.errors import ConfigError
from autobalance.experiments.checkpoints import (
    CHECKPOINT_FORMAT,
    Progress,
    brief,
    check_resumable_limits,
    check_same_run,
)
from autobalance.experiments.config import RunConfig, resolve_device, resolve_dtype
from autobalance.experiments.data_parallel import DataParallel
from autobalance.experiments.history import history_columns
from autobalance.experiments.io import json_digest, write_csv, write_png, write_torch
from autobalance.experiments.phase_runs import (
    PhaseProgress,
    phase_parameters,
    phase_specs,
    recipe,
    resolve_phases,
)
from autobalance.experiments.runs import RunFileError
from autobalance.experiments.solutions import solution_figure
from autobalance.methods import Balancer
from autobalance.metrics import ERROR_NAMES, error_metrics, peak_rss_mb
from autobalance.problems import Problem

__all__ = ["TrainingRun", "build_model"]


def _exp_decay(step: int, *, rate: float, every: int) -> float:
    """LR factor ``rate^(step / every)`` (smooth exponential decay)."""
    return rate ** (step / every)


def _create_balancer(
    config: RunConfig,
    model: nn.Module,
    unknowns: Mapping[str, nn.Parameter],
    data_parallel: DataParallel,
) -> Balancer:
    params = [*model.parameters(), *unknowns.values()]
    data_parallel.broadcast_parameters(params)  # every rank starts from rank 0's parameters
    group = {} if data_parallel.group is None else {"process_group": data_parallel.group}
    try:
        return methods.create(config.method, params, lr=config.lr, **config.method_params, **group)
    except TypeError as exc:
        given = ", ".join(sorted(config.method_params)) or "none"
        raise ConfigError(
            f"method {config.method!r} rejected its parameters (given: lr, {given}): {exc}"
        ) from None


def build_model(
    config: RunConfig, problem: Problem, device: torch.device | str, dtype: torch.dtype
) -> tuple[nn.Module, variants.VariantStack]:
    """The network of ``config`` for ``problem`` on ``device``, wrapped by its variants.

    The model whose ``state_dict`` a checkpoint holds (variants such as hard constraints wrap
    the network), so ``build_model(...)[0].load_state_dict(ckpt["model"])`` rebuilds a run's
    model.  Draws the initial weights from torch's global generator.
    """
    model = nets.create(
        config.net,
        problem.in_dim,
        problem.out_dim,
        input_names=problem.input_names,
        **config.net_params,
    )
    stack = variants.from_specs(config.variants)
    return stack.setup(problem, model.to(device=device, dtype=dtype)), stack


class TrainingRun:
    """The objects of one run (problem, model, variants, balancer, scheduler, generators, points,
    progress) and the writing of its files; :func:`~autobalance.experiments.runner.train` drives
    it.  ``data_parallel``: this rank's part in a ``torchrun`` run
    (:mod:`~autobalance.experiments.data_parallel`; default: one process)."""

    def __init__(
        self, config: RunConfig, out_dir: Path, data_parallel: DataParallel | None = None
    ) -> None:
        config.validate()
        self.out = out_dir
        self.dp = data_parallel or DataParallel.single()
        if config.phases and self.dp.world_size > 1:
            raise ConfigError(
                f"training phases ({', '.join(map(str, config.phases))}) are not data-parallel: "
                f"run them in one process, not under torchrun with {self.dp.world_size} ranks"
            )
        self.device = self.dp.device or resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype)
        if self.device.type == "cuda":  # peak_gpu_mb: this run's peak, not the process's
            torch.cuda.reset_peak_memory_stats(self.device)
        self.problem: Problem = problems.create(config.problem, **config.problem_params)
        self.problem.use_sampler(config.sampler)
        net_params = nets.parameters(config.net)
        net_params.update(config.net_params)
        random.seed(config.seed)
        np.random.seed(config.seed % 2**32)
        torch.manual_seed(config.seed)  # the network's initialisation
        self.model, self.variants = build_model(config, self.problem, self.device, self.dtype)
        # Record every default, so that config.json alone reproduces the run.
        self.config = RunConfig.from_dict(
            {
                **config.to_dict(),
                "problem_params": self.problem.params,
                "net_params": net_params,
                "variants": variants.resolve_specs(config.variants),
                "phases": resolve_phases(config.phases),
            }
        )
        # The problem's own trainable parameters (inverse problems), moved in place.
        self.unknowns = self.problem.unknowns()
        for param in self.unknowns.values():
            param.data = param.data.to(device=self.device, dtype=self.dtype)
        self.balancer = _create_balancer(
            self.config,
            self.model,
            {**self.unknowns, **self.variants.named_parameters()},
            self.dp,
        )
        decay = partial(_exp_decay, rate=config.lr_decay, every=config.lr_decay_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.balancer.optimizer, decay)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(config.seed)  # the collocation points
        self.eval_points = self.problem.evaluation_points(self.device, self.dtype)
        self.eval_reference = self.problem.reference(self.eval_points)
        self.progress = Progress()
        #: Training phases after the first-order steps (``RunConfig.phases``): their progress.
        self.phase_progress = PhaseProgress()
        from autobalance.phases import create_phase

        for spec in phase_specs(self.config.phases):  # refuse too many parameters before training
            create_phase(spec, phase_parameters(self))
        #: The current point sets; redrawn every ``resample_every`` steps (0: drawn once).
        self.batch: dict[str, Tensor] | None = None
        #: Names this run in its checkpoint and metrics; kept when the run is resumed.
        self.run_id = uuid.uuid4().hex[:16]

    def next_batch(self) -> dict[str, Tensor]:
        """The points of the coming step: fresh at steps 0, N, 2N, ... (N = resample_every).

        :attr:`batch` holds all the points (as one process draws them); a data-parallel rank
        gets its share."""
        every = self.config.resample_every
        if self.batch is None or (every and self.progress.step % every == 0):
            self.batch = self.problem.sample(self.generator, self.device, self.dtype)
        return self.dp.shard(self.batch)

    # ----------------------------------------------------------------------------------- state
    def checkpoint(self) -> dict[str, Any]:
        """The run's state; in a data-parallel run a collective (every rank must call it)."""
        p = self.progress
        variants_state = self.variants.state_dict()
        rng: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "generator": self.generator.get_state(),
        }
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "format": CHECKPOINT_FORMAT,
            **p.entries(),
            "run_id": self.run_id,
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "balancer": self.balancer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng,
            "unknowns": {k: v.detach().clone() for k, v in self.unknowns.items()},
            "variants": variants_state,
            **self.dp.checkpoint_entries(variants_state),
            "phases": self.phase_progress.entries(),
            # Reused points (resample_every != 1) are stored, so a resumed run reuses them.
            "batch": (
                {k: v.detach().clone() for k, v in self.batch.items()}
                if self.batch is not None and self.config.resample_every != 1
                else None
            ),
        }

    def restore(self, ckpt: Mapping[str, Any], where: Path) -> None:
        """Continue from ``ckpt`` (:func:`load_checkpoint`); ``where``: its file, for messages.

        Raises:
            ConfigError: the run's configuration differs from the checkpoint's in a key not in
                :data:`RESUMABLE_KEYS`, or asks for fewer steps (or a smaller budget) than the
                checkpoint has already done.
            RunFileError: the checkpoint's states do not fit the run (an edited file).
        """
        saved = check_same_run(self.config, ckpt, where)  # with the defaults filled in
        variants_state = self.dp.variant_state(ckpt, str(where))  # the same number of ranks
        progress = Progress.from_checkpoint(ckpt)
        check_resumable_limits(self.config, saved, progress, where)
        try:
            self.model.load_state_dict(ckpt["model"])
            with torch.no_grad():
                for name, value in ckpt.get("unknowns", {}).items():
                    self.unknowns[name].copy_(value)
            if ckpt.get("batch") is not None:
                self.batch = {
                    k: v.to(device=self.device, dtype=self.dtype) for k, v in ckpt["batch"].items()
                }
            if variants_state is not None:
                self.variants.load_state_dict(variants_state)
            self.balancer.load_state_dict(ckpt["balancer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            torch.set_rng_state(ckpt["rng"]["torch"])
            self.generator.set_state(ckpt["rng"]["generator"])
            if "cuda" in ckpt["rng"] and self.device.type == "cuda":
                torch.cuda.set_rng_state(ckpt["rng"]["cuda"], self.device)
        except (RuntimeError, KeyError, TypeError, ValueError) as exc:
            raise RunFileError(
                f"cannot resume: the states in {where} do not fit this run's model and "
                f"optimizer ({brief(exc, 400)})"
            ) from None
        if "phases" in ckpt:
            self.phase_progress = PhaseProgress.from_entries(ckpt["phases"])
        started = self.phase_progress.index > 0 or self.phase_progress.state is not None
        if started and self.config.steps > progress.step:
            raise ConfigError(
                f"cannot resume with steps={self.config.steps}: the run in {where.parent} has "
                f"ended its {progress.step} first-order steps and started its phases"
            )
        self.progress = progress
        self.run_id = str(ckpt.get("run_id") or self.run_id)

    # ------------------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def predict(self) -> Tensor:
        was_training = self.model.training
        self.model.eval()
        try:
            return self.model(self.eval_points)
        finally:
            self.model.train(was_training)

    @property
    def phase_tag(self) -> dict[str, str]:
        """``{"phase": method}`` for the first-order rows of a run with phases, else ``{}``."""
        return {"phase": self.config.method} if self.config.phases else {}

    def evaluate(self, *, step: int | None = None, phase: str | None = None) -> dict[str, float]:
        """Errors on the evaluation grid, kept as the ``eval.csv`` row of run step ``step``
        (default: the first-order step) of ``phase`` (default: the first-order method)."""
        prediction = self.predict()
        errs = error_metrics(prediction, self.eval_reference)
        errs.update(self.problem.extra_errors(prediction, self.eval_reference))
        p = self.progress
        step = p.step if step is None else step
        if p.evals and p.evals[-1]["step"] == step:
            p.evals.pop()
        tag = self.phase_tag if phase is None else {"phase": phase}
        p.evals.append({"step": step, "wall_s": p.wall_s, **errs, **tag})
        return errs

    # --------------------------------------------------------------------------------- output
    def write_tables(self) -> None:
        if not self.dp.is_main:
            return
        p = self.progress
        write_csv(self.out / "history.csv", history_columns(p.history, p.loss_names), p.history)
        columns = ["step", "wall_s", *ERROR_NAMES]
        columns += [k for k in (p.evals[-1] if p.evals else {}) if k not in columns]
        write_csv(self.out / "eval.csv", columns, p.evals)

    def write_checkpoint(self) -> None:
        """``checkpoint.pt``, then the tables, written by rank 0 (every rank must call it): a
        table never shows a step that the checkpoint lacks (a process killed in between leaves the
        tables one checkpoint behind)."""
        state = self.checkpoint()
        if self.dp.is_main:
            write_torch(self.out / "checkpoint.pt", state)
            self.write_tables()

    def write_plot(self) -> None:
        if not self.dp.is_main:
            return
        figure = solution_figure(
            self.problem,
            self.eval_points.detach().double().cpu().numpy(),
            self.eval_reference.detach().double().cpu().numpy(),
            self.predict().detach().double().cpu().numpy(),
        )
        if figure is not None:
            write_png(self.out / "solution.png", figure)

    @property
    def first_order_s(self) -> float:
        """Training wall-clock of the first-order steps (``wall_s`` less the phases')."""
        pp = self.phase_progress
        return self.progress.wall_s - pp.wall_s - sum(float(d["wall_s"]) for d in pp.done)

    def metrics(self, status: str, elapsed_s: float) -> dict[str, Any]:
        p, c = self.progress, self.config
        final = p.evals[-1] if p.evals else {}
        initial = p.evals[0] if p.evals and p.evals[0]["step"] == 0 else {}
        out: dict[str, Any] = {
            "status": status,
            "problem": c.problem,
            "net": c.net,
            "method": c.method,
            "method_params": dict(c.method_params),
            "variants": [v["name"] for v in c.variants],
            "lr": c.lr,
            "seed": c.seed,
            "device": str(self.device),
            "dtype": c.dtype,
            "steps": p.step,
            "steps_requested": c.steps,
            "rel_l2": final.get("rel_l2", math.nan),
            "mse": final.get("mse", math.nan),
            "linf": final.get("linf", math.nan),
            "rel_l1": final.get("rel_l1", math.nan),
            "initial": {k: initial.get(k, math.nan) for k in ERROR_NAMES},
            **{
                k: v for k, v in final.items() if k not in ("step", "wall_s", "phase", *ERROR_NAMES)
            },
            "wall_s": p.wall_s,
            "step_ms": 1e3 * self.first_order_s / p.step if p.step else math.nan,
            "elapsed_s": elapsed_s,
            "final_losses": dict(p.final_losses),
            "backward_passes": p.backward_passes,
            "skipped_steps": p.skipped_steps,
            "n_params": sum(t.numel() for t in self.model.parameters()),
            "peak_rss_mb": peak_rss_mb(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),  # intra-op threads: ms/step depends on them
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "run_id": self.run_id,
            "config_sha256": json_digest(c.to_dict()),
        }
        if c.phases:
            out["recipe"] = recipe(c.method, p.step, c.phases)
            out["phases"] = list(self.phase_progress.done)
            out["phase_iterations"] = self.phase_progress.iterations
            out["evaluations"] = self.phase_progress.totals(p.backward_passes)
            out["first_order_s"] = self.first_order_s
            for key in ("functions", "gradients", "jacobians"):  # report columns
                out[f"phase_{key}"] = out["evaluations"][key]
        if self.device.type == "cuda":
            out["peak_gpu_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        return out
