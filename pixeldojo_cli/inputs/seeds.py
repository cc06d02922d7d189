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
    a numeric type (or its bounds leave no whole number)."""
    param = next((p for p in parameters(schema) if p.name == SEED), None)
    if param is None or param.type not in ("integer", "number"):
        return None
    span = DEFAULT_SEED_RANGE[1]
    low = _whole(param.minimum, math.ceil)
    high = _whole(param.maximum, math.floor)
    if low is None:
        low = 0 if high is None or high >= 0 else high - span
    if high is None:
        high = span if low <= span else low + span
    return (low, high) if low <= high else None


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
