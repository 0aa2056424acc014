"""Transactional ``load_state_dict``: a state dict that does not fit is refused with a
:class:`StateDictError` naming what is wrong, and leaves the optimizer exactly as it was.

For every method and for each kind of fault: the state before the failed load and after it are
equal bit for bit, and the next step is bit-identical to the step of a twin that never saw the
failed load.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autobalance import methods
from autobalance.errors import AutoBalanceError, StateDictError
from autobalance.losses import NamedLosses
from autobalance.methods.multistate import MTAdam
from autobalance.optim.adam_rule import AdamRule

StateDict = dict[str, Any]


def _net(width: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(2, width), torch.nn.Tanh(), torch.nn.Linear(width, 1)
    )


def _losses(net: torch.nn.Module, step: int) -> NamedLosses:
    gen = torch.Generator().manual_seed(step)
    x = torch.rand(16, 2, generator=gen)
    pointwise = {
        "residual": (net(x) - torch.sin(3 * x[:, :1])).squeeze(1),
        "boundary": 10 * net(x[:4].round()).squeeze(1),
    }
    return NamedLosses({k: r.pow(2).mean() for k, r in pointwise.items()}, pointwise=pointwise)


def _trained(
    make: Callable[[torch.nn.Module], Any], width: int = 4, seed: int = 0, steps: int = 3
) -> tuple[torch.nn.Module, Any]:
    net = _net(width, seed)
    opt = make(net)
    for t in range(steps):
        opt.step(_losses(net, t))
    return net, opt


def _method(name: str, **kwargs: Any) -> Callable[[torch.nn.Module], Any]:
    params = {**methods.spec(name).example_params, **kwargs}
    return lambda net: methods.create(name, net.parameters(), lr=1e-2, **params)


def assert_same(a: Any, b: Any, path: str = "state") -> None:
    """Equal bit for bit: tensors by dtype, shape and every bit; containers entry by entry."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        bits_a, bits_b = (t.detach().contiguous().reshape(-1).view(torch.uint8) for t in (a, b))
        assert torch.equal(bits_a, bits_b), path
    elif isinstance(a, dict):
        assert list(a) == list(b), path
        for key in a:
            assert_same(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b or (a != a and b != b), path


def assert_refused_and_unchanged(
    make: Callable[[torch.nn.Module], Any], state: Any, match: str
) -> StateDictError:
    """Loading ``state`` raises StateDictError matching ``match``; the optimizer and its
    parameters are unchanged, and its next step equals that of a twin that never tried."""
    net, opt = _trained(make)
    twin_net, twin = _trained(make)
    before, params = copy.deepcopy(opt.state_dict()), copy.deepcopy(net.state_dict())
    with pytest.raises(StateDictError, match=match) as caught:
        opt.load_state_dict(state)
    assert_same(opt.state_dict(), before)
    assert_same(net.state_dict(), params)
    info, twin_info = opt.step(_losses(net, 7)), twin.step(_losses(twin_net, 7))
    assert repr(info) == repr(twin_info) and not info.skipped
    assert _moved(params, net)
    assert_same(net.state_dict(), twin_net.state_dict())
    assert_same(opt.state_dict(), twin.state_dict())
    return caught.value


def _moved(before: StateDict, net: torch.nn.Module) -> bool:
    """Whether a step changed the parameters (a frozen optimizer does not)."""
    return any(not torch.equal(before[k], v) for k, v in net.state_dict().items())


def _valid_state(make: Callable[[torch.nn.Module], Any], seed: int = 1) -> StateDict:
    """A state dict that fits ``make``'s optimizer (same shapes, another seed)."""
    return copy.deepcopy(_trained(make, seed=seed)[1].state_dict())


# ---------------------------------------------------------------- a model with other shapes
SHAPES = re.compile(r"has shape \(\d[\d, ]*\) in the state dict, but .* needs shape \(\d[\d, ]*\)")


@pytest.mark.parametrize("name", methods.names())
def test_state_of_a_model_with_other_shapes_is_refused(name: str) -> None:
    other = _trained(_method(name), width=6)[1].state_dict()
    error = assert_refused_and_unchanged(_method(name), other, SHAPES.pattern)
    if name != "m-config":  # its base (plain SGD) keeps no state: its momenta report the shapes
        assert "parameter 0 (shape (4, 2))" in str(error)


def test_the_issue_reproduction_no_raw_torch_error_and_no_frozen_steps() -> None:
    """A state from a wider model used to fail in ``split_with_sizes`` and leave an optimizer
    that stepped with update norm 0; now it is refused and the next step moves the model."""
    make = _method("autobalance")
    other = _trained(make, width=8)[1].state_dict()
    net, opt = _trained(make)
    with pytest.raises(StateDictError) as caught:
        opt.load_state_dict(other)
    assert "split_with_sizes" not in str(caught.value)
    assert "(2, 8, 2)" in str(caught.value) and "(2, 4, 2)" in str(caught.value)
    params = copy.deepcopy(net.state_dict())
    assert opt.step(_losses(net, 9)).update_norm > 0
    assert _moved(params, net)


def test_a_fitting_state_still_loads_and_resumes_bit_identically() -> None:
    for name in ("autobalance", "pcgrad", "gradnorm", "mtadam", "m-config", "dwa"):
        make = _method(name)
        net, opt = _trained(make, steps=5)
        net2, opt2 = _trained(make, steps=2, seed=3)
        net2.load_state_dict(net.state_dict())
        opt2.load_state_dict(opt.state_dict())
        assert_same(opt2.state_dict(), opt.state_dict())
        assert repr(opt.step(_losses(net, 5))) == repr(opt2.step(_losses(net2, 5)))
        assert_same(net.state_dict(), net2.state_dict())


# -------------------------------------------------------------------- AutoBalance, one fault each
def _set(path: tuple[Any, ...], value: Any) -> Callable[[StateDict], None]:
    def change(sd: StateDict) -> None:
        node = sd
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


def _drop(path: tuple[Any, ...]) -> Callable[[StateDict], None]:
    def change(sd: StateDict) -> None:
        node = sd
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return change


def _extra_group(sd: StateDict) -> None:
    sd["param_groups"].append(copy.deepcopy(sd["param_groups"][0]))


def _short_group(sd: StateDict) -> None:
    sd["param_groups"][0]["params"].pop()


def _stranger(sd: StateDict) -> None:
    sd["state"][999] = sd["state"][0]


META = "autobalance"
AUTOBALANCE_FAULTS = [
    ("no meta", _drop((META,)), "not made by AutoBalance"),
    ("negative steps", _set((META, "steps"), -1), "'steps' must be an integer >= 0"),
    ("steps as text", _set((META, "steps"), "12"), "'steps' must be an integer >= 0"),
    ("other rule", _set((META, "rule"), "stock"), "'stock' states"),
    ("other base", _set((META, "base"), "Adam"), "saved by AutoBalance over Adam"),
    ("repeated loss", _set((META, "layout", "loss_names"), ["a", "a"]), "repeats a loss name"),
    ("layout not a mapping", _set((META, "layout"), [1]), "must be a mapping"),
    ("other states", _set((META, "layout", "state_names"), ["x", "y"]), "saved with states"),
    ("extra group", _extra_group, r"2 parameter group\(s\)"),
    ("short group", _short_group, r"\[3\] parameter\(s\)"),
    ("unknown parameter id", _stranger, "parameter id 999"),
    ("missing state", _drop(("state", 1)), r"no state for parameter\(s\) \[1\]"),
    ("negative lr", _set(("param_groups", 0, "lr"), -1.0), "parameter group 0.*learning rate"),
    ("lr as text", _set(("param_groups", 0, "lr"), "abc"), "parameter group 0"),
    (
        "moments of another shape",
        _set(("state", 2, "exp_avg"), torch.zeros(2, 3, 4)),
        r"parameter 2 \(shape \(1, 4\)\): 'exp_avg' has shape \(2, 3, 4\).*\(2, 1, 4\)",
    ),
    (
        "integer moments",
        _set(("state", 0, "exp_avg_sq"), torch.zeros(2, 4, 2, dtype=torch.int64)),
        "dtype torch.int64",
    ),
    ("step counts of 3 states", _set(("state", 1, "step"), torch.zeros(3)), r"'step'.*\(3,\)"),
    ("moments not a tensor", _set(("state", 0, "exp_avg"), None), "must be a tensor"),
    ("missing key", _drop(("state", 0, "exp_avg_sq")), "state keys"),
    ("foreign key", _set(("state", 0, "momentum_buffer"), torch.zeros(4, 2)), "state keys"),
    ("state not a mapping", _set(("state", 0), [1, 2]), "must be a mapping"),
]


@pytest.mark.parametrize(
    ("change", "match"),
    [(c, m) for _, c, m in AUTOBALANCE_FAULTS],
    ids=[name for name, _, _ in AUTOBALANCE_FAULTS],
)
def test_autobalance_refuses_each_fault_and_changes_nothing(
    change: Callable[[StateDict], None], match: str
) -> None:
    make = _method("autobalance")
    state = _valid_state(make)
    change(state)
    assert_refused_and_unchanged(make, state, match)


def test_autobalance_refuses_what_is_not_a_state_dict() -> None:
    assert_refused_and_unchanged(_method("autobalance"), [1, 2, 3], "must be a mapping")


def test_autobalance_refuses_decoupled_decay_of_another_kind() -> None:
    make = _method("autobalance", base="adam")
    state = _valid_state(make)
    for group in state["param_groups"]:
        group["decoupled_weight_decay"] = True
    assert_refused_and_unchanged(make, state, "decoupled_weight_decay")


STOCK_FAULTS = [
    (
        "states of other losses",
        lambda sd: sd["state"][0].update(
            per_state={"x": sd["state"][0]["per_state"]["residual"], "y": {}}
        ),
        r"holds the states \['x', 'y'\]",
    ),
    (
        "a buffer of another shape",
        lambda sd: sd["state"][1]["per_state"]["boundary"].update(square_avg=torch.zeros(5)),
        r"parameter 1 \(shape \(4,\)\), state 'boundary': 'square_avg' has shape \(5,\)",
    ),
    (
        "the state of another optimizer",
        lambda sd: sd["state"][0]["per_state"].update(
            residual={"momentum_buffer": torch.zeros(4, 2)}
        ),
        r"keys \['momentum_buffer'\].*RMSprop keeps",
    ),
    (
        "a scalar that is not",
        lambda sd: sd["state"][3]["per_state"]["residual"].update(step=torch.ones(2)),
        "must be a scalar",
    ),
]


@pytest.mark.parametrize(
    ("change", "match"), [(c, m) for _, c, m in STOCK_FAULTS], ids=[n for n, _, _ in STOCK_FAULTS]
)
def test_autobalance_over_a_stock_base_refuses_each_fault(
    change: Callable[[StateDict], None], match: str
) -> None:
    make = _method("autobalance", base="rmsprop")
    state = _valid_state(make)
    change(state)
    assert_refused_and_unchanged(make, state, match)


def test_a_failure_while_applying_a_checked_state_is_rolled_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The safety net: should applying a checked state still fail, everything is put back."""
    make = _method("autobalance")
    state = _valid_state(make)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    net, opt = _trained(make)
    monkeypatch.setattr(AdamRule, "load", broken)
    before = copy.deepcopy(opt.state_dict())
    with pytest.raises(StateDictError, match="disk on fire.*nothing was changed"):
        opt.load_state_dict(state)
    monkeypatch.undo()
    assert_same(opt.state_dict(), before)
    twin_net, twin = _trained(make)
    assert repr(opt.step(_losses(net, 7))) == repr(twin.step(_losses(twin_net, 7)))
    assert_same(net.state_dict(), twin_net.state_dict())


# ---------------------------------------------------------------- pre-combine and multi-state
def _optimizer_state(sd: StateDict) -> StateDict:
    return sd["optimizer"]["state"]


METHOD_FAULTS = [
    ("pcgrad", "no optimizer", _drop(("optimizer",)), "lacks 'optimizer'"),
    ("pcgrad", "other base", _set(("base",), "SGD"), "saved with base optimizer SGD"),
    ("pcgrad", "one loss", _set(("names",), ["residual"]), "balances several losses"),
    ("pcgrad", "steps missing", _drop(("steps",)), "lacks 'steps'"),
    ("pcgrad", "names not strings", _set(("names",), [1, 2]), "list of loss names"),
    (
        "pcgrad",
        "moments of another shape",
        lambda sd: _optimizer_state(sd)[0].update(exp_avg=torch.zeros(4, 3)),
        r"parameter 0 \(shape \(4, 2\)\): 'exp_avg' has shape \(4, 3\)",
    ),
    (
        "pcgrad",
        "state of another optimizer",
        lambda sd: _optimizer_state(sd).update({1: {"momentum_buffer": torch.zeros(4)}}),
        r"keys \['momentum_buffer'\].*Adam keeps",
    ),
    (
        "pcgrad",
        "broken generator",
        _set(("extra", "aggregator", "generator"), torch.zeros(3, dtype=torch.uint8)),
        "aggregator state does not fit",
    ),
    ("pcgrad", "extra not a mapping", _set(("extra",), 3), "'extra' must be a mapping"),
    (
        "nashmtl",
        "weights of 3 losses",
        _set(("extra", "aggregator", "alpha"), [1.0] * 3),
        "3 values",
    ),
    ("gradvac", "targets of 1 loss", _set(("extra", "aggregator", "targets"), [[0.0]]), "1 values"),
    ("dwa", "window of 3 losses", _set(("extra", "averages"), [[1.0, 2.0, 3.0]]), "3 values"),
    ("dwa", "count as text", _set(("extra", "window_count"), "x"), "must be a number"),
    ("dwa", "unknown entry", _set(("extra", "lambdas"), [1.0, 1.0]), "unknown entries"),
    ("softadapt", "text losses", _set(("extra", "previous"), ["a", "b"]), "must hold numbers"),
    (
        "gradnorm",
        "weights of 3 losses",
        lambda sd: sd["extra"]["weights"].update(values=torch.ones(3, dtype=torch.float64)),
        r"'weights'\['values'\] has shape \(3,\)",
    ),
    (
        "relobralo",
        "broken generator",
        _set(("extra", "generator"), torch.zeros(2)),
        "'generator' does not fit",
    ),
    ("fixed", "other losses", _set(("names",), ["residual", "data"]), "loss names do not fit"),
    (
        "m-config",
        "negative count",
        _set(("extra", "counts"), [-1, 2]),
        "'counts' must be an integer",
    ),
    (
        "m-config",
        "momenta of 3 losses",
        lambda sd: sd["extra"]["m"].append(sd["extra"]["m"][0]),
        "3 momenta",
    ),
    (
        "m-config",
        "reached of 5 parameters",
        _set(("extra", "reached"), torch.ones(5, dtype=torch.bool)),
        r"'reached' has shape \(5,\)",
    ),
    ("mtadam", "not from mtadam", _drop(("mtadam",)), "not made by MTAdam"),
    (
        "mtadam",
        "norms of 3 losses",
        lambda sd: sd["state"][0].update(norm_ema=torch.zeros(3)),
        r"parameter 0 \(shape \(4, 2\)\): 'norm_ema' has shape \(3,\)",
    ),
    (
        "mtadam",
        "two betas",
        _set(("param_groups", 0, "betas"), (0.9, 0.99)),
        "parameter group 0.*betas",
    ),
    ("mtadam", "states but no names", _set(("mtadam", "names"), None), "no loss names"),
    ("mtadam", "missing key", _drop(("state", 1, "norm_ema")), "state keys"),
    (
        "multiadam",
        "other grouping",
        _set(("autobalance", "layout", "state_names"), ["a", "b"]),
        "saved with states",
    ),
]


@pytest.mark.parametrize(
    ("name", "change", "match"),
    [(n, c, m) for n, _, c, m in METHOD_FAULTS],
    ids=[f"{n}-{d}" for n, d, _, _ in METHOD_FAULTS],
)
def test_every_method_refuses_each_fault_and_changes_nothing(
    name: str, change: Callable[[StateDict], None], match: str
) -> None:
    make = _method(name)
    state = _valid_state(make)
    change(state)
    assert_refused_and_unchanged(make, state, match)


def test_a_failure_while_applying_a_method_state_is_rolled_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make = _method("gradnorm")
    state = _valid_state(make)
    net, opt = _trained(make)
    before = copy.deepcopy(opt.state_dict())

    def broken(self: torch.optim.Optimizer, state_dict: StateDict) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(type(opt.optimizer), "load_state_dict", broken)
    with pytest.raises(StateDictError, match="disk on fire"):
        opt.load_state_dict(state)
    monkeypatch.undo()
    assert_same(opt.state_dict(), before)
    twin_net, twin = _trained(make)
    assert repr(opt.step(_losses(net, 7))) == repr(twin.step(_losses(twin_net, 7)))
    assert_same(net.state_dict(), twin_net.state_dict())


def test_state_dict_errors_are_autobalance_errors() -> None:
    assert issubclass(StateDictError, AutoBalanceError) and issubclass(StateDictError, ValueError)


# ----------------------------------------------------------------------------- the property
_TENSOR_PATHS = [("state", i, key) for i in range(4) for key in ("step", "exp_avg", "exp_avg_sq")]
_MUTATIONS = st.sampled_from(
    ["grow", "shrink", "flatten", "int", "float64", "none", "text", "drop"]
)


def _mutate(value: torch.Tensor, how: str) -> Any:
    if how == "grow":
        return torch.cat([value, value[..., :1]], dim=-1)
    if how == "shrink":
        return value[..., :-1] if value.shape[-1] > 1 else value.reshape(-1)[:0]
    if how == "flatten":
        return value.reshape(-1)
    if how == "int":
        return value.to(torch.int32)
    if how == "float64":
        return value.to(torch.float64)  # fits: cast on load, as torch.optim does
    return {"none": None, "text": "0.0"}[how]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(_TENSOR_PATHS), how=_MUTATIONS, base=st.sampled_from(["adamw", "sgd"]))
def test_any_corrupted_tensor_is_refused_cleanly_or_loads_and_steps(
    path: tuple[Any, ...], how: str, base: str
) -> None:
    """Property: a state dict with one tensor changed either loads (and the optimizer then
    steps normally), or raises StateDictError with the optimizer unchanged; never another
    error, never a half-loaded optimizer."""
    options = {"momentum": 0.9} if base == "sgd" else {}
    make = _method("autobalance", base=base, **options)
    state = _valid_state(make)
    if base == "sgd":  # the stock rule keeps states per loss: corrupt the first loss's one
        node = state["state"][path[1]]["per_state"]["residual"]
        key = "momentum_buffer" if path[2] != "step" else None
    else:
        node, key = state["state"][path[1]], path[2]
    if key is None:
        return
    if how == "drop":
        del node[key]
    else:
        node[key] = _mutate(node[key], how)
    net, opt = _trained(make)
    before = copy.deepcopy(opt.state_dict())
    try:
        opt.load_state_dict(state)
    except StateDictError:
        assert_same(opt.state_dict(), before)
        return
    params = copy.deepcopy(net.state_dict())
    info = opt.step(_losses(net, 7))
    assert not info.skipped and _moved(params, net)
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_mtadam_before_the_first_step_loads_and_refuses_states_without_names() -> None:
    net = _net(4)
    fresh = MTAdam(net.parameters())
    empty = copy.deepcopy(fresh.state_dict())
    other = MTAdam(_net(4).parameters())
    other.load_state_dict(empty)  # a state saved before the first step fits
    assert other.state_dict()["mtadam"] == {"names": None, "steps": 0}
