"""What the engine tells its caller while it works: progress leaves as events
through one callback, so the CLI draws and a library user may ignore them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pixeldojo_cli.api.results import Job


@dataclass(frozen=True)
class JobSeen:
    """A job's state as just seen (after submitting, or a poll)."""

    job: Job
    eta: float | None = None  # expected seconds until it finishes, when known
    # The id the job is followed under; a server may answer with another one.
    followed_as: str | None = None

    @property
    def job_id(self) -> str:
        return self.followed_as or self.job.id


@dataclass(frozen=True)
class FileProgress:
    """Bytes of one output received so far (`total` when the server said)."""

    job_id: str
    index: int
    done: int
    total: int | None


@dataclass(frozen=True)
class Notice:
    """Something a person should read; never a reason to stop."""

    message: str
    level: Literal["info", "warning"] = "info"


Event = JobSeen | FileProgress | Notice
EventSink = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The event sink for callers that draw nothing."""
