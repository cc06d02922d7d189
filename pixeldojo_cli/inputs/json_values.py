"""JSON values as JSON Schema sees them: types, equality (`1` equals `1.0`,
`true` is not `1`), nesting depth, and how a value is named in a message."""

from __future__ import annotations

import json
import math
from typing import Any, TypeGuard

# No set of inputs nests anywhere near this deep.
MAX_DEPTH = 64


def is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_integer(value: Any) -> TypeGuard[int | float]:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value) and value.is_integer()


TYPE_CHECKS: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    "integer": is_integer,
    "number": lambda v: is_number(v) and (not isinstance(v, float) or math.isfinite(v)),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if is_number(value):
        return "integer" if is_integer(value) else "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _canonical(value: Any) -> Any:
    """A form in which equal JSON values are equal Python values of one shape
    (`1.0` -> `1`); bounded by the depth check done before."""
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        return int(value)
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    return value


def unique_key(value: Any) -> str:
    return json.dumps(_canonical(value), sort_keys=True, default=str)


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON means it: `1 == 1.0`, but `true != 1`."""
    return unique_key(a) == unique_key(b)


def depth_of(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deeply `value` nests (without recursion); stops counting past `limit`."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def describe(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
