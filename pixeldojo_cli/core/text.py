"""Text from outside, made safe to show: one helper for every line a person reads.

Text from the server (and from files that are not ours) is untrusted: `safe_text`
makes control and invisible format characters visible as escapes, so no model
name, job id or error message can move the cursor, set the window title, write
the clipboard (OSC 52), reorder text (bidi) or break a line. `dump_json` escapes
the same characters, so `--json` stays exact JSON.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# Unicode categories Cc (C0, DEL, C1), Cf (bidi controls, zero-width and other
# invisible format characters), Cs (lone surrogates), Zl and Zp (U+2028/2029),
# written out so that importing this module stays cheap; a test checks the set
# against `unicodedata`.
_FORMAT_CHARS = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u2028-\u202e\u2060-\u2064\u2066-\u206f\ud800-\udfff\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f{_FORMAT_CHARS}]")
# The same, less what `json.dumps` escapes itself (C0) or writes as layout (newlines).
_UNSAFE_IN_JSON = re.compile(f"[\x7f-\x9f{_FORMAT_CHARS}]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    """One unsafe character as a JSON-style escape (`\\n`, `\\u001b`, a surrogate pair)."""
    char = match.group()
    short = _SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    code = ord(char)
    if code > 0xFFFF:
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def safe_text(text: str) -> str:
    """`text` with every control, format and line-separator character made visible
    as an escape (`\\u001b`, `\\n`), so it is one line that cannot drive a terminal.

    The escapes are JSON's, so a JSON document passed through it stays valid
    JSON with the same meaning.
    """
    text = str(text)
    return _UNSAFE.sub(_escape, text) if _UNSAFE.search(text) else text


def safe_lines(text: str) -> str:
    """`safe_text` for each line of a message whose line breaks are our own."""
    return "\n".join(safe_text(line) for line in str(text).split("\n"))


def safe_in_json(text: str) -> str:
    """`text` for a value in a JSON document: what JSON escapes itself (C0
    controls, so newlines and ESC) is kept, so the value round-trips exactly; what
    it writes raw (DEL, C1, bidi and other format characters, U+2028/2029, lone
    surrogates) is made visible as `safe_text` does."""
    text = str(text)
    return _UNSAFE_IN_JSON.sub(_escape, text) if _UNSAFE_IN_JSON.search(text) else text


def dump_json(value: Any) -> str:
    """The CLI's JSON: indented, UTF-8, anything unknown as a string.

    Beyond what `json.dumps` escapes, C1 controls, DEL, U+2028/2029, bidi and
    other format characters and lone surrogates are written as `\\uXXXX`: the
    same JSON value, and nothing in it a terminal would act on.
    """
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False, default=str, allow_nan=False)
    except ValueError:  # a number that is not finite: JSON has none, so null
        text = json.dumps(
            _finite(value), indent=2, ensure_ascii=False, default=str, allow_nan=False
        )
    return _UNSAFE_IN_JSON.sub(_escape, text)


def json_line(value: Any, *, ensure_ascii: bool = False) -> str:
    """One value as one line of JSON (`--json` lines), anything unknown as a
    string, a number that is not finite as null (never NaN: JSON has none)."""
    try:
        return json.dumps(value, ensure_ascii=ensure_ascii, default=str, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), ensure_ascii=ensure_ascii, default=str, allow_nan=False)


def _finite(value: Any) -> Any:
    """`value` with every float that is not finite (NaN, Infinity) made None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def plural(count: float, word: str) -> str:
    """`1 credit`, `2 credits`, `1.5 credits`, `0 jobs`."""
    number = f"{count:g}" if isinstance(count, float) else str(count)
    return f"{number} {word}" if count == 1 else f"{number} {word}s"
