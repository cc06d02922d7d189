"""Saving a completed job's outputs: downloaded, kept when intact, recorded as
they land, with the `<jobId>.json` sidecar beside them."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pixeldojo_cli.api.results import Job
from pixeldojo_cli.core.errors import (
    ExpiredError,
    JobFailedError,
    JobNotFinishedError,
    JobsInterruptedError,
    OutputRefusedError,
)
from pixeldojo_cli.engine.events import EventSink, FileProgress, Notice, ignore
from pixeldojo_cli.engine.options import SaveOptions
from pixeldojo_cli.engine.recorder import Recorder

if TYPE_CHECKING:
    from pixeldojo_cli.api.client import Client
    from pixeldojo_cli.store.downloads import Rewrite
    from pixeldojo_cli.store.files import DownloadedFile
    from pixeldojo_cli.store.ledger import LedgerFile, LedgerJob


def _known_files(
    local: LedgerJob | None, folder: Path, job_id: str, base_url: str
) -> dict[int, DownloadedFile]:
    """Files this job (of this API) already has on disk, per its sidecar and the ledger."""
    from pixeldojo_cli.store.files import recorded_files

    found = dict(recorded_files(folder, job_id, base_url))
    for record in local.files if local is not None else ():
        found.setdefault(record.n, file_from_ledger(record))
    return found


def file_from_ledger(record: LedgerFile) -> DownloadedFile:
    """A file as the ledger recorded it, to be checked (`intact_since`) and kept."""
    from pixeldojo_cli.store.files import DownloadedFile

    return DownloadedFile(
        Path(record.path), record.size, record.sha256, record.url, mtime_ns=record.mtime_ns
    )


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
    cancel: threading.Event | None = None,
    file_inputs: list[dict[str, Any]] | None = None,
) -> list[DownloadedFile]:
    """Download a completed job's outputs and return the files, in output order.

    Files already there and intact (per the sidecar or the ledger, unless
    `options.force`) are kept; each file is recorded in the ledger as it
    lands; `<jobId>.json` (the job, the model, the inputs, the files) is
    written beside them. A job that failed, expired or is still running
    raises the error that says so. Ctrl-C raises `JobsInterruptedError` with
    the command that resumes; no partial file is left under a final name.
    Whether its outputs were refused (`OutputRefusedError`) this time goes
    into the ledger: the pending sweep skips a refused job.
    """
    from pixeldojo_cli.store.downloads import api_base_url
    from pixeldojo_cli.store.files import write_metadata

    check_saveable(job)
    base_url = api_base_url(client.transport)
    local = recorder.get(job.id) if recorder is not None else None
    folder = options.folder_for(local)
    if not job.output_urls:
        notify(Notice(f"Job {job.id} completed without any output URL.", level="warning"))
    existing = {} if options.force else _known_files(local, folder, job.id, base_url)
    model = model or (local.model if local else None) or job.model or "unknown"
    inputs = inputs if inputs is not None else (local.inputs if local else {})
    stamp = _stamp(client, job, model, inputs, base_url, embed=options.embed_metadata)
    refused = False
    try:
        files = _download(
            client,
            job,
            folder,
            existing,
            options,
            recorder=recorder,
            notify=notify,
            cancel=cancel,
            expires_at=job.output_expiry() or (local.deadline() if local else None),
            rewrite=stamp,
        )
    except OutputRefusedError:
        refused = True
        raise
    finally:
        if recorder is not None and local is not None and local.refused != refused:
            recorder.refused(job.id, refused)  # the sweep skips it while it stays refused
    write_metadata(
        folder,
        job,
        model or (local.model if local else None) or job.model or "unknown",
        inputs if inputs is not None else (local.inputs if local else {}),
        files,
        base_url=base_url,
        file_inputs=file_inputs or (list(local.input_files) if local else None),
    )
    _say_what_was_kept(job.id, files, notify)
    return files


def _download(
    client: Client,
    job: Job,
    folder: Path,
    existing: dict[int, DownloadedFile],
    options: SaveOptions,
    *,
    recorder: Recorder | None,
    notify: EventSink,
    cancel: threading.Event | None,
    expires_at: datetime | None,
    rewrite: Rewrite | None = None,
) -> list[DownloadedFile]:
    """The job's outputs into `folder`, each recorded as it lands; Ctrl-C is
    `JobsInterruptedError` with the command that resumes."""
    from pixeldojo_cli.store.downloads import download_outputs

    def on_saved(n: int, file: DownloadedFile) -> None:
        if recorder is not None:
            recorder.file_saved(job.id, n, file)

    def on_progress(index: int, done: int, total: int | None) -> None:
        notify(FileProgress(job.id, index, done, total))

    try:
        return download_outputs(
            client.transport,
            job,
            folder,
            existing=existing,
            on_progress=on_progress,
            on_saved=on_saved,
            checksum=options.checksum,
            cancel=cancel,
            expires_at=expires_at,
            rewrite=rewrite,
        )
    except KeyboardInterrupt:
        raise JobsInterruptedError(
            f"Interrupted while downloading job {job.id}; no partial file was left under "
            "a final name.",
            job_ids=[job.id],
            hint=f"Resume with: pixeldojo download {job.id}",
        ) from None


def _stamp(
    client: Client, job: Job, model: str, inputs: dict[str, Any], base_url: str, *, embed: bool
) -> Rewrite:
    """What writes the job into each saved picture (`store.embedding`): its
    model, inputs (the prompt and seed among them), id, API, creation time
    and cost, the key masked wherever a server may have echoed it. With
    `embed` off (embed_metadata) nothing is added, but what must not be kept
    of the file as served still goes: metadata holding the key, a server's
    claim to be our metadata."""
    from functools import partial

    from pixeldojo_cli.core.version import __version__
    from pixeldojo_cli.store.embedding import embed as store_embed
    from pixeldojo_cli.store.provenance import Provenance

    when = job.created_at or job.completed_at
    made = Provenance(
        job_id=job.id,
        model=model,
        inputs=inputs,
        api=base_url,
        created=when.isoformat().replace("+00:00", "Z") if when is not None else None,
        credits=job.credit_cost,
    )
    return partial(
        store_embed,
        made=made if embed else None,
        tool=f"pixeldojo-cli {__version__}",
        secret=client.api_key,
    )


def _say_what_was_kept(job_id: str, files: list[DownloadedFile], notify: EventSink) -> None:
    kept = sum(1 for f in files if f.skipped)
    if kept:
        notify(
            Notice(
                f"{job_id}: {kept} file{'' if kept == 1 else 's'} already saved and intact, "
                "not downloaded again "
                "(--force fetches them anyway)."
            )
        )
