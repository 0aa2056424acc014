"""The training runner: one PINN, one problem, one balancing method, one seed.

Each step::

    batch = problem.sample(generator, device, dtype)      # fresh points (every resample_every)
    losses = problem.losses(model, batch)                  # {"residual": ..., "boundary": ...}
    info = balancer.step(losses)                           # StepInfo
    scheduler.step()                                       # lr(t) = lr · decay^(t / decay_steps)

Output directory (every file written atomically):

* ``config.json``: the :class:`RunConfig`, with every default filled in;
* ``history.csv``: every ``log_every`` steps, the learning rate, each loss and, where the method
  reports them, each loss's weight, gradient norm, update norm and cosine with the update;
* ``eval.csv``: relative L2, relative L1, MSE and L∞ errors on the held-out grid vs step and
  training time, plus the problem's ``extra_errors`` (per output column when there are several,
  unknowns);
* ``metrics.json``: final errors, training wall-clock, cost (backward passes, peak memory), the
  intra-op threads used (``threads``), status;
* ``checkpoint.pt``: model, balancer, scheduler and RNG states, step, config and histories, so
  ``train(config, out_dir, resume=True)`` continues exactly where it stopped (``weights_only``);
* ``solution.png``: reference, prediction and pointwise error on the evaluation grid.

Errors, on the evaluation grid ``{x_i}`` with reference ``u`` and prediction ``û``:
``rel_l2 = ‖û − u‖₂ / ‖u‖₂``, ``rel_l1 = ‖û − u‖₁ / ‖u‖₁``, ``mse = mean (û − u)²``,
``linf = max |û − u|``.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from autobalance import methods, nets, problems, variants
from autobalance.errors import ConfigError, NonFiniteLossError
from autobalance.experiments.budget import Budget
from autobalance.experiments.config import RunConfig, resolve_device, resolve_dtype
from autobalance.experiments.history import history_columns, history_row
from autobalance.experiments.io import write_csv, write_json, write_png, write_torch
from autobalance.experiments.progress import progress_bar
from autobalance.experiments.solutions import solution_figure
from autobalance.methods import Balancer
from autobalance.metrics import ERROR_NAMES, error_metrics, peak_rss_mb
from autobalance.problems import Problem
from autobalance.step_info import StepInfo
from autobalance.threads import choose_threads, using_threads

__all__ = ["CHECKPOINT_FORMAT", "build_model", "errors", "peak_rss_mb", "train"]

#: Version of the checkpoint layout.
CHECKPOINT_FORMAT = 1

#: Configuration keys a resumed run may change: how far it goes and how many threads it uses.
RESUMABLE_CHANGES = ("steps", "threads")


def errors(prediction: Tensor, reference: Tensor) -> dict[str, float]:
    """``rel_l2``, ``rel_l1``, ``mse`` and ``linf`` over every point and output component
    (:func:`autobalance.metrics.error_metrics`)."""
    return error_metrics(prediction, reference)


def _exp_decay(step: int, *, rate: float, every: int) -> float:
    """LR factor ``rate^(step / every)`` (smooth exponential decay)."""
    return rate ** (step / every)


@dataclass
class _Progress:
    """What a checkpoint must carry besides the model and optimizer states."""

    step: int = 0
    wall_s: float = 0.0
    backward_passes: int = 0
    skipped_steps: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    loss_names: list[str] = field(default_factory=list)
    final_losses: dict[str, float] = field(default_factory=dict)

    def entries(self) -> dict[str, Any]:
        """The checkpoint's entries: the fields by name, containers copied."""
        return {f.name: copy.copy(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any]) -> _Progress:
        """The progress a checkpoint holds (:meth:`entries`), containers copied."""
        return cls(**{f.name: copy.copy(ckpt[f.name]) for f in fields(cls)})


def _create_balancer(
    config: RunConfig, model: nn.Module, unknowns: Mapping[str, nn.Parameter]
) -> Balancer:
    params = [*model.parameters(), *unknowns.values()]
    try:
        return methods.create(config.method, params, lr=config.lr, **config.method_params)
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


