"""The job workflow, with no user interface: follow jobs, save their outputs,
record them in the ledger, and say how each one ended.

Every command (`run`, `jobs wait`, `download`, `download --pending`, `webhook
listen`) and `run --batch` are built on these pieces; none re-codes them:

- `resolve_options()` turns flags and `Settings` into frozen `WaitOptions` and
  `SaveOptions`: the only home of "flag > environment > config > default" for
  waiting and saving.
- `Follower` / `follow()` watch one or many jobs under one deadline, each on its
  own poll schedule, with the list endpoint when several are due at once.
- `save()` downloads a completed job's outputs, keeps intact files, records
  each file in the ledger as it lands and writes the `<jobId>.json` sidecar.
- `settle()` turns a job (or the error that ended its wait) into a `JobResult`
  with a typed `Outcome`; `errors.combined_exit_code()` turns many into one.

Progress leaves as events (`JobSeen`, `FileProgress`, `Notice`) through one
callback, so the CLI draws and a library user may ignore them. The ledger is
reached through `Recorder`, which never lets a ledger fault stop a paid job's
outputs from being saved.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pixeldojo_cli.errors import (
    ExitCode,
    ExpiredError,
    JobFailedError,
    JobNotFinishedError,
    JobsInterruptedError,
    Outcome,
    PixelDojoError,
    RequestTimeoutError,
    UsageError,
    WaitTimeoutError,
    outcome_exit_code,
    outcome_of,
)
from pixeldojo_cli.results import Job

if TYPE_CHECKING:
    from pixeldojo_cli.client import Client
    from pixeldojo_cli.downloads import DownloadedFile
    from pixeldojo_cli.ledger import Ledger, LedgerJob
    from pixeldojo_cli.settings import Settings

# How long a job whose status this client does not know is waited for, unless
# --timeout or the `unknown_status_timeout` setting says otherwise.
DEFAULT_UNKNOWN_STATUS_TIMEOUT = 600.0
# The published schedule: 2 s first, doubling, at most 30 s.
PUBLISHED_FIRST_POLL = 2.0
PUBLISHED_MAX_POLL = 30.0
# Never poll one job more often than this, whatever a schedule says.
MIN_POLL_DELAY = 0.25
# One `GET /jobs?limit=N` answers for many running jobs at once.
LIST_LIMIT = 100


# --- events -------------------------------------------------------------------


@dataclass(frozen=True)
class JobSeen:
    """A job's state as just seen (after submitting, or a poll)."""

    job: Job
    eta: float | None = None  # expected seconds until it finishes, when known


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


# --- options ------------------------------------------------------------------


class Schedule(Protocol):
    """When to look at a job again."""

    def delay(self, elapsed: float, polls: int) -> float:
        """Seconds to wait before the next poll, `elapsed` seconds after the job
        was submitted and after `polls` polls."""

    def eta(self, elapsed: float) -> float | None:
        """Expected seconds until the job finishes, or None when unknown."""


@dataclass(frozen=True)
class DoublingSchedule:
    """`first` seconds, doubling each poll, at most `maximum`."""

    first: float = PUBLISHED_FIRST_POLL
    maximum: float = PUBLISHED_MAX_POLL

    def delay(self, elapsed: float, polls: int) -> float:
        return float(min(self.maximum, self.first * 2.0 ** min(polls, 30)))

    def eta(self, elapsed: float) -> float | None:
        return None


@dataclass(frozen=True)
class WaitOptions:
    """How to wait: the poll schedule and the one deadline.

    `poll_interval`/`max_poll_interval` are set when a flag or the config asked
    for a fixed doubling schedule; None means the default schedule.
    """

    poll_interval: float | None = None
    max_poll_interval: float | None = None
    timeout: float | None = None
    unknown_status_timeout: float = DEFAULT_UNKNOWN_STATUS_TIMEOUT

    def fixed_schedule(self) -> DoublingSchedule | None:
        """The doubling schedule asked for, or None for the default one."""
        if self.poll_interval is None and self.max_poll_interval is None:
            return None
        first = self.poll_interval or PUBLISHED_FIRST_POLL
        return DoublingSchedule(first, max(first, self.max_poll_interval or PUBLISHED_MAX_POLL))


