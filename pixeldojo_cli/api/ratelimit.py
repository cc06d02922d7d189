"""Keeping under the API's rate limit: a sliding-window `RateLimiter` per client,
and the `SharedBudget` file through which every process on the machine using
the same API origin and key counts one window together."""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx

from pixeldojo_cli.api.origin import Origin
from pixeldojo_cli.core import cancelling, deadlines
from pixeldojo_cli.core.errors import DeadlineError, RequestTimeoutError
from pixeldojo_cli.core.ownfiles import open_private
from pixeldojo_cli.core.ownfolders import private_folder
from pixeldojo_cli.core.untrusted import loads


class SharedBudgetUnavailable(Exception):
    """The shared budget file cannot be used (any more): keep a per-process budget."""


class BudgetLockPastDeadline(SharedBudgetUnavailable):
    """The budget file's lock was not let go before the deadline in force came."""


# Budget files untouched this long belong to keys or APIs no longer used.
_STALE_BUDGET = 7 * 86400
# A budget file larger than this is not ours: it is reset.
_MAX_BUDGET_BYTES = 256 * 1024
# Seconds to wait for another process to let go of the budget file's lock.
_LOCK_PATIENCE = 2.0


class SharedBudget:
    """The rate budget of one (API origin, key), shared by every process on the
    machine through a small file: the send times of the last window and a
    `not_before` pause, read and rewritten under an exclusive `flock`.

    Nothing can leave it stuck: the OS drops the lock of a process that dies,
    times older than the window are dropped at every look, a pause is never
    taken for longer than two windows, and a file that does not parse is reset.
    The file is named by a hash of the origin and key, never the key itself.

    Each request holds a slot from just before it is sent until its answer has
    arrived (`answered` moves the slot's time there): the server counts the
    request somewhere in between, so the slot frees a full window after the
    latest moment the server could have counted it, whatever the processes'
    scheduling did to the order of arrivals.
    """

    def __init__(self, path: Path, *, window: float, clock: Callable[[], float] = time.time):
        import fcntl  # ImportError (Windows): the caller keeps a per-process budget

        self._flock = fcntl.flock
        self._lock_ex, self._lock_un = fcntl.LOCK_EX | fcntl.LOCK_NB, fcntl.LOCK_UN
        self.path = path
        self.window = window
        self._clock = clock
        # A link (or anything not ours) at the name is replaced, never written through.
        self._fd = open_private(path, os.O_RDWR | os.O_CREAT, replace=True)

    @classmethod
    def open(
        cls, folder: Path, origin: Origin, api_key: str | None, *, window: float
    ) -> SharedBudget | None:
        """The budget file for `origin` and `api_key` in `folder`, or None when
        this platform or folder cannot hold one (no error: the caller keeps a
        per-process budget)."""
        try:
            private_folder(folder, top=folder.parent)  # ours, in the cache folder
            path = folder / budget_file_name(origin, api_key)
            fresh = not os.path.lexists(path)
            budget = cls(path, window=window)
        except (ImportError, OSError, ValueError):
            return None
        if fresh:
            _prune_stale_budgets(folder, keep=path)
        return budget

    def close(self) -> None:
        os.close(self._fd)

    @contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        """The file's state, locked; written back when the block ends."""
        self._lock()
        try:
            state = self._read()
            yield state
            self._write(state)
        except OSError as exc:
            raise SharedBudgetUnavailable(str(exc)) from exc
        finally:
            with suppress(OSError):
                self._flock(self._fd, self._lock_un)

    def _lock(self) -> None:
        """Take the file's lock. Holders keep it for microseconds; one that is not
        let go within `_LOCK_PATIENCE` s belongs to a stopped process (Ctrl-Z):
        this process then stops sharing rather than wait for it. Nor is it
        waited for past the deadline in force (`BudgetLockPastDeadline`)."""
        patience = _LOCK_PATIENCE
        left = deadlines.remaining()
        cut = left is not None and left < patience
        give_up = time.monotonic() + (max(0.0, left) if cut and left is not None else patience)
        pause = 0.001
        while True:
            try:
                self._flock(self._fd, self._lock_ex)
                return
            except BlockingIOError:
                now = time.monotonic()
                if now >= give_up:
                    if cut:
                        raise BudgetLockPastDeadline("the deadline came first") from None
                    raise SharedBudgetUnavailable("the budget file stays locked") from None
                time.sleep(min(pause, give_up - now))
                pause = min(pause * 2, 0.05)
            except OSError as exc:
                raise SharedBudgetUnavailable(str(exc)) from exc

    def _read(self) -> dict[str, Any]:
        os.lseek(self._fd, 0, os.SEEK_SET)
        data = os.read(self._fd, _MAX_BUDGET_BYTES + 1)
        now = self._clock()
        try:
            raw = loads(data) if data and len(data) <= _MAX_BUDGET_BYTES else {}
            sent = [
                (float(at), int(ticket))
                for at, ticket in raw.get("sent", [])
                if now - self.window < float(at) <= now + self.window  # drop old and future
            ]
            not_before = float(raw.get("not_before", 0.0))
        except (ValueError, TypeError, AttributeError, OverflowError):  # damaged: start afresh
            sent, not_before = [], 0.0
        if not now - 1 <= not_before <= now + 2 * self.window:
            not_before = 0.0
        return {"sent": sent, "not_before": not_before}

    def _write(self, state: dict[str, Any]) -> None:
        sent = [[round(at, 6), ticket] for at, ticket in state["sent"]]
        data = json.dumps({"v": 1, "sent": sent, "not_before": state["not_before"]}).encode()
        os.lseek(self._fd, 0, os.SEEK_SET)
        os.ftruncate(self._fd, 0)
        os.write(self._fd, data)

    def reserve(self, limit: int) -> tuple[float, int | None]:
        """Take a slot if one is free now: (0, ticket); else (seconds to wait, None)."""
        with self._state() as state:
            now = self._clock()
            delay = max(0.0, state["not_before"] - now)
            times = sorted(at for at, _ in state["sent"])
            if len(times) >= limit:
                delay = max(delay, times[len(times) - limit] + self.window - now)
            if delay > 0:
                return delay, None
            ticket = random.getrandbits(62)
            state["sent"].append((now, ticket))
            return 0.0, ticket

    def answered(self, ticket: int) -> None:
        """The request holding `ticket` has its answer: its slot counts from now."""
        with self._state() as state:
            now = self._clock()
            state["sent"] = [
                (max(at, now) if held == ticket else at, held) for at, held in state["sent"]
            ]

    def pause_until(self, when: float) -> None:
        """No process sends before `when` (wall-clock seconds), within two windows."""
        with self._state() as state:
            state["not_before"] = max(
                state["not_before"], min(when, self._clock() + 2 * self.window)
            )


