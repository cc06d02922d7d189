"""Getting outputs onto disk: streamed, resumable, atomic.

A file is streamed into a hidden temporary file in the destination folder
(`partfile.py`) and renamed to its final name (`files.py`) only when complete
and of the announced size, so a final name never holds a partial file. A
connection that drops mid-body is retried, resuming with `Range` where the
server honours it.

Only the API makes a job expired: `expiresAt` in the past, or HTTP 410. A 404,
a 5xx or a reset on an output before its expiry is a `DownloadError` (exit 10)
that leaves the job to be fetched again.

Ctrl-C (or SIGTERM) takes effect within a second in every phase: the download
threads are daemons the caller never waits on for more than a second, their
connections are shut from the calling thread, and this run's `.part` files go
(`flight.py`).

A download has no deadline of its own, only a rule that it keeps moving (the
transport's); under a deadline (`run --timeout`), it ends with it: no retry
after, no pause past it, the `.part` file removed, and the error says how to
resume (`DeadlineError`, exit 9).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

import httpx

from pixeldojo_cli.api.results import Job
from pixeldojo_cli.api.transport import Transport
from pixeldojo_cli.core import deadlines, interrupts
from pixeldojo_cli.core.errors import (
    DeadlineError,
    DownloadError,
    ExpiredError,
    OutputRefusedError,
)
from pixeldojo_cli.store.files import (
    DownloadedFile,
    ensure_folder,
    extension_for,
    intact_since,
    job_stem,
    output_path,
    plain_stem,
    remove_stale_parts,
    sanitize_component,
)
from pixeldojo_cli.store.flight import Flight, run_all
from pixeldojo_cli.store.partfile import PartFile

# (file index, bytes so far, total or None)
ProgressCallback = Callable[[int, int, int | None], None]
# Writes the file as served (source, its size) anew into target, say with metadata
# in it (`embedding.embed`); False leaves the file as served.
Rewrite = Callable[[BinaryIO, BinaryIO, int], bool]


def api_base_url(transport: Transport) -> str:
    """The API a job belongs to, as the sidecar and the ledger name it."""
    return str(transport.base_url).rstrip("/")


class _Cancelled(Exception):
    """Raised inside a download thread once the user has pressed Ctrl-C."""


def _content_length(response: httpx.Response) -> int | None:
    try:
        value = int(response.headers.get("content-length", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


def _range_start(response: httpx.Response) -> int | None:
    match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("content-range", ""))
    return int(match.group(1)) if match else None


# A response the server encoded anyway is refused once it decodes to more than
# this many times what was received (and more than the floor): a gzip bomb.
MAX_DECODE_RATIO = 100
DECODE_FLOOR = 64 * 2**20
# The pause before attempt n+1 is this times 2**n, at most 8 s.
RETRY_BASE_DELAY = 0.25
# HTTP statuses worth another try: the file may well be there a moment later.
_TRANSIENT = frozenset({404, 408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class _Fetch:
    """One output to fetch, and the rules of the attempt."""

    transport: Transport
    url: str
    folder: Path
    job_id: str
    index: int
    on_progress: ProgressCallback | None
    max_attempts: int
    sleep: Callable[[float], None]
    expires_at: datetime | None
    flight: Flight
    stem: str

    def pause(self, attempt: int) -> None:
        """The pause before another attempt; cut short by an interruption."""
        delay = min(8.0, RETRY_BASE_DELAY * 2**attempt)
        left = deadlines.remaining()
        if left is not None:  # no pause past the deadline: the next attempt ends it
            delay = max(0.0, min(delay, left))
        if self.sleep is time.sleep:
            if self.flight.cancel.wait(delay):
                raise _Cancelled
        else:
            self.sleep(delay)
        if self.flight.stopped():
            raise _Cancelled

    def expired_by_clock(self) -> bool:
        return self.expires_at is not None and datetime.now(UTC) >= self.expires_at

    def name(self) -> str:
        return f"Output {self.index} of job {self.job_id}"

    def too_late(self) -> DeadlineError:
        """The deadline in force (`--timeout`) came before this output was in."""
        return DeadlineError(
            f"--timeout was reached while downloading output {self.index} of job "
            f"{self.job_id}; no partial file was left under a final name.",
            job_id=self.job_id,
            hint=f"Resume with: pixeldojo download {self.job_id}",
        )


def download_file(
    transport: Transport,
    url: str,
    folder: Path,
    job_id: str,
    index: int,
    *,
    on_progress: ProgressCallback | None = None,
    max_attempts: int = 5,
    sleep: Callable[[float], None] = time.sleep,
    checksum: bool = False,
    expires_at: datetime | None = None,
    stem: str | None = None,
    flight: Flight | None = None,
    rewrite: Rewrite | None = None,
) -> DownloadedFile:
    """Download one output to `<folder>/<stem>-<index>.<ext>`, atomically.

    With `checksum`, the file's SHA-256 is computed on the way in and recorded.
    `rewrite` (metadata written into a picture) is applied to the whole file
    before its final rename; the file then records both sizes and hashes.
    `expires_at` is when the API deletes the job's outputs: a 404 before then
    is retried and, if it persists, a `DownloadError`, never an `ExpiredError`.
    """
    _refuse_unsafe_url(transport, url, index, job_id)
    flight = flight or Flight()
    fetch = _Fetch(
        transport,
        url,
        folder,
        job_id,
        index,
        on_progress,
        max_attempts,
        sleep,
        expires_at,
        flight,
        stem if stem is not None else plain_stem(job_id),
    )
    part = PartFile(folder, f"{sanitize_component(fetch.stem, 'job')}-{index}", checksum=checksum)
    flight.parts.add(part.path)
    interrupts.register_part(part.path)
    try:
        final = _stream_into(fetch, part)
        if rewrite is not None:
            part.rewrite(rewrite)
        return replace(part.commit(final), url=url)
    finally:
        part.discard()
        flight.parts.discard(part.path)
        interrupts.unregister_part(part.path)


def _refuse_unsafe_url(transport: Transport, url: str, index: int, job_id: str) -> None:
    """`DownloadError` for a URL that is not http(s), or plain http from an https API."""
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:  # e.g. an unclosed `[` of an IPv6 host: no URL at all
        raise OutputRefusedError(
            f"Refusing to download {url[:100]!r}: it is not a valid URL."
        ) from None
    if scheme not in ("http", "https"):
        raise OutputRefusedError(f"Refusing to download a {scheme or 'schemeless'} URL: {url[:80]}")
    if scheme == "http" and transport.base_url.scheme == "https":
        raise OutputRefusedError(
            f"Refusing to download output {index} of job {job_id} over plain http from an "
            f"https API: {url[:100]}",
            hint="Anyone on the way could change the file. `pixeldojo jobs show ID` prints the "
            "URL if you want to fetch it yourself.",
        )


def _status_error(fetch: _Fetch, status: int) -> DownloadError | ExpiredError:
    """What an error status on an output means. Gone for good only when the API
    says so (410) or the job's expiry has passed; anything else may pass."""
    if status == 410 or (status in (403, 404) and fetch.expired_by_clock()):
        return ExpiredError(f"{fetch.name()} is gone (HTTP {status}).", status=status)
    until = (
        f"; its outputs should be kept until {fetch.expires_at.isoformat(timespec='minutes')}"
        if fetch.expires_at is not None
        else ""
    )
    return DownloadError(
        f"{fetch.name()}: HTTP {status}{until}.",
        hint=f"Try again later with `pixeldojo download {fetch.job_id}` (or "
        "`pixeldojo download --pending`); the job is not lost.",
    )


