"""The API key: what a usable key looks like, and keeping it out of every line we print.

A key is sent as `Authorization: Bearer <key>`, so it must be a header value:
visible ASCII only. Whitespace around it (a pasted key, a file with a final
newline) can never be part of a key and is dropped wherever a key enters;
anything else that cannot go in a header is refused before any request.

Masking covers the forms a key takes in other people's text too: the
`repr()` of it (`b'Bearer KEY\\r'`), JSON-escaped, URL-encoded, HTML-escaped,
inside base64 (`Basic ...`), in any letter case.
Only keys long enough to be a key are masked, so that a 1-character key
cannot turn `pixeldojo` into `pi****eldojo`.
"""

from __future__ import annotations

import base64
import functools
import html
import json
import re
from urllib.parse import quote, quote_plus

# Shorter than this is not a key worth hiding, and masking it would corrupt text.
MIN_SECRET_LENGTH = 8

# Whitespace that may surround a key where it is stored or pasted.
_SURROUNDING = " \t\r\n\x0b\x0c"
# What a key may hold: visible ASCII (no space, no control character).
_KEY_CHARS = re.compile(r"[\x21-\x7e]+")


def clean_api_key(key: str | None) -> str | None:
    """`key` without the whitespace around it; None when nothing is left."""
    if not isinstance(key, str):
        return None
    key = key.strip(_SURROUNDING)
    return key or None


def key_problem(key: str) -> str | None:
    """Why `key` (already cleaned) cannot be sent in a header, or None if it can.

    The answer never contains the key, nor any part of it.
    """
    if _KEY_CHARS.fullmatch(key):
        return None
    if not key.isascii():
        return "a character that is not ASCII"
    if any(ch < " " or ch == "\x7f" for ch in key):
        return "a control character"
    return "a space inside it"


def check_api_key(key: str | None, where: str = "") -> str | None:
    """`key` cleaned (`clean_api_key`), or `InvalidAPIKeyError` (exit 3) when what
    is left cannot be sent in a header. `where` names its source in the message
    (" from --api-key"); the message never contains the key."""
    from pixeldojo_cli.core.errors import InvalidAPIKeyError

    cleaned = clean_api_key(key)
    problem = key_problem(cleaned) if cleaned is not None else None
    if problem is not None:
        raise InvalidAPIKeyError(
            f"The API key{where} has {problem}, so it cannot be sent in an HTTP header."
        )
    return cleaned


def mask_key(key: str | None) -> str:
    """The key as it may be shown: its last 4 characters only (`****abcd`).

    A key shorter than 12 characters shows nothing at all: 4 of 8 is too much.
    """
    if not key:
        return "(none)"
    key = str(key).strip(_SURROUNDING)
    return "****" + key[-4:] if len(key) >= 12 else "****"


def _escaped_forms(text: str) -> set[str]:
    """`text` as Python, JSON and terminal-safe renderings of it would show it."""
    forms = {text, repr(text)[1:-1], json.dumps(text)[1:-1]}
    forms.add(json.dumps(text, ensure_ascii=False)[1:-1])
    forms.add(repr(text.encode("utf-8", "backslashreplace"))[2:-1])
    forms.add(re.sub(r"[\x00-\x1f\x7f-\x9f]", lambda m: f"\\u{ord(m.group()):04x}", text))
    return forms


def _encoded_forms(text: str) -> set[str]:
    """`text` as URLs, JSON with escaped slashes and HTML would carry it."""
    encoding = {
        "encoding": "utf-8",
        "errors": "surrogatepass",
    }  # a key from bytes that are not UTF-8
    forms = {quote(text, "", **encoding), quote(text, **encoding), quote_plus(text, **encoding)}
    forms.add(html.escape(text))
    forms |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), f) for f in set(forms)}
    forms.add(text.replace("/", "\\/"))
    return forms


def _base64_forms(text: str) -> set[str]:
    """What `text` looks like inside any base64 blob: for each of the three
    alignments, the characters that depend on its bytes alone."""
    data = text.encode("utf-8", "surrogatepass")
    forms = set()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + data).decode("ascii")
        core = encoded[(8 * shift + 5) // 6 : (shift + len(data)) // 3 * 4]
        forms |= {core, core.replace("+", "-").replace("/", "_")}
    return forms


@functools.lru_cache(maxsize=32)
def _pattern(key: str) -> tuple[re.Pattern[str], str] | None:
    """One regular expression for every form of `key`, and what replaces it."""
    core = key.strip(_SURROUNDING)
    if len(core) < MIN_SECRET_LENGTH:
        return None
    forms: set[str] = set()
    for base in {key, core}:
        for escaped in _escaped_forms(base):
            forms.add(escaped)
            forms |= _encoded_forms(escaped)
            forms |= {json.dumps(e)[1:-1] for e in _encoded_forms(escaped)}
            forms.add(json.dumps(escaped)[1:-1])
    forms |= _base64_forms(core)
    forms = {f for f in forms if len(f) >= MIN_SECRET_LENGTH}
    alternatives = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
    return re.compile(alternatives, re.IGNORECASE), mask_key(core)


def redact(text: str, key: str | None) -> str:
    """`text` with every form of `key` (see the module's docstring) masked."""
    if not key or not isinstance(key, str) or not isinstance(text, str):
        return text
    compiled = _pattern(key)
    if compiled is None:
        return text
    pattern, masked = compiled
    return pattern.sub(lambda _: masked, text)  # (not a template: a key may hold `\\`)
