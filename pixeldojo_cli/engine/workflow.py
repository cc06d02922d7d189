"""How each job ends: typed results (`JobResult`), and the workflows the
commands run: submit, wait and save, download, the pending sweep."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pixeldojo_cli.api.results import Job
from pixeldojo_cli.core import cancelling, interrupts
from pixeldojo_cli.core.errors import (
    ExitCode,
    JobNotFinishedError,
    JobsInterruptedError,
    Outcome,
    PixelDojoError,
    outcome_exit_code,
    outcome_of,
)
from pixeldojo_cli.engine.budget import Budget, budget_hold
from pixeldojo_cli.engine.events import EventSink, JobSeen, Notice, ignore
from pixeldojo_cli.engine.file_inputs import send_files
from pixeldojo_cli.engine.following import WaitEnd, follow
from pixeldojo_cli.engine.options import SaveOptions, WaitOptions
from pixeldojo_cli.engine.recorder import Recorder
from pixeldojo_cli.engine.saving import check_saveable, save
from pixeldojo_cli.engine.schedule import Schedule
from pixeldojo_cli.engine.submission import Submission

if TYPE_CHECKING:
    from pixeldojo_cli.api.client import Client
    from pixeldojo_cli.store.files import DownloadedFile


@dataclass(frozen=True)
class JobResult:
    """How one job ended for this command: a typed outcome, the job as last
    seen, the files saved, and the error when there was one."""

    job_id: str
    outcome: Outcome
    job: Job | None = None
    files: tuple[DownloadedFile, ...] = ()
    error: PixelDojoError | None = None
    # Whether every output is on disk, as the ledger knows it (None: no ledger,
    # or it does not know the job).
    saved: bool | None = None

    @property
    def exit_code(self) -> ExitCode:
        return outcome_exit_code(self.outcome, self.error)

    @classmethod
    def failure(cls, job_id: str, error: PixelDojoError, job: Job | None = None) -> JobResult:
        """A result for the error that ended a job's handling."""
        if error.job_id is None:
            error.job_id = job_id
        return cls(job_id, outcome_of(error), job=job, error=error)


def conclude(
    client: Client,
    ended: WaitEnd,
    job_id: str,
    options: SaveOptions,
    *,
    recorder: Recorder | None = None,
    notify: EventSink = ignore,
    submission: Submission | None = None,
    cancel: threading.Event | None = None,
) -> JobResult:
    """How a job whose wait ended ends for this command: saved (or listed) when
    it completed, else the error that says why not. `submission` (what the job
    was asked) goes into the `<jobId>.json` sidecar. Setting `cancel` (from
    another thread) stops its downloads."""
    result = _result_of(client, ended, job_id, options, recorder, notify, submission, cancel)
    if recorder is None:
        return result
    return dataclasses.replace(result, saved=recorder.saved_state(job_id))


def _result_of(
    client: Client,
    ended: WaitEnd,
    job_id: str,
    options: SaveOptions,
    recorder: Recorder | None,
    notify: EventSink,
    submission: Submission | None,
    cancel: threading.Event | None,
) -> JobResult:
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
            model=submission.model if submission is not None else None,
            inputs=submission.kept_inputs() if submission is not None else None,
            file_inputs=submission.file_documents() if submission is not None else None,
            cancel=cancel,
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
    submission: Submission | None = None,
    look_now: bool | None = None,
    sleep: Callable[[float], None] = cancelling.pause,
) -> list[JobResult]:
    """Follow jobs to their end, then save each completed one: `run` and
    `jobs wait`. `submission` is what `run` asked of its one job (its model
    picks the poll schedule). Results come in the order the jobs were given."""
    ended = follow(
        client,
        jobs,
        wait,
        notify=notify,
        recorder=recorder,
        schedule_for=schedule_for,
        sleep=sleep,
        look_now=look_now,
        model=submission.model if submission is not None else None,
    )
    results = []
    for job in jobs:
        job_id = job if isinstance(job, str) else job.id
        results.append(
            conclude(
                client,
                ended[job_id],
                job_id,
                options,
                recorder=recorder,
                notify=notify,
                submission=submission,
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
    if not job.is_terminal:
        error = JobNotFinishedError(
            f"Job {job_id} has not finished yet (status: {job.status}).",
            hint=f"Wait for it and download it with: pixeldojo jobs wait {job_id}",
            job_id=job_id,
        )
        saved = recorder.saved_state(job_id) if recorder is not None else None
        return dataclasses.replace(JobResult.failure(job_id, error, job), saved=saved)
    return conclude(client, job, job_id, options, recorder=recorder, notify=notify)


def sweep_pending(
    client: Client,
    options: SaveOptions,
    recorder: Recorder,
    *,
    notify: EventSink = ignore,
) -> list[JobResult]:
    """`download --pending`: every ledger job whose outputs were never saved.

    A job still running is left for the next sweep (not an error). A job is
    expired only when the API says so (`expired`, 410) or its expiry has passed
    (the rule `downloads` applies to every output); then it is marked lost. Any
    other trouble (a 404 on one file before expiry, a 5xx, a reset) is an error
    that leaves it pending for the next sweep, with a non-zero exit.
    """
    results = []
    for local in recorder.unsaved():
        result = fetch_and_save(client, local.id, options, recorder=recorder, notify=notify)
        if result.outcome is Outcome.RUNNING:  # not an error here: the next sweep gets it
            result = JobResult(local.id, Outcome.RUNNING, job=result.job)
        elif result.outcome is Outcome.EXPIRED:
            recorder.lost(local.id)
        results.append(result)
    return results


# --- submitting ---------------------------------------------------------------------


def submit(
    client: Client,
    submission: Submission,
    *,
    recorder: Recorder | None = None,
    notify: EventSink = ignore,
    budget: Budget | None = None,
) -> Job:
    """`POST /models/{model}/run` (never retried once the server may have it),
    then the job goes into the ledger before any waiting starts. With a
    `budget`, the job's cost is checked and reserved first (see `engine.budget`):
    refused past it, or when it cannot be checked. Its `@` values are uploaded
    next (nothing is submitted when one cannot be), then the POST."""
    with budget_hold(budget, submission, recorder) as hold:
        submission = send_files(client, submission, recorder=recorder, notify=notify)
        hold.sending()
        job = client.run(submission.model, submission.inputs, webhook_url=submission.webhook_url)
        hold.submitted(job)
    # Paid for now: whatever interrupts what follows, the user gets its id.
    interrupts.set_resume_hint(f"Resume with: pixeldojo jobs wait {job.id}")
    if recorder is not None:
        recorder.submitted(job, submission)
    if job.other_ids:
        notify(Notice(_two_ids_warning(job), level="warning"))
    notify(JobSeen(job))
    return job


def _two_ids_warning(job: Job) -> str:
    """The submit answer named its job more than one way: it is followed (and in
    the ledger) under the first id it gave; say which others it gave."""
    from pixeldojo_cli.core.idtext import shown_pair

    pairs = [shown_pair(job.id, other) for other in job.other_ids[:3]]
    others = ", ".join(theirs for _, theirs in pairs)
    return (
        f"The API's answer names the submitted job {pairs[0][0]} and also {others}; "
        f"following {pairs[0][0]} (in the ledger under that id). If it cannot be found, "
        "`pixeldojo jobs list` shows the account's jobs."
    )