@dataclass(frozen=True)
class SaveOptions:
    """Where and how to save outputs.

    `folder` is the folder asked for on the command line (`-o`); without it a job
    the ledger knows goes to the folder it was submitted for, and any other job
    to `default_folder` (PIXELDOJO_OUTPUT_DIR, the config, or the current one).
    """

    default_folder: Path = Path(".")
    folder: Path | None = None
    checksum: bool = False
    force: bool = False
    download: bool = True

    def folder_for(self, local: LedgerJob | None) -> Path:
        """The folder one job's outputs go to."""
        if self.folder is not None:
            return self.folder
        if local is not None:
            return Path(local.output_dir)
        return self.default_folder


@dataclass(frozen=True)
class JobFlags:
    """The raw values of the waiting and saving flags one command was given
    (None: not given)."""

    output_dir: str | None = None
    poll_interval: float | None = None
    max_poll_interval: float | None = None
    timeout: float | None = None
    checksum: bool | None = None
    force: bool = False
    download: bool = True


def _from_config(setting: Any) -> float | None:
    """A poll setting's value when it came from the environment or the config."""
    return None if setting.source == "default" else float(setting.value)


def resolve_options(settings: Settings, flags: JobFlags) -> tuple[WaitOptions, SaveOptions]:
    """Flags over `settings` (which already hold environment > config > default):
    the one place that rule is applied to waiting and saving."""
    for value, option in (
        (flags.poll_interval, "--poll-interval"),
        (flags.max_poll_interval, "--max-poll-interval"),
    ):
        if value is not None and not 0 < value < 86400:
            raise UsageError(f"{option} must be a positive number of seconds, got {value}.")
    poll = flags.poll_interval or _from_config(settings.poll_interval)
    longest = flags.max_poll_interval or _from_config(settings.max_poll_interval)
    unknown = getattr(settings, "unknown_status_timeout", None)
    wait = WaitOptions(
        poll_interval=poll,
        max_poll_interval=longest,
        timeout=flags.timeout,
        unknown_status_timeout=float(unknown.value)
        if unknown is not None
        else DEFAULT_UNKNOWN_STATUS_TIMEOUT,
    )
    default_folder = Path(str(settings.output_dir.value)).expanduser()
    save = SaveOptions(
        default_folder=default_folder,
        folder=Path(flags.output_dir).expanduser() if flags.output_dir else None,
        checksum=bool(settings.checksum.value) if flags.checksum is None else flags.checksum,
        force=flags.force,
        download=flags.download,
    )
    return wait, save


# --- the ledger, through one door ------------------------------------------------


