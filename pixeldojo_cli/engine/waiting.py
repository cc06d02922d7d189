"""`wait`: one job's states until it ends, for library users (the CLI follows
jobs with `Follower` directly)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from pixeldojo_cli.api.results import Job
from pixeldojo_cli.core import cancelling
from pixeldojo_cli.core.durations import LIMITS, duration_message
from pixeldojo_cli.core.errors import PixelDojoError, UsageError
from pixeldojo_cli.engine.events import Event, JobSeen
from pixeldojo_cli.engine.following import Follower
from pixeldojo_cli.engine.options import WaitOptions
from pixeldojo_cli.store.settings import DEFAULT_MAX_POLL_INTERVAL, DEFAULT_POLL_INTERVAL

if TYPE_CHECKING:
    from pixeldojo_cli.api.client import Client


def wait(
    client: Client,
    job_id: str,
    *,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    max_poll_interval: float = DEFAULT_MAX_POLL_INTERVAL,
    timeout: float | None = None,
    sleep: Callable[[float], None] = cancelling.pause,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Job]:
    """Poll `GET /jobs/{id}` until the job reaches a final state, yielding every answer.

    The engine's `Follower` for one job: `poll_interval` first, doubling,
    capped at `max_poll_interval` (either under 0.25 s counts as 0.25 s; the
    range each accepts is the setting's: `durations.LIMITS`). A status the
    client does not know counts as still running (for a bounded time). Raises
    `WaitTimeoutError` once `timeout` seconds have passed, and the error that
    ended the job (`JobFailedError`, ...) when it did not succeed. `follow`
    watches many jobs at once.
    """
    client.require_key()
    for value, name in ((poll_interval, "poll_interval"), (max_poll_interval, "max_poll_interval")):
        if not _is_number(value):
            raise UsageError(f"{name} must be a number of seconds, got {str(value)[:60]!r}.")
        if not LIMITS[name].allows(value):  # as the setting would refuse it
            raise UsageError(duration_message(name, f"{value:g}"))
    if timeout is not None and not _is_number(timeout):
        raise UsageError(f"timeout must be a number of seconds, got {str(timeout)[:60]!r}.")
    seen: list[Job] = []

    def keep(event: Event) -> None:
        if isinstance(event, JobSeen):
            seen.append(event.job)

    follower = Follower(
        client, WaitOptions(poll_interval, max_poll_interval, timeout), notify=keep, clock=clock
    )
    follower.add(job_id, look_now=False)
    while True:
        sleep(follower.pause())
        ended = follower.at_deadline() if follower.timed_out() else follower.poll_due()
        yield from seen
        seen.clear()
        outcome = ended.get(job_id)
        if isinstance(outcome, PixelDojoError):
            raise outcome
        if outcome is not None:
            return


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
