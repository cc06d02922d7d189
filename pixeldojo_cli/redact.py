"""Keeping the API key out of every line we print."""

from __future__ import annotations


def mask_key(key: str | None) -> str:
    """The key as it may be shown: its last 4 characters only (`****abcd`).

    A key shorter than 12 characters shows nothing at all: 4 of 8 is too much.
    """
    if not key:
        return "(none)"
    return "****" + key[-4:] if len(key) >= 12 else "****"


def redact(text: str, key: str | None) -> str:
    """`text` with every occurrence of `key` replaced by its masked form."""
    if key and key in text:
        return text.replace(key, mask_key(key))
    return text
