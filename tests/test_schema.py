"""Inputs: -p parsing, coercion by the schema, the check before spending, the estimate."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pixeldojo_cli.api.results import parse_model
from pixeldojo_cli.core.errors import UsageError
from pixeldojo_cli.emulator.catalogue import build_catalogue, charge_for
from pixeldojo_cli.inputs.schema import (
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


# --- the whole JSON Schema, before anything is spent -----------------------------------

KONTEXT = CATALOGUE["flux-kontext-pro"]["requestSchema"]
URL = "https://example.com/a.png"


@pytest.mark.parametrize(
    "model_id, inputs, message",
    [
        ("flux-dev", {"prompt": ""}, "prompt must not be empty"),
        ("flux-kontext-pro", {"prompt": "x", "image_urls": [URL] * 11}, "at most 10 items"),
        (
            "flux-kontext-pro",
            {"prompt": "x", "image_urls": [URL, "not a url"]},
            "image_urls[1] must be a URI",
        ),
        ("flux-dev", {"prompt": "x", "lora_url": "weights.safetensors"}, "lora_url must be a URI"),
        ("flux-kontext-pro", {"prompt": "x", "image_urls": [URL, 3]}, "must be of type string"),
        ("seedance-1.5", {"prompt": "x", "image_url": "two words"}, "image_url must be a URI"),
    ],
)
def test_what_the_api_would_refuse_is_refused_before_anything_is_spent(
    emulator: Any, model_id: str, inputs: dict[str, Any], message: str
) -> None:
    import httpx

    with pytest.raises(UsageError, match=re.escape(message)) as info:
        validate_inputs(CATALOGUE[model_id]["requestSchema"], inputs)
    assert info.value.exit_code == 2
    answer = httpx.post(  # and the API (the emulator) refuses it too: the check is no stricter
        f"{emulator.base_url}/models/{model_id}/run",
        json=inputs,
        headers={"Authorization": "Bearer test-key-0123456789abcdef"},
    )
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "validation_error"
    assert not emulator.jobs


@pytest.mark.parametrize(
    "model_id, inputs",
    [
        ("flux-kontext-pro", {"prompt": "x", "image_urls": [URL] * 10}),
        ("flux-dev", {"prompt": "x", "lora_url": "https://h/w.safetensors", "guidance": 2.5}),
        ("seedance-1.5", {"prompt": "x", "duration": 12, "resolution": "720p"}),
    ],
)
def test_what_the_api_accepts_passes(emulator: Any, model_id: str, inputs: dict[str, Any]) -> None:
    import httpx

    validate_inputs(CATALOGUE[model_id]["requestSchema"], inputs)
    answer = httpx.post(
        f"{emulator.base_url}/models/{model_id}/run",
        json=inputs,
        headers={"Authorization": "Bearer test-key-0123456789abcdef"},
    )
    assert answer.status_code == 200, answer.text


def test_dry_run_refuses_an_empty_prompt(cli: Any, emulator: Any) -> None:
    result = cli("run", "flux-dev", "", "--dry-run")
    assert result.exit_code == 2, result.output
    assert "prompt must not be empty" in result.output
    assert not emulator.requests_to("POST")


def test_every_keyword_of_the_catalogue_is_checked() -> None:
    from pixeldojo_cli.inputs import formats as format_checks

    checked = {
        "type", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
        "multipleOf", "minLength", "maxLength", "pattern", "format", "items", "prefixItems",
        "additionalItems", "minItems", "maxItems", "uniqueItems", "contains", "minContains",
        "maxContains", "properties", "patternProperties", "additionalProperties", "required",
        "minProperties", "maxProperties", "propertyNames", "dependentRequired",
        "dependentSchemas", "dependencies", "allOf", "anyOf", "oneOf", "not", "if", "then",
        "else", "$ref",
    }  # fmt: skip
    annotations = {"description", "default", "title", "examples"}
    used: set[str] = set()
    formats: set[str] = set()
    for model in CATALOGUE.values():
        stack = [model["requestSchema"]]
        while stack:
            node = stack.pop()
            used.update(node)
            formats.update([node["format"]] if "format" in node else [])
            stack.extend(node.get("properties", {}).values())
            stack.extend([node["items"]] if isinstance(node.get("items"), dict) else [])
    assert used - annotations <= checked
    assert formats <= set(format_checks.FORMATS)


@pytest.mark.parametrize(
    "schema, good, bad, message",
    [
        ({"type": "string", "maxLength": 3}, "abc", "abcd", "at most 3 characters"),
        ({"type": "string", "minLength": 2}, "ab", "a", "at least 2 characters"),
        ({"type": "string", "pattern": "^[a-z]+$"}, "abc", "aBc", "must match the pattern"),
        ({"type": "array", "minItems": 1}, [1], [], "at least 1 item"),
        ({"type": "array", "uniqueItems": True}, [1, True], [1, 1.0], "must not repeat items"),
        ({"type": "number", "exclusiveMinimum": 0}, 0.5, 0, "greater than 0"),
        ({"type": "number", "exclusiveMaximum": 1}, 0.5, 1, "less than 1"),
        ({"type": "number", "minimum": 0, "exclusiveMinimum": True}, 1, 0, "greater than 0"),
        ({"type": "number", "multipleOf": 0.1}, 0.3, 0.35, "multiple of 0.1"),
        ({"type": "integer"}, 2.0, 2.5, "of type integer"),
        ({"enum": [1, "a"]}, 1.0, True, "must be one of"),
        ({"const": {"a": [1]}}, {"a": [1.0]}, {"a": [2]}, "must be"),
        (
            {"type": "string", "format": "date-time"},
            "2025-01-23T12:00:00Z",
            "2025-13-01T00:00:00Z",
            "date and time",
        ),
        ({"type": "string", "format": "email"}, "a@b.co", "a@b", "email"),
        (
            {"type": "string", "format": "uuid"},
            "12345678-1234-1234-1234-123456789abc",
            "1234",
            "UUID",
        ),
        ({"type": "string", "format": "ipv4"}, "10.0.0.1", "10.0.0.256", "IPv4"),
        (
            {"type": "object", "properties": {"a": {"type": "object", "required": ["b"]}}},
            {"a": {"b": 1}},
            {"a": {}},
            "a.b is required",
        ),
        (
            {"type": "object", "additionalProperties": {"type": "integer"}},
            {"x": 1},
            {"x": "1"},
            "x must be of type integer",
        ),
        (
            {
                "type": "object",
                "patternProperties": {"^n_": {"type": "number"}},
                "additionalProperties": False,
            },
            {"n_1": 1},
            {"m": 1},
            "m is not an allowed property",
        ),
        (
            {"type": "object", "propertyNames": {"maxLength": 2}},
            {"ab": 1},
            {"abc": 1},
            "not an allowed name",
        ),
        ({"type": "object", "maxProperties": 1}, {"a": 1}, {"a": 1, "b": 2}, "at most 1 property"),
        (
            {"dependentRequired": {"a": ["b"]}},
            {"a": 1, "b": 2},
            {"a": 1},
            "b is required when a is given",
        ),
        ({"dependencies": {"a": {"required": ["c"]}}}, {"a": 1, "c": 1}, {"a": 1}, "c is required"),
        (
            {"type": "array", "prefixItems": [{"type": "string"}], "items": False},
            ["a"],
            ["a", 1],
            "[1] is not allowed",
        ),
        (
            {"type": "array", "items": [{"type": "string"}], "additionalItems": False},
            ["a"],
            ["a", "b"],
            "[1] is not allowed",
        ),
        (
            {"type": "array", "contains": {"type": "integer"}, "maxContains": 1},
            ["a", 1],
            [1, 2],
            "at most 1 matching item",
        ),
        ({"anyOf": [{"type": "string"}, {"type": "integer"}]}, 1, 1.5, "any of the forms"),
        ({"oneOf": [{"minimum": 0}, {"maximum": 10}]}, 20, 5, "more than one"),
        ({"not": {"type": "null"}}, 0, None, "not allowed here"),
        (
            {"if": {"properties": {"k": {"const": "video"}}}, "then": {"required": ["d"]}},
            {"k": "video", "d": 1},
            {"k": "video"},
            "d is required",
        ),
        (
            {
                "$defs": {"url": {"type": "string", "format": "uri"}},
                "properties": {"u": {"$ref": "#/$defs/url"}},
            },
            {"u": URL},
            {"u": "x y"},
            "u must be a URI",
        ),
        (
            {"definitions": {"n": {"maximum": 3}}, "items": {"$ref": "#/definitions/n"}},
            [3],
            [4],
            "[0] must be at most 3",
        ),
        ({"properties": {"a": False}}, {"b": 1}, {"a": 1}, "a is not allowed"),
    ],
)
def test_each_keyword_is_checked(schema: Any, good: Any, bad: Any, message: str) -> None:
    from pixeldojo_cli.inputs.validator import schema_problems

    assert schema_problems(schema, good) == []
    problems = schema_problems(schema, bad)
    assert problems and message in "; ".join(str(p) for p in problems)


def test_numbers_compare_as_json_does() -> None:
    from pixeldojo_cli.inputs.json_values import json_equal

    assert json_equal(1, 1.0) and json_equal([{"a": 1}], [{"a": 1.0}])
    assert not json_equal(True, 1) and not json_equal(0, False) and not json_equal("1", 1)


def test_values_nested_beyond_reason_are_refused_without_a_recursion_error() -> None:
    from pixeldojo_cli.inputs.validator import MAX_DEPTH, schema_problems

    deep: Any = "x"
    for _ in range(100_000):
        deep = [deep]
    [problem] = schema_problems({"type": "object"}, {"prompt": deep})
    assert f"more than {MAX_DEPTH} levels" in str(problem)
    with pytest.raises(UsageError, match="levels deep"):
        validate_inputs({"properties": {"data": {"type": "array"}}}, {"data": deep})


def test_a_schema_that_refers_to_itself_ends() -> None:
    from pixeldojo_cli.inputs.validator import schema_problems

    loop = {"anyOf": [{"$ref": "#"}, {"$ref": "#"}], "type": "string"}
    assert schema_problems(loop, 1)  # the type fails; the loop is cut, not followed for ever
    assert schema_problems({"$ref": "#"}, 1) == []
    assert schema_problems({"$ref": "https://elsewhere/schema.json"}, 1) == []  # not ours to judge


def test_huge_values_are_checked_quickly_and_plainly() -> None:
    from pixeldojo_cli.inputs.validator import schema_problems

    [problem] = schema_problems({"type": "string", "maxLength": 10}, "x" * 10_000_000)
    assert "at most 10 characters" in str(problem)
    [problem] = schema_problems({"type": "array", "uniqueItems": True}, [*range(100_000), 5])
    assert "must not repeat items" in str(problem)
    assert schema_problems({"type": "number", "maximum": 1}, 10**400)  # no OverflowError
    assert schema_problems({"multipleOf": 1e-308}, 1e308) == []


def test_a_pattern_python_cannot_read_is_left_to_the_api() -> None:
    from pixeldojo_cli.inputs.validator import schema_problems

    assert schema_problems({"type": "string", "pattern": r"^\p{L}+$"}, "abc") == []


# Differential check against a reference validator (a test-only dependency).
_KEYS = st.sampled_from(["a", "b", "c"])
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-4, 12)
    | st.integers(-20, 20).map(lambda n: n / 4)
    | st.text(alphabet="ab1 ", max_size=4)
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=3),
    max_leaves=8,
)
_TYPES = st.sampled_from(["null", "boolean", "integer", "number", "string", "array", "object"])
_SMALL = st.integers(0, 4)
_LEAF = st.fixed_dictionaries(
    {},
    optional={
        "type": _TYPES | st.lists(_TYPES, min_size=1, max_size=3, unique=True),
        "minimum": st.integers(-3, 8),
        "maximum": st.integers(-3, 8),
        "exclusiveMinimum": st.integers(-3, 8),
        "exclusiveMaximum": st.integers(-3, 8),
        "multipleOf": st.integers(1, 4),
        "minLength": _SMALL,
        "maxLength": _SMALL,
        "pattern": st.sampled_from(["^a", "b$", "[0-9]", "^$", "a|1"]),
        "minItems": _SMALL,
        "maxItems": _SMALL,
        "uniqueItems": st.booleans(),
        "minProperties": _SMALL,
        "maxProperties": _SMALL,
        "required": st.lists(_KEYS, max_size=3, unique=True),
        "enum": st.lists(_VALUES, min_size=1, max_size=3),
        "const": _VALUES,
        "dependentRequired": st.dictionaries(
            _KEYS, st.lists(_KEYS, max_size=2, unique=True), max_size=2
        ),
    },
)


def _extend(inner: Any) -> Any:
    return st.tuples(
        _LEAF,
        st.fixed_dictionaries(
            {},
            optional={
                "items": inner,
                "prefixItems": st.lists(inner, max_size=2),
                "contains": inner,
                "minContains": _SMALL,
                "maxContains": _SMALL,
                "properties": st.dictionaries(_KEYS, inner, max_size=2),
                "patternProperties": st.dictionaries(
                    st.sampled_from(["^a", "b"]), inner, max_size=1
                ),
                "additionalProperties": inner,
                "propertyNames": inner,
                "dependentSchemas": st.dictionaries(_KEYS, inner, max_size=1),
                "allOf": st.lists(inner, min_size=1, max_size=2),
                "anyOf": st.lists(inner, min_size=1, max_size=2),
                "oneOf": st.lists(inner, min_size=1, max_size=2),
                "not": inner,
                "if": inner,
                "then": inner,
                "else": inner,
            },
        ),
    ).map(lambda parts: {**parts[0], **parts[1]})


_SCHEMAS = st.recursive(st.booleans() | _LEAF, _extend, max_leaves=6)


@given(_SCHEMAS, _VALUES)
def test_the_check_agrees_with_a_reference_validator(schema: Any, value: Any) -> None:
    import jsonschema

    from pixeldojo_cli.inputs.validator import schema_problems

    reference = jsonschema.Draft202012Validator(schema)
    assert (schema_problems(schema, value) == []) == reference.is_valid(value)
