"""Durations: the one grammar every flag and setting that takes a length of time reads.

A duration is a number of seconds (`90`, `1.5`) or numbers with units, one
after the other (`90s`, `10m`, `1h30m`, `1.5h`, `2d`, `1w`); a number without
a unit inside a combination is seconds too (`1h30` is 3630 s). Case and
spaces do not matter. What each flag or setting accepts (`LIMITS`) is the only
difference between them; the message for a bad value has one shape.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pixeldojo_cli.core.errors import UsageError
from pixeldojo_cli.core.timestamps import EARLIEST, LATEST, RANGE_TEXT

UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
# ASCII digits only: `float()` and `\d` also take other scripts' digits (Arabic-Indic,
# fullwidth), which no one types as a number.
_PIECE = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhdw]?)")
_NUMBER = re.compile(
    r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|infinity|nan)"
)
EXAMPLES = "90, 90s, 10m, 1h or 2d"
# A bare number is not a duration where it could be read as something else.
EXAMPLES_WITH_UNIT = "90s, 10m, 1h or 2d"
# For what must stay under a day: no example the limit itself would refuse.
EXAMPLES_UNDER_A_DAY = "90, 90s, 10m or 1h"

DAY = 86400.0
WEEK = 7 * DAY
# The shortest duration any flag or setting takes, 0 aside: `1e-300` or `1e-5`
# seconds cannot be meant (and a poll interval that small polls flat out).
SHORTEST = 0.01


@dataclass(frozen=True)
class Limits:
    """What one flag or setting accepts, in seconds.

    `zero`: 0 is allowed; any other value is at least `SHORTEST`; `most`: the
    longest, itself excluded when `under`; `clamp`: longer is cut to `most`
    rather than refused; `unit`: a bare number is refused (`--since 20250131`
    is a date).
    """

    most: float
    zero: bool = False
    under: bool = False
    clamp: bool = False
    unit: bool = False

    def allows(self, seconds: float) -> bool:
        """Whether `seconds` is in range (NaN never is)."""
        low_ok = seconds >= SHORTEST or (self.zero and seconds == 0)
        high_ok = seconds < self.most if self.under else seconds <= self.most
        return low_ok and high_ok

    def describe(self) -> str:
        """The range in words, for the error message: ` (at least 0.01s and at most 7 days)`."""
        parts = [f"{'0 or ' if self.zero else ''}at least {SHORTEST:g}s"]
        if not self.clamp and math.isfinite(self.most):
            parts.append(f"{'under' if self.under else 'at most'} {_days(self.most)}")
        return f" ({' and '.join(parts)})"


def _days(seconds: float) -> str:
    days = seconds / DAY
    return f"{days:g} day{'' if days == 1 else 's'}"


# Every flag and setting that takes a duration, and what it accepts.
LIMITS: dict[str, Limits] = {
    "--timeout": Limits(most=WEEK),
    "--grace": Limits(most=WEEK),
    # Under 0.25 s is raised to 0.25 s by every poll schedule (`schedule.FLOOR`).
    "--poll-interval": Limits(most=DAY, under=True),
    "--max-poll-interval": Limits(most=DAY, under=True),
    # A date too (`pixeldojo jobs list --since 2025-01-31`); longer than 100 years is 100.
    "--since": Limits(most=100 * 365 * DAY, zero=True, clamp=True, unit=True),
    # `usage --until`: the same as --since (the end of a window, not included).
    "--until": Limits(most=100 * 365 * DAY, zero=True, clamp=True, unit=True),
    # `emulator serve`: 0 and forever (`inf`) are fine for a test double.
    "--latency": Limits(most=math.inf, zero=True),
    "--ttl": Limits(most=math.inf, zero=True),
    "poll_interval": Limits(most=DAY, under=True),
    "max_poll_interval": Limits(most=DAY, under=True),
    "unknown_status_timeout": Limits(most=30 * DAY),
    # How long an uploaded file's URL is reused (0: never), and an upload command's deadline.
    "upload_ttl": Limits(most=30 * DAY, zero=True),
    "upload_timeout": Limits(most=DAY),
}


class DurationError(ValueError):
    """A value that is not a duration `name` accepts; `message` says so in one line."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def duration_message(name: str, text: str, *, also: str = "") -> str:
    """The one shape of the message for a bad duration, e.g.
    `--timeout must be a duration like 90, 90s, 10m, 1h or 2d (...); got 'x'.`"""
    limits = LIMITS[name]
    if limits.unit:
        examples = EXAMPLES_WITH_UNIT
    else:
        examples = EXAMPLES_UNDER_A_DAY if limits.most <= DAY else EXAMPLES
    return f"{name} must be a duration like {examples}{also}{limits.describe()}; got {text[:60]!r}."


