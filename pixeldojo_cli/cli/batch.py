"""`run MODEL --batch FILE`: many jobs at the rate limit, polled together, resumable.

One thread runs the schedule: submit while fewer than `--concurrency` jobs are
in flight (the rate limiter paces the POSTs), look at every running job with
one `GET /jobs?limit=N` per round instead of one GET per job, and hand each
completed job's downloads to a small pool. Each request is identified by a
hash of the model and its inputs, kept in the ledger, so rerunning the same
command skips what already completed or is still running: a CI retry never
pays twice.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from pixeldojo_cli.cli.state import AppState, inputs_object, read_text_argument
from pixeldojo_cli.errors import (
    ExitCode,
    JobFailedError,
    PixelDojoError,
    UsageError,
    WaitTimeoutError,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from pixeldojo_cli.client import Client
    from pixeldojo_cli.downloads import DownloadedFile
    from pixeldojo_cli.ledger import Ledger
    from pixeldojo_cli.results import Job, Model

# Show at most this many input problems before asking the user to fix the file.
_MAX_PROBLEMS = 5


@dataclass
class Item:
    """One line of the batch file and what became of it."""

    line: int
    inputs: dict[str, Any]
    key: str
    estimate: float | None
    state: str = "queued"  # queued, running, downloading, saved, failed, error, skipped
    job: Job | None = None
    job_id: str | None = None
    files: list[str] = field(default_factory=list)
    error: PixelDojoError | None = None
    resumed: bool = False

    @property
    def done(self) -> bool:
        return self.state in ("saved", "failed", "error", "skipped", "unfinished")

    def exit_code(self) -> int:
        return int(self.error.exit_code) if self.error is not None else 0


def read_batch_lines(path: str) -> list[tuple[int, str | dict[str, Any]]]:
    """FILE (or `-`): JSON Lines of input objects, or one prompt per line.

    A line starting with `{` is a JSON object of inputs; any other non-blank
    line is a prompt. Returns (line number, prompt or object).
    """
    text = read_text_argument(path, "--batch")
    entries: list[tuple[int, str | dict[str, Any]]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("{"):
            entries.append((number, inputs_object(line, f"--batch line {number}")))
        else:
            entries.append((number, line))
    if not entries:
        raise UsageError(f"--batch {path!r} has no prompts or inputs in it.")
    return entries


def request_key(model_id: str, inputs: dict[str, Any], occurrence: int) -> str:
    """Identifies one request of a batch: the model, the inputs, and which
    repetition of identical inputs it is (two identical lines are two jobs)."""
    canonical = json.dumps({"model": model_id, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(f"{canonical}#{occurrence}".encode()).hexdigest()


def plan_items(
    model: Model,
    schema: dict[str, Any],
    entries: list[tuple[int, str | dict[str, Any]]],
    defaults: dict[str, Any],
) -> list[Item]:
    """Every line's inputs (the line's own values over the -p/--input defaults),
    checked against the schema before anything is spent."""
    from pixeldojo_cli.schema import estimate_cost, validate_inputs

    items: list[Item] = []
    problems: list[str] = []
    seen: Counter[str] = Counter()
    for number, entry in entries:
        inputs = {**defaults, **(entry if isinstance(entry, dict) else {"prompt": entry})}
        try:
            validate_inputs(schema, inputs)
        except UsageError as exc:
            problems.append(f"line {number}: {exc.message}")
            continue
        base_key = request_key(model.id, inputs, 0)
        key = request_key(model.id, inputs, seen[base_key])
        seen[base_key] += 1
        items.append(Item(number, inputs, key, estimate_cost(model, schema, inputs)))
    if problems:
        more = len(problems) - _MAX_PROBLEMS
        listed = "; ".join(problems[:_MAX_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")
        raise UsageError(
            f"{len(problems)} line(s) of the batch are not valid for {model.id}: {listed}.",
            hint="Nothing was submitted. See the parameters with "
            f"`pixeldojo models show {model.id}`.",
        )
    return items


class Batch:
    """The schedule for one batch: submit, poll together, download, report."""

    def __init__(
        self,
        state: AppState,
        client: Client,
        model: Model,
        items: list[Item],
        *,
        folder: Path,
        concurrency: int,
        max_credits: float | None,
        poll_interval: float,
        max_poll_interval: float,
        timeout: float | None,
        download: bool,
        wait: bool,
        json_output: bool,
        webhook_url: str | None,
    ) -> None:
        self.state = state
        self.client = client
        self.model = model
        self.items = items
        self.folder = folder
        self.concurrency = concurrency
        self.max_credits = max_credits
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.download = download
        self.wait = wait
        self.json_output = json_output
        self.webhook_url = webhook_url
        self.checksum = state.wants_checksum()
        self.ledger: Ledger | None = state.ledger()
        self.base_url, self.profile = state.ledger_scope()
        self.spent = 0.0
        self.polls = 0
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="batch-download")
        self.downloading: dict[Future[list[DownloadedFile]], Item] = {}
        self.refresh: Callable[[], None] = lambda: None

    # --- resuming -------------------------------------------------------------

    def resume(self) -> None:
        """Attach lines that an earlier run of this batch already submitted."""
        if self.ledger is None:
            return
        for item in self.items:
            known = self.ledger.find_by_input(
                base_url=self.base_url, profile=self.profile, input_hash=item.key
            )
            if known is None or known.status == "failed" or known.lost:
                continue  # never submitted, or worth another try
            item.job_id, item.resumed = known.id, True
            if known.downloaded and all(Path(f.path).exists() for f in known.files):
                item.files = [f.path for f in known.files]
                self.finish(item, "saved")
            else:
                item.state = "running"

    # --- the loop -------------------------------------------------------------

    def run(self) -> None:
        try:
            with self.state.render.batch_progress(self.counts, len(self.items)) as refresh:
                self.refresh = refresh
                self.loop()
            self.refresh = lambda: None
        except KeyboardInterrupt:
            self.state.render.err_console.print(
                "\nInterrupted. Submitted jobs keep running on the server and are in the "
                "ledger.\nResume with the same command: finished lines are skipped.",
                markup=False,
            )
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def loop(self) -> None:
        next_poll = time.monotonic() + self.poll_interval
        interval = self.poll_interval
        while True:
            self.collect_downloads()
            self.submit_what_fits()
            running = [i for i in self.items if i.state == "running"]
            if not self.wait:
                return
            if not running and not self.downloading and not self.queued():
                return
            if self.deadline is not None and time.monotonic() >= self.deadline:
                self.time_out()
                return
            if running and time.monotonic() >= next_poll:
                changed = self.poll(running)
                interval = (
                    self.poll_interval if changed else min(interval * 2, self.max_poll_interval)
                )
                next_poll = time.monotonic() + interval
                continue
            pause = max(0.0, next_poll - time.monotonic()) if running else 0.2
            if self.deadline is not None:
                pause = min(pause, max(0.0, self.deadline - time.monotonic()))
            if self.downloading:
                wait_for_futures(
                    list(self.downloading), timeout=pause, return_when="FIRST_COMPLETED"
                )
            elif self.queued() and self.in_flight() < self.concurrency:
                continue
            else:
                time.sleep(pause)

    def queued(self) -> list[Item]:
        return [i for i in self.items if i.state == "queued"]

    def in_flight(self) -> int:
        return sum(1 for i in self.items if i.state in ("running", "downloading"))

    def counts(self) -> Counter[str]:
        return Counter(item.state for item in self.items)

    # --- submitting ------------------------------------------------------------

    def submit_what_fits(self) -> None:
        for item in self.queued():
            if self.wait and self.in_flight() >= self.concurrency:
                return
            if self.over_budget(item):
                continue
            self.submit(item)

    def over_budget(self, item: Item) -> bool:
        if self.max_credits is None:
            return False
        cost = item.estimate or 0.0
        if self.spent + cost <= self.max_credits + 1e-9:
            return False
        item.error = None
        self.finish(item, "skipped", note=f"would pass --max-credits {self.max_credits:g}")
        return True

    def submit(self, item: Item) -> None:
        try:
            job = self.client.run(self.model.id, item.inputs, webhook_url=self.webhook_url)
        except PixelDojoError as exc:
            item.error = exc
            self.finish(item, "error")
            if exc.exit_code in (ExitCode.AUTH, ExitCode.CREDITS):
                self.stop_submitting(exc)
            return
        item.job, item.job_id, item.state = job, job.id, "running"
        self.spent += job.credit_cost if job.credit_cost is not None else (item.estimate or 0.0)
        if self.ledger is not None:
            self.ledger.record_submission(
                job,
                base_url=self.base_url,
                profile=self.profile,
                model=self.model.id,
                inputs=item.inputs,
                estimated_credits=item.estimate,
                output_dir=self.folder,
                input_hash=item.key,
            )
        if not self.wait:
            self.finish(item, "submitted")
        self.refresh()

    def stop_submitting(self, cause: PixelDojoError) -> None:
        """No key or no credits: every other submission would fail the same way."""
        for other in self.queued():
            other.error = cause
            self.finish(other, "error")

    # --- polling -----------------------------------------------------------------

    def poll(self, running: list[Item]) -> bool:
        """One round: the list endpoint for many jobs, single GETs for the rest."""
        answers: dict[str, Job] = {}
        if len(running) > 1:
            self.polls += 1
            try:
                listed = self.client.list_jobs(limit=min(100, max(20, 2 * len(running))))
                answers = {job.id: job for job in listed}
            except PixelDojoError:
                answers = {}  # fall back to one GET per job below
        changed = False
        for item in running:
            job = answers.get(item.job_id or "")
            if job is None or (job.status == "completed" and not job.output_urls):
                self.polls += 1
                try:
                    job = self.client.get_job(item.job_id or "")
                except PixelDojoError as exc:
                    if exc.exit_code in (ExitCode.NOT_FOUND, ExitCode.EXPIRED):
                        item.error = exc
                        self.finish(item, "error")
                        changed = True
                    continue
            if self.ledger is not None:
                self.ledger.update_job(self.base_url, job)
            if job.is_terminal:
                changed = True
                self.terminal(item, job)
        return changed

    def terminal(self, item: Item, job: Job) -> None:
        item.job = job
        if job.status == "failed":
            item.error = JobFailedError(
                f"Job {job.id} failed: {job.error or 'no reason given'}.", job_id=job.id
            )
            self.finish(item, "failed")
            return
        if not self.download:
            item.files = list(job.output_urls)
            self.finish(item, "saved")
            return
        item.state = "downloading"
        self.downloading[self.pool.submit(self.fetch, job, item)] = item
        self.refresh()

    def fetch(self, job: Job, item: Item) -> list[DownloadedFile]:
        """In a pool thread: the files only. The ledger is written by the loop
        (an SQLite connection belongs to its thread)."""
        from pixeldojo_cli.downloads import download_outputs, write_metadata

        files = download_outputs(self.client.transport, job, self.folder, checksum=self.checksum)
        write_metadata(self.folder, job, self.model.id, item.inputs, files)
        return files

    def collect_downloads(self) -> None:
        from pixeldojo_cli.cli.outputs import ledger_entry

        for future in [f for f in self.downloading if f.done()]:
            item = self.downloading.pop(future)
            try:
                files = future.result()
            except PixelDojoError as exc:
                item.error = exc
                self.finish(item, "error")
                continue
            item.files = [str(f.path) for f in files]
            if self.ledger is not None and item.job_id:
                self.ledger.record_files(
                    self.base_url,
                    item.job_id,
                    [ledger_entry(n, f) for n, f in enumerate(files, start=1)],
                )
            self.finish(item, "saved")

    # --- the end -----------------------------------------------------------------

    def time_out(self) -> None:
        """--timeout: what has not finished stays as it is (running jobs keep running
        and are in the ledger); one line says how to pick it all up again."""
        left = [i for i in self.items if not i.done and i.state != "submitted"]
        for item in left:
            item.error = WaitTimeoutError(
                f"Line {item.line} had not finished when --timeout was reached.",
                job_id=item.job_id or "",
                hint="Rerun the same command to resume: finished lines are skipped.",
            )
            self.finish(item, "unfinished", quiet=True)
        running = sum(1 for i in left if i.job_id)
        self.state.render.warn(
            f"--timeout reached with {len(left)} line(s) unfinished ({running} still running "
            "on the server). Rerun the same command to resume: finished lines are skipped."
        )

    def finish(
        self, item: Item, outcome: str, *, note: str | None = None, quiet: bool = False
    ) -> None:
        """An item reached its end: print its result line, count it."""
        item.state = outcome
        render = self.state.render
        if self.json_output:
            document: dict[str, Any] = {"line": item.line, "jobId": item.job_id, "state": outcome}
            if item.resumed:
                document["resumed"] = True
            if item.error is not None:
                document.update(item.error.to_json())
            elif outcome == "skipped":
                document["reason"] = note
            else:
                document["files" if self.download else "urls"] = item.files
            render.result(json.dumps(document, ensure_ascii=False, default=str))
        elif outcome == "submitted":
            render.result(item.job_id or "")
        else:
            for path in item.files if outcome == "saved" else []:
                render.result(path)
        label = f"line {item.line}" + (f" ({item.job_id})" if item.job_id else "")
        if quiet:
            pass
        elif item.error is not None:
            render.info(f"{label}: {item.error.message}")
        elif outcome == "skipped":
            render.info(f"{label}: skipped, {note}")
        elif render.progress_mode() == "plain":
            resumed = " (from an earlier run)" if item.resumed else ""
            render.info(f"{label}: {outcome}{resumed}")
        self.refresh()

    def summary(self) -> int:
        """A small table on stderr (people), and the worst exit code (scripts)."""
        counts = self.counts()
        states = ("saved", "submitted", "failed", "error", "skipped", "unfinished")
        resumed = sum(1 for i in self.items if i.resumed)
        rows = [(state, str(counts[state])) for state in states if counts[state]]
        rows += [
            ("from earlier runs", str(resumed)),
            ("credits spent", f"{self.spent:g}"),
            ("status requests", str(self.polls)),
        ]
        if not self.state.render.quiet:
            self.state.render.info(f"Batch of {len(self.items)} line(s):")
            for label, value in rows:
                self.state.render.info(f"  {label:<18}{value:>8}")
        return max((item.exit_code() for item in self.items), default=0)


def run_batch(
    state: AppState,
    client: Client,
    model: Model,
    schema: dict[str, Any],
    *,
    batch_file: str,
    defaults: dict[str, Any],
    folder: Path,
    concurrency: int,
    max_credits: float | None,
    poll_interval: float,
    max_poll_interval: float,
    timeout: float | None,
    download: bool,
    wait: bool,
    dry_run: bool,
    json_output: bool,
    webhook_url: str | None,
) -> None:
    """Plan, check, then submit and follow every line of the batch."""
    items = plan_items(model, schema, read_batch_lines(batch_file), defaults)
    if dry_run:
        total = sum(item.estimate or 0.0 for item in items)
        for item in items:
            body = {**item.inputs, **({"webhook_url": webhook_url} if webhook_url else {})}
            state.render.result(
                json.dumps({"line": item.line, "body": body, "estimatedCredits": item.estimate})
            )
        state.render.info(
            f"{len(items)} job(s), estimated {total:g} credit(s) in all. Nothing was submitted."
        )
        return
    batch = Batch(
        state,
        client,
        model,
        items,
        folder=folder,
        concurrency=concurrency,
        max_credits=max_credits,
        poll_interval=poll_interval,
        max_poll_interval=max_poll_interval,
        timeout=timeout,
        download=download,
        wait=wait,
        json_output=json_output,
        webhook_url=webhook_url,
    )
    batch.resume()
    batch.run()
    code = batch.summary()
    if code:
        raise typer.Exit(code)
