"""How the ledger keeps values in its columns: times as ISO text, JSON as text.

Reading is forgiving: a damaged value (a hand-edited row) reads as nothing,
never as an exception that would stop `jobs list` or a batch's resume.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, TypeVar

from pixeldojo_cli.core.timestamps import plausible
from pixeldojo_cli.core.untrusted import loads

# What a damaged submission time reads as.
EPOCH = datetime.fromtimestamp(0, UTC)
Column = TypeVar("Column", dict, list)  # type: ignore[type-arg]


def now() -> datetime:
    """The time now, in UTC."""
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    """A time to the second, as stored; None stays None."""
    return None if value is None else value.astimezone(UTC).isoformat(timespec="seconds")


def stamp(value: datetime) -> str:
    """A time to the microsecond: durations of one-second jobs are made of these."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def parse_time(value: str | None) -> datetime | None:
    """A stored time, in UTC; None when there is none or it is damaged (a
    hand-edited row: not a time, or one no job can have, such as 9999-12-31,
    which no time zone or date arithmetic could take)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return plausible(parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC))


def job_time(value: Any) -> str | None:
    """A stored time as `stamp` writes it, None when `parse_time` reads none: in
    SQL (`connect_ledger` defines it on every connection) a window compares
    this, never the raw text, which a hand-edited row may write another way
    (`+05:00`, no fraction) or not as a time at all."""
    parsed = parse_time(value) if isinstance(value, str) else None
    return None if parsed is None else stamp(parsed)


def json_column(text: Any, kind: type[Column]) -> Column:
    """A stored JSON column of the type `kind`; empty when it is damaged (a
    hand-edited row must not stop `jobs list` or a batch's resume)."""
    if isinstance(text, str | bytes):
        try:
            value = loads(text)
        except ValueError:
            return kind()
        if isinstance(value, kind):
            return value
    return kind()


def text_or(value: Any, default: str) -> str:
    """A stored text column; `default` for a value of another type (a hand-edited
    BLOB or number where text belongs reads as unknown, never as `b'...'`)."""
    return value if isinstance(value, str) else default


def text_or_none(value: Any) -> str | None:
    """A stored text column that may be empty; None for a value of another type."""
    return value if isinstance(value, str) else None


def number_or_none(value: Any, *, least: float = -math.inf) -> float | None:
    """A stored number as a float; None when it is not a finite number of at least
    `least` (text, a BLOB, infinity or NaN in a hand-edited row: unknown)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and number >= least else None


def whole_or_none(value: Any) -> int | None:
    """A stored integer; None for a value of another type (a REAL too: SQLite keeps
    an integer too large for 64 bits as one)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def json_readable(text: Any, kind: type[Column]) -> bool:
    """Whether a stored JSON column holds a value of the type `kind` (False:
    damaged, which `json_column` reads as empty)."""
    if not isinstance(text, str | bytes):
        return False
    try:
        return isinstance(loads(text), kind)
    except ValueError:
        return False
