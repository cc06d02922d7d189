"""What each tool of `pixeldojo mcp` does and returns, over the engine, with no
MCP SDK in sight (`mcp_server` serves these as tools).

Every tool calls what the commands call: the `Client` for the catalogue,
`engine.prepare()` for a checked and priced job, `engine.submit()` for the one
paid POST (recorded in the ledger before any waiting), `engine.wait_and_save()`
and `engine.fetch_and_save()` for following and saving, the ledger's query for
the history. Answers are the CLI's `--json` shapes; errors are the CLI's errors.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pixeldojo_cli.core.errors import MissingAPIKeyError, SpendCapError, UsageError

if TYPE_CHECKING:
    from pixeldojo_cli.api.client import Client
    from pixeldojo_cli.api.results import Job
    from pixeldojo_cli.cli.state import AppState
    from pixeldojo_cli.engine import (
        Event,
        JobResult,
        Recorder,
        SaveOptions,
        Submission,
        WaitOptions,
    )
    from pixeldojo_cli.engine.budget import Budget

HISTORY_LIMIT = 20
MAX_HISTORY_LIMIT = 1000
# The longest a tool call may be asked to wait (one day: outputs expire after that).
MAX_WAIT_SECONDS = 86400.0


# A thumbnail is at most this many pixels a side: a glance, never the output itself.
THUMBNAIL_SIZE = 256


def thumbnail_png(path: Path) -> bytes:
    """A small PNG of the picture at `path`, decoded within `--preview`'s memory
    budget (`picture.load_reduced`); `NoPreview` says why there is none."""
    import io

    from pixeldojo_cli.cli.picture import NoPreview, load_reduced

    def box_for(size: tuple[int, int]) -> tuple[int, int]:
        scale = min(1.0, THUMBNAIL_SIZE / max(1, *size))
        return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))

    try:
        picture = load_reduced(path, box_for)
    except ImportError:
        raise NoPreview("Pillow is not installed: pip install 'pixeldojo-cli[preview]'") from None
    picture.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()


class SpendCap:
    """`mcp --max-credits`: what one server session may spend, across every call.

    A job's estimate is reserved before it is submitted (so two calls at once
    cannot both pass the cap), then replaced by what the API says it charged.
    """

    def __init__(self, cap: float | None) -> None:
        self.cap = cap
        self.spent = 0.0
        self._lock = threading.Lock()

    def reserve(self, estimate: float | None, model: str) -> float:
        """Reserve a job's estimate, or refuse it (`max_credits`) before anything is sent."""
        with self._lock:
            if self.cap is not None:
                if estimate is None:
                    raise SpendCapError(
                        f"The cost of this {model} job cannot be estimated, so the session's "
                        f"--max-credits {self.cap:g} could not be kept: nothing was submitted."
                    )
                if self.spent + estimate > self.cap + 1e-9:
                    raise SpendCapError(
                        f"This job (about {estimate:g} credits) would take the session past "
                        f"--max-credits {self.cap:g} ({self.spent:g} spent): "
                        "nothing was submitted.",
                        hint="Restart `pixeldojo mcp` with a higher --max-credits to spend more.",
                    )
            reserved = estimate or 0.0
            self.spent += reserved
            return reserved

    def settle(self, reserved: float, charged: float | None) -> None:
        """The job was submitted: count what it was charged when that is more than
        its estimate. A charge that is missing, negative, not a number or below the
        estimate counts as the estimate: what a server says never gives credits back
        to the session (a `creditCost` of -5 must not raise the cap)."""
        with self._lock:
            if isinstance(charged, int | float) and math.isfinite(charged) and charged > reserved:
                self.spent += charged - reserved

    def release(self, reserved: float) -> None:
        """The job was certainly not taken: give its reservation back."""
        with self._lock:
            self.spent -= reserved

    def document(self) -> dict[str, Any]:
        """The session's spending so far, for the tools' answers."""
        with self._lock:
            left = None if self.cap is None else max(0.0, self.cap - self.spent)
            return {"sessionSpent": self.spent, "maxCredits": self.cap, "creditsLeft": left}


def wait_seconds(value: float | None) -> float | None:
    """A tool's `timeout_seconds`: a positive number of seconds, at most a day."""
    if value is None:
        return None
    if not math.isfinite(value) or value <= 0 or value > MAX_WAIT_SECONDS:
        raise UsageError(
            f"timeout_seconds must be more than 0 and at most {MAX_WAIT_SECONDS:g}, got {value!r}."
        )
    return float(value)


def check_job_id(job_id: str) -> str:
    """A tool's `job_id`, refused (`usage_error`) when empty, before anything is asked."""
    if not job_id.strip():
        raise UsageError("job_id must not be empty: give the jobId that generate returned.")
    return job_id


