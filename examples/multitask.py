"""AutoBalance beyond PDEs: one network, three tasks of very different scales and kinds.

A shared trunk (two tanh layers) with one linear head per task learns, from the same 8 input
features (data generated here, seeded):

* ``demand``: a regression target in the tens, ``30·(a·x + ½(b·x)²)``;
* ``margin``: a regression target in the hundredths, ``0.01·sin(2c·x) + 0.005·(d·x)²``;
* ``churn``:  a binary label, ``1[e·x + sin(2x₁) > 0]``, learned with the logistic loss,

each with 5% noise, losses in their raw units (mean squared errors, binary cross-entropy): no
target normalisation, as in code that has not been tuned for balance.  Three optimisers train
the same initial weights on the same mini-batches:

* ``autobalance``: ``AutoBalance(base="adam")``, one Adam state per task, updates summed;
* ``adam``: one Adam on the sum of the losses;
* ``pcgrad``: PCGrad (Yu et al. 2020), a pre-combine method: the per-task gradients, projected
  where they conflict, summed into one Adam.

Printed per task on held-out data: R² for the regressions (1 is perfect, 0 is predicting the
mean), accuracy for the classification.  Any other method of ``autobalance.methods`` can be
added by name: ``--methods autobalance,adam,pcgrad,imtl-g``.

Usage::

    python examples/multitask.py                # 3000 steps, a few seconds per method
    python examples/multitask.py --steps 500 --methods autobalance,adam
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from autobalance import AutoBalance, methods

Params = Iterable[Tensor]

REGRESSION = ("demand", "margin")
CLASSIFICATION = ("churn",)
TASKS = REGRESSION + CLASSIFICATION
FEATURES = 8

#: How each contender is built from the parameters and the learning rate; any other name goes
#: to ``autobalance.methods.create(name, params, lr=lr)``.
CONTENDERS: dict[str, Callable[[Params, float], Any]] = {
    "autobalance": lambda params, lr: AutoBalance(params, base="adam", lr=lr),
    "adam": lambda params, lr: methods.create("adam", params, lr=lr),
    "pcgrad": lambda params, lr: methods.create("pcgrad", params, lr=lr),
}


def _by_name(name: str, params: Params, lr: float) -> Any:
    return methods.create(name, params, lr=lr)


def make_data(n: int, generator: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
    """``n`` samples: features ``(n, 8)`` and one ``(n,)`` target per task (see the docstring).

    The task directions ``a … e`` come from a fixed seed, so training and test data share them;
    ``generator`` draws the features and the noise.
    """
    directions = torch.randn(5, FEATURES, generator=torch.Generator().manual_seed(1234))
    a, b, c, d, e = directions / FEATURES**0.5
    x = torch.randn(n, FEATURES, generator=generator)

    def noisy(clean: Tensor) -> Tensor:
        return clean + 0.05 * clean.std() * torch.randn(n, generator=generator)

    targets = {
        "demand": noisy(30 * (x @ a + 0.5 * (x @ b) ** 2)),
        "margin": noisy(0.01 * torch.sin(2 * (x @ c)) + 0.005 * (x @ d) ** 2),
        "churn": (noisy(x @ e + torch.sin(2 * x[:, 0])) > 0).float(),
    }
    return x, targets


class MultiTaskNet(nn.Module):
    """A shared trunk and one linear head per task."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(FEATURES, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh()
        )
        self.heads = nn.ModuleDict({task: nn.Linear(width, 1) for task in TASKS})

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        features = self.trunk(x)
        return {task: head(features).squeeze(-1) for task, head in self.heads.items()}


def task_losses(outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
    """Mean squared error per regression task, binary cross-entropy (logits) per classification."""
    losses = {t: nn.functional.mse_loss(outputs[t], targets[t]) for t in REGRESSION}
    for t in CLASSIFICATION:
        losses[t] = nn.functional.binary_cross_entropy_with_logits(outputs[t], targets[t])
    return losses


@torch.no_grad()
def task_metrics(net: MultiTaskNet, x: Tensor, targets: dict[str, Tensor]) -> dict[str, float]:
    """R² per regression task and accuracy per classification task, on ``(x, targets)``."""
    outputs = net(x)
    metrics = {}
    for t in REGRESSION:
        residual = (outputs[t] - targets[t]).pow(2).sum()
        total = (targets[t] - targets[t].mean()).pow(2).sum()
        metrics[t] = 1.0 - (residual / total).item()
    for t in CLASSIFICATION:
        metrics[t] = ((outputs[t] > 0).float() == targets[t]).float().mean().item()
    return metrics


def train(
    name: str, args: argparse.Namespace, data: tuple[Tensor, dict[str, Tensor]]
) -> dict[str, Any]:
    """Train a fresh network (same seed for every method) with method ``name``."""
    x, targets = data
    torch.manual_seed(args.seed)
    net = MultiTaskNet(args.width)
    factory = CONTENDERS.get(name, functools.partial(_by_name, name))
    optimizer = factory(net.parameters(), args.lr)
    batches = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    for _ in range(args.steps):
        index = torch.randint(0, len(x), (args.batch,), generator=batches)
        optimizer.step(task_losses(net(x[index]), {t: y[index] for t, y in targets.items()}))
    seconds = time.perf_counter() - start
    return {"net": net, "seconds": seconds}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--n-train", type=int, default=4096)
    parser.add_argument("--n-test", type=int, default=4096)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default="autobalance,adam,pcgrad", help="comma-separated")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Train every method, print the per-task test metrics; return them by method."""
    args = parse(argv)
    names = [n.strip() for n in args.methods.split(",") if n.strip()]
    train_data = make_data(args.n_train, torch.Generator().manual_seed(args.seed))
    test_x, test_targets = make_data(args.n_test, torch.Generator().manual_seed(args.seed + 1))
    print(
        f"{args.steps} steps of {args.batch} samples, lr {args.lr}, seed {args.seed}; "
        f"held-out R² (demand, margin) and accuracy (churn)"
    )
    print(f"{'method':<14}" + "".join(f"{t:>10}" for t in TASKS) + f"{'seconds':>10}")
    results = {}
    for name in names:
        run = train(name, args, train_data)
        metrics = task_metrics(run["net"], test_x, test_targets)
        results[name] = metrics
        row = "".join(f"{metrics[t]:>10.3f}" for t in TASKS)
        print(f"{name:<14}{row}{run['seconds']:>10.1f}")
    return results


if __name__ == "__main__":
    main()