class Recorder:
    """The ledger as the workflow uses it: thread-safe, and never fatal.

    A ledger that is locked, read-only or damaged must never cost the user a
    paid job's outputs, so every write here turns a ledger fault into one
    warning (`Notice`) and the work goes on. Without a ledger (the embedded
    emulator, or none could be opened) every call is a no-op.
    """

    def __init__(
        self,
        ledger: Ledger | None,
        base_url: str,
        profile: str,
        notify: EventSink = ignore,
    ) -> None:
        self.ledger = ledger
        self.base_url = base_url.rstrip("/")
        self.profile = profile
        self.notify = notify
        self._lock = threading.RLock()
        self.unrecorded: list[str] = []  # job ids whose record could not be written
        self._warned = False

    def _fault(self, job_id: str, exc: Exception) -> None:
        if job_id not in self.unrecorded:
            self.unrecorded.append(job_id)
        if not self._warned:
            self._warned = True
            reason = exc.message if isinstance(exc, PixelDojoError) else str(exc)
            self.notify(
                Notice(
                    f"The job ledger could not be written ({reason}); carrying on without it. "
                    "Not recorded: " + job_id,
                    level="warning",
                )
            )

    def _safely(self, job_id: str, write: Callable[[Ledger], None]) -> None:
        if self.ledger is None:
            return
        try:
            with self._lock:
                write(self.ledger)
        except Exception as exc:  # any ledger fault: warn and go on
            self._fault(job_id, exc)

    def get(self, job_id: str) -> LedgerJob | None:
        """What the ledger knows of a job on this API, or None."""
        if self.ledger is None:
            return None
        try:
            with self._lock:
                return self.ledger.get(self.base_url, job_id)
        except Exception:  # a ledger that cannot be read knows nothing
            return None

    def submitted(
        self,
        job: Job,
        *,
        model: str,
        inputs: dict[str, Any],
        estimate: float | None,
        folder: Path,
        input_hash: str | None = None,
    ) -> None:
        """A job was submitted: recorded before any waiting starts."""
        self._safely(
            job.id,
            lambda ledger: ledger.record_submission(
                job,
                base_url=self.base_url,
                profile=self.profile,
                model=model,
                inputs=inputs,
                estimated_credits=estimate,
                output_dir=folder.resolve(),
                input_hash=input_hash,
            ),
        )

    def seen(self, job: Job) -> None:
        """Keep the ledger's idea of a job it knows up to date."""
        self._safely(job.id, lambda ledger: ledger.update_job(self.base_url, job))

    def file_saved(self, job_id: str, n: int, file: DownloadedFile) -> None:
        """Output `n` of a job is on disk: recorded at once, not after the last file."""
        from pixeldojo_cli.ledger import LedgerFile

        entry = LedgerFile(
            n,
            str(file.path.resolve()),
            file.size,
            file.sha256,
            file.url,
            mtime_ns=file.mtime_ns,
        )
        self._safely(job_id, lambda ledger: ledger.record_files(self.base_url, job_id, [entry]))

    def lost(self, job_id: str) -> None:
        """The job's outputs expired before they were saved."""
        self._safely(job_id, lambda ledger: ledger.mark_lost(self.base_url, job_id))

    def unsaved(self) -> list[LedgerJob]:
        """Jobs of this API and profile whose outputs were never saved, oldest first."""
        if self.ledger is None:
            return []
        with self._lock:
            return self.ledger.unsaved(base_url=self.base_url, profile=self.profile)


# --- following jobs ---------------------------------------------------------------


@dataclass
class _Tracked:
    job_id: str
    started: float  # clock time the job was submitted (or first seen)
    due: float
    schedule: Schedule
    polls: int = 0
    unknown_since: float | None = None
    last: Job | None = None


# Each job's wait ends with its last state, or the error that ended it.
Settled = Job | PixelDojoError


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
        self._schedule_for = schedule_for or default_schedule_for(wait)
        self.deadline = None if wait.timeout is None else clock() + wait.timeout
        self._tracked: dict[str, _Tracked] = {}
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
        started = now
        if known is not None and known.created_at is not None:
            age = (datetime.now(UTC) - known.created_at).total_seconds()
            started = now - max(0.0, age)
        schedule = self._schedule_for(model or (known.model if known else None))
        if look_now is None:
            look_now = known is None
        first = now if look_now else now + _delay(schedule, now - started, 0)
        self._tracked[job_id] = _Tracked(job_id, started, first, schedule, last=known)
        if known is not None:
            self.notify(JobSeen(known, schedule.eta(now - started)))

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
        until = now if due is None else due
        if self.deadline is not None:
            until = min(until, self.deadline)
        return max(0.0, until - now)

    def give_up(self) -> dict[str, Settled]:
        """The deadline passed: every job still followed ends its wait timed out."""
        ended: dict[str, Settled] = {
            job_id: WaitTimeoutError(
                f"Job {job_id} is still running after the timeout.", job_id=job_id
            )
            for job_id in self._tracked
        }
        self._tracked.clear()
        return ended

    # --- one round

    def poll_due(self) -> dict[str, Settled]:
        """Look at every job that is due; return those whose wait ended."""
        now = self._clock()
        due = [t for t in self._tracked.values() if t.due <= now]
        if not due:
            return {}
        listed = self._list_answers() if len(due) > 1 else {}
        ended: dict[str, Settled] = {}
        for tracked in due:
            job = listed.get(tracked.job_id)
            if job is None or (job.succeeded and not job.output_urls):
                try:
                    job = self._get(tracked.job_id)
                except PixelDojoError as exc:
                    ended[tracked.job_id] = exc
                    del self._tracked[tracked.job_id]
                    continue
            result = self._seen(tracked, job)
            if result is not None:
                ended[tracked.job_id] = result
        return ended

    def _list_answers(self) -> dict[str, Job]:
        self.requests += 1
        try:
            limit = min(LIST_LIMIT, max(20, 2 * len(self._tracked)))
            return {job.id: job for job in self.client.list_jobs(limit=limit)}
        except PixelDojoError:
            return {}  # one GET per job instead

    def _get(self, job_id: str) -> Job:
        self.requests += 1
        timeout = None
        if self.deadline is not None:
            timeout = max(0.1, min(30.0, self.deadline - self._clock() + 0.5))
        try:
            return self.client.get_job(job_id, timeout=timeout)
        except RequestTimeoutError as exc:
            if self.timed_out():
                raise WaitTimeoutError(
                    f"Job {job_id} is still running after the timeout.", job_id=job_id
                ) from exc
            raise

    def _seen(self, tracked: _Tracked, job: Job) -> Settled | None:
        now = self._clock()
        tracked.polls += 1
        tracked.last = job
        elapsed = now - tracked.started
        self.notify(JobSeen(job, tracked.schedule.eta(elapsed)))
        if self.recorder is not None:
            self.recorder.seen(job)
        if job.settled:
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


