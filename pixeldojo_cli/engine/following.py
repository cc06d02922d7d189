"""Following jobs: one `Follower` for one or many jobs under one deadline."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pixeldojo_cli.api.paths import NotAnIdError
from pixeldojo_cli.api.results import Job, jobs_by_id, taken_from_list
from pixeldojo_cli.core import cancelling, deadlines, interrupts
from pixeldojo_cli.core.durations import DAY
from pixeldojo_cli.core.errors import (
    DeadlineError,
    JobsInterruptedError,
    NetworkError,
    PixelDojoError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    WaitTimeoutError,
)
from pixeldojo_cli.engine.events import EventSink, JobSeen, ignore
from pixeldojo_cli.engine.options import (
    LIST_LIMIT,
    WaitOptions,
)
from pixeldojo_cli.engine.recorder import Recorder
from pixeldojo_cli.engine.schedule import FLOOR, Schedule, at_floor, choose_schedule

if TYPE_CHECKING:
    from pixeldojo_cli.api.client import Client


@dataclass
class _Tracked:
    job_id: str
    started: float  # clock time the job was submitted (or first seen)
    due: float
    schedule: Schedule
    polls: int = 0
    unknown_since: float | None = None
    last: Job | None = None
    placed: bool = True  # its start time and schedule are known
    own_look: float = 0.0  # clock time of its last own `GET /jobs/{id}` (or of its adding)
    hint: Job | None = None  # the list's word about it, not taken, for its own answer to check
    asked_itself: bool = False  # whether its own `GET /jobs/{id}` was made yet


# Seconds the last look at the deadline may take, all its requests together
# (the rate budget is not waited for past them).
LAST_LOOK_TIMEOUT = 3.0

# The list is a hint, the job's own answer the truth: a job the list keeps
# showing unfinished is still asked about by its own `GET /jobs/{id}` at least
# this often, and under a deadline by half the time left (never more often
# than its own schedule, nor than `FLOOR`), so a list that lags or disagrees
# cannot stall a wait for good nor run it out.
OWN_LOOK_INTERVAL = 60.0

# How each job's wait ended: the job in a final state (it will not change any
# more: completed, failed, expired), or the error that ended the wait.
WaitEnd = Job | PixelDojoError


class Follower:
    """Many jobs under one deadline: which are due, and one round of polling.

    Each job has its own schedule. When more than one is due, one
    `GET /jobs?limit=N` answers for all of them, and single `GET /jobs/{id}`
    calls fill in what the list did not show. The client's rate limiter paces
    every request. `follow()` is the simple loop over it; `run --batch` drives
    it between submissions.
    """

    def __init__(
        self,
        client: Client,
        wait: WaitOptions,
        *,
        notify: EventSink = ignore,
        recorder: Recorder | None = None,
        schedule_for: Callable[[str | None], Schedule] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.wait = wait
        self.notify = notify
        self.recorder = recorder
        self._clock = clock
        types = client.modality_of if client.model_types_hint_schedule else None
        self.schedule_for = schedule_for or default_schedule_for(wait, recorder, types)
        self.deadline = _deadline(wait.timeout, clock)
        self._tracked: dict[str, _Tracked] = {}
        self._last_look: float | None = None  # when the last look must be over
        # Once the list has said a job ended while the job's own answer says
        # otherwise, it is not asked again: every job is asked about itself.
        self.list_caught = False
        # No round (one list request, or one GET per due job) sooner than `FLOOR`
        # after the last: jobs due at staggered times do not add up to a flood.
        self._next_round = -math.inf
        self.requests = 0  # status requests made, for summaries and benchmarks

    # --- what is being followed

    def add(
        self, job: Job | str, *, model: str | None = None, look_now: bool | None = None
    ) -> None:
        """Follow a job: a `Job` just submitted (first poll after its schedule's
        first delay) or an id (looked at straight away: it may be done), unless
        `look_now` says otherwise."""
        now = self._clock()
        job_id = job if isinstance(job, str) else job.id
        known = None if isinstance(job, str) else job
        schedule = self.schedule_for(model or (known.model if known else None))
        if look_now is None:
            look_now = known is None
        first = now if look_now else now + _delay(schedule, 0.0, 0)
        # A job just submitted started now; one known only by id is placed in
        # time (and given its model's schedule) when it is first seen.
        tracked = _Tracked(
            job_id, now, first, schedule, last=known, placed=known is not None, own_look=now
        )
        self._tracked[job_id] = tracked
        if known is not None:
            self.notify(JobSeen(known, schedule.eta(0.0)))

    @property
    def pending(self) -> list[str]:
        """Ids still being followed."""
        return list(self._tracked)

    def __len__(self) -> int:
        return len(self._tracked)

    def next_due(self) -> float | None:
        """Clock time of the next poll, or None when nothing is followed."""
        return min((t.due for t in self._tracked.values()), default=None)

    def timed_out(self) -> bool:
        return self.deadline is not None and self._clock() >= self.deadline

    def pause(self) -> float:
        """Seconds until the next poll is due (or the deadline comes)."""
        due = self.next_due()
        now = self._clock()
        until = now if due is None else max(due, self._next_round)
        if self.deadline is not None:
            until = min(until, self.deadline)
        return max(0.0, until - now)

    def at_deadline(self) -> dict[str, WaitEnd]:
        """The deadline came: one last look at every job still followed (a job may
        have finished since its last poll): the list, then each job's own
        answer, as far as `LAST_LOOK_TIMEOUT` allows; then each one still
        running ends its wait timed out."""
        now = self._clock()
        for tracked in self._tracked.values():
            tracked.due = now
        ended = self.poll_due(last_look=True)
        ended.update({job_id: self._timed_out(job_id) for job_id in self._tracked})
        self._tracked.clear()
        return ended

    # --- one round

    def poll_due(self, *, last_look: bool = False) -> dict[str, WaitEnd]:
        """Look at every job that is due; return those whose wait ended.

        With several jobs followed, one list request answers for all of them,
        as far as its word is taken (`taken_from_list`): a job it shows
        completed with outputs ends its wait even if it was not due yet; one
        it shows running counts as running until the job's own answer is due
        (`_own_look_due`); any other end it shows (failed, expired, cancelled,
        completed without outputs, a status unknown here) is only a hint, and
        the job's own `GET /jobs/{id}` decides. The last look asks every job
        the list does not show finished about itself.
        """
        now = self._clock()
        if not any(t.due <= now for t in self._tracked.values()):
            return {}
        if now < self._next_round:  # the deadline's last look too: the floor holds
            return {}
        self._next_round = now + FLOOR
        self._last_look = now + LAST_LOOK_TIMEOUT if last_look else None
        use_list = len(self._tracked) > 1 and not self.list_caught
        listed = self._list_answers() if use_list else {}
        ended: dict[str, WaitEnd] = {}
        for tracked in list(self._tracked.values()):
            job = self._from_list(tracked, listed.get(tracked.job_id))
            if tracked.due > now and (job is None or not job.is_terminal):
                continue
            if job is not None and not job.is_terminal and self._own_look_due(tracked, now):
                job = None  # the list may lag: the job's own answer decides
            if job is None:
                if self._last_look is not None and self._clock() >= self._last_look:
                    continue  # no time left: it ends timed out
                try:
                    job = self._own_answer(tracked, now)
                except PixelDojoError as exc:
                    ended[tracked.job_id] = about_followed_job(exc, tracked.job_id)
                    del self._tracked[tracked.job_id]
                    continue
            result = self._seen(tracked, job)
            if result is not None:
                ended[tracked.job_id] = result
        return ended

    def _from_list(self, tracked: _Tracked, listed: Job | None) -> Job | None:
        """The list's entry for a job when its word is taken; else None (a hint
        that is kept, for the job's own answer to confirm)."""
        if listed is None:
            return None
        if taken_from_list(listed):
            return listed
        tracked.hint = listed
        return None

    def _own_answer(self, tracked: _Tracked, now: float) -> Job:
        """The job's own `GET /jobs/{id}`; one that contradicts an end the list
        showed for it means the list is not to be asked again."""
        tracked.own_look, tracked.asked_itself = now, True
        job = self._get(tracked.job_id)
        hint, tracked.hint = tracked.hint, None
        if hint is not None and hint.is_terminal and _ending(hint) != _ending(job):
            self.list_caught = True
        return job

    def _own_look_due(self, tracked: _Tracked, now: float) -> bool:
        """Whether a job the list shows running is to be asked about itself: every
        `OWN_LOOK_INTERVAL`, or by half the time left until the deadline (not
        more often than `FLOOR`); at the last look, unless it just was."""
        since = now - tracked.own_look
        if self._last_look is not None:
            return since >= FLOOR or not tracked.asked_itself
        interval = OWN_LOOK_INTERVAL
        if self.deadline is not None:
            interval = min(interval, max(FLOOR, (self.deadline - tracked.own_look) / 2))
        return since >= interval

    def _request_timeout(self) -> float | None:
        """Seconds one status request may take: none past the deadline, except
        in the short last look."""
        if self.deadline is None:
            return None
        if self._last_look is not None:
            return max(0.05, self._last_look - self._clock())
        return max(0.1, min(30.0, self.deadline - self._clock() + 0.5))

    def _list_answers(self) -> dict[str, Job]:
        self.requests += 1
        try:
            limit = min(LIST_LIMIT, max(20, 2 * len(self._tracked)))
            listed = self.client.list_jobs(limit=limit, timeout=self._request_timeout())
        except PixelDojoError:
            return {}  # one GET per job instead
        return jobs_by_id(listed)

    def _get(self, job_id: str) -> Job:
        self.requests += 1
        timeout, started = self._request_timeout(), self._clock()
        try:
            return self.client.get_job(job_id, timeout=timeout)
        except (RequestTimeoutError, DeadlineError) as exc:
            # A request that could not finish (or not even start, for the rate
            # budget) by the deadline, or in the last look: the job is still
            # running. A DeadlineError may come a little early (a retry that
            # would end past the command's deadline is not tried): the same.
            if (
                isinstance(exc, DeadlineError)
                or self._ran_to_deadline(started, timeout)
                or self._last_look is not None
            ):
                raise self._timed_out(job_id) from exc
            raise

    def _timed_out(self, job_id: str) -> WaitTimeoutError:
        """The deadline ended a job's wait: still running as last seen (or a
        moment early: the next look, a retry's pause or a Retry-After, would
        pass it), or never reached at all (the API never answered about it)."""
        tracked = self._tracked.get(job_id)
        if tracked is not None and tracked.last is None:
            return WaitTimeoutError.unreached(job_id)
        if not self.timed_out() and self._last_look is None:  # a pause would pass it
            return WaitTimeoutError(
                f"Job {job_id} is still running; the timeout comes before it could be "
                "looked at again.",
                job_id=job_id,
            )
        return WaitTimeoutError.still_running(job_id)

    def _ran_to_deadline(self, started: float, timeout: float | None) -> bool:
        if self.deadline is None:
            return False
        return self.timed_out() or (timeout is not None and started + timeout >= self.deadline)

    def _place(self, tracked: _Tracked, job: Job, now: float) -> None:
        """First sight of a job known only by id: its age from `createdAt` (when
        the two clocks plausibly agree) and its model's schedule."""
        tracked.placed = True
        if job.created_at is not None:
            age = (datetime.now(UTC) - job.created_at).total_seconds()
            if 0 <= age < 86400:
                tracked.started = now - age
        if job.model:
            tracked.schedule = self.schedule_for(job.model)

    def _seen(self, tracked: _Tracked, job: Job) -> WaitEnd | None:
        now = self._clock()
        if not tracked.placed:
            self._place(tracked, job, now)
        tracked.polls += 1
        tracked.last = job
        elapsed = now - tracked.started
        self.notify(JobSeen(job, tracked.schedule.eta(elapsed), followed_as=tracked.job_id))
        if self.recorder is not None:
            self.recorder.seen(job)
        if job.is_terminal:
            del self._tracked[tracked.job_id]
            return job
        if job.known_status:
            tracked.unknown_since = None
        else:
            tracked.unknown_since = tracked.unknown_since or now
            if now - tracked.unknown_since >= self.wait.unknown_status_timeout:
                del self._tracked[tracked.job_id]
                return WaitTimeoutError(
                    f"Job {job.id} reports status {job.status!r}, which this client does not "
                    f"know; stopped waiting after {self.wait.unknown_status_timeout:g} s.",
                    job_id=job.id,
                    hint=f"See it with `pixeldojo jobs show {job.id}`; the "
                    "`unknown_status_timeout` setting changes how long such a job is waited for.",
                )
        tracked.due = now + _delay(tracked.schedule, elapsed, tracked.polls)
        return None


