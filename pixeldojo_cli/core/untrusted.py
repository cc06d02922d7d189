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

import errno
import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pixeldojo_cli.core.redact import redact

# No API answer or set of inputs nests anywhere near this deep.
MAX_DEPTH = 64
# Nor holds anywhere near this many values (a bound on the `,`, `[` and `{` in the
# text, counted before decoding): 16 MiB of `[{},{},...]` would otherwise become
# millions of Python objects, hundreds of MiB.
MAX_ITEMS = 500_000

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class LimitError(ValueError):
    """JSON nested deeper than `MAX_DEPTH`, or with more than `MAX_ITEMS` values
    (a ValueError, as any other bad JSON)."""

    def __init__(self, max_depth: int = MAX_DEPTH, reason: str = "") -> None:
        super().__init__(reason or f"it is nested more than {max_depth} levels deep")


def loads(
    text: str | bytes,
    *,
    max_depth: int = MAX_DEPTH,
    parse_constant: Callable[[str], Any] | None = None,
    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
) -> Any:
    """`json.loads`, refusing documents nested deeper than `max_depth` with
    `LimitError`, or holding more than `MAX_ITEMS` values. Any failure is a
    `ValueError` (numbers of more digits than Python converts are one too)."""
    if _marks(text) > MAX_ITEMS:
        raise LimitError(reason=f"it holds more than {MAX_ITEMS:,} values")
    try:
        value = json.loads(text, parse_constant=parse_constant, object_pairs_hook=object_pairs_hook)
    except RecursionError:
        raise LimitError(max_depth) from None
    _check_depth(value, max_depth)
    return value


def _marks(text: str | bytes) -> int:
    """How many `,`, `[` and `{` `text` holds: at least its number of values, less one."""
    if isinstance(text, bytes):
        return text.count(b",") + text.count(b"[") + text.count(b"{")
    return text.count(",") + text.count("[") + text.count("{")


def _check_depth(value: Any, max_depth: int) -> None:
    """Raise `LimitError` when containers nest deeper than `max_depth`.
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
            raise LimitError(max_depth)
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


def open_regular(path: Path, flags: int, mode: int = 0o600) -> int:
    """`os.open(path, flags, mode)` without blocking, for a file that must be a
    regular one: a FIFO or a device put in its place raises OSError (EINVAL)
    instead of hanging a read or a write, or reading without end."""
    fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0), mode)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, f"{path} is not a regular file")
    return fd
