"""Phase specifications: text and mapping forms, validation, the catalogue."""

from __future__ import annotations

import pytest

from autobalance.errors import ConfigError, UnknownNameError
from autobalance.phases import (
    PHASES,
    SCHEDULE_DEFAULTS,
    LBFGSPhase,
    PhaseSpec,
    parse_phase,
    phase_from_mapping,
)


def test_catalogue_lists_every_phase() -> None:
    assert PHASES.names() == ["bfgs", "engd", "gauss_newton", "lbfgs", "ssbfgs", "ssbroyden"]
    for entry in PHASES.describe():
        assert entry.summary  # a one-line description from the docstring


def test_text_spec_gives_validated_and_complete_options() -> None:
    spec = parse_phase("lbfgs:iters=5000,history=20,lr=1")
    assert spec.name == "lbfgs" and spec.iters == 5000
    assert spec.options == {**PHASES.parameters("lbfgs"), "history": 20, "lr": 1.0}
    assert isinstance(spec.options["lr"], float)
    assert (spec.redraw_every, spec.max_evals, spec.max_seconds) == (0, 0, 0.0)


def test_values_are_read_as_numbers_booleans_and_words() -> None:
    spec = parse_phase(
        "gauss_newton:damping=1e-4,adaptive_damping=false,line_search=grid,redraw_every=100"
    )
    assert spec.options["damping"] == 1e-4
    assert spec.options["adaptive_damping"] is False
    assert spec.options["line_search"] == "grid"
    assert spec.redraw_every == 100


@pytest.mark.parametrize(
    "text",
    [
        "lbfgs",
        "lbfgs:iters=5000,history=20",
        "ssbroyden:iters=2000,redraw_every=500,max_seconds=60.0",
        "gauss_newton:damping=0.01,line_search=grid,adaptive_damping=false",
        "engd:max_evals=300,rcond=1e-10",
    ],
)
def test_text_form_round_trips(text: str) -> None:
    spec = parse_phase(text)
    assert parse_phase(str(spec)) == spec
    assert phase_from_mapping(spec.to_mapping()) == spec


def test_mapping_form_is_the_same_as_text() -> None:
    from_text = parse_phase("ssbfgs:iters=300,c2=0.5")
    from_mapping = phase_from_mapping({"name": "ssbfgs", "iters": 300, "c2": 0.5})
    assert from_text == from_mapping
    assert str(from_text) == "ssbfgs:iters=300,c2=0.5"


def test_unknown_key_is_named_and_the_valid_ones_listed() -> None:
    with pytest.raises(ConfigError) as info:
        parse_phase("lbfgs:histroy=5")
    message = str(info.value)
    assert "'histroy'" in message and "Did you mean 'history'" in message
    for key in [*SCHEDULE_DEFAULTS, *PHASES.parameters("lbfgs")]:
        assert key in message


def test_unknown_phase_suggests_the_closest() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'ssbroyden'"):
        parse_phase("ssbroydn:iters=3")
    with pytest.raises(ConfigError, match="'name'"):
        phase_from_mapping({"iters": 3})


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("lbfgs:iters5000", "'iters5000' is not key=value"),
        ("lbfgs:iters=3,iters=4", "'iters' is given twice"),
        ("lbfgs:iters=0", "'iters' must be >= 1"),
        ("lbfgs:iters=2.5", "'iters' must be an integer"),
        ("lbfgs:redraw_every=-1", "'redraw_every' must be >= 0"),
        ("gauss_newton:adaptive_damping=3", "must be true or false"),
        ("ssbfgs:c1=0.95", "0 < c1 < c2 < 1"),
        ("engd:grid=-1", "grid must be >= 0"),
        ("", "non-empty"),
    ],
)
def test_bad_specs_are_refused_with_the_reason(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_phase(text)


def test_spec_is_a_plain_value() -> None:
    spec = PhaseSpec(name="lbfgs", options=PHASES.parameters("lbfgs"))
    assert str(spec) == "lbfgs"
    assert PHASES.get("lbfgs") is LBFGSPhase
