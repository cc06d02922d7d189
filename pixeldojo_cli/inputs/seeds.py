"""A seed for every job whose model takes one (`auto_seed`): picked at random
within the bounds the schema gives when the user gave none, so that every
picture can be made again; for a `--batch` line, derived from the line's key
instead, so that a rerun of the same batch asks for the same pictures.

Pure functions: no HTTP, no settings (the caller says whether to pick one).
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from pixeldojo_cli.inputs.schema import parameters

SEED = "seed"
# Without bounds in the schema: the range every image API we know accepts.
DEFAULT_SEED_RANGE = (0, 2**31 - 1)


def seed_range(schema: Mapping[str, Any] | None) -> tuple[int, int] | None:
    """The seeds the model takes, (lowest, highest): the schema's bounds, and
    `DEFAULT_SEED_RANGE` where it gives none; None when it takes no `seed` of
    a numeric type, or its bounds cannot be read (a bound given as a string,
    a boolean: a seed drawn without them may be refused), or leave no whole
    number. Exclusive bounds (`exclusiveMinimum`) are honoured."""
    param = next((p for p in parameters(schema) if p.name == SEED), None)
    if param is None or param.type not in ("integer", "number"):
        return None
    spec = _seed_spec(schema)
    bounds = {name: spec.get(name) for name in _BOUNDS if spec.get(name) is not None}
    if any(_number(value) is None and value is not True for value in bounds.values()):
        return None
    if bounds.get("minimum") is True or bounds.get("maximum") is True:
        return None
    span = DEFAULT_SEED_RANGE[1]
    low = _tighter(_whole(param.minimum, math.ceil), _exclusive(bounds, "Minimum"), +1)
    high = _tighter(_whole(param.maximum, math.floor), _exclusive(bounds, "Maximum"), -1)
    if low is None:
        low = 0 if high is None or high >= 0 else high - span
    if high is None:
        high = span if low <= span else low + span
    return (low, high) if low <= high else None


_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _seed_spec(schema: Mapping[str, Any] | None) -> Mapping[str, Any]:
    props = schema.get("properties") if schema else None
    spec = props.get(SEED) if isinstance(props, Mapping) else None
    return spec if isinstance(spec, Mapping) else {}


def _exclusive(bounds: dict[str, Any], which: str) -> Any:
    """An exclusive bound: a number, or (JSON Schema draft 4) `true` making
    `minimum` or `maximum` exclusive."""
    value = bounds.get(f"exclusive{which}")
    return bounds.get(which.lower()) if value is True else value


def _number(value: Any) -> float | None:
    """A bound as the schema gives it: a number (not a boolean), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def _tighter(bound: int | None, exclusive: Any, step: int) -> int | None:
    """`bound`, or the first whole number past an exclusive bound, whichever is tighter."""
    number = _number(exclusive)
    if number is None or not math.isfinite(number):
        return bound
    past = math.floor(number) + 1 if step > 0 else math.ceil(number) - 1
    if bound is None:
        return past
    return max(bound, past) if step > 0 else min(bound, past)


def _whole(bound: float | None, rounding: Callable[[float], int]) -> int | None:
    """A bound as a whole number; None for none, or one beyond any number."""
    return None if bound is None or not math.isfinite(bound) else rounding(bound)


def random_seed(bounds: tuple[int, int]) -> int:
    """A seed drawn uniformly from `bounds` (inclusive), from the OS's randomness."""
    low, high = bounds
    return low + secrets.randbelow(high - low + 1)


def derived_seed(bounds: tuple[int, int], key: str) -> int:
    """The seed of a `--batch` line: the same for the same line key (its model,
    inputs and repetition), so a rerun of the batch asks for the same picture
    and finds the line's job again (the key is made without the seed)."""
    low, high = bounds
    digest = hashlib.sha256(f"pixeldojo-seed\0{key}".encode()).digest()
    return low + int.from_bytes(digest[:8], "big") % (high - low + 1)


def with_seed(inputs: dict[str, Any], seed: int) -> dict[str, Any]:
    """`inputs` with `seed` added, unless the user gave one (theirs wins)."""
    if SEED in inputs:
        return inputs
    return {**inputs, SEED: seed}
