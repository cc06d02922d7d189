"""The error tree, and the one table that maps an error to the CLI's exit code.

Every failure the library can raise is a `PixelDojoError`. API errors get one
class per error code of the API reference; local failures (no key, bad input,
a job that failed, a wait that timed out, the network) have their own classes.
Each job a command handles ends in one `Outcome` (saved, failed, expired, ...);
`OUTCOME_EXIT_CODES` says what each means for the exit code and
`combined_exit_code()` turns several into the one the process exits with. The
CLI never decides an exit code anywhere else.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

from pixeldojo_cli.core.idtext import shown_pair


class ExitCode(IntEnum):
    """The exit codes (README, "Exit codes"; the one table users and scripts rely on)."""

    OK = 0
    UNEXPECTED = 1
    USAGE = 2
    AUTH = 3
    CREDITS = 4
    JOB_FAILED = 5
    NOT_FOUND = 6
    EXPIRED = 7
    RATE_LIMITED = 8
    TIMEOUT = 9
    NETWORK = 10
    INTERRUPTED = 130
    TERMINATED = 143  # SIGTERM: handled as Ctrl-C is


# The one table: error code -> exit code. API codes first, then the local ones.
EXIT_CODES: dict[str, ExitCode] = {
    "unauthorized": ExitCode.AUTH,
    "invalid_json": ExitCode.USAGE,
    "validation_error": ExitCode.USAGE,
    "not_found": ExitCode.NOT_FOUND,
    "insufficient_credits": ExitCode.CREDITS,
    "credit_error": ExitCode.NETWORK,
    "submission_failed": ExitCode.NETWORK,
    "expired": ExitCode.EXPIRED,
    "rate_limit_exceeded": ExitCode.RATE_LIMITED,
    "internal_error": ExitCode.NETWORK,
    # local codes
    "usage_error": ExitCode.USAGE,
    "config_error": ExitCode.USAGE,
    "missing_api_key": ExitCode.AUTH,
    "invalid_api_key": ExitCode.USAGE,  # bad input: a key that cannot be a header
    "job_failed": ExitCode.JOB_FAILED,
    "wait_timeout": ExitCode.TIMEOUT,
    "network_error": ExitCode.NETWORK,
    "timeout": ExitCode.NETWORK,
    "submission_uncertain": ExitCode.NETWORK,
    "bad_response": ExitCode.NETWORK,
    # `GET /jobs/{id}` answered about another job: a server fault, never this job's state.
    "wrong_job": ExitCode.NETWORK,
    "server_error": ExitCode.NETWORK,
    "download_failed": ExitCode.NETWORK,
    # The API answered, but could not deliver the job's webhook to its URL.
    "webhook_failed": ExitCode.NETWORK,
    # The `upload_command` failed for a `@PATH` input (nothing was submitted).
    "upload_failed": ExitCode.NETWORK,
    # An output folder that cannot be written (or a full disk) is the user's to fix,
    # not a bug: it is reported as an input error.
    "write_failed": ExitCode.USAGE,
    # The job ledger is locked by another process for longer than the bounded wait,
    # or cannot be written (read-only): local and usually passing, like a network
    # fault, and safe to retry (nothing is submitted that could not be recorded).
    "ledger_unavailable": ExitCode.NETWORK,
    # A budget (`budget_daily`, `budget_monthly`) or `--max-credits` refused a job,
    # or a budget could not be checked (the ledger busy, read-only, unopened):
    # nothing was sent, as when the API answers `insufficient_credits`.
    "budget_exceeded": ExitCode.CREDITS,
    "budget_unchecked": ExitCode.CREDITS,
    "interrupted": ExitCode.INTERRUPTED,
    # `mcp --max-credits`: a job that would take the session past its cap, refused unsent.
    "max_credits": ExitCode.CREDITS,
}


class PixelDojoError(Exception):
    """Base of every error this package raises on purpose."""

    code: str = "error"
    default_hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None, job_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = self.default_hint if hint is None else hint
        # The job this error is about, when one exists: scripts resume with it.
        self.job_id = job_id

    @property
    def exit_code(self) -> ExitCode:
        code = EXIT_CODES.get(self.code, ExitCode.UNEXPECTED)
        if code is ExitCode.INTERRUPTED:  # 143 once SIGTERM arrived
            from pixeldojo_cli.core.interrupts import exit_code as interrupted_exit_code

            return ExitCode(interrupted_exit_code())
        return code

    def to_json(self) -> dict[str, Any]:
        """The `{"error": {...}}` document printed under `--json` (plus `jobId`
        beside it whenever the error is about a job)."""
        document: dict[str, Any] = {
            "error": {
                "code": self.code,
                "message": self.message,
                "exit_code": int(self.exit_code),
            }
        }
        if self.job_id:
            document["jobId"] = self.job_id
        return document

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


# --- local errors -----------------------------------------------------------


class UsageError(PixelDojoError):
    """Bad input caught before anything was sent: flags, `-p` values, schema check."""

    code = "usage_error"


class JobNotFinishedError(UsageError):
    """Asked for the outputs of a job that is still running."""


class ConfigError(PixelDojoError):
    """The config file cannot be read or written."""

    code = "config_error"


class MissingAPIKeyError(PixelDojoError):
    code = "missing_api_key"
    default_hint = (
        "Provide a key with `pixeldojo auth login`, the PIXELDOJO_API_KEY environment "
        "variable, or --api-key; or try the tool with --emulator (no key needed)."
    )


class InvalidAPIKeyError(PixelDojoError):
    """A key that cannot be sent in an HTTP header; the message never contains it."""

    code = "invalid_api_key"
    default_hint = (
        "An API key is visible ASCII only. Set it again (`pixeldojo auth login`, "
        "PIXELDOJO_API_KEY or --api-key) without the stray character."
    )


class JobFailedError(PixelDojoError):
    """The job reached status `failed` (or a synonym: `error`, `canceled`, ...)."""

    code = "job_failed"

    def __init__(self, message: str, *, job_id: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint, job_id=job_id)


class WaitTimeoutError(PixelDojoError):
    """`--timeout` passed while the job was still running."""

    code = "wait_timeout"

    def __init__(self, message: str, *, job_id: str, hint: str | None = None) -> None:
        hint = hint or (f"Resume with: pixeldojo jobs wait {job_id}" if job_id else None)
        super().__init__(message, hint=hint, job_id=job_id or None)

    @classmethod
    def still_running(cls, job_id: str) -> WaitTimeoutError:
        """The deadline passed and the job had not finished."""
        return cls(f"Job {job_id} is still running after the timeout.", job_id=job_id)

    @classmethod
    def unreached(cls, job_id: str) -> WaitTimeoutError:
        """The deadline passed before the API ever answered about the job."""
        return cls(
            f"No answer about job {job_id} came from the API before the timeout: "
            "its status is unknown.",
            job_id=job_id,
        )


class DeadlineError(WaitTimeoutError):
    """The command's deadline (`--timeout`) came before a request or a wait could
    end: nothing more is sent or waited for (exit 9). Whoever knows the job
    says how to resume."""

    def __init__(self, message: str, *, job_id: str = "", hint: str | None = None) -> None:
        super().__init__(message, job_id=job_id, hint=hint)


class JobsInterruptedError(PixelDojoError):
    """Ctrl-C (or SIGTERM) while following or saving jobs: they keep running on the
    server, and the hint says how to pick them up again."""

    code = "interrupted"

    def __init__(self, message: str, *, job_ids: Iterable[str] = (), hint: str | None = None):
        self.job_ids = list(job_ids)
        super().__init__(
            message, hint=hint, job_id=self.job_ids[0] if len(self.job_ids) == 1 else None
        )


class NetworkError(PixelDojoError):
    """The server could not be reached, or the connection broke."""

    code = "network_error"
    default_hint = "Check your connection and the base URL, then try again."


class RequestTimeoutError(NetworkError):
    code = "timeout"


class SubmissionUncertainError(NetworkError):
    """A `POST .../run` failed after its body was sent: it may have been taken."""

    code = "submission_uncertain"
    default_hint = (
        "The job may have been created and charged: check `pixeldojo jobs list` "
        "before submitting again."
    )


class BadResponseError(PixelDojoError):
    """The server answered with something that is not the API's shape."""

    code = "bad_response"
    default_hint = "Check the base URL points at the PixelDojo API (`pixeldojo auth status`)."


