"""Two job ids shown side by side so that a reader can tell them apart.

"The API answered about job Y when asked about job X" is only worth printing
if X and Y read differently. Ids that differ by a no-break space, an
ideographic space, a combining mark, a variation selector, NFC against NFD,
a trailing space or a look-alike letter print the same; so do two long ids
cut at the same length. `shown_pair` prints plain ASCII ids as they are, and
any other pair in an escaped form (`\\xa0`, `\\u3000`, `\\u0301`: every
character outside printable ASCII, and the backslash doubled), cut, when
long, around the first place where they differ.
"""

from __future__ import annotations

import json
import re

_PLAIN = re.compile(r"[!-~]+")  # printable ASCII, no space
CUT_AT = 80
_BEFORE_DIFFERENCE = 20  # characters kept before the first difference


def escaped(text: str) -> str:
    """`text` in printable ASCII only, as Python's `ascii()` writes a string's
    characters (without the quotes; a space is `\\x20`): one way to read it."""
    out = []
    for char in text:
        code = ord(char)
        if char == "\\":
            out.append("\\\\")
        elif "!" <= char <= "~":
            out.append(char)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def _other_value(value: object, asked: str) -> str:
    """A claimed id that is no string (a number, a list, `""`) as JSON, saying
    what it is when the JSON reads like the asked id (`123` for "123")."""
    text = json.dumps(value, default=str)  # ASCII: json escapes the rest
    if text in (asked, escaped(asked)):
        text += f" (a JSON {type(value).__name__}, not a string)"
    return text


def _cut(text: str, start: int, limit: int) -> str:
    if len(text) <= limit and start == 0:
        return text
    piece = text[start : start + limit - 2]
    after = "\u2026" if start + len(piece) < len(text) else ""
    return ("\u2026" if start else "") + piece + after


def shown_pair(asked: str, answered: object, limit: int = CUT_AT) -> tuple[str, str]:
    """(asked, answered) as two short lines a person can tell apart: plain ASCII
    ids as they are; any other pair both escaped (`escaped`); a non-string
    claim as JSON. Past `limit` characters both are cut at the same place,
    just before the first character where they differ."""
    if not isinstance(answered, str) or not answered:
        first, second = escaped(asked), _other_value(answered, asked)
    elif _PLAIN.fullmatch(asked) and _PLAIN.fullmatch(answered):
        first, second = asked, answered
    else:
        first, second = escaped(asked), escaped(answered)
    if len(first) <= limit and len(second) <= limit:
        return first, second
    differ = next(
        (i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b),
        min(len(first), len(second)),
    )
    start = max(0, differ - _BEFORE_DIFFERENCE)
    return _cut(first, start, limit), _cut(second, start, limit)
