"""Times read from outside (a ledger row, an API answer, a `--since` date) kept
to the years this CLI can compute with and show.

Python's `datetime` ends at the years 1 and 9999: a time near either end
cannot move to another time zone or have a day added without an exception.
No job was submitted before 1970 or will be after 9000, so a time outside
those years is damage (a hand-edited ledger row, a hostile answer) and reads
as unknown. Every time inside them can be shown in any time zone and moved by
any span this CLI uses (a day, a month, a 100-year window).
"""

from __future__ import annotations

from datetime import UTC, datetime

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)  # not included
RANGE_TEXT = "from 1970-01-01 to 8999-12-31"
_CONVERSION_ERRORS = (OverflowError, ValueError, OSError)


def plausible(when: datetime) -> datetime | None:
    """`when` (aware) in UTC when a job can have it, else None."""
    try:
        utc = when.astimezone(UTC)
    except _CONVERSION_ERRORS:
        return None
    return utc if EARLIEST <= utc < LATEST else None


def local(when: datetime) -> datetime:
    """`when` in this machine's time zone; as it is (with its own offset) when
    the zone cannot show it. Never raises."""
    try:
        return when.astimezone()
    except _CONVERSION_ERRORS:
        return when


def local_text(when: datetime | None, unknown: str = "an unknown time") -> str:
    """`2025-01-31 09:00` in local time; `unknown` for None."""
    return unknown if when is None else local(when).strftime("%Y-%m-%d %H:%M")


def local_day(when: datetime | None, unknown: str = "unknown") -> str:
    """The calendar day of `when` in local time, `2025-01-31`; `unknown` for None."""
    return unknown if when is None else local(when).date().isoformat()
