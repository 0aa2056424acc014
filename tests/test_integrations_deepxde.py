"""compile_balanced: DeepXDE's loss terms reach the method by name, and training works.

* DeepXDE trained by ``methods.create("adam")`` (Adam on the summed loss) through the adapter is
  bit-identical to DeepXDE's own Adam: the adapter hands over exactly DeepXDE's terms.
* The example ``examples/deepxde_helmholtz.py`` (DeepXDE geometry, PDE and boundary condition,
  trained with AutoBalance) runs small and reduces the error.
* Term names, DeepXDE's scheduler and ``model.save`` / ``model.restore``, errors.

DeepXDE is imported inside a fixture that puts torch's default device and dtype back afterwards
(on import DeepXDE makes CUDA the default device where there is one).
"""

from __future__ import annotations

import contextlib
import io
import os
import runpy
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from autobalance import AutoBalance, methods
from autobalance.errors import ConfigError, LossNameError

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "deepxde_helmholtz.py"


@pytest.fixture(scope="module")
def adapter() -> Iterator[ModuleType]:
    device, dtype = torch.get_default_device(), torch.get_default_dtype()
    backend = os.environ.get("DDE_BACKEND")
    from autobalance.integrations import deepxde as adapter_module

    torch.set_default_device(device)
    torch.set_default_dtype(dtype)
    yield adapter_module
    if backend is None:
        os.environ.pop("DDE_BACKEND", None)


@pytest.fixture(scope="module")
def example(adapter: ModuleType) -> dict[str, Any]:
    return runpy.run_path(str(EXAMPLE))


def poisson_model(adapter: ModuleType, *, seed: int = 0, conditions: int = 1) -> Any:
    """-Δu = 2π² sin(πx) sin(πy) on [0, 1]², u = 0 on the boundary; random points, seeded."""
    dde = adapter.dde

    def pde(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        laplacian = dde.grad.hessian(u, x, i=0, j=0) + dde.grad.hessian(u, x, i=1, j=1)
        source = 2 * torch.pi**2 * torch.sin(torch.pi * x[:, 0:1]) * torch.sin(torch.pi * x[:, 1:2])
        return laplacian + source

    geometry = dde.geometry.Rectangle([0.0, 0.0], [1.0, 1.0])
    bcs = [
        dde.icbc.DirichletBC(geometry, lambda x: 0.0, lambda x, on: on) for _ in range(conditions)
    ]
    np.random.seed(seed)
    data = dde.data.PDE(
        geometry, pde, bcs, num_domain=64, num_boundary=32, num_test=16, train_distribution="pseudo"
    )
    torch.manual_seed(seed)
    net = dde.nn.FNN([2, 16, 16, 1], "tanh", "Glorot normal")
    return dde.Model(data, net)


def quiet_train(model: Any, steps: int, **kwargs: Any) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        model.train(iterations=steps, display_every=steps, verbose=0, **kwargs)


# ----------------------------------------------------------------- the terms DeepXDE computes
def test_adam_through_the_adapter_is_deepxdes_own_adam(adapter: ModuleType) -> None:
    steps = 5
    own = poisson_model(adapter)
    own.compile("adam", lr=1e-2, verbose=0)
    quiet_train(own, steps)

    balanced = poisson_model(adapter)
    adam = methods.create("adam", balanced.net.parameters(), lr=1e-2)
    step = adapter.compile_balanced(balanced, adam, verbose=0)
    quiet_train(balanced, steps)

    assert step.loss_names == ["pde", "dirichlet_bc"]
    assert step.last_info is not None and step.last_info.step == steps
    for p, q in zip(own.net.parameters(), balanced.net.parameters(), strict=True):
        assert torch.equal(p, q)
    # the values handed over are DeepXDE's own loss terms at those points
    x, y, aux = own.train_state.X_train, own.train_state.y_train, own.train_state.train_aux_vars
    expected = own.outputs_losses_train(x, y, aux)[1]
    named = step.named_losses(x, y, aux)
    assert list(named) == ["pde", "dirichlet_bc"]
    assert torch.equal(torch.stack(list(named.values())), expected)


def test_autobalance_gets_one_state_per_deepxde_term(adapter: ModuleType) -> None:
    model = poisson_model(adapter)
    optimizer = AutoBalance(model.net.parameters(), base="adam", lr=1e-2)
    step = adapter.compile_balanced(model, optimizer, loss_weights=[1.0, 10.0], verbose=0)
    quiet_train(model, 3)
    assert optimizer.layout is not None
    assert list(optimizer.layout.state_names) == ["pde", "dirichlet_bc"]
    assert step.last_info is not None
    assert set(step.last_info.values) == {"pde", "dirichlet_bc"}
    # loss_weights are DeepXDE's and applied before the hand-over: the boundary term is 10×
    unweighted = poisson_model(adapter)
    plain = adapter.compile_balanced(
        unweighted, AutoBalance(unweighted.net.parameters(), lr=1e-2), verbose=0
    )
    x = model.data.train_x
    weighted_terms = step.named_losses(x, None, None)
    with torch.no_grad():
        for p, q in zip(unweighted.net.parameters(), model.net.parameters(), strict=True):
            p.copy_(q)
    plain_terms = plain.named_losses(x, None, None)
    assert weighted_terms["pde"].item() == plain_terms["pde"].item()
    assert weighted_terms["dirichlet_bc"].item() == pytest.approx(
        10 * plain_terms["dirichlet_bc"].item(), rel=1e-6
    )


def test_term_names(adapter: ModuleType) -> None:
    model = poisson_model(adapter, conditions=2)
    assert adapter.term_names(model, 3) == ["pde", "dirichlet_bc_0", "dirichlet_bc_1"]
    assert adapter.term_names(model, 4) == ["pde_0", "pde_1", "dirichlet_bc_0", "dirichlet_bc_1"]
    with pytest.raises(ConfigError, match="2 conditions"):
        adapter.term_names(model, 1)
    model.net.regularizer = ("l1", 1e-4)
    assert adapter.term_names(model, 4) == ["pde", "dirichlet_bc_0", "dirichlet_bc_1", "l1"]
    assert adapter._snake_case("PointSetBC") == "point_set_bc"
    assert adapter._snake_case("IC") == "ic"


def test_given_names_are_used_and_checked(adapter: ModuleType) -> None:
    model = poisson_model(adapter)
    optimizer = AutoBalance(model.net.parameters(), lr=1e-3)
    step = adapter.compile_balanced(model, optimizer, names=["residual", "boundary"], verbose=0)
    quiet_train(model, 1)
    assert step.loss_names == ["residual", "boundary"]
    assert list(optimizer.layout.state_names) == ["residual", "boundary"]  # type: ignore[union-attr]

    model = poisson_model(adapter)
    optimizer = AutoBalance(model.net.parameters(), lr=1e-3)
    adapter.compile_balanced(model, optimizer, names=["only_one"], verbose=0)
    with pytest.raises(LossNameError, match="2 loss terms but 1 names"):
        quiet_train(model, 1)
    with pytest.raises(LossNameError, match="repeats"):
        adapter.compile_balanced(model, optimizer, names=["a", "a"], verbose=0)


def test_deepxde_scheduler_acts_on_the_method(adapter: ModuleType) -> None:
    model = poisson_model(adapter)
    optimizer = AutoBalance(model.net.parameters(), lr=1e-2)
    adapter.compile_balanced(model, optimizer, decay=("step", 2, 0.5), verbose=0)
    quiet_train(model, 4)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5**2)


