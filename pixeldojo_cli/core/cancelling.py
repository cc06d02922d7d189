"""A cancel event for the work of one thread, so its pauses can be cut short.

A long-lived host (`pixeldojo mcp`) runs each request on a worker thread; when
the request is cancelled or its client goes away, the host sets that request's
event. Every pause below the host (the rate limiter's, a Retry-After's, a
poll's) waits with `pause`, which ends at once when the event in force is set,
raising `KeyboardInterrupt` as Ctrl-C would: the work stops the way an
interrupted command stops (jobs keep running, in the ledger).

The event travels in a context variable, so the lower layers need no host
imports. With none set, `pause` is `time.sleep`. Standard library only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_EVENT: ContextVar[threading.Event | None] = ContextVar("pixeldojo_cancel", default=None)


@contextmanager
def cancelled_by(event: threading.Event) -> Iterator[None]:
    """Inside, every `pause` ends as soon as `event` is set."""
    token = _EVENT.set(event)
    try:
        yield
    finally:
        _EVENT.reset(token)


def cancelled() -> bool:
    """Whether the cancel event in force (if any) is set."""
    event = _EVENT.get()
    return event is not None and event.is_set()


def pause(seconds: float) -> None:
    """`time.sleep(seconds)`, ended early by the cancel event in force
    (`KeyboardInterrupt`, as Ctrl-C would)."""
    event = _EVENT.get()
    if event is None:
        time.sleep(max(0.0, seconds))
    elif event.wait(max(0.0, seconds)) or event.is_set():
        raise KeyboardInterrupt