def budget_file_name(origin: Origin, api_key: str | None) -> str:
    """The budget file's name: a hash of the origin and key (never the key itself)."""
    scheme, host, port = origin
    digest = hashlib.sha256(f"pixeldojo-rate\0{scheme}://{host}:{port}\0{api_key or ''}".encode())
    return f"{digest.hexdigest()[:32]}.json"


def _prune_stale_budgets(folder: Path, *, keep: Path) -> None:
    """Remove budget files nobody has used for a week (old keys, old emulators)."""
    cutoff = time.time() - _STALE_BUDGET
    with suppress(OSError):
        for path in folder.glob("*.json"):
            if path != keep and path.lstat().st_mtime < cutoff:
                path.unlink(missing_ok=True)


class RateLimiter:
    """A sliding-window limiter: at most `per_minute` requests in any `window` s (60).

    Thread-safe; one per `Client`, shared by every endpoint. With a
    `SharedBudget` the window is counted across every process on the machine
    using the same API and key; should that file fail, this process carries on
    with its own count, silently. A 429 lowers the rate by a quarter (the
    server knows better than our default) and pauses until the server's
    `Retry-After` (every process sharing the budget pauses too);
    `X-RateLimit-Remaining: 0` pauses until the reset.
    """

    window = 60.0

    def __init__(
        self,
        per_minute: float = 60,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = cancelling.pause,
        window: float | None = None,
        budget: SharedBudget | None = None,
    ) -> None:
        self.per_minute = max(1, int(per_minute))
        if window is not None:
            self.window = window
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._not_before = 0.0
        self._lock = threading.Lock()
        self.budget = budget

    @property
    def shared(self) -> bool:
        """Whether the budget is currently shared with other processes."""
        return self.budget is not None

    def _delay_locked(self, now: float) -> float:
        while self._sent and self._sent[0] <= now - self.window:
            self._sent.popleft()
        delay = max(0.0, self._not_before - now)
        if len(self._sent) >= self.per_minute:
            delay = max(delay, self._sent[0] + self.window - now)
        return delay

    def _drop_budget_locked(self) -> None:
        if self.budget is not None:
            with suppress(OSError):
                self.budget.close()
            self.budget = None

    def acquire(self, *, by: float | None = None) -> int | None:
        """Block until one more request fits, then count it. Returns a ticket to
        hand to `answered` once the answer has arrived (None: nothing to count).
        A wait that would pass the deadline in force raises `DeadlineError` now;
        one that would pass `by` (the request's own deadline, on `time.monotonic`)
        ends there, with `RequestTimeoutError`: a request's timeout, not later."""
        while True:
            with self._lock:
                now = self._clock()
                delay = max(0.0, self._not_before - now)
                if self.budget is not None and delay <= 0:
                    try:
                        delay, ticket = self.budget.reserve(self.per_minute)
                    except BudgetLockPastDeadline:
                        raise DeadlineError(
                            "--timeout was reached waiting for the shared rate budget."
                        ) from None
                    except SharedBudgetUnavailable:
                        self._drop_budget_locked()
                    else:
                        if ticket is not None:
                            return ticket
                if self.budget is None:
                    delay = self._delay_locked(now)
                    if delay <= 0:
                        self._sent.append(now)
                        return None
            left = deadlines.remaining()
            if left is not None and delay >= left:
                raise DeadlineError(
                    f"--timeout was reached waiting for the rate limit ({delay:.0f} s to go)."
                )
            if by is not None and time.monotonic() + delay >= by:
                self._sleep(max(0.0, by - time.monotonic()))
                raise RequestTimeoutError(
                    f"The rate limit held the request past its timeout ({delay:.0f} s to go)."
                )
            self._sleep(delay)

    def answered(self, ticket: int | None) -> None:
        """The request of `ticket` has been answered (or failed)."""
        if ticket is None:
            return
        with self._lock:
            if self.budget is not None:
                try:
                    self.budget.answered(ticket)
                except SharedBudgetUnavailable:
                    self._drop_budget_locked()

    def pause(self, seconds: float) -> None:
        """Send nothing for `seconds` (Retry-After, or a reset header)."""
        with self._lock:
            self._not_before = max(self._not_before, self._clock() + seconds)
            if self.budget is not None:
                try:
                    self.budget.pause_until(time.time() + seconds)
                except SharedBudgetUnavailable:
                    self._drop_budget_locked()

    def on_rate_limited(self, retry_after: float | None) -> None:
        # Slow down, but not below the lowest limit public material mentions (10/min).
        with self._lock:
            self.per_minute = max(min(self.per_minute, 10), int(self.per_minute * 0.75))
        self.pause(retry_after if retry_after is not None else self.window / self.per_minute)

    def observe(self, headers: httpx.Headers) -> None:
        """Follow `X-RateLimit-Limit/Remaining/Reset` when the server sends them."""
        limit = _header_number(headers, "x-ratelimit-limit")
        if limit is not None and limit >= 1:
            with self._lock:
                self.per_minute = min(self.per_minute, int(limit))
        remaining = _header_number(headers, "x-ratelimit-remaining")
        reset = _header_number(headers, "x-ratelimit-reset")
        if remaining is not None and remaining <= 0 and reset is not None:
            # Reset is either an epoch timestamp or seconds from now.
            seconds = reset - time.time() if reset > 1e9 else reset
            self.pause(min(max(0.0, seconds), self.window))

    def close(self) -> None:
        with self._lock:
            self._drop_budget_locked()


def _header_number(headers: httpx.Headers, name: str) -> float | None:
    try:
        value = float(headers.get(name, ""))
    except ValueError:
        return None
    return value if value == value else None
