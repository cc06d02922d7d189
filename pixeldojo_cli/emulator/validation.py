"""The emulator's own check of a job's inputs against the model's schema, as
the API would refuse them: only the keywords its catalogue uses, and never the
client's code (it must not be able to share the client's bugs).
"""

from __future__ import annotations

import json
import re
from typing import Any

from pixeldojo_cli.emulator.data_uris import data_uri_problem
from pixeldojo_cli.emulator.messages import APIProblem


def validate(model: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """The inputs of a submitted `body` (all but `webhook_url`), or the 400 problem."""
    schema = model["requestSchema"]
    props: dict[str, Any] = schema["properties"]
    inputs = {k: v for k, v in body.items() if k != "webhook_url"}
    for name, value in inputs.items():
        spec = props.get(name)
        if spec is None:
            raise APIProblem(400, "validation_error", f"Unknown parameter '{name}'.")
        problem = _check(spec, value)
        if problem:
            raise APIProblem(400, "validation_error", f"Invalid '{name}': {problem}.")
    for name in schema.get("required", []):
        if name not in inputs or inputs[name] in ("", None):
            raise APIProblem(400, "validation_error", f"'{name}' is required.")
    return inputs


_TYPES: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}
# What a `format: uri` value must look like: a scheme, then something, no spaces.
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s]+")


def _check(spec: dict[str, Any], value: Any, depth: int = 0) -> str | None:
    """The emulator's own check of one value against the keywords its catalogue
    uses (as the API would refuse it); never the client's code."""
    if depth > 32:
        return "nested too deeply"
    kinds = spec.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds] if kinds else []
    if kinds and not any(_TYPES.get(str(kind), lambda v: True)(value) for kind in kinds):
        return f"expected {'/'.join(map(str, kinds))}"
    if "enum" in spec and not any(
        (value == allowed and type(value) is type(allowed)) or _both_numbers(value, allowed)
        for allowed in spec["enum"]
    ):
        return "must be one of " + ", ".join(map(str, spec["enum"]))
    if _TYPES["number"](value):
        return _check_number(spec, value)
    if isinstance(value, str):
        return _check_string(spec, value)
    if isinstance(value, list):
        return _check_array(spec, value, depth)
    return None


def _both_numbers(a: Any, b: Any) -> bool:
    return bool(_TYPES["number"](a) and _TYPES["number"](b) and a == b)


def _check_number(spec: dict[str, Any], value: float) -> str | None:
    if "minimum" in spec and value < spec["minimum"]:
        return f"must be >= {spec['minimum']}"
    if "maximum" in spec and value > spec["maximum"]:
        return f"must be <= {spec['maximum']}"
    if "exclusiveMinimum" in spec and value <= spec["exclusiveMinimum"]:
        return f"must be > {spec['exclusiveMinimum']}"
    if "exclusiveMaximum" in spec and value >= spec["exclusiveMaximum"]:
        return f"must be < {spec['exclusiveMaximum']}"
    return None


def _check_string(spec: dict[str, Any], value: str) -> str | None:
    if "minLength" in spec and len(value) < spec["minLength"]:
        return "must not be empty" if spec["minLength"] == 1 else "is too short"
    if "maxLength" in spec and len(value) > spec["maxLength"]:
        return f"at most {spec['maxLength']} characters"
    if "pattern" in spec and re.search(spec["pattern"], value) is None:
        return f"must match {spec['pattern']}"
    if spec.get("format") == "uri" and value.startswith("data:"):
        return data_uri_problem(value)
    if spec.get("format") == "uri" and not _URI.fullmatch(value):
        return "must be a URI"
    return None


def _check_array(spec: dict[str, Any], value: list[Any], depth: int) -> str | None:
    if "minItems" in spec and len(value) < spec["minItems"]:
        return f"at least {spec['minItems']} items"
    if "maxItems" in spec and len(value) > spec["maxItems"]:
        return f"at most {spec['maxItems']} items"
    if spec.get("uniqueItems") and len({json.dumps(v, sort_keys=True) for v in value}) < len(value):
        return "items must be unique"
    items = spec.get("items")
    if isinstance(items, dict):
        for n, item in enumerate(value):
            problem = _check(items, item, depth + 1)
            if problem:
                return f"item {n}: {problem}"
    return None
