"""Inputs: -p parsing, coercion by the schema, the check before spending, the estimate."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pixeldojo_cli.emulator.catalogue import build_catalogue, charge_for
from pixeldojo_cli.errors import UsageError
from pixeldojo_cli.results import parse_model
from pixeldojo_cli.schema import (
    build_inputs,
    coerce_scalar,
    estimate_cost,
    parse_assignment,
    validate_inputs,
)

CATALOGUE = build_catalogue()
FLUX = CATALOGUE["flux-dev"]["requestSchema"]


def test_assignment_forms() -> None:
    assert parse_assignment("a=b=c") == ("a", "b=c", False)
    assert parse_assignment("n:=[1,2]") == ("n", "[1,2]", True)
    assert parse_assignment("ratio=16:9") == ("ratio", "16:9", False)
    with pytest.raises(UsageError):
        parse_assignment("novalue")


@pytest.mark.parametrize(
    "kind, raw, value",
    [
        ("integer", "42", 42),
        ("integer", "-3", -3),
        ("number", "1.5", 1.5),
        ("number", "2", 2),
        ("boolean", "true", True),
        ("boolean", "off", False),
        ("string", "16:9", "16:9"),
    ],
)
def test_coercion(kind: str, raw: str, value: Any) -> None:
    assert coerce_scalar(kind, raw, "x") == value


@pytest.mark.parametrize(
    "kind, raw",
    [
        ("integer", "1.5"),
        ("integer", "1e3"),
        ("number", "nan"),
        ("number", "inf"),
        ("boolean", "maybe"),
        ("integer", ""),
    ],
)
def test_coercion_rejects(kind: str, raw: str) -> None:
    with pytest.raises(UsageError):
        coerce_scalar(kind, raw, "x")


@given(st.sampled_from(["integer", "number", "boolean", "string", "array", None]), st.text())
def test_any_string_gives_a_typed_value_or_a_usage_error(kind: str | None, raw: str) -> None:
    try:
        value = coerce_scalar(kind, raw, "x")
    except UsageError:
        return
    if kind == "integer":
        assert isinstance(value, int)
    elif kind == "number":
        assert isinstance(value, int | float) and math.isfinite(value)
    elif kind == "boolean":
        assert isinstance(value, bool)


@given(st.lists(st.text(), max_size=5))
def test_any_p_arguments_give_inputs_or_a_usage_error(args: list[str]) -> None:
    try:
        inputs = build_inputs(FLUX, prompt="x", assignments=args)
        validate_inputs(FLUX, inputs)
    except UsageError as exc:
        assert exc.exit_code == 2


def test_json_literal_rejects_nan() -> None:
    with pytest.raises(UsageError):
        build_inputs(FLUX, assignments=["guidance:=NaN"])


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(UsageError, match="Did you mean 'num_outputs'"):
        build_inputs(FLUX, assignments=["num_output=2"])


def test_reserved_webhook_url_is_not_an_unknown_parameter() -> None:
    validate_inputs(FLUX, {"prompt": "x", "webhook_url": "http://h"})


@pytest.mark.parametrize(
    "model_id, inputs",
    [
        ("flux-dev", {}),
        ("flux-dev", {"num_outputs": 3}),
        ("flux-2-pro", {"resolution": "4 MP"}),
        ("nano-banana-pro", {"resolution": "4K", "num_outputs": 2}),
        ("seedance-1.5", {"duration": 7}),
        ("wan-2.6-flash", {"resolution": "1080p", "duration": 4}),
        ("wan-2.2-plus", {}),
        ("seedance-1.5", {}),
    ],
)
def test_estimate_matches_what_the_emulator_charges(model_id: str, inputs: dict[str, Any]) -> None:
    raw = CATALOGUE[model_id]
    model = parse_model(raw)
    assert estimate_cost(model, raw["requestSchema"], inputs) == charge_for(raw, inputs)
