"""Sweeps, as pure values: prompt alternatives `{a|b|c}`, `--matrix KEY=V1,V2`
(and integer ranges `seed=1..8`), and their product, indexed without being
built (job `i` of a product of a million is found by arithmetic, never by a
list of a million).

The syntax:

- A PROMPT's `{a|b|c}` is a group of alternatives; several groups multiply.
  `{{` and `}}` are a literal `{` and `}`, everywhere, read left to right (so
  inside a group `}}` is a literal `}` too). An empty alternative, a group of
  one, an unclosed `{`, a `}` with no `{` and a `{` inside a group are errors.
- `--matrix KEY=V1,V2,...`: values split at commas; `\\,` is a literal comma and
  `\\\\` a literal backslash. For an integer or number input, `A..B` is every
  integer from A to B (A <= B, both integers). Values are coerced to the type
  the schema gives, as `-p` values are.

Everything here raises `UsageError` (exit 2) with one clear line for bad input.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

from pixeldojo_cli.core.errors import UsageError
from pixeldojo_cli.inputs.schema import Parameter, coerce_scalar

# A sweep of more jobs than this is refused unless confirmed (`--yes`).
CONFIRM_ABOVE = 500
# A sweep of more jobs than this is refused outright: no one means it, and it
# bounds the plan (use --batch with a file for more).
MAX_SWEEP_JOBS = 100_000

_RANGE = re.compile(r"\s*(\S*?)\s*\.\.\s*(\S*)\s*")
_INTEGER = re.compile(r"[+-]?\d{1,18}")


# --- prompt alternatives ---------------------------------------------------------------


@dataclass(frozen=True)
class PromptTemplate:
    """A PROMPT read as literal text and groups of alternatives."""

    parts: tuple[str | tuple[str, ...], ...]

    @property
    def groups(self) -> list[tuple[str, ...]]:
        """The groups of alternatives, in order."""
        return [part for part in self.parts if isinstance(part, tuple)]

    def render(self, choices: Sequence[str]) -> str:
        """The prompt with group `n` replaced by `choices[n]`."""
        picked = iter(choices)
        return "".join(part if isinstance(part, str) else next(picked) for part in self.parts)


def parse_prompt(text: str) -> PromptTemplate:
    """A PROMPT's groups of alternatives; a usage error for a malformed one."""
    parts: list[str | tuple[str, ...]] = []
    literal: list[str] = []
    group: list[str] | None = None  # the alternatives so far, while inside a group
    opened = 0
    i = 0
    while i < len(text):
        char, pair = text[i], text[i : i + 2]
        if pair in ("{{", "}}"):
            literal.append(char)
            i += 2
            continue
        if group is None and char == "{":
            parts.append("".join(literal))
            literal, group, opened = [], [], i
        elif group is None and char == "}":
            raise _prompt_error(f"a }} at character {i + 1} closes no {{")
        elif group is not None and char == "{":
            raise _prompt_error(f"a {{ at character {i + 1} is inside the group at {opened + 1}")
        elif group is not None and char in "|}":
            group.append(_alternative(literal, opened))
            literal = []
            if char == "}":
                parts.append(_closed(group, opened))
                group = None
        else:
            literal.append(char)
        i += 1
    if group is not None:
        raise _prompt_error(f"the {{ at character {opened + 1} is never closed")
    parts.append("".join(literal))
    return PromptTemplate(tuple(part for part in parts if part != ""))


def _alternative(chars: list[str], opened: int) -> str:
    text = "".join(chars)
    if not text.strip():
        raise _prompt_error(f"the group at character {opened + 1} has an empty alternative")
    return text


def _closed(group: list[str], opened: int) -> tuple[str, ...]:
    if len(group) < 2:
        raise _prompt_error(
            f"the group at character {opened + 1} has one alternative (separate them with |)"
        )
    return tuple(group)


def _prompt_error(problem: str) -> UsageError:
    return UsageError(
        f"PROMPT: {problem}.",
        hint="Alternatives are written {a|b|c}; a literal brace is {{ or }}.",
    )


# --- --matrix ------------------------------------------------------------------------


@dataclass(frozen=True)
class MatrixSpec:
    """One `--matrix KEY=V1,V2,...` as typed: the key and its values, unescaped."""

    key: str
    items: tuple[str, ...]


def parse_matrix(text: str) -> MatrixSpec:
    """`KEY=V1,V2,...` split at commas (`\\,` a literal comma, `\\\\` a backslash)."""
    key, sep, rest = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(
            f"Expected KEY=V1,V2,... after --matrix, got {text[:60]!r}.",
            hint="For example: --matrix seed=1..4 --matrix aspect_ratio=1:1,16:9",
        )
    items = _split_items(rest)
    for item in items:
        if not item.strip():
            raise UsageError(f"--matrix {key[:60]} has an empty value.")
    return MatrixSpec(key, tuple(items))


def _split_items(text: str) -> list[str]:
    items: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        pair = text[i : i + 2]
        if pair in ("\\,", "\\\\"):
            current.append(pair[1])
            i += 2
            continue
        if text[i] == ",":
            items.append("".join(current))
            current = []
        else:
            current.append(text[i])
        i += 1
    items.append("".join(current))
    return items