def _delay(schedule: Schedule, elapsed: float, polls: int) -> float:
    return max(MIN_POLL_DELAY, schedule.delay(elapsed, polls))


def default_schedule_for(wait: WaitOptions) -> Callable[[str | None], Schedule]:
    """Each job's schedule: the fixed one when asked for, else the default."""
    fixed = wait.fixed_schedule()
    chosen: Schedule = fixed if fixed is not None else DoublingSchedule()
    return lambda model: chosen


def follow(
    client: Client,
    jobs: Iterable[Job | str],
    wait: WaitOptions,
    *,
    notify: EventSink = ignore,
    recorder: Recorder | None = None,
    schedule_for: Callable[[str | None], Schedule] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    look_now: bool | None = None,
) -> dict[str, Settled]:
    """Watch jobs until each one settles or the deadline passes.

    Returns each id's last state (a settled `Job`) or the error that ended its
    wait (`WaitTimeoutError` after `wait.timeout`). Ctrl-C raises
    `JobsInterruptedError` naming the jobs still running.
    """
    follower = Follower(client, wait, notify=notify, recorder=recorder, schedule_for=schedule_for)
    for job in jobs:
        follower.add(job, look_now=look_now)
    ended: dict[str, Settled] = {}
    try:
        while len(follower):
            ended.update(follower.poll_due())
            if not len(follower):
                break
            if follower.timed_out():
                ended.update(follower.give_up())
                break
            sleep(follower.pause())
    except KeyboardInterrupt:
        raise interrupted_waiting(follower.pending) from None
    return ended


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


# --- saving outputs -----------------------------------------------------------------


def _known_files(
    local: LedgerJob | None, folder: Path, job_id: str, base_url: str
) -> dict[int, DownloadedFile]:
    """Files this job (of this API) already has on disk, per its sidecar and the ledger."""
    from pixeldojo_cli.downloads import DownloadedFile, recorded_files

    found = dict(recorded_files(folder, job_id, base_url))
    for record in local.files if local is not None else ():
        found.setdefault(
            record.n,
            DownloadedFile(
                Path(record.path), record.size, record.sha256, record.url, mtime_ns=record.mtime_ns
            ),
        )
    return found


def check_saveable(job: Job) -> None:
    """Raise the error that says why a job has nothing to save, if it has not."""
    if job.failed:
        raise JobFailedError(
            f"Job {job.id} {job.status}: {job.error or 'no reason given'}.",
            job_id=job.id,
            hint="Nothing to download. Check the inputs and try again.",
        )
    if job.expired:
        raise ExpiredError(f"Job {job.id} has expired; its outputs are gone.", status=None)
    if not job.succeeded:
        raise JobNotFinishedError(
            f"Job {job.id} has not finished yet (status: {job.status}).",
            hint=f"Wait for it and download it with: pixeldojo jobs wait {job.id}",
            job_id=job.id,
        )


