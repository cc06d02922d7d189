"""The API key: what a usable key looks like, and keeping it out of every line we print.

A key is sent as `Authorization: Bearer <key>`, so it must be a header value:
visible ASCII only. Whitespace around it (a pasted key, a file with a final
newline) can never be part of a key and is dropped wherever a key enters;
anything else that cannot go in a header is refused before any request.

Masking covers the forms a key takes in other people's text too: the
`repr()` of it (`b'Bearer KEY\\r'`), JSON-escaped (`\\u0070` too), URL-encoded
(in part or in full, either hex case, twice), HTML-escaped (named, decimal and
hex character references, leading zeros, `;` left out), in any mix of those
character by character, inside base64 (`Basic ...`), in any letter case,
as plain hex of its bytes (either case),
nested as deep as encoders nest them: up to 8 backslashes before an escape, 4
levels of `%25` or `&amp;`. Masking takes time linear in the text, whatever the
text: every repetition in the pattern is bounded (an unbounded one let a run of
backslashes make it quadratic: 16 KiB took 51 s).
Only keys long enough to be a key are masked, so that a 1-character key
cannot turn `pixeldojo` into `pi****eldojo`.
"""

from __future__ import annotations

import base64
import functools
import itertools
import re

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


@functools.lru_cache(maxsize=1)
def _html_names() -> dict[str, tuple[str, ...]]:
    """Each character HTML has a name for, and its names (`amp;`, `amp`, `sol;`...)."""
    from html.entities import html5

    names: dict[str, list[str]] = {}
    for name, value in html5.items():
        if len(value) == 1:
            names.setdefault(value, []).append(name)
    return {ch: tuple(found) for ch, found in names.items()}


# How deep an encoding may be nested and still be masked: no encoder nests deeper
# than a few levels, and every repetition in the pattern must be bounded, or a
# long run of backslashes (or `%25`, `&amp;`) makes masking quadratic: the
# regular expression would scan the whole run again from each of its characters.
_MAX_NESTING = 4  # `%25252525`, `&amp;amp;amp;amp;`
_MAX_BACKSLASHES = 8  # a repr() of a repr() of a repr(): 1, 2, 4, 8
_PERCENT = f"%(?:25){{0,{_MAX_NESTING}}}"
_AMP = f"&(?:amp;){{0,{_MAX_NESTING}}}"
# A backslash before an escape: itself, or URL-encoded (`%5Cu0070`).
_BACKSLASH = rf"(?:\\|{_PERCENT}5c)"
# The backslashes before an escape's letter or code: all of them (`{1,8}+` never
# gives one back, as what follows, a letter or a code, cannot be a backslash).
_ESCAPES = f"{_BACKSLASH}{{1,{_MAX_BACKSLASHES}}}+"
# The one-letter escapes of JSON and Python for the characters that have one.
_LETTER_ESCAPES = {"\n": "n", "\r": "r", "\t": "t", "\f": "f", "\b": "b", "\v": "v", "\0": "0"}


def _char_forms(ch: str) -> list[str]:
    """One character of a key in every reversible form it may take, each
    character in its own form (so mixes match): itself (after backslashes where
    JSON or repr() escape it), percent-encoded (also twice: `%2570`; `%u0070`),
    `+` for a space, an HTML character reference (decimal, hex, named, leading
    zeros, `;` left out where HTML allows it, escaped again: `&amp;#112;`), a
    JSON, Python or bytes escape (`\\u0070`, `\\x70`, `\\xc3\\xa9`).

    Forms that start alike share their start (`%...`, `&...`, `\\...`), so that
    a run of those characters is read once at each place, not once per form."""
    code = ord(ch)
    data = ch.encode("utf-8", "surrogatepass")
    percent = ["".join(f"{byte:02x}" + _PERCENT for byte in data)[: -len(_PERCENT)]]
    percent.append(f"u{code:04x}" if code < 0x10000 else "")
    html = [f"#0*{code}(?:;|(?![0-9]))", f"#x0*{code:x}(?:;|(?![0-9a-f]))"]
    names = {name.lower() for name in _html_names().get(ch, ())}  # (matched in any case)
    html += [re.escape(name) for name in sorted(names, key=len, reverse=True)]
    forms = [re.escape(ch), r"\+" if ch == " " else ""]
    forms.append(_PERCENT + _any_of(percent))
    forms.append(_AMP + _any_of(html))
    forms.append(_ESCAPES + _any_of(_escape_tails(ch)))
    return [form for form in forms if form]