class WrongJobError(BadResponseError):
    """The API answered about another job (another `jobId`) than the one asked
    about: nothing in that answer is taken for the asked-for job, whose state
    stays as it was. `job_id` is the asked-for job."""

    code = "wrong_job"

    def __init__(self, asked: str, answered: object) -> None:
        mine, theirs = shown_pair(asked, answered)
        super().__init__(
            f"The API answered about job {theirs} when asked about job {mine}.",
            hint=f"Nothing from this answer was saved, neither for job {mine} nor under "
            f"job {theirs}. " + BadResponseError.default_hint,
            job_id=asked,
        )


class DownloadError(PixelDojoError):
    code = "download_failed"
    default_hint = "Retry with `pixeldojo download <job id>` before the outputs expire."


class OutputRefusedError(DownloadError):
    """An output URL that can never be downloaded as it stands: not an http(s)
    URL, plain http from an https API, or an address inside the network. The
    same exit code as any download failure (10), but no hint to try again."""

    default_hint = "`pixeldojo jobs show <job id>` prints the job's output URLs."


class LedgerError(PixelDojoError):
    """The job ledger could not be used: locked by another process for longer than
    the bounded wait, or read-only. Never a bug (exit 10, like a network fault)."""

    code = "ledger_unavailable"
    default_hint = (
        "Another program may be holding the ledger (a backup, a second pixeldojo); "
        "try again shortly, and check the file and its folder are writable."
    )


