"""LightningBalancer: every method trains under Lightning exactly as in a plain loop, and resumes.

A two-task regression (targets of scales 1 and 100) is trained through ``Trainer.fit`` and, with
the same initial weights and batches, by calling the method's ``step(losses)`` in a plain loop:
parameters and method states must be bit-identical, under automatic and manual optimisation.
Checkpoints written by the ``Trainer`` must hold and restore every per-loss state exactly, and a
run resumed from one must continue as if never interrupted.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from autobalance import AutoBalance, methods
from autobalance.errors import LossValueError
from autobalance.integrations.lightning import LightningBalancer

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers:UserWarning",
    "ignore:.*isinstance\\(treespec, LeafSpec\\).*",
    "ignore:.*resuming from a checkpoint that ended before the epoch ended",
)

EXAMPLES_README = Path(__file__).resolve().parents[1] / "examples" / "README.md"
METHODS = ["adam", "autobalance", "pcgrad", "dwa"]


LR = 1e-2
BATCHES_PER_EPOCH = 3


def data(batches_per_epoch: int = BATCHES_PER_EPOCH) -> DataLoader[tuple[Tensor, ...]]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batches_per_epoch * 8, 3, generator=g)
    y = torch.stack([x @ torch.tensor([1.0, -2.0, 0.5]), 100 * torch.sin(x[:, 0])], dim=1)
    return DataLoader(TensorDataset(x, y), batch_size=8, shuffle=False)


def batches(steps: int) -> list[tuple[Tensor, ...]]:
    epoch = list(data())
    return [epoch[i % len(epoch)] for i in range(steps)]


def make_net() -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return net


def task_losses(net: torch.nn.Module, batch: tuple[Tensor, ...]) -> dict[str, Tensor]:
    x, y = batch
    out = net(x)
    return {
        "small": (out[:, 0] - y[:, 0]).pow(2).mean(),
        "large": (out[:, 1] - y[:, 1]).pow(2).mean(),
    }


class TwoTasks(pl.LightningModule):
    """Named losses from ``training_step``, through :class:`LightningBalancer`."""

    def __init__(self, method: str, *, automatic: bool = True, gamma: float | None = None) -> None:
        super().__init__()
        self.automatic_optimization = automatic
        self.method = method
        self.gamma = gamma
        self.net = make_net()

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor | None:
        losses = task_losses(self.net, batch)
        optimizer = self.optimizers()
        if self.automatic_optimization:
            return optimizer.hand_over(losses)  # type: ignore[union-attr]
        optimizer.step(losses=losses)  # type: ignore[union-attr]
        return None

    def configure_optimizers(self) -> Any:
        optimizer = LightningBalancer(methods.create(self.method, self.parameters(), lr=LR))
        if self.gamma is None:
            return optimizer
        schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=self.gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def trainer(max_steps: int, root: Path, **kwargs: Any) -> pl.Trainer:
    return pl.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        **kwargs,
    )


def fit(
    module: TwoTasks,
    steps: int,
    root: Path,
    ckpt_path: Path | None = None,
    batches_per_epoch: int = BATCHES_PER_EPOCH,
) -> pl.Trainer:
    run = trainer(steps, root)
    run.fit(module, data(batches_per_epoch), ckpt_path=ckpt_path)
    return run


def wrapper(run: pl.Trainer) -> LightningBalancer:
    (optimizer,) = run.optimizers
    assert isinstance(optimizer, LightningBalancer)
    return optimizer


def plain_loop(method: str, steps: int) -> tuple[torch.nn.Module, methods.Balancer]:
    """The same training without Lightning: ``method.step(losses)`` per batch."""
    net = make_net()
    balancer = methods.create(method, net.parameters(), lr=LR)
    for batch in batches(steps):
        balancer.step(task_losses(net, batch))
    return net, balancer


def assert_identical(a: Any, b: Any, where: str = "state") -> None:
    """Nested state dicts equal entry by entry; tensors bit for bit, with the same dtype."""
    if isinstance(a, Tensor):
        assert isinstance(b, Tensor), where
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), where
    elif isinstance(a, Mapping):
        assert isinstance(b, Mapping) and list(a) == list(b), f"{where}: keys {list(a)} {list(b)}"
        for key in a:
            assert_identical(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_params(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name


def tensors_in(state: Any) -> int:
    if isinstance(state, Tensor):
        return 1
    if isinstance(state, Mapping):
        return sum(tensors_in(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(tensors_in(v) for v in state)
    return 0


# ------------------------------------------------------------------ training equals a plain loop
@pytest.mark.parametrize("automatic", [True, False], ids=["automatic", "manual"])
@pytest.mark.parametrize("method", METHODS)
def test_lightning_training_equals_the_plain_loop(
    method: str, automatic: bool, tmp_path: Path
) -> None:
    steps = 2 * BATCHES_PER_EPOCH + 1
    module = TwoTasks(method, automatic=automatic)
    run = fit(module, steps, tmp_path)
    optimizer = wrapper(run)
    assert run.global_step == steps
    info = optimizer.last_info
    assert info is not None and info.step == steps
    assert list(info.losses) == ["small", "large"]

    net, balancer = plain_loop(method, steps)
    assert_same_params(module.net, net)
    assert_identical(optimizer.state_dict(), balancer.state_dict())
    # and training did something: the large-scale task's loss went down
    first = task_losses(make_net(), batches(1)[0])["large"].item()
    assert task_losses(module.net, batches(1)[0])["large"].item() < first


# ------------------------------------------------------------------------------ checkpoints
@pytest.mark.parametrize("method", METHODS)
def test_trainer_checkpoint_round_trips_every_per_loss_state(method: str, tmp_path: Path) -> None:
    steps = BATCHES_PER_EPOCH + 1  # mid-epoch
    first = TwoTasks(method)
    run = fit(first, steps, tmp_path)
    saved_state = wrapper(run).state_dict()
    ckpt = tmp_path / "run.ckpt"
    run.save_checkpoint(ckpt)
    assert tensors_in(saved_state) > 0

    stored = torch.load(ckpt, weights_only=False)["optimizer_states"][0]
    assert_identical(stored, saved_state, "checkpoint")
    if method == "autobalance":  # one row of Adam moments per named loss
        assert stored["autobalance"]["layout"]["state_names"] == ["small", "large"]
        (row, *_) = stored["state"].values()
        assert row["exp_avg"].shape[0] == 2 and row["step"].tolist() == [steps, steps]

    # A new Trainer and a new module (other weights): resuming restores the states exactly.
    second = TwoTasks(method)
    with torch.no_grad():
        for p in second.parameters():
            p.add_(1.0)
    resumed = fit(second, steps, tmp_path, ckpt_path=ckpt)
    assert resumed.global_step == steps
    assert_identical(wrapper(resumed).state_dict(), saved_state, "resumed")
    assert_same_params(second, first)


@pytest.mark.parametrize("method", METHODS)
def test_resumed_run_continues_as_if_never_interrupted(method: str, tmp_path: Path) -> None:
    # One batch per epoch: which batch comes next after a resume is Lightning's business (a plain
    # DataLoader restarts); what is checked here is that every state continues exactly.
    half, total = 3, 7
    straight = TwoTasks(method)
    straight_run = fit(straight, total, tmp_path / "straight", batches_per_epoch=1)

    run = fit(TwoTasks(method), half, tmp_path / "first", batches_per_epoch=1)
    ckpt = tmp_path / "half.ckpt"
    run.save_checkpoint(ckpt)
    resumed = TwoTasks(method)
    run = fit(resumed, total, tmp_path / "second", ckpt_path=ckpt, batches_per_epoch=1)

    assert run.global_step == total
    assert wrapper(run).last_info is not None and wrapper(run).last_info.step == total
    assert_same_params(resumed, straight)
    assert_identical(wrapper(run).state_dict(), wrapper(straight_run).state_dict())


def test_learning_rate_schedule_acts_on_the_balancer_and_resumes(tmp_path: Path) -> None:
    steps, gamma = 4, 0.5
    module = TwoTasks("autobalance", gamma=gamma)
    run = fit(module, steps, tmp_path)
    balancer = wrapper(run).balancer
    assert balancer.optimizer.param_groups[0]["lr"] == pytest.approx(LR * gamma**steps)
    ckpt = tmp_path / "run.ckpt"
    run.save_checkpoint(ckpt)

    resumed = fit(TwoTasks("autobalance", gamma=gamma), steps + 2, tmp_path, ckpt_path=ckpt)
    lr = wrapper(resumed).balancer.optimizer.param_groups[0]["lr"]
    assert lr == pytest.approx(LR * gamma ** (steps + 2))


# ------------------------------------------------- the recipes of examples/README.md, as written
def lightning_recipes() -> list[str]:
    text = EXAMPLES_README.read_text(encoding="utf-8")
    section = text.split("## PyTorch Lightning", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2, "examples/README.md lost its automatic and manual recipes"
    return blocks


def max_error(net: torch.nn.Module) -> float:
    x = torch.linspace(0, 1, 101).unsqueeze(1)
    return (net(x) - torch.sin(torch.pi * x)).abs().max().item()


def test_readme_recipes_run_and_solve_their_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    automatic, manual = lightning_recipes()
    namespace: dict[str, Any] = {}
    torch.manual_seed(0)
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        exec(compile(automatic, str(EXAMPLES_README), "exec"), namespace)
    assert max_error(namespace["model"].net) < 0.02

    exec(compile(manual, str(EXAMPLES_README), "exec"), namespace)
    torch.manual_seed(0)  # as in the automatic recipe: the points, then the network
    points = TensorDataset(torch.rand(64 * 200, 1))
    module = namespace["ManualPoissonPINN"]()
    assert not module.automatic_optimization
    run = trainer(200, tmp_path)
    run.fit(module, DataLoader(points, batch_size=64))
    assert run.global_step == 200
    assert wrapper(run).last_info is not None and wrapper(run).last_info.step == 200
    # the same training as under automatic optimisation, step for step
    assert_same_params(module.net, namespace["model"].net)


# ------------------------------------------------------------------------------------ errors
def test_gradient_accumulation_is_refused(tmp_path: Path) -> None:
    run = trainer(2, tmp_path, accumulate_grad_batches=2)
    with pytest.raises(LossValueError, match="accumulate_grad_batches"):
        run.fit(TwoTasks("autobalance"), data())


class ReturnsTheSum(TwoTasks):
    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        return sum(task_losses(self.net, batch).values())  # type: ignore[return-value]


def test_training_step_that_hands_nothing_over_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LossValueError, match="hand_over"):
        trainer(1, tmp_path).fit(ReturnsTheSum("autobalance"), data())


def test_losses_given_twice_are_refused() -> None:
    net = make_net()
    optimizer = LightningBalancer(AutoBalance(net.parameters(), lr=LR))
    batch = batches(1)[0]
    stand_in = optimizer.hand_over(task_losses(net, batch))
    assert stand_in.requires_grad and stand_in.grad_fn is None  # a leaf: no way into the net
    assert stand_in.item() == pytest.approx(sum(v.item() for v in task_losses(net, batch).values()))
    with pytest.raises(LossValueError, match="use one of the two"):
        optimizer.step(losses=task_losses(net, batch))
    with pytest.raises(LossValueError, match="no losses"):
        optimizer.step()


def test_wraps_only_methods() -> None:
    net = make_net()
    with pytest.raises(TypeError, match="autobalance method"):
        LightningBalancer(torch.optim.Adam(net.parameters()))  # type: ignore[arg-type]


def test_non_scalar_losses_are_refused_at_hand_over() -> None:
    net = make_net()
    optimizer = LightningBalancer(AutoBalance(net.parameters(), lr=LR))
    with pytest.raises(LossValueError, match="not a scalar"):
        optimizer.hand_over({"a": torch.ones(3, requires_grad=True)})
