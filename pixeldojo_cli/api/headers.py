"""Request headers a caller adds (`pixeldojo api -H`, `Client.request(headers=)`),
checked before anything is sent.

A header the HTTP stack would refuse (httpx sends names and values as ASCII; h11
wants a name that is an RFC 9110 token and a value of visible characters,
spaces and tabs, without NUL, CR or LF), or one that frames the request or
manages the connection (which the client does itself: a caller's
`Content-Length` or `Transfer-Encoding` would desynchronise the request from
its body), is a usage error naming the header, never a network failure or a
crash after the request went half out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from pixeldojo_cli.core.errors import UsageError
from pixeldojo_cli.core.text import safe_text

# RFC 9110 section 5.6.2: a field name is a token.
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Control characters other than tab: CR and LF would end the header (and could
# start another), NUL and the rest are no text a header may hold.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Spaces and tabs around a value are not part of it (RFC 9110 section 5.5).
_OWS = " \t"

_FRAMING = "the client frames the request itself, from the body it sends"
_HOP = "the client manages the connection itself"
# Headers the client owns, with why (lowercase names).
CLIENT_OWNED: dict[str, str] = {
    "content-length": _FRAMING,
    "transfer-encoding": _FRAMING,
    "trailer": _FRAMING,
    "te": _FRAMING,
    "expect": "the client sends the body at once, without waiting for 100 Continue",
    "connection": _HOP,
    "keep-alive": _HOP,
    "proxy-connection": _HOP,
    "upgrade": _HOP,
    "host": "the client sends it for the API's own origin",
    "accept-encoding": "the client asks only for encodings it decodes within its size "
    "cap (gzip, deflate)",
    "authorization": "the key goes only to the API's origin, from --api-key, "
    "PIXELDOJO_API_KEY or `pixeldojo auth login`",
}


def _shown(name: str) -> str:
    return safe_text(name[:60]) + ("..." if len(name) > 60 else "")


def check_header(name: object, value: object) -> str:
    """The value to send for one header (spaces and tabs around it dropped), or a
    `UsageError` on one line naming the header and saying what to do."""
    if not isinstance(name, str) or not isinstance(value, str):
        raise UsageError("Header names and values must be text.")
    if not name:
        raise UsageError("A header name cannot be empty: give 'Name: value'.")
    if not TOKEN.fullmatch(name):
        raise UsageError(
            f"The header name '{_shown(name)}' is not valid: use only letters, digits and "
            "!#$%&'*+-.^_`|~ (no spaces, colons or other characters)."
        )
    why = CLIENT_OWNED.get(name.lower())
    if why is not None:
        raise UsageError(f"The {name} header cannot be set by hand: {why}. Remove it.")
    if _CONTROL.search(value):
        raise UsageError(
            f"The value of the {name} header holds a control character (a line break, "
            "NUL or other): a header value is one line of text. Remove it."
        )
    if not value.isascii():
        raise UsageError(
            f"The value of the {name} header must be ASCII text: "
            "percent-encode or remove the other characters."
        )
    return value.strip(_OWS)


Headers = Mapping[str, str] | Iterable[tuple[str, str]]


def check_headers(headers: Headers | None) -> dict[str, str]:
    """Every header (a mapping, or a list of (name, value) pairs) checked by
    `check_header`; the values to send. A name given twice, in any case, is a
    usage error: which one the server would read is anyone's guess."""
    pairs = _pairs(headers)
    checked: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in pairs:
        sent = check_header(name, value)
        text = str(name)
        if text.lower() in seen:
            raise UsageError(f"The {_shown(text)} header is given twice: give each header once.")
        seen.add(text.lower())
        checked[text] = sent
    return checked


_NOT_HEADERS = "Headers must be a mapping of names to values, or a list of (name, value) pairs."


def _pairs(headers: Headers | None) -> list[tuple[object, object]]:
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return list(headers.items())
    if isinstance(headers, str | bytes):
        raise UsageError(_NOT_HEADERS)
    try:
        items = list(headers)
    except TypeError:
        raise UsageError(_NOT_HEADERS) from None
    if not all(isinstance(pair, tuple | list) and len(pair) == 2 for pair in items):
        raise UsageError(_NOT_HEADERS)
    return [(name, value) for name, value in items]