def _escape_tails(ch: str) -> list[str]:
    """What follows the backslashes of an escaped `ch`: itself where JSON or
    repr() escape it, a letter, or its code (`x70`, `u0070`, `U00000070`)."""
    code = ord(ch)
    data = ch.encode("utf-8", "surrogatepass")
    tails = [re.escape(ch) if ch in "\"'/" else "", _LETTER_ESCAPES.get(ch, "")]
    tails.append(f"x{code:02x}" if code < 0x100 else "")
    tails.append(f"u{code:04x}" if code < 0x10000 else "")
    tails.append(f"U{code:08x}")
    if code >= 0x10000:  # JSON's surrogate pair
        high, low = divmod(code - 0x10000, 0x400)
        tails.append(f"u{0xD800 + high:04x}{_ESCAPES}u{0xDC00 + low:04x}")
    if not ch.isascii():  # a bytes repr: b'\\xc3\\xa9'
        tails.append(_ESCAPES.join(f"x{byte:02x}" for byte in data))
    return tails


def _any_of(forms: list[str]) -> str:
    """A group matching any of the non-empty `forms`."""
    return "(?:" + "|".join(form for form in forms if form) + ")"


def _backslashes_pattern(count: int) -> str:
    """`count` backslashes of a key in a row, in any of their forms: a run of
    1 to 8 backslashes for each (JSON or repr() escaped, up to three times), or
    each in one of its forms. One bounded repetition for a run of plain ones, not
    one per backslash: a pattern per backslash would try every way of cutting a
    long run of them into `count` pieces, which grows exponentially with `count`."""
    escaped = f"{_BACKSLASH}{{{count},{count * _MAX_BACKSLASHES}}}"
    others = [form for form in _char_forms("\\") if form.startswith((_AMP, _ESCAPES))]
    each = _any_of([_BACKSLASH, f"{_PERCENT}u005c", *others]) + f"{{{count}}}"
    return f"(?:{escaped}|{each})"


def _by_char_pattern(key: str) -> str:
    """The key character by character, each character in any of its forms."""
    parts = []
    for is_backslash, run in itertools.groupby(key, lambda ch: ch == "\\"):
        if is_backslash:
            parts.append(_backslashes_pattern(len(list(run))))
        else:
            parts += ["(?:" + "|".join(_char_forms(ch)) + ")" for ch in run]
    return "".join(parts)


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
    """One regular expression for every form of `key`, and what replaces it:
    the key character by character, each in any of its forms, in any case;
    or the run of base64 characters that only the key's bytes decide."""
    core = key.strip(_SURROUNDING)
    if len(core) < MIN_SECRET_LENGTH:
        return None
    inside_base64 = sorted(_base64_forms(core), key=len, reverse=True)
    alternatives = [_by_char_pattern(core)]
    alternatives += [re.escape(form) for form in inside_base64 if len(form) >= MIN_SECRET_LENGTH]
    alternatives.append(core.encode("utf-8", "surrogatepass").hex())  # plain hex, either case
    return re.compile("|".join(alternatives), re.IGNORECASE), mask_key(core)


def redact(text: str, key: str | None) -> str:
    """`text` with every form of `key` (see the module's docstring) masked, in
    time linear in the length of `text`: every repetition in the pattern is bounded."""
    if not key or not isinstance(key, str) or not isinstance(text, str):
        return text
    compiled = _pattern(key)
    if compiled is None:
        return text
    pattern, masked = compiled
    return pattern.sub(lambda _: masked, text)  # (not a template: a key may hold `\\`)


def holds_key(text: str, key: str | None) -> bool:
    """Whether `text` holds `key` in any form `redact` masks (same linear time)."""
    if not key or not isinstance(key, str):
        return False
    compiled = _pattern(key)
    return compiled is not None and compiled[0].search(text) is not None
