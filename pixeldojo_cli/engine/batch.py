"""Many jobs of one model, at the rate limit, followed together, resumable:
what `run MODEL --batch FILE` does, built on the engine's `Follower` and `save`.

One thread runs the schedule: submit while fewer than `concurrency` jobs are
in flight (the client's rate limiter paces the POSTs), let the `Follower` poll
every running job (one `GET /jobs?limit=N` answers for many), and hand each
completed job to a small pool that runs the engine's `save`. Each line is
identified by a hash of the model and its inputs, kept in the ledger, so
running the same batch again skips what completed or is still running: a CI
retry never pays twice.
"""

from __future__ import annotations

import contextvars
import dataclasses
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pixeldojo_cli.core import interrupts
from pixeldojo_cli.core.errors import (
    BudgetExceededError,
    ExitCode,
    JobsInterruptedError,
    Outcome,
    PixelDojoError,
    SubmissionUncertainError,
    WaitTimeoutError,
    combined_exit_code,
    outcome_of,
)
from pixeldojo_cli.engine.batch_book import LineBook, LineSource
from pixeldojo_cli.engine.batch_lines import Line
from pixeldojo_cli.engine.budget import Budget
from pixeldojo_cli.engine.events import EventSink, Notice, ignore
from pixeldojo_cli.engine.following import Follower, WaitEnd
from pixeldojo_cli.engine.options import SaveOptions, WaitOptions
from pixeldojo_cli.engine.recorder import Recorder
from pixeldojo_cli.engine.saving import file_from_ledger
from pixeldojo_cli.engine.submission import Submission
from pixeldojo_cli.engine.workflow import JobResult, conclude, submit

if TYPE_CHECKING:
    from pixeldojo_cli.api.client import Client
    from pixeldojo_cli.api.results import Job
    from pixeldojo_cli.store.files import DownloadedFile
    from pixeldojo_cli.store.ledger import Ledger, LedgerJob

# Jobs in flight at once: enough to keep 60 requests/min busy with jobs of a
# minute, and within one `GET /jobs?limit=100` poll.
DEFAULT_CONCURRENCY = 50
_SAVERS = 4
BATCH_RESUME_HINT = "Resume with the same command: finished lines are skipped."


@dataclass(frozen=True)
class BatchOptions:
    """What `--batch` adds to a run: pacing, the spend cap, and whether to wait.
    `budget` is checked before each line's POST (a line past it is skipped);
    `listed_costs`, each model's price, counts for a line with no estimate."""

    concurrency: int = DEFAULT_CONCURRENCY
    max_credits: float | None = None
    wait: bool = True
    webhook_url: str | None = None
    budget: Budget | None = None
    # Each model's listed price (a comparison's lines are of several models).
    listed_costs: Mapping[str, float | None] = field(default_factory=dict, hash=False)

    def listed_cost(self, model_id: str) -> float | None:
        """What a line of `model_id` with no estimate counts as."""
        return self.listed_costs.get(model_id)


