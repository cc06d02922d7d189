"""The JSON shapes, one per entity, that every command's `--json` prints: a job,
a saved file, a job as the local ledger knows it, how a job ended, one
webhook delivery, a spend report (`usage`) and a balance (`credits`).
Timestamps are RFC 3339 in UTC with `Z`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pixeldojo_cli.api.results import Job, Model
    from pixeldojo_cli.core.errors import PixelDojoError
    from pixeldojo_cli.engine import JobResult
    from pixeldojo_cli.engine.webhooks import Delivery
    from pixeldojo_cli.store.embedded import Embedded
    from pixeldojo_cli.store.files import DownloadedFile
    from pixeldojo_cli.store.ledger import Balance, LedgerFile, LedgerJob, Spend
    from pixeldojo_cli.store.provenance import Provenance


def rfc3339(when: datetime | None) -> str | None:
    """A timestamp as every JSON document here writes it: RFC 3339, UTC, `Z`."""
    if when is None:
        return None
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def model_summary(model: Model) -> dict[str, Any]:
    """A model, as `models --json` (and the MCP server's `list_models`) shows it."""
    return {
        "id": model.id,
        "name": model.name,
        "type": model.modality,
        "description": model.description,
        "creditCost": model.cost.raw,
        "features": list(model.features),
    }


def file_document(file: DownloadedFile | LedgerFile) -> dict[str, Any]:
    """A saved file: its absolute path, size, SHA-256 (or null) and source URL."""
    return {
        "path": str(Path(file.path).resolve()),
        "size": file.size,
        "sha256": file.sha256,
        "url": file.url,
    }


def job_document(
    job: Job,
    files: Sequence[DownloadedFile | LedgerFile] = (),
    *,
    saved: bool | None = None,
) -> dict[str, Any]:
    """A job: the API's object as returned, plus `jobId`, `files` and, when known,
    `saved` (every output of it is on disk here)."""
    document: dict[str, Any] = {**job.raw, "jobId": job.id}
    document["files"] = [file_document(f) for f in files]
    if saved is not None:
        document["saved"] = saved
    return document


def delivery_document(delivery: Delivery) -> dict[str, Any]:
    """One job a webhook listener handled (`webhook listen --json`, JSON Lines):
    the job entity when the API confirmed it, with `outcome`, files as file
    objects, and `error` when it did not end well."""
    if delivery.job is not None:
        document = job_document(delivery.job, [f for f in delivery.files if hasattr(f, "size")])
    else:
        document = {"jobId": delivery.job_id, "files": []}
    if delivery.status is not None:
        document["status"] = delivery.status
    document["outcome"] = delivery.outcome
    if delivery.error is not None:
        document["error"] = delivery.error.to_json()["error"]
    return document


def local_job_document(job: LedgerJob, now: datetime) -> dict[str, Any]:
    """A job as the local ledger knows it (`jobs list --local`): the same keys
    as the API's job where they exist, plus what only this machine knows."""
    return {
        "jobId": job.id,
        "model": job.model,
        "status": job.status,
        "submittedAt": rfc3339(job.submitted_at),
        "expiresAt": rfc3339(job.expires_at),
        "estimatedCredits": job.estimated_credits,
        "creditCost": job.charged_credits,
        "inputs": job.inputs,
        "outputDir": job.output_dir,
        "files": [file_document(f) for f in job.files],
        "fileInputs": list(job.input_files),
        "saved": job.downloaded,
        "expired": not job.downloaded and (job.lost or job.deadline() <= now),
        "baseUrl": job.base_url,
        "profile": job.profile,
    }


def result_document(result: JobResult) -> dict[str, Any]:
    """How one job ended (`jobs wait`, `download`, `run`): the job entity with
    `outcome` when it ended well; otherwise the error entity with `jobId` and
    `outcome`, and the job as last seen under `job` (so the API's own `error`
    field of a failed job is kept as it was sent)."""
    job: dict[str, Any] | None = None
    if result.job is not None:
        job = job_document(result.job, result.files, saved=result.saved)
    document: dict[str, Any]
    if result.error is None:
        document = job if job is not None else {"jobId": result.job_id, "files": []}
        document["outcome"] = str(result.outcome)
        return document
    document = result.error.to_json()
    document["jobId"] = result.job_id
    document["outcome"] = str(result.outcome)
    if job is not None:
        document["job"] = job
    return document


def _credits(value: float) -> float:
    """Sums of credits to a millionth: `0.3`, never `0.30000000000000004`."""
    return round(value, 6)


def spend_document(spend: Spend) -> dict[str, Any]:
    """One row of a spend report, or its total: jobs and credits (`charged` by
    the API, plus `estimated` where it never said), failed jobs apart (the API
    may refund them), and seconds of video asked for (null when no job said)."""
    return {
        "jobs": spend.jobs,
        "credits": _credits(spend.credits),
        "charged": _credits(spend.charged),
        "estimated": _credits(spend.estimated),
        "estimatedJobs": spend.estimated_jobs,
        "unpricedJobs": spend.unpriced_jobs,
        "seconds": _credits(spend.seconds) if spend.timed_jobs else None,
        "failed": {"jobs": spend.failed_jobs, "credits": _credits(spend.failed_credits)},
    }


def usage_document(scope: dict[str, Any], rows: dict[str, Spend], total: Spend) -> dict[str, Any]:
    """`pixeldojo usage --json`: what was asked (`baseUrl`, `profile` or null for
    every profile, `model`, `since`, `until`, `by`, `timezone` of the days), one
    row per day, model or profile (`key`), and the `total`."""
    return {
        **scope,
        "rows": [{"key": key, **spend_document(spend)} for key, spend in rows.items()],
        "total": spend_document(total),
    }


def balance_document(base_url: str, profile: str, balance: Balance | None) -> dict[str, Any]:
    """`pixeldojo credits --json`: the balance the API last reported on a submit
    answer (null when none was ever seen), when, and after which job."""
    return {
        "credits": balance.credits if balance else None,
        "seenAt": rfc3339(balance.seen_at) if balance else None,
        "jobId": balance.job_id if balance else None,
        "baseUrl": base_url,
        "profile": profile,
    }


def provenance_document(
    path: Path,
    embedded: Embedded,
    made: Provenance | None,
    error: PixelDojoError | None = None,
) -> dict[str, Any]:
    """How one file was made (`inspect --json`, one per FILE): the file's
    `path` and `format` (`png`, `jpeg`, `webp` or null); `source` (`embedded`:
    the file's own metadata, `sidecar`: the `<jobId>.json` beside it, null:
    neither) and `where` it was read; the job's `jobId`, `model`, `prompt`,
    `seed`, `inputs` (all of them, the prompt and seed included), `api`,
    `createdAt` and `credits` (null when not known); `truncated` (long inputs
    were cut to fit); `otherMetadata`, what other programs wrote, as text
    (`label`, `text`, cut); `problems`, what was ignored and why; and
    `error` when nothing was found or the file could not be read."""
    document: dict[str, Any] = {
        "path": str(path.absolute()),
        "format": embedded.kind,
        "source": made.source if made is not None else None,
        "where": made.where if made is not None else None,
        "jobId": made.job_id if made is not None else None,
        "model": made.model if made is not None else None,
        "prompt": made.prompt if made is not None else None,
        "seed": made.seed if made is not None else None,
        "inputs": made.inputs if made is not None else None,
        "api": made.api if made is not None else None,
        "createdAt": made.created if made is not None else None,
        "credits": made.credits if made is not None else None,
        "truncated": made.truncated if made is not None else False,
        "otherMetadata": [{"label": label, "text": text} for label, text in embedded.foreign],
        "problems": list(embedded.problems),
    }
    if error is not None:
        document["error"] = error.to_json()["error"]
    return document
