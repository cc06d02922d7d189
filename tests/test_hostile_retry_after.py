"""A Retry-After too short to be meant is ignored, and no rate-limit wait passes a
deadline (issue 24, classes 6 and 5, round three's variants).

A `Retry-After` under `SHORTEST_RETRY_AFTER` (0.25 s, the poll floor and the
backoff's shortest first step) is treated as no header: the jittered backoff
applies, and a 429 pauses the limiter as without one, so retries never go out
back to back. The rate limiter waits neither past the deadline in force nor past
a request's own `timeout=`, and the shared budget's file lock is not waited for
past the deadline either.
"""

from __future__ import annotations

import email.utils
import fcntl
import itertools
import json
import os
import time
from pathlib import Path

import pytest

from pixeldojo_cli.api.origin import origin_of
from pixeldojo_cli.api.ratelimit import RateLimiter, SharedBudget
from pixeldojo_cli.api.retries import SHORTEST_RETRY_AFTER, parse_retry_after
from pixeldojo_cli.api.transport import Transport
from pixeldojo_cli.core import deadlines
from pixeldojo_cli.core.errors import DeadlineError, RequestTimeoutError
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.engine.schedule import FLOOR

from conftest import FAST, TEST_KEY, Invoke

TINY = ["0.001", "1e-300", "0.2", "5e-324"]


def finished_job(cli: Invoke) -> str:
    result = cli("run", "flux-dev", "x", "--no-download", "--json", *FAST)
    assert result.exit_code == 0, result.output
    return str(json.loads(result.stdout)["jobId"])


@pytest.mark.parametrize("value", TINY)
def test_a_retry_after_too_short_to_be_meant_is_no_wait(value: str) -> None:
    assert parse_retry_after(value) is None


def test_an_http_date_a_moment_ahead_is_no_wait_either() -> None:
    second = float(int(time.time()) + 10)  # an HTTP date names a whole second
    soon = email.utils.formatdate(second, usegmt=True)
    assert parse_retry_after(soon, now=second - 0.1) is None
    assert parse_retry_after(soon, now=second - 1) == pytest.approx(1.0)


def test_a_retry_after_at_the_floor_is_obeyed() -> None:
    assert parse_retry_after("0.25") == 0.25 and parse_retry_after("2") == 2.0
    assert SHORTEST_RETRY_AFTER == FLOOR  # one floor for polls and retries


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("value", ["0.001", "1e-300"])
@pytest.mark.parametrize("command", ["jobs show", "api", "jobs wait"])
def test_a_tiny_retry_after_never_sends_retries_back_to_back(
    emulator: Emulator, cli: Invoke, status: int, value: str, command: str
) -> None:
    job = finished_job(cli)
    emulator.add_fault(
        "status", status=status, method="GET", path=r"/jobs/job_", retry_after=value, count=2
    )
    args = {
        "jobs show": ["jobs", "show", job],
        "api": ["api", f"jobs/{job}"],
        "jobs wait": ["jobs", "wait", job, "--no-download"],
    }[command]
    before = len(emulator.requests)
    result = cli(*args)
    assert result.exit_code == 0, result.output
    times = [r.at for r in emulator.requests[before:] if r.target == "api"]
    assert len(times) == 3, times  # two refusals, then the answer
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= FLOOR * 0.99, gaps


# --- no rate-limit wait passes a deadline ----------------------------------------------


def test_the_limiter_does_not_wait_past_a_requests_own_timeout(emulator: Emulator) -> None:
    """A full window (1 a minute, one sent) and `timeout=1`: a request timeout by
    that second, not a minute's wait for the slot before the timeout is looked at."""
    asked: list[float] = []

    def sleep(seconds: float) -> None:
        asked.append(seconds)
        if seconds > 5:
            raise AssertionError(f"asked to wait {seconds:.0f} s for the rate limit")
        time.sleep(seconds)

    transport = Transport(emulator.base_url, TEST_KEY, rate_limit=1, sleep=sleep)
    try:
        transport.request("GET", "models")
        with pytest.raises(RequestTimeoutError):
            transport.request("GET", "models", timeout=1.0)
    finally:
        transport.close()
    assert all(seconds <= 1.0 for seconds in asked), asked
    assert len(emulator.requests_to("GET", r"/models$")) == 1


def test_the_limiter_does_not_wait_past_the_deadline_in_force(emulator: Emulator) -> None:
    transport = Transport(emulator.base_url, TEST_KEY, rate_limit=1)
    try:
        transport.request("GET", "models")
        started = time.monotonic()
        with deadlines.within(2.0), pytest.raises(DeadlineError, match="rate limit"):
            transport.request("GET", "models")
        assert time.monotonic() - started < 1.5  # raised at once, not at the deadline
    finally:
        transport.close()


def test_the_shared_budgets_lock_is_not_waited_for_past_the_deadline(tmp_path: Path) -> None:
    """Another process holds the budget file's lock (stopped by Ctrl-Z): under a
    0.3 s deadline the wait for it ends by the deadline, as a deadline error, not
    after the lock's 2 s patience by sending without the shared count."""
    origin = origin_of("http://127.0.0.1:9")
    budget = SharedBudget.open(tmp_path, origin, TEST_KEY, window=60.0)
    assert budget is not None
    limiter = RateLimiter(60, budget=budget)
    holder = os.open(budget.path, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        started = time.monotonic()
        with deadlines.within(0.3), pytest.raises(DeadlineError):
            limiter.acquire()
        assert time.monotonic() - started < 1.5
        assert limiter.shared  # still counting with the other processes
    finally:
        fcntl.flock(holder, fcntl.LOCK_UN)
        os.close(holder)
        limiter.close()