@dataclass
class _Attempts:
    """What the attempts at one output have learnt so far."""

    final: Path | None = None  # the final name, once the first answer said the type
    total: int | None = None  # the size announced, when it can be trusted
    resumable: bool = True  # False once the server encoded the body: restart, never resume
    last_error: str = ""


def _stream_into(fetch: _Fetch, part: PartFile) -> Path:
    """Stream the output into `part`, retrying (and resuming where the server
    allows) up to `max_attempts` times; the final name it is to have."""
    tries = _Attempts()
    for attempt in range(1, fetch.max_attempts + 1):
        if fetch.flight.stopped():
            raise _Cancelled
        if deadlines.passed():
            raise fetch.too_late()
        try:
            final = _attempt(fetch, part, tries)
            if final is not None:
                return final
        except _Retry:
            pass
        except (httpx.TransportError, httpx.DecodingError) as exc:
            if fetch.flight.stopped():
                raise _Cancelled from None
            if deadlines.passed():
                raise fetch.too_late() from None
            tries.last_error = f"{type(exc).__name__}: {exc}"
            if not tries.resumable:
                part.restart()
        if attempt < fetch.max_attempts:
            fetch.pause(attempt)
    raise DownloadError(
        f"{fetch.name()} failed after {fetch.max_attempts} tries: {tries.last_error}.",
        hint=f"Try again later with `pixeldojo download {fetch.job_id}` (or "
        "`pixeldojo download --pending`); the job is not lost.",
    )