def about_followed_job(error: PixelDojoError, job_id: str) -> PixelDojoError:
    """An error that ended the wait for a submitted job names the job and says
    how to resume: never "try again", which would submit (and pay) again."""
    if isinstance(error, NotAnIdError):  # never asked about: nothing to resume
        return error
    if error.job_id is None:
        error.job_id = job_id
    resume = f"pixeldojo jobs wait {job_id}"
    if resume in error.hint:
        return error
    if isinstance(error, RateLimitError) and error.retry_after is not None:
        error.hint = (
            f"The job keeps running on the server; the API asks for a pause of "
            f"{error.retry_after:.0f} s: resume after it with `{resume}`."
        )
    elif isinstance(error, NetworkError | RateLimitError | ServerError) or not error.hint:
        error.hint = f"The job keeps running on the server: resume with `{resume}`."
    else:
        error.hint = f"{error.hint} Then resume with `{resume}`."
    return error


def _deadline(timeout: float | None, clock: Callable[[], float]) -> float | None:
    """When the wait ends, on `clock`: after `timeout`, and no later than the
    deadline in force (a command's `--timeout` counts from its start)."""
    bounds = [s for s in (timeout, deadlines.remaining()) if s is not None]
    return clock() + min(bounds) if bounds else None


def _ending(job: Job) -> str:
    """How a job stands, as far as the list and its own answer must agree."""
    if job.succeeded:
        return "completed"
    if job.failed:
        return "failed"
    return "expired" if job.expired else "running"


