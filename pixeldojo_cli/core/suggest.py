"""Did-you-mean: the choices that are actually close to what was typed.

Pure functions, no I/O. Text is compared by prefix first (`flux-1.1` is the
start of `flux-1.1-pro`), then by similarity. Values that are numbers or
aspect ratios are compared by size: `16:10` is near `16:9` and `3:2`, not `1:1`,
which merely shares characters with it.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable

_RATIO = re.compile(r"\s*(\d+(?:\.\d+)?)\s*[:x/]\s*(\d+(?:\.\d+)?)\s*")


def _ratio(text: str) -> float | None:
    match = _RATIO.fullmatch(text)
    if not match:
        return None
    width, height = float(match.group(1)), float(match.group(2))
    return width / height if width > 0 and height > 0 else None


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _nearest(target: float, measured: list[tuple[str, float]], n: int) -> list[str]:
    ranked = sorted(measured, key=lambda pair: abs(pair[1] - target))
    return [choice for choice, _ in ranked[:n]]


def close_matches(typed: str, choices: Iterable[object], n: int = 2) -> list[str]:
    """Up to `n` choices close to `typed`, closest first; [] when none is close."""
    options = list(dict.fromkeys(str(c) for c in choices))
    if not options or typed in options:
        return []
    ratio = _ratio(typed)
    ratios = [(c, _ratio(c)) for c in options]
    if ratio is not None and all(r is not None for _, r in ratios):
        logs = [(c, math.log(r)) for c, r in ratios if r is not None]
        return _nearest(math.log(ratio), logs, n)
    number = _number(typed)
    numbers = [(c, _number(c)) for c in options]
    if number is not None and all(v is not None for _, v in numbers):
        return _nearest(number, [(c, v) for c, v in numbers if v is not None], n)
    lowered = typed.lower()
    starting = [c for c in options if c.lower().startswith(lowered)] if len(typed) >= 3 else []
    if starting:
        return sorted(starting, key=len)[:n]
    by_lower = {c.lower(): c for c in options}
    similar = difflib.get_close_matches(lowered, list(by_lower), n=n, cutoff=0.6)
    return [by_lower[c] for c in similar]


def did_you_mean(matches: list[str]) -> str:
    """`Did you mean 'a'?`, `Did you mean 'a' or 'b'?`; "" for no matches."""
    if not matches:
        return ""
    quoted = [f"'{m}'" for m in matches]
    listed = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
    return f"Did you mean {listed}?"