def _attempt(fetch: _Fetch, part: PartFile, tries: _Attempts) -> Path | None:
    """One request for the output (resuming when `part` holds a start of it).
    The final name once the whole body is in `part`; `_Retry` when this answer
    is no use."""
    headers = {"Accept-Encoding": "identity"}
    if part.size and tries.total and tries.resumable:
        headers["Range"] = f"bytes={part.size}-"
    with fetch.transport.stream(
        fetch.url, headers=headers, extensions={"trace": fetch.flight.trace}
    ) as response:
        fetch.flight.watch(response)
        encoded = _take_answer(fetch, response, part, tries)
        if tries.final is None:
            ext = extension_for(fetch.url, response.headers.get("content-type"))
            tries.final = output_path(fetch.folder, fetch.job_id, fetch.index, ext, stem=fetch.stem)
        final = tries.final
        _receive(fetch, response, part, tries.total, encoded)
        if encoded:  # the length announced is of the encoded body
            sent = _content_length(response)
            if sent is None or response.num_bytes_downloaded == sent:
                return final
            tries.last_error = f"got {response.num_bytes_downloaded} of {sent} encoded bytes"
            part.restart()
            raise _Retry
    if tries.total is None or part.size == tries.total:
        return final
    tries.last_error = f"got {part.size} of {tries.total} bytes"
    return None


def _take_answer(fetch: _Fetch, response: httpx.Response, part: PartFile, tries: _Attempts) -> bool:
    """Check the answer's status and range, and get `part` ready for its body
    (kept to resume, or emptied). Returns whether the body is encoded."""
    status = response.status_code
    if status not in (200, 206):
        error = _status_error(fetch, status)
        if isinstance(error, ExpiredError) or status not in _TRANSIENT:
            raise error
        tries.last_error = error.message
        raise _Retry
    encoded = response.headers.get("content-encoding", "").strip().lower() not in (
        "",
        "identity",
    )
    if status == 206 and not encoded and _range_start(response) == part.size:
        pass  # resuming where we stopped
    elif status == 200:
        part.restart()
        tries.total = None if encoded else _content_length(response)
    else:  # a range we did not ask for, or an encoded partial answer
        tries.resumable = not encoded
        part.restart()
        tries.last_error = f"unexpected HTTP {status} answer to a resumed download"
        raise _Retry
    if encoded:
        tries.resumable = False
    return encoded


class _Retry(Exception):
    """This attempt is over; the next one may do better."""


def _receive(
    fetch: _Fetch, response: httpx.Response, part: PartFile, total: int | None, encoded: bool
) -> None:
    """The body into the part file (decoded, if the server encoded it anyway)."""
    for chunk in response.iter_bytes():  # unbuffered: a cut keeps what arrived
        part.write(chunk)
        if encoded and part.size > max(
            DECODE_FLOOR, MAX_DECODE_RATIO * response.num_bytes_downloaded
        ):
            raise DownloadError(
                f"{fetch.name()} decodes to more than {MAX_DECODE_RATIO} times its "
                f"{response.headers.get('content-encoding')} encoding; refusing it."
            )
        if fetch.flight.stopped():
            raise _Cancelled
        if fetch.on_progress is not None:
            fetch.on_progress(fetch.index, part.size, total)


