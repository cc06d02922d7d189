"""Every wait is a deadline, not a per-read timeout.

A socket timeout bounds one read; a server dripping a byte just inside it can
hold a request for ever. So a bound on a whole wait is kept here, in a context
variable, and the HTTP layer cuts every socket operation to what is left of
it (`api.connections`):

- a deadline (`within`, `until`): a command's `--timeout`, a TAB's 3 s, one
  API request's whole-attempt bound. Nested ones narrow, never widen.
- a progress rule (`progressing`), for downloads, which may rightly take long:
  at least `min_bytes` must arrive in every `window` seconds.

A thread starts with no bound at all: whoever hands work under a deadline to
another thread hands it its context too (`contextvars.copy_context().run`).
Standard library only: completion imports it without httpx.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace

DEADLINE_PASSED = "the deadline passed"


class Progress:
    """At least `min_bytes` in every `window` seconds: from the start, and again
    from each moment the last `min_bytes` were complete. One thread's."""

    def __init__(self, min_bytes: int, window: float) -> None:
        self.min_bytes = min_bytes
        self.window = window
        self._since = time.monotonic()
        self._bytes = 0

    def took(self, count: int) -> None:
        """`count` bytes arrived."""
        self._bytes += count
        if self._bytes >= self.min_bytes:
            self._since = time.monotonic()
            self._bytes = 0

    def left(self) -> float:
        """Seconds until the current window ends short of `min_bytes`."""
        return self._since + self.window - time.monotonic()

    def why(self) -> str:
        kib = self.min_bytes / 1024
        return f"the transfer stalled (less than {kib:g} KiB in {self.window:g} s)"


@dataclass(frozen=True)
class _Bound:
    at: float | None = None  # time.monotonic() past which nothing is waited for
    progress: Progress | None = None


_NONE = _Bound()
_BOUND: ContextVar[_Bound | None] = ContextVar("pixeldojo_bound", default=None)


def _bound() -> _Bound:
    return _BOUND.get() or _NONE


def remaining() -> float | None:
    """Seconds left before the deadline in force (None: there is none)."""
    at = _bound().at
    return None if at is None else at - time.monotonic()


def passed() -> bool:
    """Whether the deadline in force has come."""
    left = remaining()
    return left is not None and left <= 0


@contextmanager
def until(at: float | None) -> Iterator[None]:
    """Nothing inside waits past `at` (a `time.monotonic()` value), nor past a
    deadline already in force. None: no new bound."""
    bound = _bound()
    if at is not None and (bound.at is None or at < bound.at):
        bound = replace(bound, at=at)
    token = _BOUND.set(bound)
    try:
        yield
    finally:
        _BOUND.reset(token)


def within(seconds: float | None) -> AbstractContextManager[None]:
    """Nothing inside waits more than `seconds` from now (None: no new bound)."""
    return until(None if seconds is None else time.monotonic() + seconds)


@contextmanager
def progressing(min_bytes: int, window: float) -> Iterator[None]:
    """Inside, every transfer must keep moving: `min_bytes` in every `window` s."""
    token = _BOUND.set(replace(_bound(), progress=Progress(min_bytes, window)))
    try:
        yield
    finally:
        _BOUND.reset(token)


def bounded(timeout: float | None) -> tuple[float | None, str]:
    """One socket operation's timeout (`timeout`, None for none), cut to what the
    deadline and the progress rule in force leave; and, when one of them cut
    it, what it stands for (a reason for the timeout error), else ""."""
    bound = _bound()
    limit, why = timeout, ""
    if bound.at is not None:
        left = bound.at - time.monotonic()
        if limit is None or left < limit:
            limit, why = left, DEADLINE_PASSED
    if bound.progress is not None:
        left = bound.progress.left()
        if limit is None or left < limit:
            limit, why = left, bound.progress.why()
    return limit, why


def took(count: int) -> None:
    """`count` bytes arrived: the progress rule in force, if any, counts them."""
    progress = _bound().progress
    if progress is not None:
        progress.took(count)
