"""The `format` keyword: the formats that are checked (`uri`, `email`,
`date-time`, ...), how each is named in a message, and patterns Python's `re`
can apply."""

from __future__ import annotations

import ipaddress
import re
from datetime import date, datetime
from typing import Any

_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"{}|\\^`\x00-\x1f\x7f]*")
_URI_REFERENCE = re.compile(r"[^\s<>\"{}|\\^`\x00-\x1f\x7f]*")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_TIME = re.compile(r"\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HOSTNAME = re.compile(
    r"(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


def _is_date(text: str) -> bool:
    if not _DATE.fullmatch(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _is_time(text: str) -> bool:
    if not _TIME.fullmatch(text):
        return False
    hour, minute, second = int(text[0:2]), int(text[3:5]), int(text[6:8])
    return hour < 24 and minute < 60 and second <= 60


def _is_date_time(text: str) -> bool:
    if len(text) < 20 or text[10] not in "Tt ":
        return False
    if not (_is_date(text[:10]) and _is_time(text[11:])):
        return False
    try:
        datetime.fromisoformat(text[:19])
    except ValueError:
        return False
    return True


def _is_ip(text: str, version: int) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return address.version == version


FORMATS: dict[str, Any] = {
    "uri": lambda s: bool(_URI.fullmatch(s)),
    "uri-reference": lambda s: bool(_URI_REFERENCE.fullmatch(s)),
    "email": lambda s: bool(_EMAIL.fullmatch(s)),
    "date-time": _is_date_time,
    "date": _is_date,
    "time": _is_time,
    "uuid": lambda s: bool(_UUID.fullmatch(s)),
    "ipv4": lambda s: _is_ip(s, 4),
    "ipv6": lambda s: _is_ip(s, 6),
    "hostname": lambda s: bool(_HOSTNAME.fullmatch(s)),
}
FORMAT_NAMES = {
    "uri": "a URI (such as https://example.com/a.png)",
    "uri-reference": "a URI reference",
    "email": "an email address",
    "date-time": "a date and time (such as 2025-01-23T12:00:00Z)",
    "date": "a date (such as 2025-01-23)",
    "time": "a time (such as 12:00:00Z)",
    "uuid": "a UUID",
    "ipv4": "an IPv4 address",
    "ipv6": "an IPv6 address",
    "hostname": "a host name",
}


def compiled_pattern(pattern: str) -> re.Pattern[str] | None:
    """The pattern as Python understands it, or None (ECMA-only syntax: skipped)."""
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError):
        return None