def _delay(schedule: Schedule, elapsed: float, polls: int) -> float:
    # Every schedule of ours keeps the floor; so does one a library caller gives,
    # and it waits under a day (the longest poll interval) even if that says inf.
    return min(at_floor(schedule.delay(elapsed, polls)), DAY)


def default_schedule_for(
    wait: WaitOptions,
    recorder: Recorder | None = None,
    modality_of: Callable[[str], str | None] | None = None,
) -> Callable[[str | None], Schedule]:
    """Each model's schedule: the fixed one when a flag or the config asked for
    it, else the one learned from that model's durations on this API (from the
    ledger; with no history, an early start that grows gently, later for a
    video model when `modality_of` knows it is one)."""
    chosen: dict[str | None, Schedule] = {}

    def schedule_for(model: str | None) -> Schedule:
        if model not in chosen:
            history = recorder.durations(model) if recorder is not None and model else []
            kind = modality_of(model) if modality_of is not None and model else None
            chosen[model] = choose_schedule(
                history, wait.poll_interval, wait.max_poll_interval, kind
            )
        return chosen[model]

    return schedule_for


def follow(
    client: Client,
    jobs: Iterable[Job | str],
    wait: WaitOptions,
    *,
    notify: EventSink = ignore,
    recorder: Recorder | None = None,
    schedule_for: Callable[[str | None], Schedule] | None = None,
    sleep: Callable[[float], None] = cancelling.pause,
    look_now: bool | None = None,
    model: str | None = None,
) -> dict[str, WaitEnd]:
    """Watch jobs until each one reaches a final state or the deadline passes.

    Returns each id's last state (a `Job` in a final state) or the error that ended its
    wait (`WaitTimeoutError` after `wait.timeout`). `model` picks the schedule
    (its history) when the jobs do not say which model they run. Ctrl-C raises
    `JobsInterruptedError` naming the jobs still running.
    """
    follower = Follower(client, wait, notify=notify, recorder=recorder, schedule_for=schedule_for)
    for job in jobs:
        follower.add(job, model=model, look_now=look_now)
    # What a second Ctrl-C (which ends the process at once) still prints.
    interrupts.set_resume_hint(f"Resume with: pixeldojo jobs wait {' '.join(follower.pending)}")
    ended: dict[str, WaitEnd] = {}
    try:
        while len(follower):
            ended.update(follower.poll_due())
            if not len(follower):
                break
            sleep(follower.pause())
            if follower.timed_out():
                ended.update(follower.at_deadline())
    except KeyboardInterrupt:
        raise interrupted_waiting(follower.pending) from None
    finally:
        interrupts.set_resume_hint(None)
    return ended


def stoppable_pause(stop: threading.Event) -> Callable[[float], None]:
    """A `sleep` for `follow` that ends the wait as an interrupted one (the jobs
    keep running, in the ledger) as soon as `stop` is set from another thread:
    a server whose client went away stops waiting for it."""

    def pause(seconds: float) -> None:
        if stop.wait(seconds):
            raise KeyboardInterrupt

    return pause


def interrupted_waiting(job_ids: Sequence[str]) -> JobsInterruptedError:
    """Ctrl-C while waiting: the jobs keep running; say how to pick them up again."""
    ids = " ".join(job_ids)
    one = len(job_ids) == 1
    return JobsInterruptedError(
        f"Interrupted. {'Job' if one else 'Jobs'} {ids} {'keeps' if one else 'keep'} "
        "running on the server.",
        job_ids=job_ids,
        hint=f"Resume with: pixeldojo jobs wait {ids}",
    )
