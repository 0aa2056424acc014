"""The generic catalog and the parameter rules: messages, order, coercion, properties."""

from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autobalance import nets, problems, variants
from autobalance._params import (
    AtLeast,
    Between,
    EvenAtLeast,
    Finite,
    MultipleOf,
    NonNegative,
    OneOf,
    Positive,
    check_params,
    coerce,
    param,
    validate,
)
from autobalance.catalog import Catalog, factory_parameters
from autobalance.errors import ConfigError, HyperparameterError, UnknownNameError


@dataclass
class _Spec:
    """A test component: positional fields, then keyword-only ones."""

    size: int = param(3, AtLeast(1))
    rate: float = param(0.5, Between(0.0, 1.0, closed="(]"))
    _: KW_ONLY
    tags: list[str] = field(default_factory=lambda: ["a"])
    mode: str = param("fast", OneOf(("fast", "slow")))

    def __post_init__(self) -> None:
        validate("thing 'spec'", self)


def _make(width: int, depth: int = 2, *, scale: float = 1.0) -> tuple[int, int, float]:
    """Makes a triple."""
    return width, depth, scale


@pytest.fixture
def catalog() -> Catalog[Any]:
    out: Catalog[Any] = Catalog("thing", skip=("width",))
    out.add("spec", _Spec, family="b")
    out.add("make", _make, summary="by hand", family="a")
    return out


# --- the catalog --------------------------------------------------------------------------------


def test_names_entries_and_description(catalog: Catalog[Any]) -> None:
    assert catalog.names() == ["make", "spec"] and list(catalog) == ["make", "spec"]
    assert catalog.names(family="b") == ["spec"] and len(catalog) == 2 and "spec" in catalog
    assert catalog.get("make") is _make
    assert [(e.name, e.summary) for e in catalog.describe()] == [
        ("make", "by hand"),
        ("spec", "A test component: positional fields, then keyword-only ones."),
    ]
    with pytest.raises(UnknownNameError, match="unknown thing 'spek'. Did you mean 'spec'"):
        catalog.get("spek")
    with pytest.raises(ValueError, match="thing 'spec' is already in the catalog"):
        catalog.add("spec", _Spec)
    with pytest.raises(TypeError, match="must be callable"):
        catalog.add("three", 3)  # type: ignore[arg-type]
    catalog.remove("make")
    assert catalog.names() == ["spec"]
    with pytest.raises(UnknownNameError):
        catalog.remove("make")


def test_parameters_follow_the_signature(catalog: Catalog[Any]) -> None:
    # A dataclass: positional fields first, then the keyword-only ones; a default factory is
    # called; the owner's arguments (skip) and arguments without a default are left out.
    assert list(catalog.parameters("spec").items()) == [
        ("size", 3),
        ("rate", 0.5),
        ("tags", ["a"]),
        ("mode", "fast"),
    ]
    assert catalog.parameters("make") == {"depth": 2, "scale": 1.0}
    assert factory_parameters(_make) == {"depth": 2, "scale": 1.0}
    assert factory_parameters(_make, skip=("depth",)) == {"scale": 1.0}


def test_parameters_from_another_callable() -> None:
    def build(**params: Any) -> dict[str, Any]:
        return params

    catalog: Catalog[Any] = Catalog("thing")
    catalog.add("built", build, parameters_from=_Spec)
    assert list(catalog.parameters("built")) == ["size", "rate", "tags", "mode"]
    assert catalog.create("built", size=4.0)["size"] == 4  # checked against _Spec's defaults
    with pytest.raises(ConfigError, match="thing 'built': unknown parameter 'colour'"):
        catalog.create("built", colour=1)


def test_create_checks_coerces_and_passes_the_owners_arguments(catalog: Catalog[Any]) -> None:
    assert catalog.create("make", 5, depth=3.0) == (5, 3, 1.0)  # 3.0 → 3, scale filled in
    assert catalog.create("make", width=7) == (7, 2, 1.0)  # width: the owner's, unchecked
    assert catalog.check("make", {"scale": 2}) == {"depth": 2, "scale": 2.0}
    with pytest.raises(ConfigError, match="thing 'make': parameter 'depth' must be an integer"):
        catalog.create("make", 5, depth=2.5)
    with pytest.raises(ConfigError, match=r"unknown parameter 'dept'. Did you mean 'depth'"):
        catalog.create("make", 5, dept=1)
    spec = catalog.create("spec", size=2, tags=["x", "y"])
    assert (spec.size, spec.rate, spec.tags, spec.mode) == (2, 0.5, ["x", "y"], "fast")


