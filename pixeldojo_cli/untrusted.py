"""JSON from outside: API answers, `-p KEY:=JSON`, `--input` files.

One decoder with a nesting limit, so that no answer or input can make any
later step (rendering, saving, sending it back) recurse without bound:
Python's own decoder stops near 1,000 levels with a `RecursionError`, and
its indenting encoder needs several frames per level. What comes from the
API is then tidied once, at the boundary where it enters: every string has
the API key masked (a server that echoes it must not make us print or store
it) and lone surrogates replaced, so that the text can always be written as
UTF-8.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from pixeldojo_cli.redact import redact

# No API answer or set of inputs nests anywhere near this deep.
MAX_DEPTH = 64

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class TooDeepError(ValueError):
    """JSON nested deeper than `MAX_DEPTH` (a ValueError, as any other bad JSON)."""

    def __init__(self, max_depth: int = MAX_DEPTH) -> None:
        super().__init__(f"it is nested more than {max_depth} levels deep")


def loads(
    text: str | bytes,
    *,
    max_depth: int = MAX_DEPTH,
    parse_constant: Callable[[str], Any] | None = None,
) -> Any:
    """`json.loads`, refusing documents nested deeper than `max_depth` with
    `TooDeepError`. Any failure is a `ValueError` (numbers of more digits than
    Python converts are one too)."""
    try:
        value = json.loads(text, parse_constant=parse_constant)
    except RecursionError:
        raise TooDeepError(max_depth) from None
    _check_depth(value, max_depth)
    return value


def _check_depth(value: Any, max_depth: int) -> None:
    """Raise `TooDeepError` when containers nest deeper than `max_depth`.
    Iterative: the value may be ~1,000 levels deep."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            raise TooDeepError(max_depth)
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def tidy_text(text: str, secret: str | None) -> str:
    """One string from the server: the key masked, lone surrogates replaced."""
    if _LONE_SURROGATE.search(text):
        text = _LONE_SURROGATE.sub("\ufffd", text)
    return redact(text, secret) if secret else text


def tidy(value: Any, secret: str | None) -> Any:
    """`value` (decoded by `loads`, so of bounded depth) with `tidy_text`
    applied to every string, object keys included."""
    if isinstance(value, str):
        return tidy_text(value, secret)
    if isinstance(value, list):
        return [tidy(item, secret) for item in value]
    if isinstance(value, dict):
        return {tidy_text(k, secret): tidy(v, secret) for k, v in value.items()}
    return value