def check_choice(name: str, value: str | None, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        raise UsageError(f"{name} must be one of {', '.join(allowed)}, got {value[:40]!r}.")


class Tools:
    """The tools of one server session: one client, one recorder, one spend cap.

    Tool calls run on worker threads (the SDK's), each under its own cancel
    event (`open_call`); a cancelled call, or every call once the client went
    away (`shutdown`), ends at its next pause, leaving its job in the ledger for
    `download --pending`."""

    def __init__(
        self,
        state: AppState,
        options: tuple[WaitOptions, SaveOptions],
        spend: tuple[SpendCap, Budget],
        stop: threading.Event,
    ) -> None:
        self.state = state
        self.client: Client = state.client()
        self.recorder: Recorder = state.recorder()
        self.wait_options, self.save_options = options
        self.cap, self.budget = spend
        self.stop = stop
        self._calls: set[threading.Event] = set()
        self._calls_lock = threading.Lock()

    # --- the calls in flight ------------------------------------------------------

    def open_call(self) -> threading.Event:
        """A new call's cancel event: set when it is cancelled, or when the client
        goes away (`shutdown`), so every pause in it ends (`core.cancelling`)."""
        event = threading.Event()
        with self._calls_lock:
            self._calls.add(event)
            if self.stop.is_set():
                event.set()
        return event

    def close_call(self, event: threading.Event) -> None:
        """The call is over (answered or cancelled): whatever still runs in it stops."""
        event.set()
        with self._calls_lock:
            self._calls.discard(event)

    def shutdown(self) -> None:
        """The client went away: every call in flight stops at its next pause, its
        jobs left in the ledger for `download --pending`."""
        with self._calls_lock:
            self.stop.set()
            for event in self._calls:
                event.set()

    # --- the catalogue ------------------------------------------------------------

    def list_models(self, model_type: str | None, feature: str | None) -> dict[str, Any]:
        """The models, as `models list --json` shows them, filtered like it."""
        from pixeldojo_cli.cli.documents import model_summary

        check_choice("type", model_type, ("image", "video"))
        check_choice("feature", feature, ("lora", "editing", "audio"))
        models = self.client.list_models(modality=model_type)
        if feature is not None:
            models = [m for m in models if feature in m.features]
        return {"models": [model_summary(m) for m in models], "count": len(models)}

    def model_schema(self, model_id: str) -> dict[str, Any]:
        """One model and its request schema, as `models show --json` shows them."""
        from pixeldojo_cli.cli.documents import model_summary

        model, schema = self.client.model_with_schema(model_id)
        return {**model_summary(model), "requestSchema": schema}

    # --- one job -----------------------------------------------------------------

    def _prepare(
        self, model_id: str, prompt: str | None, inputs: dict[str, Any] | None, seed: int | None
    ) -> Submission:
        """The engine's checked, priced job (nothing spent): a usage error for bad input."""
        from pixeldojo_cli.engine import JobAsk, prepare

        model, schema = self.client.model_with_schema(model_id)
        ask = JobAsk(
            prompt=prompt,
            base_inputs=inputs,
            seed=seed,
            upload=self.state.upload(),
            auto_seed=bool(self.state.settings().auto_seed.value),
        )
        return prepare(model, schema, ask, self.save_options.folder_for(None))

    def estimate_cost(
        self, model_id: str, prompt: str | None, inputs: dict[str, Any] | None, seed: int | None
    ) -> dict[str, Any]:
        """`run --dry-run --json`: the request body and its estimated credits; nothing submitted."""
        submission = self._prepare(model_id, prompt, inputs, seed)
        return {
            "model": submission.model,
            "body": submission.inputs,
            "estimatedCredits": submission.estimate,
            "submitted": False,
            **self.cap.document(),
        }

    def generate(
        self,
        model_id: str,
        prompt: str | None,
        inputs: dict[str, Any] | None,
        seed: int | None,
        *,
        wait: bool = True,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Check, submit (within the session's cap), follow and save one job."""
        from pixeldojo_cli.store.files import ensure_writable_folder

        started = time.monotonic()
        timeout = wait_seconds(timeout)
        if not self.client.api_key:
            raise MissingAPIKeyError("No API key is set.")
        submission = self._prepare(model_id, prompt, inputs, seed)
        ensure_writable_folder(submission.folder)  # a folder that cannot be costs nothing yet
        job = self._submit(submission)
        if not wait:
            return {
                "jobId": job.id,
                "model": submission.model,
                "status": job.status,
                "creditsCharged": job.credit_cost,
                "estimatedCredits": submission.estimate,
                "outputDir": str(submission.folder.resolve()),
                "next": "Call wait_for_job with this jobId to wait for it and save its outputs.",
                **self.cap.document(),
            }
        result = self._follow(job, timeout, submission)
        document = self._saved_document(result, submission.folder)
        document.update(
            model=submission.model,
            creditsCharged=job.credit_cost,
            estimatedCredits=submission.estimate,
            seconds=round(time.monotonic() - started, 3),
            **self.cap.document(),
        )
        return document

    def _submit(self, submission: Submission) -> Job:
        """The one paid POST (the engine's), inside the session's spend cap."""
        from pixeldojo_cli.core.errors import SubmissionUncertainError
        from pixeldojo_cli.engine import submit

        reserved = self.cap.reserve(submission.estimate, submission.model)
        try:
            job = submit(
                self.client,
                submission,
                recorder=self.recorder,
                notify=self._notice,
                budget=self.budget,
            )
        except SubmissionUncertainError:
            raise  # it may have been taken: it stays counted
        except BaseException:
            self.cap.release(reserved)
            raise
        self.cap.settle(reserved, job.credit_cost)
        self.state.render.info(f"Submitted {job.id} ({submission.model}).")
        return job

    def _follow(
        self, job: Job | str, timeout: float | None, submission: Submission | None = None
    ) -> JobResult:
        """Follow one job to its end and save it (the engine's), within `timeout`."""
        from pixeldojo_cli.core.deadlines import within
        from pixeldojo_cli.engine import wait_and_save

        wait = self.wait_options
        if timeout is not None:
            wait = dataclasses.replace(wait, timeout=timeout)
        with within(wait.timeout):
            [result] = wait_and_save(
                self.client,
                [job],
                wait,
                self.save_options,
                recorder=self.recorder,
                notify=self._notice,
                submission=submission,
            )
        if result.error is not None:
            raise result.error
        return result

    def _saved_document(self, result: JobResult, folder: Path | None = None) -> dict[str, Any]:
        """How a job ended (`run --json`'s shape), with its sidecar's path."""
        from pixeldojo_cli.cli.documents import result_document
        from pixeldojo_cli.store.downloads import api_base_url
        from pixeldojo_cli.store.files import sidecar_path

        document = result_document(result)
        if result.files:
            folder = Path(result.files[0].path).parent
        if folder is not None and result.files:
            base_url = api_base_url(self.client.transport)
            document["sidecar"] = str(sidecar_path(folder, result.job_id, base_url).resolve())
        return document

    # --- jobs by id -------------------------------------------------------------

    def job_status(self, job_id: str) -> dict[str, Any]:
        """`jobs show --json`: the job as the API says now, with any files saved here."""
        from pixeldojo_cli.cli.documents import job_document

        job = self.client.get_job(check_job_id(job_id))
        self.recorder.seen(job)
        local = self.recorder.get(job.id)
        return job_document(
            job, local.files if local else (), saved=self.recorder.saved_state(job.id)
        )

    def wait_for_job(self, job_id: str, timeout: float | None) -> dict[str, Any]:
        """`jobs wait ID --json`: follow a job to its end and save its outputs."""
        timeout = wait_seconds(timeout)
        return self._saved_document(self._follow(check_job_id(job_id), timeout))

    def download_job(self, job_id: str) -> dict[str, Any]:
        """`download ID --json`: save a completed job's outputs (those on disk are kept)."""
        from pixeldojo_cli.engine import fetch_and_save

        result = fetch_and_save(
            self.client,
            check_job_id(job_id),
            self.save_options,
            recorder=self.recorder,
            notify=self._notice,
        )
        if result.error is not None:
            raise result.error
        return self._saved_document(result)

    # --- the ledger ---------------------------------------------------------------

    def search_history(
        self,
        *,
        model: str | None,
        status: str | None,
        since: str | None,
        unsaved: bool,
        search: str | None,
        limit: int | None,
    ) -> dict[str, Any]:
        """`jobs list --local --json`, with its filters: the jobs this machine submitted."""
        from pixeldojo_cli.cli.commands.jobs_list import local_query
        from pixeldojo_cli.cli.documents import local_job_document
        from pixeldojo_cli.store.ledger import Ledger, ledger_path

        if self.state.use_emulator:
            raise UsageError("The embedded emulator's jobs are not recorded: there is no history.")
        limit = HISTORY_LIMIT if limit is None else limit
        if not 1 <= limit <= MAX_HISTORY_LIMIT:
            raise UsageError(f"limit must be from 1 to {MAX_HISTORY_LIMIT}, got {limit}.")
        query = local_query(
            model=model, status=status, since=since, unsaved=unsaved, search=search, limit=limit
        )
        base_url, profile = self.state.ledger_scope()
        query = dataclasses.replace(query, base_url=base_url, profile=profile)
        jobs = []
        if ledger_path().exists():
            with Ledger() as ledger:
                jobs = ledger.find(query)
        now = datetime.now(UTC)
        return {"jobs": [local_job_document(job, now) for job in jobs], "count": len(jobs)}

    # --- plumbing -------------------------------------------------------------------

    def _notice(self, event: Event) -> None:
        """The engine's notices go to stderr (stdout carries only the protocol)."""
        self.state.render.show_notice(event)
