"""pixeldojo-cli: a command-line client (and small library) for PixelDojo's async API.

The public names below are imported on first use, so that `import pixeldojo_cli`
(which the CLI does at every start) loads neither httpx nor anything else::

    from pixeldojo_cli import Client, NotFoundError
"""

from __future__ import annotations

from pixeldojo_cli.core.version import __version__ as __version__

# Not `typing.TYPE_CHECKING`: importing typing would slow `pixeldojo --version`,
# and type checkers treat any `TYPE_CHECKING` name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pixeldojo_cli.api.client import Client
    from pixeldojo_cli.api.results import Cost, Job, Model
    from pixeldojo_cli.api.transport import RetryPolicy
    from pixeldojo_cli.core.errors import (
        APIError,
        ApiResponse,
        AuthenticationError,
        BadResponseError,
        BudgetExceededError,
        BudgetUncheckedError,
        ConfigError,
        CreditError,
        DeadlineError,
        DownloadError,
        ExitCode,
        ExpiredError,
        InsufficientCreditsError,
        InternalServerError,
        InvalidAPIKeyError,
        InvalidJSONError,
        JobFailedError,
        JobNotFinishedError,
        JobsInterruptedError,
        LedgerError,
        MissingAPIKeyError,
        NetworkError,
        NotFoundError,
        Outcome,
        OutputRefusedError,
        PixelDojoError,
        RateLimitError,
        RequestTimeoutError,
        ServerError,
        SpendCapError,
        SubmissionFailedError,
        SubmissionUncertainError,
        UploadError,
        UsageError,
        ValidationError,
        WaitTimeoutError,
        WebhookDeliveryError,
        WriteError,
        WrongJobError,
    )
    from pixeldojo_cli.engine import (
        JobResult,
        Recorder,
        SaveOptions,
        WaitOptions,
        follow,
        save,
        sweep_pending,
        wait_and_save,
    )
    from pixeldojo_cli.engine.webhooks import (
        Delivery,
        LedgerBook,
        WebhookListener,
        job_id_from_notification,
    )

__all__ = [
    "APIError",
    "ApiResponse",
    "AuthenticationError",
    "BadResponseError",
    "BudgetExceededError",
    "BudgetUncheckedError",
    "Client",
    "ConfigError",
    "Cost",
    "CreditError",
    "DeadlineError",
    "Delivery",
    "DownloadError",
    "ExitCode",
    "ExpiredError",
    "InsufficientCreditsError",
    "InternalServerError",
    "InvalidAPIKeyError",
    "InvalidJSONError",
    "Job",
    "JobFailedError",
    "JobNotFinishedError",
    "JobResult",
    "JobsInterruptedError",
    "LedgerBook",
    "LedgerError",
    "MissingAPIKeyError",
    "Model",
    "NetworkError",
    "NotFoundError",
    "Outcome",
    "OutputRefusedError",
    "PixelDojoError",
    "RateLimitError",
    "Recorder",
    "RequestTimeoutError",
    "RetryPolicy",
    "SaveOptions",
    "ServerError",
    "SpendCapError",
    "SubmissionFailedError",
    "SubmissionUncertainError",
    "UploadError",
    "UsageError",
    "ValidationError",
    "WaitOptions",
    "WaitTimeoutError",
    "WebhookDeliveryError",
    "WebhookListener",
    "WriteError",
    "WrongJobError",
    "__version__",
    "follow",
    "job_id_from_notification",
    "save",
    "sweep_pending",
    "wait_and_save",
]

# name -> the module that defines it (one entry per name in __all__).
_HOMES: dict[str, str] = {
    "Client": "api.client",
    "ApiResponse": "core.errors",
    "RetryPolicy": "api.transport",
    "Cost": "api.results",
    "Job": "api.results",
    "Model": "api.results",
    "WebhookListener": "engine.webhooks",
    "Delivery": "engine.webhooks",
    "LedgerBook": "engine.webhooks",
    "job_id_from_notification": "engine.webhooks",
    **{
        name: "core.errors"
        for name in (
            "ExitCode",
            "Outcome",
            "PixelDojoError",
            "UsageError",
            "JobNotFinishedError",
            "JobsInterruptedError",
            "ConfigError",
            "MissingAPIKeyError",
            "JobFailedError",
            "WaitTimeoutError",
            "DeadlineError",
            "NetworkError",
            "RequestTimeoutError",
            "SubmissionUncertainError",
            "BadResponseError",
            "WrongJobError",
            "DownloadError",
            "OutputRefusedError",
            "LedgerError",
            "BudgetExceededError",
            "BudgetUncheckedError",
            "WriteError",
            "UploadError",
            "SpendCapError",
            "APIError",
            "AuthenticationError",
            "InvalidJSONError",
            "ValidationError",
            "NotFoundError",
            "InsufficientCreditsError",
            "ExpiredError",
            "RateLimitError",
            "ServerError",
            "CreditError",
            "SubmissionFailedError",
            "InternalServerError",
            "InvalidAPIKeyError",
            "WebhookDeliveryError",
        )
    },
    **{
        name: "engine"
        for name in (
            "JobResult",
            "Recorder",
            "SaveOptions",
            "WaitOptions",
            "follow",
            "save",
            "sweep_pending",
            "wait_and_save",
        )
    },
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"pixeldojo_cli.{home}"), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