def save(
    client: Client,
    job: Job,
    options: SaveOptions,
    *,
    recorder: Recorder | None = None,
    notify: EventSink = ignore,
    model: str | None = None,
    inputs: dict[str, Any] | None = None,
) -> list[DownloadedFile]:
    """Download a completed job's outputs and return the files, in output order.

    Files already there and intact (per the sidecar or the ledger, unless
    `options.force`) are kept; each file is recorded in the ledger as it
    lands; `<jobId>.json` (the job, the model, the inputs, the files) is
    written beside them. A job that failed, expired or is still running
    raises the error that says so. Ctrl-C raises `JobsInterruptedError` with
    the command that resumes; no partial file is left under a final name.
    """
    from pixeldojo_cli.downloads import api_base_url, download_outputs, write_metadata

    check_saveable(job)
    base_url = api_base_url(client.transport)
    local = recorder.get(job.id) if recorder is not None else None
    folder = options.folder_for(local)
    if not job.output_urls:
        notify(Notice(f"Job {job.id} completed without any output URL.", level="warning"))
    existing = {} if options.force else _known_files(local, folder, job.id, base_url)

    def on_saved(n: int, file: DownloadedFile) -> None:
        if recorder is not None:
            recorder.file_saved(job.id, n, file)

    def on_progress(index: int, done: int, total: int | None) -> None:
        notify(FileProgress(job.id, index, done, total))

    try:
        files = download_outputs(
            client.transport,
            job,
            folder,
            existing=existing,
            on_progress=on_progress,
            on_saved=on_saved,
            checksum=options.checksum,
            expires_at=job.output_expiry() or (local.deadline() if local else None),
        )
    except KeyboardInterrupt:
        raise JobsInterruptedError(
            f"Interrupted while downloading job {job.id}; no partial file was left under "
            "a final name.",
            job_ids=[job.id],
            hint=f"Resume with: pixeldojo download {job.id}",
        ) from None
    write_metadata(
        folder,
        job,
        model or (local.model if local else None) or job.model or "unknown",
        inputs if inputs is not None else (local.inputs if local else {}),
        files,
        base_url=base_url,
    )
    kept = sum(1 for f in files if f.skipped)
    if kept:
        notify(
            Notice(
                f"{job.id}: {kept} file(s) already saved and intact, not downloaded again "
                "(--force fetches them anyway)."
            )
        )
    return files


# --- outcomes -------------------------------------------------------------------------


@dataclass(frozen=True)
class JobResult:
    """How one job ended for this command: a typed outcome, the job as last
    seen, the files saved, and the error when there was one."""

    job_id: str
    outcome: Outcome
    job: Job | None = None
    files: tuple[DownloadedFile, ...] = ()
    error: PixelDojoError | None = None

    @property
    def exit_code(self) -> ExitCode:
        return outcome_exit_code(self.outcome, self.error)

    @classmethod
    def failure(cls, job_id: str, error: PixelDojoError, job: Job | None = None) -> JobResult:
        """A result for the error that ended a job's handling."""
        if error.job_id is None:
            error.job_id = job_id
        return cls(job_id, outcome_of(error), job=job, error=error)


def settle(
    client: Client,
    ended: Settled,
    job_id: str,
    options: SaveOptions,
    *,
    recorder: Recorder | None = None,
    notify: EventSink = ignore,
    model: str | None = None,
    inputs: dict[str, Any] | None = None,
) -> JobResult:
    """A job whose wait ended, saved (or listed) when it completed."""
    if isinstance(ended, PixelDojoError):
        return JobResult.failure(job_id, ended)
    job = ended
    try:
        if not options.download:
            check_saveable(job)
            if not job.output_urls:
                notify(Notice(f"Job {job.id} completed without any output URL.", "warning"))
            return JobResult(job.id, Outcome.LISTED, job=job)
        files = save(
            client,
            job,
            options,
            recorder=recorder,
            notify=notify,
            model=model,
            inputs=inputs,
        )
    except JobsInterruptedError:
        raise
    except PixelDojoError as exc:
        return JobResult.failure(job.id, exc, job)
    return JobResult(job.id, Outcome.SAVED, job=job, files=tuple(files))


