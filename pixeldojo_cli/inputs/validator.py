"""A complete check of a value against a JSON Schema, before anything is spent.

The keywords of JSON Schema drafts 4 to 2020-12 that say what a value may be:
`type`, `enum`, `const`; numbers (`minimum`, `maximum`, `exclusiveMinimum`,
`exclusiveMaximum` in both their forms, `multipleOf`); strings (`minLength`,
`maxLength`, `pattern`, `format`); arrays (`items` in both forms, `prefixItems`,
`additionalItems`, `minItems`, `maxItems`, `uniqueItems`, `contains`,
`minContains`, `maxContains`); objects (`properties`, `patternProperties`,
`additionalProperties`, `required`, `minProperties`, `maxProperties`,
`propertyNames`, `dependentRequired`, `dependentSchemas`, `dependencies`);
`allOf`, `anyOf`, `oneOf`, `not`, `if`/`then`/`else`; and `$ref` within the
schema (`#`, `#/definitions/...`, `#/$defs/...`). `format` is checked for
`uri`, `uri-reference`, `email`, `date-time`, `date`, `time`, `uuid`, `ipv4`,
`ipv6` and `hostname`; other formats are annotations.

Numbers compare as JSON does (`1` equals `1.0`, `true` is not `1`) and
`multipleOf` is exact for decimals (0.3 is a multiple of 0.1). A keyword this
module cannot apply (a remote `$ref`, a pattern Python's `re` does not
understand, a malformed keyword) is skipped: the API remains the judge of
those. Nothing recurses without bound: values nested deeper than
`MAX_DEPTH` are refused, and schemas (a `$ref` loop) are followed at most
`MAX_DEPTH` levels.

No dependency: the keywords the catalogue uses are few, and a validator
library would have to be imported by every command that checks inputs.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any
from urllib.parse import unquote

from pixeldojo_cli.inputs.formats import FORMAT_NAMES, FORMATS, compiled_pattern
from pixeldojo_cli.inputs.json_values import (
    MAX_DEPTH,
    TYPE_CHECKS,
    depth_of,
    describe,
    is_integer,
    is_number,
    json_equal,
    json_type,
    number,
    plural,
    unique_key,
)

# Schema applications one check may make: a hostile schema (`anyOf` of `$ref`s
# to itself) would otherwise take exponential time. Past it, the rest is skipped.
MAX_STEPS = 100_000


@dataclass(frozen=True)
class Problem:
    """One reason a value does not fit: where (`prompt`, `image_urls[3]`) and why."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or 'the inputs'} {self.message}"


# --- the validator ----------------------------------------------------------------


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


