"""`@` values of a job, from the check before anything is spent to the URLs
in the request.

`check_file_inputs` runs after the schema check (in `prepare` and when a batch
is planned): it finds each `@PATH` and `@job:ID/N`, checks every local file
(`inputs.local_files`) and that an uploader is set. `send_files`, called by
`submit` right before the POST, resolves the job outputs (their URL while
alive, else the file saved here, uploaded), uploads the local files (once per
file and uploader while `upload_ttl` lasts, as the ledger remembers), and
returns the request with URLs in place. What was sent is noted on the
`FileInputs` (the ledger and the sidecar keep it).
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pixeldojo_cli.core.errors import ExpiredError, NotFoundError, UsageError
from pixeldojo_cli.core.text import safe_text
from pixeldojo_cli.engine.events import EventSink, Notice, ignore
from pixeldojo_cli.engine.file_plan import FileInputs, SentFile
from pixeldojo_cli.engine.uploaders import UploadSettings, check_data_request, data_uri
from pixeldojo_cli.inputs.file_refs import JobRef, LocalRef, RefSlot, find_refs, with_urls
from pixeldojo_cli.inputs.local_files import LocalFile, check_local_file

if TYPE_CHECKING:
    from pixeldojo_cli.api.client import Client
    from pixeldojo_cli.api.results import Job
    from pixeldojo_cli.engine.recorder import Recorder
    from pixeldojo_cli.engine.submission import Submission
    from pixeldojo_cli.store.ledger import LedgerFile

# A job output that expires sooner than this is not sent by URL: the API may
# fetch it a little after the request.
_URL_MARGIN = timedelta(minutes=2)


def check_file_inputs(
    schema: Mapping[str, Any] | None,
    inputs: dict[str, Any],
    upload: UploadSettings | None,
    *,
    seen: dict[tuple[str, frozenset[str]], LocalFile] | None = None,
) -> tuple[dict[str, Any], FileInputs | None]:
    """The inputs (`@@` made `@`) and their `@` values checked, after the schema
    check and before anything is uploaded or spent: usage errors for a file
    that cannot be sent, or when no uploader is set. `seen` keeps the files
    already checked (a batch names the same file on many lines)."""
    inputs, refs = find_refs(schema, inputs)
    if not refs:
        return inputs, None
    upload = upload or UploadSettings()
    slots: list[tuple[RefSlot, LocalFile | None]] = []
    for slot in refs:
        local = None
        if isinstance(slot.ref, LocalRef):
            upload.check_ready(f"{slot.label}=@{slot.ref.path[:60]}")
            key = (slot.ref.path, slot.kinds)
            local = seen.get(key) if seen is not None else None
            if local is None:
                local = check_local_file(
                    slot.ref.path, slot.label, kinds=slot.kinds, max_bytes=upload.file_cap
                )
            if seen is not None and len(seen) < 4096:
                seen[key] = local
        slots.append((slot, local))
    if upload.way == "data":
        check_data_request([local for _, local in slots if local is not None])
    return inputs, FileInputs(slots, upload)


# --- sending ------------------------------------------------------------------------


def send_files(
    client: Client,
    submission: Submission,
    *,
    recorder: Recorder | None = None,
    notify: EventSink = ignore,
) -> Submission:
    """The submission to POST: every `@` value replaced by its URL. Job outputs
    are resolved first, then files uploaded; nothing is uploaded when a job
    output cannot be used. Raises what stops it (nothing is submitted then)."""
    files = submission.files
    if files is None:
        return submission
    resolved: list[tuple[RefSlot, LocalFile | None, SentFile | None]] = []
    for slot, local in files.slots:
        if isinstance(slot.ref, JobRef):
            sent, local = _job_output(client, recorder, slot, files.upload)
            resolved.append((slot, local, sent))
        else:
            resolved.append((slot, local, None))
    to_upload = [local for _, local, sent in resolved if sent is None and local is not None]
    if files.upload.way == "data":
        check_data_request(to_upload)
    sent_files = [
        sent if sent is not None else _upload(client, recorder, slot, local, files.upload, notify)
        for slot, local, sent in resolved
        if sent is not None or local is not None
    ]
    inputs = with_urls(submission.inputs, {(s.input, s.index): s.url for s in sent_files})
    files.sent, files.sent_inputs = tuple(sent_files), inputs
    return dataclasses.replace(submission, inputs=inputs)


def _upload(
    client: Client,
    recorder: Recorder | None,
    slot: RefSlot,
    local: LocalFile | None,
    upload: UploadSettings,
    notify: EventSink,
) -> SentFile:
    """One local file to a URL: read again and checked, then inline, reused or uploaded."""
    from pixeldojo_cli.engine.uploaders import run_upload_command

    assert local is not None
    job = slot.ref.text.removeprefix("job:") if isinstance(slot.ref, JobRef) else None
    # A local file is checked again (it may have changed since it was planned); a
    # job's saved output was checked against what was saved a moment ago, and
    # what is sent is read (and checked) against that.
    file = (
        local
        if job is not None
        else check_local_file(
            str(local.path), slot.label, kinds=slot.kinds, max_bytes=upload.file_cap
        )
    )
    if upload.way == "data":
        url = data_uri(file)
    else:
        reused = recorder.upload_url(upload.identity, file.sha256, upload.ttl) if recorder else None
        url = reused or run_upload_command(upload, file, client.api_key)
        if reused is None:
            notify(Notice(f"Uploaded {file.path.name} ({file.size:,} bytes) for {slot.label}."))
            if recorder is not None:
                recorder.uploaded(upload.identity, file, url)
    return SentFile(slot.input, slot.index, url, path=str(file.path), job=job,
                    sha256=file.sha256, size=file.size, mime=file.mime)  # fmt: skip


def _job_output(
    client: Client, recorder: Recorder | None, slot: RefSlot, upload: UploadSettings
) -> tuple[SentFile | None, LocalFile | None]:
    """A job's output: its URL while it has not expired, else the file saved here
    (to upload). Exit 6 for a job nobody knows, 7 when neither is left."""
    ref = slot.ref
    assert isinstance(ref, JobRef)
    local_job = recorder.get(ref.job_id) if recorder is not None else None
    job = _api_job(client, slot, ref, local_job is not None)
    if job is not None and not job.succeeded:
        raise UsageError(
            f"{slot.label}: job {ref.job_id} has no outputs to use (status: {job.status}).",
            hint=f"Wait for it with `pixeldojo jobs wait {ref.job_id}`.",
        )
    urls = (
        list(job.output_urls)
        if job is not None
        else list(local_job.output_urls if local_job else [])
    )
    saved_files = {f.n: f for f in (local_job.files if local_job else ())}
    if job is None and not urls and not saved_files:  # expired before this machine saw any
        raise ExpiredError(
            f"{slot.label}: job {ref.job_id} has expired, and none of its outputs was seen "
            "or saved on this machine.",
            hint="Run that job again, or name a saved file with @PATH.",
        )
    n = _output_number(slot, ref, max(len(urls), max(saved_files, default=0)))
    expires = job.output_expiry() if job is not None else None
    if expires is None and local_job is not None:
        expires = local_job.deadline()
    text = f"{ref.job_id}/{n}"
    if job is not None and expires is not None and expires - _URL_MARGIN > datetime.now(UTC):
        return SentFile(slot.input, slot.index, urls[n - 1], job=text), None
    saved = saved_files.get(n)
    if saved is None:
        raise ExpiredError(
            f"{slot.label}: the outputs of job {ref.job_id} have expired, and output {n} was "
            "not saved on this machine.",
            hint="Run that job again, or name a saved file with @PATH.",
        )
    upload.check_ready(f"{slot.label}=@job:{text} (expired; saved as {saved.path})")
    return None, _saved_output(recorder, slot, text, saved, upload)


def _api_job(client: Client, slot: RefSlot, ref: JobRef, known_here: bool) -> Job | None:
    """The job as the API sees it; None when it no longer knows it but the
    ledger does (expired, or gone). Exit 6 when neither knows it."""
    try:
        return client.get_job(ref.job_id)
    except NotFoundError:
        if not known_here:
            raise NotFoundError(
                f"{slot.label}: job {ref.job_id} is known neither to the job ledger nor to "
                "the API.",
                hint="`pixeldojo jobs list` shows the jobs there are.",
            ) from None
    except ExpiredError:
        if not known_here:
            raise
    return None


def _saved_output(
    recorder: Recorder | None, slot: RefSlot, text: str, saved: LedgerFile, upload: UploadSettings
) -> LocalFile:
    """The file an expired output was saved as, checked to be still that file:
    the size the ledger recorded, and the SHA-256 of the file as saved when the
    ledger or the sidecar has it. Exit 7 when it is gone or is another file now
    (its URL expired too: the output is no longer anywhere)."""
    shown = safe_text(saved.path[:200])
    job_id, n = text.rsplit("/", 1)
    output = f"{slot.label}: job {job_id} has expired, and its output {n}, saved as {shown},"
    hint = "Run that job again, or name the file as it is now with @PATH."
    try:
        info = os.stat(saved.path)
    except FileNotFoundError:
        raise ExpiredError(f"{output} is gone.", hint=hint) from None
    except OSError:
        info = None  # the check below says why it cannot be read
    changed = f"{output} has changed since it was saved"
    if info is not None and stat.S_ISREG(info.st_mode) and info.st_size != saved.size:
        raise ExpiredError(f"{changed} ({info.st_size:,} bytes, not {saved.size:,}).", hint=hint)
    local = check_local_file(saved.path, slot.label, kinds=slot.kinds, max_bytes=upload.file_cap)
    recorded = saved.sha256 or _saved_sha256(recorder, text, saved)
    if local.size != saved.size or (recorded is not None and local.sha256 != recorded):
        raise ExpiredError(f"{changed} (another SHA-256).", hint=hint)
    return local


def _saved_sha256(recorder: Recorder | None, text: str, saved: LedgerFile) -> str | None:
    """The SHA-256 of the file as saved, from the job's sidecar beside it (kept
    there without --checksum when metadata was written into the file)."""
    from pixeldojo_cli.store.files import recorded_files

    if recorder is None:
        return None
    job_id, n = text.rsplit("/", 1)
    path = Path(saved.path)
    entry = recorded_files(path.parent, job_id, recorder.base_url).get(int(n))
    if entry is None or entry.path.name != path.name:
        return None
    return entry.saved_sha256 or entry.sha256


def _output_number(slot: RefSlot, ref: JobRef, count: int) -> int:
    """Which output `@job:ID` or `@job:ID/N` names (from 1)."""
    if count == 0:
        raise UsageError(f"{slot.label}: job {ref.job_id} has no outputs to use.")
    if ref.n is None:
        if count > 1:
            raise UsageError(
                f"{slot.label}: job {ref.job_id} has {count} outputs; name one.",
                hint=f"Write @job:{ref.job_id}/1 ... @job:{ref.job_id}/{count}.",
            )
        return 1
    if ref.n > count:
        raise UsageError(
            f"{slot.label}: job {ref.job_id} has {count} output{'' if count == 1 else 's'}, "
            f"not {ref.n}."
        )
    return ref.n