class Batch:
    """One batch run: submit, follow together, save, and say how each line ended.

    `on_line` is called (in the calling thread) once per line as it ends, and
    `on_submitted` once per line this run paid for, as soon as its job exists;
    `notify` gets the engine's events.
    """

    def __init__(
        self,
        client: Client,
        model_id: str,
        lines: LineSource,
        options: BatchOptions,
        wait: WaitOptions,
        save_options: SaveOptions,
        *,
        recorder: Recorder,
        notify: EventSink = ignore,
        on_line: Callable[[Line], None] = lambda line: None,
        on_submitted: Callable[[Line], None] = lambda line: None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.model_id = model_id
        self.lines = LineBook(lines)
        self.options = options
        self.save_options = save_options
        self.recorder = recorder
        self.notify = notify
        self.on_line = on_line
        self.on_submitted = on_submitted
        self._sleep = sleep
        self.follower = Follower(client, wait, notify=notify, recorder=recorder)
        self.spent = 0.0
        self._by_job: dict[str, Line] = {}
        self._saving: dict[Future[JobResult], Line] = {}
        self._cancel = threading.Event()
        # Lines are taken in order from `_next`; those another process holds wait
        # in `_held` to be looked at again. Counts are kept as lines change state,
        # never recounted: a batch of a million lines must not scan them all for
        # each one it submits.
        self._next = 0
        self._held: list[Line] = []
        self._counts: Counter[str] = Counter(queued=len(self.lines))
        self._timed_out_running = 0

    @property
    def folder(self) -> Path:
        return self.save_options.folder_for(None)

    def _submission(self, line: Line) -> Submission:
        """The line's request, read from the file once, when it is submitted, and
        checked to be the line planned (a usage error for this line if not)."""
        asked = line.submission(self.model_id, self.folder, self.options.webhook_url)
        return dataclasses.replace(asked, listed_cost=self.options.listed_cost(asked.model))

    # --- resuming

    def resume(self) -> None:
        """Attach lines that an earlier run of this batch already submitted."""
        ledger = self.recorder.ledger
        if ledger is None:
            return
        for index in range(len(self.lines)):
            line = self.lines.take(index)
            try:
                known = ledger.find_by_input(
                    base_url=self.recorder.base_url,
                    profile=self.recorder.profile,
                    input_hash=line.key,
                )
            except Exception:  # a ledger that cannot be read resumes nothing
                known = None
            if known is None or known.lost or known.failed:
                self.lines.let_go(line)
                continue  # never submitted, or worth another try
            line.job_id, line.resumed = known.id, True
            kept = self._kept_files(known)
            if not self.options.wait:
                self._finish(line, Outcome.SUBMITTED)
            elif kept is not None:
                line.files, line.saved = kept, True
                self._finish(line, Outcome.SAVED)
            else:
                self._follow(line, known.id)

    def _kept_files(self, known: LedgerJob) -> list[DownloadedFile] | None:
        """An earlier run's files for a line, when all are still in place and
        intact (the check `save` makes) in the folder asked for; else None, and
        the line is followed and saved again (intact files are still kept)."""
        from pixeldojo_cli.store.files import intact_since

        options = self.save_options
        if not known.downloaded or options.force or not options.download:
            return None
        if options.folder is not None and options.folder.resolve() != Path(known.output_dir):
            return None
        files = [file_from_ledger(f) for f in known.files]
        if any(intact_since(f, checksum=options.checksum) is None for f in files):
            return None
        return files

    # --- the loop

    def run(self) -> None:
        """Submit and follow every line to its end (or the deadline). Ctrl-C stops
        the downloads under way (no partial file under a final name), reports
        the lines already done, and raises `JobsInterruptedError`."""
        pool = ThreadPoolExecutor(max_workers=_SAVERS, thread_name_prefix="batch-save")
        interrupts.set_resume_hint(BATCH_RESUME_HINT)
        try:
            self._loop(pool)
        except KeyboardInterrupt:
            self._cancel.set()
            pool.shutdown(wait=False, cancel_futures=True)
            self._collect_saved(interrupted=True)
            raise JobsInterruptedError(
                "Interrupted. Submitted jobs keep running on the server and are in the ledger.",
                hint="Resume with the same command: finished lines are skipped.",
            ) from None
        pool.shutdown(wait=True)
        self._warn_timed_out()

    def _loop(self, pool: ThreadPoolExecutor) -> None:
        while True:
            self._collect_saved()
            self._submit_what_fits()
            if not self.options.wait:
                if not self._held:
                    return
                self._sleep(0.2)  # lines another process is submitting: look again
                continue
            if not len(self.follower) and not self._saving and not self._counts["queued"]:
                return
            if self.follower.timed_out():
                self._time_out(pool)
                return
            for job_id, ended in self.follower.poll_due().items():
                self._ended(pool, self._by_job.pop(job_id), ended)
            pause = self.follower.pause() if len(self.follower) else 0.2
            if self._saving:
                wait_for_futures(list(self._saving), timeout=pause, return_when="FIRST_COMPLETED")
            elif self._next < len(self.lines) and not self._full():
                continue
            elif len(self.follower):
                self._sleep(pause)
            elif self._counts["queued"]:
                self._sleep(0.2)  # lines another process is submitting: look again

    def queued(self) -> list[Line]:
        """The lines not submitted yet (nor ended): a scan, for the end of a batch."""
        return [line for line in self.lines.unfinished() if line.job_id is None]

    def in_flight(self) -> int:
        return self._counts["running"]

    def counts(self) -> Counter[str]:
        """Lines per state: an outcome, or queued / running."""
        return +self._counts  # (a copy, without the states no line is in)

    def _count(self, line: Line, state: str) -> None:
        """Line `line` is now in `state` (an outcome, or running)."""
        self._counts[line.counted_as] -= 1
        self._counts[state] += 1
        line.counted_as = state

    def _full(self) -> bool:
        return self.options.wait and self._counts["running"] >= self.options.concurrency

    # --- submitting

    def _submit_what_fits(self) -> None:
        """Submit lines in order while fewer than `concurrency` are in flight;
        first, look again at the lines another process held."""
        held, self._held = self._held, []
        for index, line in enumerate(held):
            if self._full():
                self._held += held[index:]
                break
            self._submit_queued(line)
        while self._next < len(self.lines) and not self._full():
            index = self._next
            self._next += 1
            if self.lines.queued(index):  # (else resumed, or held and looked at above)
                self._submit_queued(self.lines.take(index))

    def _submit_queued(self, line: Line) -> None:
        if not self._over_budget(line):
            self._submit(line)

    def _over_budget(self, line: Line) -> bool:
        if self.options.max_credits is None:
            return False
        listed = self.options.listed_cost(line.model(self.model_id))
        cost = line.estimate if line.estimate is not None else listed or 0.0
        if self.spent + cost <= self.options.max_credits + 1e-9:
            return False
        line.note = f"would pass --max-credits {self.options.max_credits:g}"
        self._finish(line, Outcome.SKIPPED)
        return True

    def _submit(self, line: Line) -> None:
        try:
            line.asked = self._submission(line)
        except PixelDojoError as exc:  # the file changed since it was planned: not this line
            line.error = exc
            self._finish(line, outcome_of(exc))
            return
        if not self._claim(line):
            return
        try:
            job = submit(
                self.client,
                line.asked,
                recorder=self.recorder,
                notify=self.notify,
                budget=self.options.budget,
            )
        except BudgetExceededError as exc:  # skipped, as --max-credits skips: others may fit
            self._unclaim(line, uncertain=False)
            line.note = exc.message
            self._finish(line, Outcome.SKIPPED)
            return
        except PixelDojoError as exc:
            self._unclaim(line, uncertain=isinstance(exc, SubmissionUncertainError))
            line.error = exc
            self._finish(line, outcome_of(exc))
            if exc.exit_code in (ExitCode.AUTH, ExitCode.CREDITS):
                self._stop_submitting(exc)
            return
        interrupts.set_resume_hint(BATCH_RESUME_HINT)  # the batch's, not this one job's
        self._in_ledger(lambda ledger, scope: ledger.attach_job(line.key, job, **scope))
        self.spent += job.credit_cost if job.credit_cost is not None else (line.estimate or 0.0)
        line.job = job
        line.job_id = job.id
        self.on_submitted(line)
        if not self.options.wait:
            line.job_id = job.id
            self._finish(line, Outcome.SUBMITTED)
            return
        self._follow(line, job)

    # --- one line, one payment: claims in the ledger

    def _claim(self, line: Line) -> bool:
        """Claim the line in the ledger before paying for it, so that no other
        process (a second run of the same batch) and no later rerun submits it
        again. False when this process must not submit it now: another process
        has it (its job is followed instead, or the line waits its turn), an
        earlier run may have paid for it (`uncertain`), or the claim could not
        be recorded (then nothing more is submitted: a rerun could pay twice)."""
        from pixeldojo_cli.core.errors import LedgerError

        ledger = self.recorder.ledger
        if ledger is None:
            if not self.recorder.records:
                return True  # the embedded emulator: no ledger, nothing to resume
            self._stop_submitting(
                LedgerError(
                    "The job ledger cannot be opened, and --batch submits no line it cannot "
                    "record (a rerun could pay for it twice)."
                )
            )
            return False
        try:
            with self.recorder.lock:
                claim = ledger.claim_line(line.key, **self._scope())
        except LedgerError as exc:
            exc.hint = "Nothing more is submitted. Rerun the same command once the ledger is free."
            self._stop_submitting(exc)
            return False
        if claim.claimed:
            return True
        if claim.outcome == "taken" and claim.job_id:
            line.resumed = True
            self._follow(line, claim.job_id)
        elif claim.outcome == "taken":
            self._held.append(line)  # its job id comes soon: look again
        else:
            unit = getattr(line.source, "unit", "line")  # a sweep's lines are its jobs
            line.error = SubmissionUncertainError(
                f"{unit.capitalize()} {line.number} may have been submitted by an earlier run "
                "that stopped before it recorded a job; it is not submitted again.",
                hint="Check `pixeldojo jobs list` for it; to pay for it again anyway, "
                f"run that {unit} on its own with `pixeldojo run`.",
            )
            self._finish(line, Outcome.UNCERTAIN)
        return False

    def _unclaim(self, line: Line, *, uncertain: bool) -> None:
        """A submission failed: free the line when the server certainly did not take
        it, or mark it uncertain (a rerun must not pay for it blindly)."""
        if uncertain:
            self._in_ledger(lambda ledger, scope: ledger.mark_uncertain(line.key, **scope))
        else:
            self._in_ledger(lambda ledger, scope: ledger.release_line(line.key, **scope))

    def _scope(self) -> dict[str, str]:
        return {"base_url": self.recorder.base_url, "profile": self.recorder.profile}

    def _in_ledger(self, write: Callable[[Ledger, dict[str, str]], None]) -> None:
        ledger = self.recorder.ledger
        if ledger is None:
            return
        try:
            with self.recorder.lock:
                write(ledger, self._scope())
        except Exception:  # the claim stays as it was; the job itself is recorded
            pass

    def _follow(self, line: Line, job: Job | str) -> None:
        job_id = job if isinstance(job, str) else job.id
        line.job_id = job_id
        self._count(line, "running")
        self._by_job[job_id] = line
        self.follower.add(job, model=line.model(self.model_id))

    def _stop_submitting(self, cause: PixelDojoError) -> None:
        """No key or no credits: every other submission would fail the same way."""
        queued = self.queued()
        self._held, self._next = [], len(self.lines)
        for other in queued:
            other.error = cause
            self._finish(other, Outcome.ERROR)

    # --- finishing

    def _ended(self, pool: ThreadPoolExecutor, line: Line, ended: WaitEnd) -> None:
        if isinstance(ended, PixelDojoError) or not ended.succeeded:
            result = conclude(
                self.client, ended, line.job_id or "", self.save_options, recorder=self.recorder
            )
            self._finish_result(line, result)
            return
        line.job = ended
        # The pool's thread runs in a copy of this context: under --timeout too.
        self._saving[pool.submit(contextvars.copy_context().run, self._save, line, ended)] = line

    def _save(self, line: Line, job: Job) -> JobResult:
        """In a pool thread: the engine's save, which records each file as it lands."""
        return conclude(
            self.client,
            job,
            job.id,
            self.save_options,
            recorder=self.recorder,
            notify=self.notify,
            submission=line.asked,  # as read when it was submitted (None: resumed,
            cancel=self._cancel,  # and the ledger has what an earlier run asked)
        )

    def _collect_saved(self, *, interrupted: bool = False) -> None:
        """Report the lines whose save ended (after Ctrl-C: only those that
        ended well; the rest are resumed by the next run)."""
        for future in [f for f in self._saving if f.done()]:
            line = self._saving.pop(future)
            try:
                result = future.result()
            except (JobsInterruptedError, CancelledError):
                if not interrupted:
                    raise KeyboardInterrupt from None
                continue
            except PixelDojoError as exc:  # this line's trouble, never the batch's end
                result = JobResult.failure(line.job_id or "", exc)
            if interrupted and result.outcome is not Outcome.SAVED:
                continue
            self._finish_result(line, result)

    def _finish_result(self, line: Line, result: JobResult) -> None:
        line.job = result.job or line.job
        line.files = list(result.files)
        line.error = result.error
        line.saved = result.saved
        self._finish(line, result.outcome)

    def _time_out(self, pool: ThreadPoolExecutor) -> None:
        """--timeout: one last look at every running job, the ones that finished
        saved, while the deadline in force leaves time (under `run --timeout`,
        the whole command's deadline: nothing is waited for past it, a download
        cut by it is resumed by the next run); the rest stay as they are
        (running jobs keep running and are in the ledger); one line says how to
        pick it all up again."""
        for job_id, ended in self.follower.at_deadline().items():
            line = self._by_job.pop(job_id)
            if isinstance(ended, WaitTimeoutError):
                line.error = ended
                continue
            self._ended(pool, line, ended)
        if self._saving:
            wait_for_futures(list(self._saving))
            self._collect_saved()
        left = self.lines.unfinished()
        for line in left:
            if line.error is None:
                unit = getattr(line.source, "unit", "line")
                line.error = WaitTimeoutError(
                    f"{unit.capitalize()} {line.number} was not submitted before --timeout "
                    "was reached.",
                    job_id="",
                    hint=f"Rerun the same command to resume: finished {unit}s are skipped.",
                )
            line.note = "timeout"
            self._finish(line, Outcome.TIMED_OUT)

    def _warn_timed_out(self) -> None:
        """One line for every line the deadline ended, also those it ended a moment
        early (a poll whose next try would have passed it): as the summary counts."""
        timed_out = self._counts[str(Outcome.TIMED_OUT)]
        if not timed_out:
            return
        running = self._timed_out_running
        self.notify(
            _warning(
                f"--timeout reached with {timed_out} line{'' if timed_out == 1 else 's'} "
                f"unfinished ({running} still "
                "running on the server). Rerun the same command to resume: finished lines "
                "are skipped."
            )
        )

    def _finish(self, line: Line, outcome: Outcome) -> None:
        line.outcome = outcome
        if outcome is Outcome.TIMED_OUT and line.job_id:
            self._timed_out_running += 1  # (lines are let go once ended: counted here)
        line.asked = None  # (a line's inputs are held only while it is in flight)
        self._count(line, str(outcome))
        self.on_line(line)
        self.lines.ended(line)

    def exit_code(self) -> ExitCode:
        """The worst line's exit code (0 only when every line is fine)."""
        return combined_exit_code(self.lines.exit_codes())


def _warning(message: str) -> Notice:
    return Notice(message, level="warning")