def ascii_number(text: str) -> float | None:
    """`text` as a number written with ASCII digits (`1.5`, `.5`, `1e3`, `-2`; `inf`
    and `nan` too, for the range check to refuse), else None: unlike `float()`,
    no other script's digits and no `1_000`."""
    text = text.strip()
    return float(text) if _NUMBER.fullmatch(text) else None


def _read(compact: str) -> tuple[float, bool] | None:
    """(seconds, whether it was a bare number), or None when it is no duration."""
    number = ascii_number(compact)  # what a seconds setting always took: 1.5, .5, 1e3
    if number is not None:
        return number, True
    pos, total = 0, 0.0
    for match in _PIECE.finditer(compact):
        if match.start() != pos:
            break
        total += float(match.group(1)) * UNITS.get(match.group(2), 1.0)
        pos = match.end()
    return (total, False) if compact and pos == len(compact) else None


def seconds(text: str, name: str) -> float:
    """`text` as seconds for the flag or setting `name` (a key of `LIMITS`).

    Raises `DurationError` (a ValueError) when it is not a duration, or out of range."""
    limits = LIMITS[name]
    read = _read(text.strip().lower().replace(" ", ""))
    if read is None or (limits.unit and read[1]):
        raise DurationError(duration_message(name, text))
    value = min(read[0], limits.most) if limits.clamp else read[0]
    if not limits.allows(value):
        raise DurationError(duration_message(name, text))
    return value


def parse_duration(text: str | None, *, option: str = "--timeout") -> float | None:
    """A duration flag's value in seconds (None stays None); a usage error (exit 2,
    one line) when it is not one."""
    if text is None:
        return None
    try:
        return seconds(text, option)
    except DurationError as exc:
        raise UsageError(exc.message) from None


def time_point(text: str, now: datetime, option: str = "--since") -> datetime:
    """`--since` or `--until` (`option`, a key of `LIMITS`): a duration back from
    `now` (`2h`, `3d`, `1w`, `1d12h`) or a date (`2025-01-31`, `2025-01-31T09:00`,
    local time unless it says otherwise), in UTC. A usage error (exit 2, one
    line) when it is neither, or a date no job can have (before 1970, from 9000)."""
    try:
        return now - timedelta(seconds=seconds(text, option))
    except DurationError:
        pass  # a date, then
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        message = duration_message(option, text, also=", or a date like 2025-01-31")
        raise UsageError(message) from None
    utc = _date_in_utc(when)
    if utc is None:
        raise UsageError(f"{option} must be a date {RANGE_TEXT}; got {text.strip()[:60]!r}.")
    return utc


def _date_in_utc(when: datetime) -> datetime | None:
    """A `--since`/`--until` date (naive: local time) in UTC; None when it is
    outside the years a job can have (a day's slack either side, for the time
    zones ahead of and behind UTC), or cannot even be moved to UTC (0001-01-01
    in a zone ahead of UTC is in the year 0)."""
    try:
        utc = (when if when.tzinfo else when.astimezone()).astimezone(UTC)
    except (OverflowError, ValueError, OSError):
        return None
    return utc if EARLIEST - timedelta(days=1) <= utc < LATEST + timedelta(days=1) else None
