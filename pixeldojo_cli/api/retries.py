"""How often a request is tried again, and after how long: the retry policy
and the `Retry-After` header (the rules themselves are `transport`'s)."""

from __future__ import annotations

import email.utils
import math
import random
import time
from dataclasses import dataclass

# A Retry-After shorter than this is no wait a server can mean (0.001 s, 1e-300 s):
# it is ignored like `0` or garbage, and the jittered backoff used without the
# header applies. It is the shortest first step of that backoff (`base_delay` / 2)
# and the poll floor (`engine.schedule.FLOOR`): no retry goes out sooner.
SHORTEST_RETRY_AFTER = 0.25


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP-date.

    None when it makes no sense as a wait (garbage, 0, negative, a date in the
    past, not finite, shorter than `SHORTEST_RETRY_AFTER`): the caller then
    backs off as if there were no header, rather than sending its retries at once."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds) or seconds < SHORTEST_RETRY_AFTER:
        return None
    return seconds


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts, and how long between them (jittered exponential)."""

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 120.0

    def backoff(self, attempt: int) -> float:
        """Delay before retry number `attempt` (1-based): half fixed, half random."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)