class Values(Sequence[Any]):
    """One axis's values: single values and integer ranges, one after the other,
    indexed without building the ranges. Finding value `i` is a binary search
    over where each piece starts (a list of 20,000 values is 20,000 pieces:
    walking them for every index made planning quadratic)."""

    def __init__(self, pieces: Sequence[Sequence[Any]]) -> None:
        self.pieces = tuple(pieces)
        self.starts: list[int] = []
        length = 0
        for piece in self.pieces:
            self.starts.append(length)
            length += len(piece)
        self._length = length

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < self._length:
            raise IndexError(index)
        at = bisect_right(self.starts, index) - 1
        return self.pieces[at][index - self.starts[at]]

    def __iter__(self) -> Iterator[Any]:
        for piece in self.pieces:
            yield from piece


def matrix_values(spec: MatrixSpec, param: Parameter | None) -> Values:
    """The spec's values coerced to `param`'s type (a string where the schema
    says nothing); ranges for integer and number inputs. Each value is also
    checked against what the schema allows (a usage error naming it)."""
    kind = param.type if param is not None else None
    if kind == "array" and param is not None:
        kind = param.items_type
    pieces: list[Sequence[Any]] = []
    for item in spec.items:
        if kind in ("integer", "number") and _RANGE.fullmatch(item):
            pieces.append(_range(spec.key, item))
        else:
            pieces.append((coerce_scalar(kind, item, f"--matrix {spec.key}"),))
    values = Values(pieces)
    if param is not None and param.type == "array":
        return Values([_OneItemLists(values)])
    return values


class _OneItemLists(Sequence[Any]):
    """An array input's values: each value as a list of one (as `-p` makes it)."""

    def __init__(self, values: Values) -> None:
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [[value] for value in self.values[index]]
        return [self.values[index]]

    def __iter__(self) -> Iterator[Any]:
        for value in self.values:
            yield [value]


def _range(key: str, item: str) -> range:
    match = _RANGE.fullmatch(item)
    assert match is not None
    start, end = match.groups()
    if not (_INTEGER.fullmatch(start) and _INTEGER.fullmatch(end)):
        raise UsageError(
            f"--matrix {key}={item.strip()[:60]}: a range takes integers, like {key}=1..8."
        )
    low, high = int(start), int(end)
    if low > high:
        raise UsageError(
            f"--matrix {key}={item.strip()}: the range runs backwards; write {key}={high}..{low}."
        )
    return range(low, high + 1)


# --- the product ---------------------------------------------------------------------


@dataclass(frozen=True)
class Axis:
    """One dimension of a sweep: what it sets (`key`: an input name, or
    `prompt{N}` for the N-th group of alternatives) and its values."""

    key: str
    values: Sequence[Any]


def prompt_axes(template: PromptTemplate) -> list[Axis]:
    """One axis per group of alternatives, named `prompt{1}`, `prompt{2}`..."""
    return [Axis(f"prompt{{{n}}}", group) for n, group in enumerate(template.groups, start=1)]


def product_size(axes: Sequence[Axis]) -> int:
    """How many combinations the axes make (1 for none)."""
    return math.prod(len(axis.values) for axis in axes)


def combination(axes: Sequence[Axis], index: int) -> tuple[Any, ...]:
    """Combination `index` of the product, the last axis varying fastest."""
    picked: list[Any] = []
    for axis in reversed(axes):
        index, at = divmod(index, len(axis.values))
        picked.append(axis.values[at])
    return tuple(reversed(picked))


def combinations(axes: Sequence[Axis]) -> Iterator[tuple[Any, ...]]:
    """Every combination, in order."""
    for index in range(product_size(axes)):
        yield combination(axes, index)


def check_size(total: int, *, confirmed: bool, what: str = "sweep") -> None:
    """Refuse a product past `CONFIRM_ABOVE` jobs unless `confirmed`, and past
    `MAX_SWEEP_JOBS` always."""
    if total > MAX_SWEEP_JOBS:
        raise UsageError(
            f"The {what} makes {total:,} jobs, more than the {MAX_SWEEP_JOBS:,} a sweep may make.",
            hint="Narrow it, or write the jobs into a file for --batch.",
        )
    if total > CONFIRM_ABOVE and not confirmed:
        raise UsageError(
            f"The {what} makes {total:,} jobs (more than {CONFIRM_ABOVE}); nothing was submitted.",
            hint="Check it with --dry-run, then add --yes to run it.",
        )


def check_distinct(axis: Axis) -> None:
    """A value listed twice in one axis is a mistake (it would pay twice), as
    are equal numbers written differently (`2,2.00`: the same request)."""
    seen: dict[str, Any] = {}
    for value in axis.values:
        text = same_value_key(value)
        if text in seen:
            raise _listed_twice(axis, seen[text], value)
        seen[text] = value


def same_value_key(value: Any) -> str:
    """A text equal for values the API cannot tell apart: 2 and 2.0, [1] and [1.0]."""
    import json

    return json.dumps(_plain_numbers(value), sort_keys=True, default=str)


def _plain_numbers(value: Any) -> Any:
    """`value` with every float that is a whole number as an int (2.0 -> 2)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_plain_numbers(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain_numbers(item) for key, item in value.items()}
    return value


def _listed_twice(axis: Axis, earlier: Any, value: Any) -> UsageError:
    if axis.key.startswith("prompt{"):
        group = axis.key[len("prompt{") : -1]
        return UsageError(
            f"PROMPT alternatives: group {group} lists {value!r} twice (it would pay twice)."
        )

    def shown(item: Any) -> Any:
        return item[0] if isinstance(item, list) and len(item) == 1 else item

    twice = (
        f"the value {shown(value)!r} is listed twice"
        if repr(earlier) == repr(value)
        else f"{shown(earlier)!r} and {shown(value)!r} are the same value"
    )
    return UsageError(f"--matrix {axis.key}: {twice} (it would pay twice).")
