"""Waiting for a ledger another process holds, boundedly.

SQLite waits `busy_timeout` inside each call (short, so Ctrl-C is seen within
it) and `BoundedWait` retries the call until `lock_wait` has passed; then, or
when the file or its folder is read-only, `LedgerError` (exit 10, never 1).
The side file has its own lock (`side_file_lock`), a POSIX `flock`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TypeVar

from pixeldojo_cli.core import deadlines
from pixeldojo_cli.core.errors import LedgerError

# SQLite waits this long for a lock inside one call; Python sees Ctrl-C only
# between calls, so it is kept short and the wait is made of many calls.
DEFAULT_BUSY_TIMEOUT = 0.5
# The whole bounded wait for a lock, across those calls.
DEFAULT_LOCK_WAIT = 10.0

T = TypeVar("T")


def is_busy(exc: sqlite3.Error) -> bool:
    """SQLite failed because another connection holds a lock."""
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def is_read_only(exc: sqlite3.Error) -> bool:
    """SQLite failed because the ledger (or its folder) cannot be written."""
    text = str(exc).lower()
    return "readonly" in text or "read-only" in text or "unable to open" in text


def ledger_error(path: Path, exc: sqlite3.Error, waited: float | None = None) -> LedgerError:
    """The `LedgerError` a SQLite failure becomes; `waited`: the lock wait ran out."""
    if waited is not None:
        return LedgerError(
            f"The job ledger {path} is locked by another process; "
            f"gave up after waiting {waited:.0f} s."
        )
    if is_read_only(exc):  # no other program is to blame
        return LedgerError(
            f"The job ledger {path} cannot be written: {exc}.",
            hint="Check that the file and its folder are writable by you.",
        )
    return LedgerError(f"The job ledger {path} cannot be used: {exc}.")


class BoundedWait:
    """Runs ledger calls, retrying while another process holds a lock.

    `lock_wait` (default `DEFAULT_LOCK_WAIT`) bounds how long any call waits
    (then `LedgerError`); `busy_timeout` is how long SQLite waits inside one
    call. Once a wait has run out, later writes wait only `busy_timeout` until
    one succeeds again: a ledger held for minutes costs a command one full
    wait, not one per write.
    """

    def __init__(self, path: Path, lock_wait: float | None, busy_timeout: float) -> None:
        self.path = path
        self.lock_wait = DEFAULT_LOCK_WAIT if lock_wait is None else lock_wait
        self.busy_timeout = busy_timeout
        self.held_elsewhere = False  # the last wait ran out: wait briefly until one succeeds

    def run(self, action: Callable[[], T], *, write: bool = False) -> T:
        """Run `action`, retrying while another process holds a lock, for at most
        `lock_wait` seconds in all and not past the deadline in force; any SQLite
        failure becomes a `LedgerError`."""
        started = time.monotonic()
        brief = write and self.held_elsewhere
        limit = min(self.lock_wait, self.busy_timeout) if brief else self.lock_wait
        left = deadlines.remaining()  # nor past the command's --timeout
        limit = limit if left is None else max(0.0, min(limit, left))
        pause = 0.01
        while True:
            try:
                result = action()
            except sqlite3.Error as exc:
                waited = time.monotonic() - started
                if not is_busy(exc):
                    raise ledger_error(self.path, exc) from exc
                if waited >= limit:
                    self.held_elsewhere = self.held_elsewhere or write
                    raise ledger_error(self.path, exc, waited) from exc
                # Short sleeps: Ctrl-C is taken between them.
                time.sleep(min(pause, max(0.0, limit - waited)))
                pause = min(pause * 2, 0.2)
            else:
                if write:  # (a read says nothing: WAL readers never wait for a writer)
                    self.held_elsewhere = False
                return result


@contextmanager
def side_file_lock(handle: IO[bytes], wait: float) -> Iterator[bool]:
    """An exclusive lock on the side file (POSIX), waited for at most `wait` s.
    Yields whether it was had; appends are whole lines either way (O_APPEND)."""
    try:
        import fcntl
    except ImportError:  # Windows: appends stay whole; replays may repeat a record
        yield True
        return
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            if time.monotonic() >= deadline:
                yield False
                return
            time.sleep(0.02)
    try:
        yield True
    finally:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