def download_outputs(
    transport: Transport,
    job: Job,
    folder: Path,
    *,
    concurrency: int = 4,
    on_progress: ProgressCallback | None = None,
    existing: Mapping[int, DownloadedFile] | None = None,
    on_saved: Callable[[int, DownloadedFile], None] | None = None,
    checksum: bool = False,
    expires_at: datetime | None = None,
    base_url: str | None = None,
    cancel: threading.Event | None = None,
    rewrite: Rewrite | None = None,
) -> list[DownloadedFile]:
    """Download every output of `job` into `folder`, a few at a time, in order.

    An output listed in `existing` whose file is still intact (`intact_since`,
    with `checksum`) is not downloaded again (it comes back with
    `skipped=True`). `on_saved` is called in the calling thread for each file
    as it lands, so a failure of one file never loses the record of the
    others; the first failure is then raised.

    `expires_at` (default: the job's `output_expiry()`) decides what an error
    on an output means: only after it, or on a 410, is it `ExpiredError`.
    `base_url` (default: the transport's) names the job's API for `job_stem`.
    Ctrl-C, `cancel` set from another thread, or `interrupts.request_stop()`
    stops every download within about a second, removes their temporary
    files and raises KeyboardInterrupt. `rewrite`: see `download_file`.
    """
    ensure_folder(folder)
    remove_stale_parts(folder)
    urls = job.output_urls
    if not urls:
        return []
    base_url = base_url if base_url is not None else api_base_url(transport)
    stem = job_stem(folder, job.id, base_url)
    expiry = expires_at if expires_at is not None else job.output_expiry()
    saved = _still_intact(existing or {}, len(urls), folder, checksum=checksum)
    for n, record in saved.items():
        if on_saved is not None:
            on_saved(n, record)
    todo = [(n, url) for n, url in enumerate(urls, start=1) if n not in saved]
    if todo:
        flight = Flight(cancel=cancel or threading.Event())
        fetch_one = _fetcher(
            transport, folder, job.id, flight, stem, expiry, checksum, on_progress, rewrite
        )
        interrupts.downloading(job.id, +1)
        try:
            failure = run_all(fetch_one, todo, concurrency, flight, saved, on_saved)
        finally:
            interrupts.downloading(job.id, -1)
        if failure is not None:
            raise failure
    return [saved[n] for n in range(1, len(urls) + 1)]


def _still_intact(
    existing: Mapping[int, DownloadedFile], count: int, folder: Path, *, checksum: bool
) -> dict[int, DownloadedFile]:
    """The outputs of `existing` (of `count`) still on disk in `folder` as they
    were saved: not downloaded again, they come back with `skipped=True`."""
    here = folder.resolve()
    saved: dict[int, DownloadedFile] = {}
    for n, record in existing.items():
        if n > count or record.path.resolve().parent != here:
            continue
        mtime_ns = intact_since(record, checksum=checksum)
        if mtime_ns is not None:  # a record checked by its hash alone gains a time here
            saved[n] = replace(record, skipped=True, mtime_ns=mtime_ns)
    return saved


def _fetcher(
    transport: Transport,
    folder: Path,
    job_id: str,
    flight: Flight,
    stem: str,
    expires_at: datetime | None,
    checksum: bool,
    on_progress: ProgressCallback | None,
    rewrite: Rewrite | None = None,
) -> Callable[[int, str], DownloadedFile]:
    """`download_file` for output n at a URL, with one `download_outputs` call's settings."""

    def fetch_one(n: int, url: str) -> DownloadedFile:
        return download_file(
            transport,
            url,
            folder,
            job_id,
            n,
            on_progress=on_progress,
            checksum=checksum,
            expires_at=expires_at,
            stem=stem,
            flight=flight,
            rewrite=rewrite,
        )

    return fetch_one