class BudgetExceededError(PixelDojoError):
    """A job's estimate would pass a budget or `--max-credits`: not submitted."""

    code = "budget_exceeded"


class BudgetUncheckedError(PixelDojoError):
    """A budget is set but could not be checked (the ledger busy, read-only or
    unopened; a cost nobody knows): the job is not submitted, never spent blindly."""

    code = "budget_unchecked"


class WebhookDeliveryError(PixelDojoError):
    """`webhook replay`: the API tried, and the webhook did not reach its URL."""

    code = "webhook_failed"
    default_hint = (
        "Check that the URL is reachable from the internet and answers 2xx, then replay again."
    )


class UploadError(PixelDojoError):
    """A file of a `@PATH` input could not be uploaded: the `upload_command` failed,
    hung past its deadline or printed no http(s) URL. Nothing was submitted."""

    code = "upload_failed"
    default_hint = "Nothing was submitted. Check the command with the file by hand, then retry."


class WriteError(PixelDojoError):
    """An output or metadata file could not be written."""

    code = "write_failed"
    default_hint = "Check the output folder exists, is writable and has free space."


class SpendCapError(PixelDojoError):
    """A job refused before it was submitted: its estimate would pass a spend cap."""

    code = "max_credits"


# --- API errors -------------------------------------------------------------


@dataclass(frozen=True)
class ApiResponse:
    """One API answer as it came: status, headers (in order, repeats kept) and body."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    http_version: str = "HTTP/1.1"

    def header(self, name: str) -> str | None:
        """The first header called `name` (any case), or None."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def json(self) -> Any:
        """The body decoded as JSON; `BadResponseError` when it is not JSON."""

        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadResponseError(f"The answer (HTTP {self.status}) is not JSON.") from exc


class APIError(PixelDojoError):
    """An error answer from the API, with its HTTP status (and, once raised by the
    transport, the whole answer as `response`: status, headers and body)."""

    code = "server_error"
    response: ApiResponse | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        hint: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        if code is not None:
            self.code = code
        self.status = status
        self.retry_after = retry_after


class AuthenticationError(APIError):
    code = "unauthorized"
    default_hint = "Check the key (`pixeldojo auth status`) or get a new one at https://pixeldojo.ai/api-platform/api-keys."


class InvalidJSONError(APIError):
    code = "invalid_json"


class ValidationError(APIError):
    code = "validation_error"
    default_hint = "See the model's parameters with `pixeldojo models show <model>`."


class NotFoundError(APIError):
    code = "not_found"
    default_hint = "List model ids with `pixeldojo models`, recent jobs with `pixeldojo jobs list`."


class InsufficientCreditsError(APIError):
    code = "insufficient_credits"
    default_hint = "Top up at https://pixeldojo.ai/api-platform, or lower num_outputs/duration."


class ExpiredError(APIError):
    code = "expired"
    default_hint = "Outputs are deleted 24 hours after completion; run the job again."


class RateLimitError(APIError):
    code = "rate_limit_exceeded"
    default_hint = "Wait a minute and try again, or lower `rate_limit` for this profile."


