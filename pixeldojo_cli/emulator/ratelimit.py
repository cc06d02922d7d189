"""The emulator's rate limit: a sliding window of requests per caller."""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from pixeldojo_cli.emulator.messages import APIProblem


class RateLimiter:
    """Counts each caller's requests in the last `window` seconds. Thread-safe."""

    def __init__(self) -> None:
        self.limited = 0  # 429 answers given (not those of faults)
        self._windows: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, who: str, limit: int, window_seconds: float) -> dict[str, str]:
        """Count a request of `who`; its rate headers, or raise the 429 problem
        when `limit` requests already fell in the window."""
        now = time.monotonic()
        with self._lock:
            window = self._windows.setdefault(who, deque())
            while window and window[0] <= now - window_seconds:
                window.popleft()
            reset = time.time() + (window[0] + window_seconds - now if window else window_seconds)
            if len(window) >= limit:
                self.limited += 1
                wait = max(1, math.ceil(window[0] + window_seconds - now))
                raise APIProblem(
                    429,
                    "rate_limit_exceeded",
                    f"Rate limit exceeded: {limit} requests per minute.",
                    {"Retry-After": str(wait), **_rate_headers(limit, 0, reset)},
                )
            window.append(now)
            return _rate_headers(limit, limit - len(window), reset)


def _rate_headers(limit: int, remaining: int, reset: float) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(max(0, remaining)),
        "X-RateLimit-Reset": str(math.ceil(reset)),
    }