def wait_and_save(
    client: Client,
    jobs: Sequence[Job | str],
    wait: WaitOptions,
    options: SaveOptions,
    *,
    recorder: Recorder | None = None,
    notify: EventSink = ignore,
    schedule_for: Callable[[str | None], Schedule] | None = None,
    model: str | None = None,
    inputs: dict[str, Any] | None = None,
    look_now: bool | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[JobResult]:
    """Follow jobs to their end, then save each completed one: `run` and
    `jobs wait`. Results come in the order the jobs were given."""
    ended = follow(
        client,
        jobs,
        wait,
        notify=notify,
        recorder=recorder,
        schedule_for=schedule_for,
        sleep=sleep,
        look_now=look_now,
    )
    results = []
    for job in jobs:
        job_id = job if isinstance(job, str) else job.id
        results.append(
            settle(
                client,
                ended[job_id],
                job_id,
                options,
                recorder=recorder,
                notify=notify,
                model=model,
                inputs=inputs,
            )
        )
    return results


def fetch_and_save(
    client: Client,
    job_id: str,
    options: SaveOptions,
    *,
    recorder: Recorder | None = None,
    notify: EventSink = ignore,
) -> JobResult:
    """`download ID`: look the job up once and save it if it completed; a job
    still running is `Outcome.RUNNING` with the error that says so."""
    try:
        job = client.get_job(job_id)
    except PixelDojoError as exc:
        return JobResult.failure(job_id, exc)
    if recorder is not None:
        recorder.seen(job)
    if not job.settled:
        error = JobNotFinishedError(
            f"Job {job_id} has not finished yet (status: {job.status}).",
            hint=f"Wait for it and download it with: pixeldojo jobs wait {job_id}",
            job_id=job_id,
        )
        return JobResult.failure(job_id, error, job)
    return settle(client, job, job_id, options, recorder=recorder, notify=notify)


def sweep_pending(
    client: Client,
    options: SaveOptions,
    recorder: Recorder,
    *,
    notify: EventSink = ignore,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[JobResult]:
    """`download --pending`: every ledger job whose outputs were never saved.

    A job still running is left for the next sweep (not an error). A job is
    called expired only when the API says so (`expired`, 410) or its `expiresAt`
    has passed; any other trouble (a 404 on one file, a 5xx, a reset) leaves it
    pending for the next sweep, with a non-zero exit that says so.
    """
    results = []
    for local in recorder.unsaved():
        result = fetch_and_save(client, local.id, options, recorder=recorder, notify=notify)
        if result.outcome is Outcome.RUNNING:  # not an error here: the next sweep gets it
            result = JobResult(local.id, Outcome.RUNNING, job=result.job)
        elif result.outcome is Outcome.EXPIRED and _really_expired(result, local, now()):
            recorder.lost(local.id)
        elif result.outcome is Outcome.EXPIRED:
            # Not past its expiry: one missing file is not the end of a paid job.
            assert result.error is not None
            error = PixelDojoError(
                f"{result.error.message} Its outputs should be kept until "
                f"{local.deadline().isoformat()}; the next sweep tries again.",
                hint="Run `pixeldojo download --pending` again later.",
                job_id=local.id,
            )
            error.code = "download_failed"
            result = JobResult(local.id, Outcome.ERROR, job=result.job, error=error)
        results.append(result)
    return results


def _really_expired(result: JobResult, local: LedgerJob, now: datetime) -> bool:
    """Whether the API itself said expired (status `expired`, HTTP 410), or the
    job is past its expiry (`expiresAt`, else 24 h after submission)."""
    if result.job is not None and result.job.expired:
        return True
    if getattr(result.error, "status", None) == 410:
        return True
    expiry = result.job.output_expiry() if result.job is not None else None
    return now >= (expiry or local.deadline())


# --- submitting ---------------------------------------------------------------------


def submit(
    client: Client,
    model: str,
    inputs: dict[str, Any],
    *,
    folder: Path,
    recorder: Recorder | None = None,
    notify: EventSink = ignore,
    webhook_url: str | None = None,
    estimate: float | None = None,
    input_hash: str | None = None,
) -> Job:
    """`POST /models/{model}/run` (never retried once the server may have it),
    then the job goes into the ledger before any waiting starts."""
    job = client.run(model, inputs, webhook_url=webhook_url)
    if recorder is not None:
        recorder.submitted(
            job,
            model=model,
            inputs=inputs,
            estimate=estimate,
            folder=folder,
            input_hash=input_hash,
        )
    notify(JobSeen(job))
    return job