class _Validator:
    def __init__(self, root: Any) -> None:
        self.root = root
        self.steps = MAX_STEPS

    def resolve(self, ref: str) -> Any:
        """A schema inside the root for a local `$ref`, or None when it cannot be
        found here (a remote reference: skipped)."""
        if not ref.startswith("#"):
            return None
        node = self.root
        pointer = unquote(ref[1:])
        if not pointer:
            return node
        if not pointer.startswith("/"):
            return None
        for part in pointer[1:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return None
        return node

    def problems(self, schema: Any, value: Any, path: str, depth: int) -> Iterator[Problem]:
        """Every problem of `value` against `schema` (lazily: callers stop early)."""
        self.steps -= 1
        if schema is True or depth > MAX_DEPTH or self.steps < 0:
            return
        if schema is False:
            yield Problem(path, "is not allowed")
            return
        if not isinstance(schema, Mapping):
            return
        ref = schema.get("$ref")
        if isinstance(ref, str):
            target = self.resolve(ref)
            if target is not None:
                yield from self.problems(target, value, path, depth + 1)
        yield from self._type_and_values(schema, value, path)
        if is_number(value):
            yield from self.number(schema, value, path)
        elif isinstance(value, str):
            yield from self._string(schema, value, path)
        elif isinstance(value, list):
            yield from self._array(schema, value, path, depth)
        elif isinstance(value, dict):
            yield from self._object(schema, value, path, depth)
        yield from self._combinators(schema, value, path, depth)

    def fits(self, schema: Any, value: Any, depth: int) -> bool:
        return next(iter(self.problems(schema, value, "", depth)), None) is None

    # --- any value

    def _type_and_values(
        self, schema: Mapping[str, Any], value: Any, path: str
    ) -> Iterator[Problem]:
        kinds = schema.get("type")
        names = [kinds] if isinstance(kinds, str) else kinds if isinstance(kinds, list) else []
        known = [k for k in names if isinstance(k, str) and k in TYPE_CHECKS]
        if known and not any(TYPE_CHECKS[k](value) for k in known):
            if isinstance(value, float) and not math.isfinite(value):
                yield Problem(path, f"must be a finite number, not {value}")
            else:
                wanted = " or ".join(known)
                yield Problem(path, f"must be of type {wanted}, not {json_type(value)}")
        enum = schema.get("enum")
        if isinstance(enum, list) and not any(json_equal(value, allowed) for allowed in enum):
            allowed = ", ".join(describe(v) for v in enum[:12]) + (
                ", ..." if len(enum) > 12 else ""
            )
            yield Problem(path, f"must be one of: {allowed}; got {describe(value)}")
        if "const" in schema and not json_equal(value, schema["const"]):
            yield Problem(path, f"must be {describe(schema['const'])}")

    # --- numbers

    def number(self, schema: Mapping[str, Any], value: float, path: str) -> Iterator[Problem]:
        if isinstance(value, float) and not math.isfinite(value):
            return
        low, high = schema.get("minimum"), schema.get("maximum")
        exclusive_low, exclusive_high = (
            schema.get("exclusiveMinimum"),
            schema.get("exclusiveMaximum"),
        )
        if is_number(low):
            if exclusive_low is True and value <= low:  # draft 4: a flag on minimum
                yield Problem(path, f"must be greater than {number(low)}, got {number(value)}")
            elif value < low:
                yield Problem(path, f"must be at least {number(low)}, got {number(value)}")
        if is_number(high):
            if exclusive_high is True and value >= high:
                yield Problem(path, f"must be less than {number(high)}, got {number(value)}")
            elif value > high:
                yield Problem(path, f"must be at most {number(high)}, got {number(value)}")
        if is_number(exclusive_low) and value <= exclusive_low:
            yield Problem(
                path, f"must be greater than {number(exclusive_low)}, got {number(value)}"
            )
        if is_number(exclusive_high) and value >= exclusive_high:
            yield Problem(path, f"must be less than {number(exclusive_high)}, got {number(value)}")
        step = schema.get("multipleOf")
        if is_number(step) and step > 0 and not _multiple_of(value, step):
            yield Problem(path, f"must be a multiple of {number(step)}, got {number(value)}")

    # --- strings

    def _string(self, schema: Mapping[str, Any], value: str, path: str) -> Iterator[Problem]:
        shortest, longest = schema.get("minLength"), schema.get("maxLength")
        if is_integer(shortest) and len(value) < shortest:
            if shortest == 1:
                yield Problem(path, "must not be empty")
            else:
                yield Problem(
                    path,
                    f"must be at least {plural(int(shortest), 'character')} long, got {len(value)}",
                )
        if is_integer(longest) and len(value) > longest:
            yield Problem(
                path, f"must be at most {plural(int(longest), 'character')} long, got {len(value)}"
            )
        pattern = schema.get("pattern")
        compiled = compiled_pattern(pattern) if isinstance(pattern, str) else None
        if compiled is not None and compiled.search(value) is None:
            yield Problem(path, f"must match the pattern {pattern}")
        kind = schema.get("format")
        check = FORMATS.get(kind) if isinstance(kind, str) else None
        if check is not None and not check(value):
            yield Problem(path, f"must be {FORMAT_NAMES[str(kind)]}, got {describe(value)}")

    # --- arrays

    def _array(
        self, schema: Mapping[str, Any], value: list[Any], path: str, depth: int
    ) -> Iterator[Problem]:
        fewest, most = schema.get("minItems"), schema.get("maxItems")
        if is_integer(fewest) and len(value) < fewest:
            yield Problem(
                path, f"must have at least {plural(int(fewest), 'item')}, got {len(value)}"
            )
        if is_integer(most) and len(value) > most:
            yield Problem(path, f"must have at most {plural(int(most), 'item')}, got {len(value)}")
        if schema.get("uniqueItems") is True:
            seen: dict[str, int] = {}
            for n, item in enumerate(value):
                key = unique_key(item)
                if key in seen:
                    yield Problem(
                        path, f"must not repeat items (items {seen[key]} and {n} are equal)"
                    )
                    break
                seen[key] = n
        yield from self._items(schema, value, path, depth)
        contains = schema.get("contains")
        if contains is not None:
            matching = sum(1 for item in value if self.fits(contains, item, depth + 1))
            least = schema.get("minContains", 1)
            least = least if is_integer(least) else 1
            if matching < least:
                yield Problem(path, f"must contain at least {plural(int(least), 'matching item')}")
            greatest = schema.get("maxContains")
            if is_integer(greatest) and matching > greatest:
                yield Problem(
                    path, f"must contain at most {plural(int(greatest), 'matching item')}"
                )

    def _items(
        self, schema: Mapping[str, Any], value: list[Any], path: str, depth: int
    ) -> Iterator[Problem]:
        prefix = schema.get("prefixItems")
        items = schema.get("items")
        if isinstance(items, list):  # drafts 4-2019: one schema per position
            prefix, rest = items, schema.get("additionalItems", True)
        else:
            prefix = prefix if isinstance(prefix, list) else []
            rest = items if items is not None else True
        for n, item in enumerate(value):
            each = prefix[n] if n < len(prefix) else rest
            yield from self.problems(each, item, _child(path, n), depth + 1)

    # --- objects

    def _object(
        self, schema: Mapping[str, Any], value: dict[str, Any], path: str, depth: int
    ) -> Iterator[Problem]:
        required = schema.get("required")
        if isinstance(required, list):
            for name in required:
                if isinstance(name, str) and name not in value:
                    yield Problem(_child(path, name), "is required")
        fewest, most = schema.get("minProperties"), schema.get("maxProperties")
        if is_integer(fewest) and len(value) < fewest:
            yield Problem(path, f"must have at least {plural(int(fewest), 'property')}")
        if is_integer(most) and len(value) > most:
            yield Problem(path, f"must have at most {plural(int(most), 'property')}")
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        patterns = schema.get("patternProperties")
        compiled = [
            (found, sub)
            for text, sub in (patterns.items() if isinstance(patterns, Mapping) else ())
            if isinstance(text, str) and (found := compiled_pattern(text)) is not None
        ]
        extra = schema.get("additionalProperties", True)
        names = schema.get("propertyNames")
        for name, item in value.items():
            where = _child(path, name)
            if names is not None:
                for problem in self.problems(names, name, "", depth + 1):
                    yield Problem(where, f"is not an allowed name: {problem.message}")
            matched = name in properties
            if matched:
                yield from self.problems(properties[name], item, where, depth + 1)
            for pattern, sub in compiled:
                if pattern.search(name):
                    matched = True
                    yield from self.problems(sub, item, where, depth + 1)
            if not matched:
                if extra is False:
                    yield Problem(where, "is not an allowed property")
                else:
                    yield from self.problems(extra, item, where, depth + 1)
        yield from self._dependencies(schema, value, path, depth)

    def _dependencies(
        self, schema: Mapping[str, Any], value: dict[str, Any], path: str, depth: int
    ) -> Iterator[Problem]:
        rules: dict[str, Any] = {}
        for key in ("dependencies", "dependentRequired", "dependentSchemas"):
            table = schema.get(key)
            if isinstance(table, Mapping):
                rules.update({k: v for k, v in table.items() if isinstance(k, str)})
        for name, rule in rules.items():
            if name not in value:
                continue
            if isinstance(rule, list):
                for needed in rule:
                    if isinstance(needed, str) and needed not in value:
                        yield Problem(_child(path, needed), f"is required when {name} is given")
            else:
                yield from self.problems(rule, value, path, depth + 1)

    # --- combinators

    def _combinators(
        self, schema: Mapping[str, Any], value: Any, path: str, depth: int
    ) -> Iterator[Problem]:
        every = schema.get("allOf")
        if isinstance(every, list):
            for sub in every:
                yield from self.problems(sub, value, path, depth + 1)
        some = schema.get("anyOf")
        if (
            isinstance(some, list)
            and some
            and not any(self.fits(s, value, depth + 1) for s in some)
        ):
            yield Problem(path, "does not match any of the forms allowed")
        one = schema.get("oneOf")
        if isinstance(one, list) and one:
            matching = sum(1 for sub in one if self.fits(sub, value, depth + 1))
            if matching == 0:
                yield Problem(path, "does not match any of the forms allowed")
            elif matching > 1:
                yield Problem(path, "matches more than one of the forms allowed")
        if "not" in schema and self.fits(schema["not"], value, depth + 1):
            yield Problem(path, "is a value that is not allowed here")
        if "if" in schema:
            branch = "then" if self.fits(schema["if"], value, depth + 1) else "else"
            if branch in schema:
                yield from self.problems(schema[branch], value, path, depth + 1)


def _multiple_of(value: float, step: float) -> bool:
    """Exact for the decimals JSON writes (0.3 is a multiple of 0.1)."""
    try:
        quotient = Fraction(repr(value)) / Fraction(repr(step))
    except (ValueError, ZeroDivisionError, OverflowError):
        return True  # cannot tell: the API decides
    return quotient.denominator == 1


def schema_problems(schema: Any, value: Any, *, limit: int = 5) -> list[Problem]:
    """Up to `limit` reasons `value` does not fit `schema` (none: it fits)."""
    if depth_of(value) > MAX_DEPTH:
        return [Problem("", f"are nested more than {MAX_DEPTH} levels deep")]
    found: list[Problem] = []
    try:
        for problem in _Validator(schema).problems(schema, value, "", 0):
            if problem not in found:
                found.append(problem)
            if len(found) >= limit:
                break
    except RecursionError:  # pragma: no cover - the depth bounds keep well below it
        found.append(Problem("", "could not be checked: the schema nests too deeply"))
    return found