class ServerError(APIError):
    """5xx answers: `credit_error`, `submission_failed`, `internal_error`, or none."""

    code = "server_error"
    default_hint = "The service had a problem; try again shortly."


class CreditError(ServerError):
    code = "credit_error"


class SubmissionFailedError(ServerError):
    code = "submission_failed"


class InternalServerError(ServerError):
    code = "internal_error"


API_ERROR_CLASSES: dict[str, type[APIError]] = {
    cls.code: cls
    for cls in (
        AuthenticationError,
        InvalidJSONError,
        ValidationError,
        NotFoundError,
        InsufficientCreditsError,
        ExpiredError,
        RateLimitError,
        CreditError,
        SubmissionFailedError,
        InternalServerError,
    )
}


# --- outcomes -----------------------------------------------------------------


class Outcome(StrEnum):
    """How one job ended for this command."""

    SAVED = "saved"  # its outputs are on disk
    LISTED = "listed"  # completed; the URLs were printed instead (--no-download)
    SUBMITTED = "submitted"  # submitted and not waited for (--no-wait)
    RUNNING = "running"  # still running; a later `download --pending` gets it
    FAILED = "failed"  # the job failed on the server
    EXPIRED = "expired"  # its outputs are gone
    TIMED_OUT = "timed_out"  # --timeout (or the unknown-status bound) passed
    NOT_FOUND = "not_found"
    SKIPPED = "skipped"  # a --batch line not submitted: --max-credits
    UNCERTAIN = "uncertain"  # a --batch line an earlier run may have submitted
    INTERRUPTED = "interrupted"
    ERROR = "error"  # anything else: the error says what


# The one table for outcomes: what each one means for the exit code. An outcome
# that carries an error takes the error's code instead (ERROR always has one).
OUTCOME_EXIT_CODES: dict[Outcome, ExitCode] = {
    Outcome.SAVED: ExitCode.OK,
    Outcome.LISTED: ExitCode.OK,
    Outcome.SUBMITTED: ExitCode.OK,
    Outcome.RUNNING: ExitCode.OK,
    Outcome.FAILED: ExitCode.JOB_FAILED,
    Outcome.EXPIRED: ExitCode.EXPIRED,
    Outcome.TIMED_OUT: ExitCode.TIMEOUT,
    Outcome.NOT_FOUND: ExitCode.NOT_FOUND,
    # Lines left out by the spend cap: the batch did not do all it was asked to.
    Outcome.SKIPPED: ExitCode.CREDITS,
    Outcome.UNCERTAIN: ExitCode.NETWORK,
    Outcome.INTERRUPTED: ExitCode.INTERRUPTED,
    Outcome.ERROR: ExitCode.UNEXPECTED,
}


def outcome_of(error: PixelDojoError) -> Outcome:
    """The outcome an error stands for."""
    if isinstance(error, JobFailedError):
        return Outcome.FAILED
    if isinstance(error, ExpiredError):
        return Outcome.EXPIRED
    if isinstance(error, WaitTimeoutError):
        return Outcome.TIMED_OUT
    if isinstance(error, NotFoundError):
        return Outcome.NOT_FOUND
    if isinstance(error, JobsInterruptedError):
        return Outcome.INTERRUPTED
    if isinstance(error, JobNotFinishedError):
        return Outcome.RUNNING
    if isinstance(error, SubmissionUncertainError):
        return Outcome.UNCERTAIN
    return Outcome.ERROR


def outcome_exit_code(outcome: Outcome, error: PixelDojoError | None = None) -> ExitCode:
    """One job's exit code: its error's, else its outcome's."""
    return error.exit_code if error is not None else OUTCOME_EXIT_CODES[outcome]


def combined_exit_code(
    codes: Iterable[ExitCode | int], *, server_failures_ok: bool = False
) -> ExitCode:
    """Several jobs, one exit code: the highest, so any trouble shows (0 only when
    every job is fine; an interruption, 130, wins). With `server_failures_ok`
    (the `download --pending` sweep), a job that failed on the server is over,
    not a failure of the command."""
    kept = [
        ExitCode(code) for code in codes if not (server_failures_ok and code == ExitCode.JOB_FAILED)
    ]
    return max(kept, default=ExitCode.OK)