class _Run:
    """The objects of one run and the writing of its outputs."""

    def __init__(self, config: RunConfig, out_dir: Path) -> None:
        config.validate()
        self.out = out_dir
        self.device = resolve_device(config.device)
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
            }
        )
        # The problem's own trainable parameters (inverse problems), moved in place.
        self.unknowns = self.problem.unknowns()
        for param in self.unknowns.values():
            param.data = param.data.to(device=self.device, dtype=self.dtype)
        self.balancer = _create_balancer(
            self.config, self.model, {**self.unknowns, **self.variants.named_parameters()}
        )
        decay = partial(_exp_decay, rate=config.lr_decay, every=config.lr_decay_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.balancer.optimizer, decay)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(config.seed)  # the collocation points
        self.eval_points = self.problem.evaluation_points(self.device, self.dtype)
        self.eval_reference = self.problem.reference(self.eval_points)
        self.progress = _Progress()
        #: The current point sets; redrawn every ``resample_every`` steps (0: drawn once).
        self.batch: dict[str, Tensor] | None = None

    def next_batch(self) -> dict[str, Tensor]:
        """The points of the coming step: fresh at steps 0, N, 2N, ... (N = resample_every)."""
        every = self.config.resample_every
        if self.batch is None or (every and self.progress.step % every == 0):
            self.batch = self.problem.sample(self.generator, self.device, self.dtype)
        return self.batch

    # ----------------------------------------------------------------------------------- state
    def checkpoint(self) -> dict[str, Any]:
        p = self.progress
        rng: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "generator": self.generator.get_state(),
        }
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "format": CHECKPOINT_FORMAT,
            **p.entries(),
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "balancer": self.balancer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng,
            "unknowns": {k: v.detach().clone() for k, v in self.unknowns.items()},
            "variants": self.variants.state_dict(),
            # Reused points (resample_every != 1) are stored, so a resumed run reuses them.
            "batch": (
                {k: v.detach().clone() for k, v in self.batch.items()}
                if self.batch is not None and self.config.resample_every != 1
                else None
            ),
        }

    def restore(self, ckpt: Mapping[str, Any]) -> None:
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(f"checkpoint format {ckpt.get('format')!r} is not supported")
        # Fill in keys added since the checkpoint was written with their defaults.
        saved = {
            k: v
            for k, v in RunConfig.from_dict(ckpt["config"]).to_dict().items()
            if k not in RESUMABLE_CHANGES
        }
        mine = {k: v for k, v in self.config.to_dict().items() if k not in RESUMABLE_CHANGES}
        differ = sorted(k for k in mine if saved.get(k) != mine[k])
        if differ:
            raise ConfigError(
                "cannot resume: the checkpoint was written with a different configuration "
                f"({', '.join(differ)}); only 'steps' and 'threads' may change"
            )
        self.model.load_state_dict(ckpt["model"])
        with torch.no_grad():
            for name, value in ckpt.get("unknowns", {}).items():
                self.unknowns[name].copy_(value)
        if ckpt.get("batch") is not None:
            self.batch = {
                k: v.to(device=self.device, dtype=self.dtype) for k, v in ckpt["batch"].items()
            }
        if "variants" in ckpt:
            self.variants.load_state_dict(ckpt["variants"])
        self.balancer.load_state_dict(ckpt["balancer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        self.generator.set_state(ckpt["rng"]["generator"])
        if "cuda" in ckpt["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"], self.device)
        self.progress = _Progress.from_checkpoint(ckpt)

    # ------------------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def predict(self) -> Tensor:
        was_training = self.model.training
        self.model.eval()
        try:
            return self.model(self.eval_points)
        finally:
            self.model.train(was_training)

    def evaluate(self) -> dict[str, float]:
        prediction = self.predict()
        errs = errors(prediction, self.eval_reference)
        errs.update(self.problem.extra_errors(prediction, self.eval_reference))
        p = self.progress
        if p.evals and p.evals[-1]["step"] == p.step:
            p.evals.pop()
        p.evals.append({"step": p.step, "wall_s": p.wall_s, **errs})
        return errs

    # --------------------------------------------------------------------------------- output
    def write_tables(self) -> None:
        p = self.progress
        write_csv(self.out / "history.csv", history_columns(p.history, p.loss_names), p.history)
        columns = ["step", "wall_s", *ERROR_NAMES]
        columns += [k for k in (p.evals[-1] if p.evals else {}) if k not in columns]
        write_csv(self.out / "eval.csv", columns, p.evals)

    def write_checkpoint(self) -> None:
        self.write_tables()
        write_torch(self.out / "checkpoint.pt", self.checkpoint())

    def write_plot(self) -> None:
        figure = solution_figure(
            self.problem,
            self.eval_points.detach().double().cpu().numpy(),
            self.eval_reference.detach().double().cpu().numpy(),
            self.predict().detach().double().cpu().numpy(),
        )
        if figure is not None:
            write_png(self.out / "solution.png", figure)

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
            **{k: v for k, v in final.items() if k not in ("step", "wall_s", *ERROR_NAMES)},
            "wall_s": p.wall_s,
            "step_ms": 1e3 * p.wall_s / p.step if p.step else math.nan,
            "elapsed_s": elapsed_s,
            "final_losses": dict(p.final_losses),
            "backward_passes": p.backward_passes,
            "skipped_steps": p.skipped_steps,
            "n_params": sum(t.numel() for t in self.model.parameters()),
            "peak_rss_mb": peak_rss_mb(),
            "threads": torch.get_num_threads(),  # intra-op threads: ms/step depends on them
            "torch": torch.__version__,
        }
        if self.device.type == "cuda":
            out["peak_gpu_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        return out


def train(
    config: RunConfig,
    out_dir: str | Path,
    *,
    progress: bool = True,
    resume: bool = False,
    callback: Callable[[StepInfo], None] | None = None,
) -> dict[str, Any]:
    """Train one PINN and write the run's files to ``out_dir`` (see the module docstring).

    Args:
        config: the run.
        out_dir: created if needed; existing output files are replaced.
        progress: show a tqdm progress bar with the current losses on stderr.
        resume: continue from ``out_dir/checkpoint.pt`` (same configuration; ``steps`` may grow).
        callback: called with every step's :class:`StepInfo`.

    Returns:
        The metrics written to ``metrics.json``.  A divergent run (a loss became NaN or infinite,
        :class:`~autobalance.errors.NonFiniteLossError`) does not raise: its files are written,
        ``status`` is ``"failed"`` and ``error`` holds the step, the loss name and the message.

    Threads: the run uses ``choose_threads(config.threads)`` intra-op threads
    (:mod:`autobalance.threads`: one unless ``config.threads`` asks for more, never more than
    this process's cores) and puts the caller's thread settings back when it returns.

    Raises:
        AutoBalanceError: invalid configuration (unknown problem, method, parameter, device...).
    """
    config.validate()
    with using_threads(choose_threads(config.threads)):
        return _train(config, out_dir, progress=progress, resume=resume, callback=callback)


def _train(
    config: RunConfig,
    out_dir: str | Path,
    *,
    progress: bool,
    resume: bool,
    callback: Callable[[StepInfo], None] | None,
) -> dict[str, Any]:
    """:func:`train` with its threads in effect."""
    started = time.perf_counter()
    out = Path(out_dir)
    run = _Run(config, out)
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        path = out / "checkpoint.pt"
        if not path.exists():
            raise ConfigError(f"cannot resume: {path} does not exist")
        # RNG states must stay CPU tensors; model and balancer states move to the parameters'
        # device in their load_state_dict (as torch.optim optimizers do).
        run.restore(torch.load(path, map_location="cpu", weights_only=True))
    cfg, p = run.config, run.progress
    budget = Budget.from_spec(cfg.budget)  # None: run `steps` steps

    def out_of_budget() -> bool:
        return budget is not None and budget.exhausted(p.step, p.backward_passes, p.wall_s)

    write_json(out / "config.json", cfg.to_dict())
    if not p.evals:
        run.evaluate()

    bar = progress_bar(cfg.steps, min(p.step, cfg.steps), progress, f"{cfg.problem}/{cfg.method}")
    failure: dict[str, Any] | None = None
    sync = torch.cuda.synchronize if run.device.type == "cuda" else (lambda: None)
    try:
        while p.step < cfg.steps and not out_of_budget():
            lr = run.balancer.optimizer.param_groups[0]["lr"]
            tic = time.perf_counter()
            batch = run.variants.transform_batch(run.next_batch(), p.step + 1)
            losses = run.problem.losses(run.model, batch)
            losses = run.variants.transform_losses(losses, p.step + 1)
            try:
                info = run.balancer.step(losses)
            except NonFiniteLossError as exc:
                failure = {"step": p.step + 1, "loss": exc.loss, "message": str(exc)}
                break
            run.variants.after_step(p.step + 1)
            run.scheduler.step()
            p.wall_s += time.perf_counter() - tic  # StepInfo's floats already synchronised
            p.step += 1
            p.backward_passes += info.backward_passes
            p.skipped_steps += int(info.skipped)
            p.final_losses = info.values
            if not p.loss_names:
                p.loss_names = list(info.losses)
            if callback is not None:
                callback(info)
            last = p.step == cfg.steps or out_of_budget()
            if p.step % cfg.log_every == 0 or p.step == 1 or last:
                p.history.append(history_row(info, lr) | {"step": p.step})
                bar.set_postfix_str(
                    " ".join(f"{n}={v:.2e}" for n, v in info.values.items()), refresh=False
                )
            if p.step % cfg.eval_every == 0 or last:
                sync()
                run.evaluate()
            if cfg.checkpoint_every and p.step % cfg.checkpoint_every == 0 and not last:
                run.write_checkpoint()
            bar.update(1)
    finally:
        bar.close()

    if failure is not None:
        run.evaluate()  # the parameters before the failing step
    run.write_checkpoint()
    run.write_plot()
    metrics = run.metrics("failed" if failure else "ok", time.perf_counter() - started)
    if failure is not None:
        metrics["error"] = failure
    if budget is not None:
        metrics["budget"] = budget.to_spec()
    write_json(out / "metrics.json", metrics)
    return metrics