# --- rules and validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "value", "message"),
    [
        (Finite(), math.nan, "w: 'k' must be a finite number, got nan"),
        (NonNegative(), -1.0, "w: 'k' must be a finite number >= 0, got -1.0"),
        (NonNegative(), math.inf, "w: 'k' must be a finite number >= 0, got inf"),
        (Positive("wave speed"), 0.0, "w: wave speed 'k' must be > 0, got 0.0"),
        (AtLeast(2), 1, "w: 'k' must be >= 2, got 1"),
        (AtLeast(1, "mode"), 0, "w: mode 'k' must be an integer >= 1, got 0"),
        (MultipleOf(2, "half on each side"), 3, "w: 'k' must be even (half on each side), got 3"),
        (MultipleOf(4, "per edge"), 6, "w: 'k' must be a multiple of 4 (per edge), got 6"),
        (EvenAtLeast(16), 15, "w: 'k' must be even and >= 16, got 15"),
        (EvenAtLeast(16), 14, "w: 'k' must be even and >= 16, got 14"),
        (OneOf(("a", "b")), "c", "w: 'k' must be one of 'a', 'b', got 'c'"),
    ],
)
def test_rules_reject_with_their_message(rule: Any, value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        rule.check("w", "k", value)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("closed", "inside", "outside"),
    [
        ("[]", [0.0, 1.0], [-0.1, 1.1]),
        ("[)", [0.0], [1.0]),
        ("(]", [1.0], [0.0]),
        ("()", [0.5], [0.0, 1.0]),
    ],
)
def test_between_honours_open_and_closed_ends(
    closed: str, inside: list[float], outside: list[float]
) -> None:
    rule = Between(0.0, 1.0, closed=closed)
    for value in inside:
        rule.check("w", "k", value)
    for value in [*outside, math.nan]:
        with pytest.raises(HyperparameterError, match=rf"'k' must lie in \{closed[0]}0.0, 1.0"):
            rule.check("w", "k", value)


def test_rules_accept_values_that_satisfy_them() -> None:
    for rule, value in [
        (Finite(), -3.0),
        (NonNegative(), 0.0),
        (Positive("x"), 1e-300),
        (AtLeast(2), 2),
        (MultipleOf(4, "why"), 8),
        (EvenAtLeast(16), 16),
        (OneOf(("a",)), "a"),
        (Between(0.0), 5.0),
    ]:
        rule.check("w", "k", value)


def test_validate_coerces_then_checks_in_declaration_order() -> None:
    spec = _Spec(2.0, 1)  # type: ignore[arg-type]
    assert spec.size == 2 and isinstance(spec.size, int) and spec.rate == 1.0
    assert isinstance(spec.rate, float)
    with pytest.raises(ConfigError, match="thing 'spec': 'size' must be >= 1, got 0"):
        _Spec(0, 0.0)  # size is checked before rate
    with pytest.raises(HyperparameterError, match="'rate' must lie in"):
        _Spec(1, 0.0)
    with pytest.raises(ConfigError, match="parameter 'size' must be an integer, got 1.5"):
        _Spec(1.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="'mode' must be one of 'fast', 'slow', got 'warp'"):
        _Spec(mode="warp")


def test_validate_works_on_frozen_dataclasses() -> None:
    @dataclass(frozen=True)
    class Frozen:
        n: int = param(4, AtLeast(1))

    frozen = Frozen(n=3.0)  # type: ignore[arg-type]
    validate("frozen", frozen)
    assert frozen.n == 3 and isinstance(frozen.n, int)
    with pytest.raises(dataclasses.FrozenInstanceError):
        frozen.n = 5  # type: ignore[misc]


@given(st.integers(-(2**53), 2**53))
def test_coerce_is_lossless_for_integers(value: int) -> None:
    assert coerce("w", "k", value, 1) == value
    assert coerce("w", "k", float(value), 1) == value
    assert coerce("w", "k", value, 1.0) == float(value)


@given(st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: not v.is_integer()))
def test_coerce_refuses_fractional_integers(value: float) -> None:
    with pytest.raises(ConfigError, match="must be an integer"):
        coerce("w", "k", value, 1)


@given(
    st.dictionaries(
        st.sampled_from(["a", "b", "c"]),
        st.one_of(st.integers(-5, 5), st.floats(-5, 5).map(float)),
    )
)
def test_check_params_is_idempotent(params: dict[str, Any]) -> None:
    defaults = {"a": 1.0, "b": 2.5, "c": 0.0}
    once = check_params("w", defaults, params)
    assert list(once) == list(defaults) and all(isinstance(v, float) for v in once.values())
    assert check_params("w", defaults, once) == once


# --- the three catalogues -----------------------------------------------------------------------


@pytest.mark.parametrize("name", problems.names())
def test_problem_parameters_are_the_dataclass_fields_in_order(name: str) -> None:
    cls = problems.get(name)
    defaults = problems.parameters(name)
    assert list(defaults) == list(inspect.signature(cls).parameters)
    assert cls.name == name
    problem = problems.create(name)
    assert problem.params == defaults and list(problem.params) == list(defaults)
    assert problems.create(name, **problem.params).params == defaults
    assert repr(problem).startswith(f"{cls.__name__}(") and all(
        k in repr(problem) for k in defaults
    )
    with pytest.raises(ConfigError, match=rf"problem '{name}': unknown parameter 'bogus'"):
        problems.create(name, bogus=1)


@pytest.mark.parametrize("name", nets.names())
def test_network_parameters_are_its_config_fields(name: str) -> None:
    cls = nets.CATALOG.get(name)
    assert cls.name == name
    assert list(nets.parameters(name)) == list(inspect.signature(cls.Config).parameters)
    model = nets.create(name, 2, 1, width=3)
    assert model.config == cls.Config(**{**nets.parameters(name), "width": 3})
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.config.width = 4  # type: ignore[misc]
    with pytest.raises(ConfigError, match=rf"network '{name}': 'in_dim' must be >= 1, got 0"):
        nets.create(name, 0, 1)


@pytest.mark.parametrize("name", variants.names())
def test_variant_parameters_are_its_fields(name: str) -> None:
    cls = variants.CATALOG.get(name)
    assert cls.name == name
    assert list(variants.parameters(name)) == list(inspect.signature(cls).parameters)
    variant = variants.create(name)
    assert (
        repr(variant)
        == f"{cls.__name__}("
        + ", ".join(f"{k}={v!r}" for k, v in variants.parameters(name).items())
        + ")"
    )