def test_model_save_and_restore_keep_every_per_loss_state(
    adapter: ModuleType, tmp_path: Path
) -> None:
    model = poisson_model(adapter)
    optimizer = AutoBalance(model.net.parameters(), lr=1e-2)
    adapter.compile_balanced(model, optimizer, verbose=0)
    quiet_train(model, 3)
    with contextlib.redirect_stdout(io.StringIO()):
        path = model.save(str(tmp_path / "model"))
    saved = optimizer.state_dict()

    other = poisson_model(adapter, seed=1)
    restored = AutoBalance(other.net.parameters(), lr=1e-2)
    adapter.compile_balanced(other, restored, verbose=0)
    with contextlib.redirect_stdout(io.StringIO()):
        other.restore(path)
    state = restored.state_dict()
    assert state["autobalance"] == saved["autobalance"]
    assert state["autobalance"]["layout"]["state_names"] == ["pde", "dirichlet_bc"]
    for key, row in saved["state"].items():
        for name, value in row.items():
            assert torch.equal(state["state"][key][name], value), name


def test_fresh_points_change_every_step(adapter: ModuleType) -> None:
    model = poisson_model(adapter)
    adapter.compile_balanced(model, AutoBalance(model.net.parameters(), lr=1e-3), verbose=0)
    before = model.data.train_x.copy()
    quiet_train(model, 1, callbacks=[adapter.FreshPoints()])
    assert model.data.train_x.shape == before.shape
    assert not np.array_equal(model.data.train_x, before)
    with pytest.raises(ConfigError, match="period"):
        adapter.FreshPoints(period=0)


def test_misuse_is_a_clear_error(adapter: ModuleType) -> None:
    model = poisson_model(adapter)
    optimizer = AutoBalance(model.net.parameters(), lr=1e-3)
    with pytest.raises(ConfigError, match="'lr' is the method's"):
        adapter.compile_balanced(model, optimizer, lr=1e-3)
    with pytest.raises(ConfigError, match="every parameter of model.net"):
        adapter.compile_balanced(model, AutoBalance([torch.zeros(1, requires_grad=True)]))
    with pytest.raises(TypeError, match="deepxde Model"):
        adapter.compile_balanced(model.net, optimizer)
    with pytest.raises(TypeError, match="autobalance method"):
        adapter.compile_balanced(model, torch.optim.Adam(model.net.parameters()))


# ------------------------------------------------------------------------------- the example
def test_example_trains_deepxde_helmholtz_with_autobalance(example: dict[str, Any]) -> None:
    out = io.StringIO()
    argv = ["--steps", "300", "--lr", "1e-2", "--a2", "1", "--n-domain", "128"]
    argv += ["--n-boundary", "32", "--width", "16", "--depth", "2", "--n-eval", "51"]
    with contextlib.redirect_stdout(out):
        results = example["main"](argv)
    run = results["deepxde"]
    assert run["names"] == ["pde", "dirichlet_bc"]
    assert set(run["final_losses"]) == {"pde", "dirichlet_bc"}
    assert run["rel_l2"] < 0.25 * run["initial"]["rel_l2"], run
    assert "DeepXDE loss terms, by name: pde, dirichlet_bc" in out.getvalue()
