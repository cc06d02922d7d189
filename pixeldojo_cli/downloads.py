"""Getting outputs onto disk: streamed, resumable, atomic, names sanitised.

A file is streamed into a hidden temporary file in the destination folder and
renamed to its final name only when complete and of the announced size, so a
final name never holds a partial file. A connection that drops mid-body is
retried, resuming with `Range` where the server honours it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mimetypes
import os
import queue
import re
import tempfile
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from stat import S_ISREG
from typing import IO, Any
from urllib.parse import unquote, urlsplit

import httpx

from pixeldojo_cli.errors import DownloadError, ExpiredError, WriteError
from pixeldojo_cli.results import Job
from pixeldojo_cli.transport import Transport

# (file index, bytes so far, total or None)
ProgressCallback = Callable[[int, int, int | None], None]

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_KNOWN_TYPES = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "video/mp4": "mp4",
    "video/webm": "webm",
    "video/quicktime": "mov",
    "audio/mpeg": "mp3",
    "audio/wav": "wav",
}


def sanitize_component(name: str, fallback: str = "output") -> str:
    """One safe file-name component: no separators, no `..`, no control chars.

    Keeps letters, digits, `.`, `_` and `-`; never starts with a dot; at most
    100 characters. Whatever the server sends, the result stays in its folder.
    """
    text = unicodedata.normalize("NFKD", unquote(str(name)))
    text = _SAFE.sub("_", text.encode("ascii", "ignore").decode("ascii"))
    text = text.strip("._-")[:100].strip("._-")
    return text or fallback


def extension_for(url: str, content_type: str | None) -> str:
    """The output's extension: from the URL path, else the Content-Type, else `bin`."""
    path = unquote(urlsplit(url).path)
    suffix = Path(path).suffix.lstrip(".").lower()
    if suffix and suffix.isalnum() and len(suffix) <= 5:
        return "jpg" if suffix == "jpeg" else suffix
    mime = (content_type or "").split(";")[0].strip().lower()
    if mime in _KNOWN_TYPES:
        return _KNOWN_TYPES[mime]
    guessed = mimetypes.guess_extension(mime) if mime else None
    return guessed.lstrip(".") if guessed else "bin"


def output_path(folder: Path, job_id: str, index: int, ext: str) -> Path:
    """`<folder>/<jobId>-<n>.<ext>`, always inside `folder`."""
    name = f"{sanitize_component(job_id, 'job')}-{index}.{sanitize_component(ext, 'bin')}"
    path = folder / name
    if path.resolve().parent != folder.resolve():  # belt and braces
        raise WriteError(f"Refusing to write {name!r} outside {folder}.")
    return path


class _Cancelled(Exception):
    """Raised inside a download thread once the user has pressed Ctrl-C."""


@dataclass(frozen=True)
class DownloadedFile:
    path: Path
    size: int
    sha256: str | None  # only with checksum=True: SHA-256 costs ~0.5 s of CPU per GiB
    url: str
    skipped: bool = False  # already on disk, complete, not downloaded again
    mtime_ns: int | None = None  # the file's modification time once in place


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def intact_since(record: DownloadedFile, *, checksum: bool = False) -> int | None:
    """The file's modification time (ns) if it is on disk as it was saved, else None.

    By default "as saved" is rsync's quick check: the recorded size and
    modification time. With `checksum`, the content must hash to the recorded
    SHA-256, and a file saved without one does not count. A record with a
    SHA-256 but no time (written before times were recorded) is checked by
    its hash.
    """
    try:
        info = record.path.stat()
        if not S_ISREG(info.st_mode) or info.st_size != record.size:
            return None
        if checksum or record.mtime_ns is None:
            same = record.sha256 is not None and file_sha256(record.path) == record.sha256
        else:
            same = info.st_mtime_ns == record.mtime_ns
    except OSError:
        return None
    return info.st_mtime_ns if same else None


def _optional(entry: Mapping[str, Any], key: str, kind: Callable[[Any], Any]) -> Any:
    value = entry.get(key)
    return None if value is None else kind(value)


def recorded_files(folder: Path, job_id: str) -> dict[int, DownloadedFile]:
    """What `<jobId>.json` in `folder` says was downloaded, by output number."""
    path = folder / f"{sanitize_component(job_id, 'job')}.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        entries = meta["files"] if isinstance(meta, dict) else []
    except (OSError, ValueError, KeyError):
        return {}
    found: dict[int, DownloadedFile] = {}
    for n, entry in enumerate(entries if isinstance(entries, list) else [], start=1):
        try:
            name = sanitize_component(str(entry["path"]))
            found[n] = DownloadedFile(
                path=folder / name,
                size=int(entry["size"]),
                sha256=_optional(entry, "sha256", str),
                url=str(entry.get("url", "")),
                mtime_ns=_optional(entry, "mtimeNs", int),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return found


def _content_length(response: httpx.Response) -> int | None:
    try:
        value = int(response.headers.get("content-length", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


def _range_start(response: httpx.Response) -> int | None:
    match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("content-range", ""))
    return int(match.group(1)) if match else None


class _ChunkWorker:
    """A helper thread that applies `work` to each chunk handed to it, in order.

    The queue's bound keeps memory flat whatever the file's size. The first
    OSError stops the work and is kept for the caller to raise.
    """

    _STOP = object()

    def __init__(self, name: str, work: Callable[[bytes], object]) -> None:
        self._work = work
        self.error: OSError | None = None
        self._queue: queue.Queue[object] = queue.Queue(maxsize=4)
        self._thread = threading.Thread(target=self._drain, name=name, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._STOP:
                return
            if isinstance(item, threading.Event):
                item.set()
            elif isinstance(item, bytes) and self.error is None:
                try:
                    self._work(item)
                except OSError as exc:
                    self.error = exc

    def put(self, chunk: bytes) -> None:
        self._queue.put(chunk)

    def settled(self) -> threading.Event:
        """An event set once every chunk handed over so far has been worked."""
        done = threading.Event()
        self._queue.put(done)
        return done

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(self._STOP)
            self._thread.join()


class _PartFile:
    """The hidden temporary file a download streams into.

    Writing, and hashing when asked for, each run in their own helper thread,
    so both overlap with reading the socket (each releases the GIL). On 2
    cores this took 1 GiB from 0.91 s to 0.74 s against one thread doing both.
    """

    def __init__(self, folder: Path, stem: str, *, checksum: bool) -> None:
        try:
            fd, name = tempfile.mkstemp(dir=folder, prefix=f".{stem}.", suffix=".part")
        except OSError as exc:
            raise WriteError(f"Cannot write in {folder}: {exc.strerror or exc}.") from exc
        self.path = Path(name)
        self.handle: IO[bytes] = os.fdopen(fd, "wb")
        self.size = 0
        self.hasher = hashlib.sha256()
        self._workers = [_ChunkWorker("download-writer", self.handle.write)]
        if checksum:
            hashing = _ChunkWorker("download-hasher", lambda chunk: self.hasher.update(chunk))
            self._workers.append(hashing)
        self.checksum = checksum

    def _raise_if_failed(self) -> None:
        error = self._workers[0].error
        if error is not None:
            raise WriteError(f"Cannot write {self.path.name}: {error.strerror or error}.")

    def _settle(self) -> None:
        """Wait until every handed-over chunk is written (and hashed)."""
        for done in [worker.settled() for worker in self._workers]:
            done.wait()
        self._raise_if_failed()

    def restart(self) -> None:
        self._settle()
        self.handle.seek(0)
        self.handle.truncate()
        self.size = 0
        self.hasher = hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        self._raise_if_failed()
        for worker in self._workers:
            worker.put(chunk)
        self.size += len(chunk)

    def commit(self, final: Path) -> DownloadedFile:
        """Flush, rename into place, and say what landed."""
        self._settle()
        try:  # a full disk may only show itself at flush or fsync
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            os.chmod(self.path, 0o644)
            os.replace(self.path, final)
            mtime_ns = final.stat().st_mtime_ns
        except OSError as exc:
            raise WriteError(f"Cannot write {final.name}: {exc.strerror or exc}.") from exc
        return DownloadedFile(
            path=final,
            size=self.size,
            sha256=self.hasher.hexdigest() if self.checksum else None,
            url="",
            mtime_ns=mtime_ns,
        )

    def discard(self) -> None:
        for worker in self._workers:
            worker.stop()
        if not self.handle.closed:
            self.handle.close()
        self.path.unlink(missing_ok=True)


# A temporary file nobody has written to for this long was left by a killed process.
STALE_PART_SECONDS = 3600


def _remove_stale_parts(folder: Path, stem: str) -> None:
    """Clear what an earlier, killed download of this output left behind. A live
    download (another process) keeps its file's mtime fresh, so it is spared."""
    cutoff = time.time() - STALE_PART_SECONDS
    for leftover in folder.glob(f".{stem}.*.part"):
        with contextlib.suppress(OSError):
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink()


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
) -> DownloadedFile:
    """Download one output to `<folder>/<jobId>-<index>.<ext>`, atomically.

    With `checksum`, the file's SHA-256 is computed on the way in and recorded.
    """
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:  # e.g. an unclosed `[` of an IPv6 host: no URL at all
        raise DownloadError(f"Refusing to download {url[:100]!r}: it is not a valid URL.") from None
    if scheme not in ("http", "https"):
        raise DownloadError(f"Refusing to download a {scheme or 'schemeless'} URL: {url[:80]}")
    if scheme == "http" and transport.base_url.scheme == "https":
        raise DownloadError(
            f"Refusing to download output {index} of job {job_id} over plain http from an "
            f"https API: {url[:100]}",
            hint="Anyone on the way could change the file. `pixeldojo jobs show ID` prints the "
            "URL if you want to fetch it yourself.",
        )
    stem = f"{sanitize_component(job_id, 'job')}-{index}"
    _remove_stale_parts(folder, stem)
    part = _PartFile(folder, stem, checksum=checksum)
    try:
        final = _stream_into(
            transport, url, part, folder, job_id, index, on_progress, max_attempts, sleep
        )
        return replace(part.commit(final), url=url)
    finally:
        part.discard()


def _stream_into(
    transport: Transport,
    url: str,
    part: _PartFile,
    folder: Path,
    job_id: str,
    index: int,
    on_progress: ProgressCallback | None,
    max_attempts: int,
    sleep: Callable[[float], None],
) -> Path:
    final: Path | None = None
    total: int | None = None
    last_error = ""
    for attempt in range(1, max_attempts + 1):
        headers = {"Range": f"bytes={part.size}-"} if part.size and total else None
        try:
            with transport.stream(url, headers=headers) as response:
                if response.status_code in (404, 410):
                    raise ExpiredError(
                        f"Output {index} of job {job_id} is gone (HTTP {response.status_code}).",
                        status=response.status_code,
                    )
                if response.status_code == 206 and _range_start(response) == part.size:
                    pass  # resuming where we stopped
                elif response.status_code == 200:
                    part.restart()
                    total = _content_length(response)
                else:
                    raise DownloadError(
                        f"Output {index} of job {job_id}: HTTP {response.status_code}."
                    )
                if final is None:
                    ext = extension_for(url, response.headers.get("content-type"))
                    final = output_path(folder, job_id, index, ext)
                for chunk in response.iter_bytes():  # unbuffered: a cut keeps what arrived
                    part.write(chunk)
                    if on_progress is not None:
                        on_progress(index, part.size, total)
            if total is None or part.size == total:
                return final
            last_error = f"got {part.size} of {total} bytes"
        except (httpx.TransportError, httpx.DecodingError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        if attempt < max_attempts:
            sleep(min(8.0, 0.25 * 2**attempt))
    raise DownloadError(
        f"Output {index} of job {job_id} failed after {max_attempts} tries: {last_error}."
    )


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
    cancel: threading.Event | None = None,
) -> list[DownloadedFile]:
    """Download every output of `job` into `folder`, a few at a time, in order.

    An output listed in `existing` whose file is still intact (`intact_since`,
    with `checksum`) is not downloaded again (it comes back with
    `skipped=True`). `on_saved` is called in the calling thread for each file
    as it lands, so a failure of one file never loses the record of the
    others; the first failure is then raised.
    """
    ensure_folder(folder)
    urls = job.output_urls
    if not urls:
        return []
    here = folder.resolve()
    saved: dict[int, DownloadedFile] = {}
    for n, record in (existing or {}).items():
        if n > len(urls) or record.path.resolve().parent != here:
            continue
        mtime_ns = intact_since(record, checksum=checksum)
        if mtime_ns is not None:  # a record checked by its hash alone gains a time here
            saved[n] = replace(record, skipped=True, mtime_ns=mtime_ns)
    for n, record in saved.items():
        if on_saved is not None:
            on_saved(n, record)
    todo = [(n, url) for n, url in enumerate(urls, start=1) if n not in saved]
    failure: BaseException | None = None
    cancel = cancel or threading.Event()  # set by Ctrl-C here, or by the caller

    def progress(index: int, done: int, total: int | None) -> None:
        if cancel.is_set():  # Ctrl-C in the main thread: stop at the next chunk
            raise _Cancelled
        if on_progress is not None:
            on_progress(index, done, total)

    if todo:
        workers = max(1, min(concurrency, len(todo)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="download") as pool:
            futures = {
                pool.submit(
                    download_file,
                    transport,
                    url,
                    folder,
                    job.id,
                    n,
                    on_progress=progress,
                    checksum=checksum,
                ): n
                for n, url in todo
            }
            try:
                for future in as_completed(futures):
                    try:
                        saved[futures[future]] = future.result()
                    except Exception as exc:
                        failure = failure or exc
                        continue
                    if on_saved is not None:
                        on_saved(futures[future], saved[futures[future]])
            except KeyboardInterrupt:
                cancel.set()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    if cancel.is_set():  # stopped from outside: as if Ctrl-C had been pressed here
        raise KeyboardInterrupt
    if failure is not None:
        raise failure
    return [saved[n] for n in range(1, len(urls) + 1)]


def ensure_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = getattr(exc, "strerror", None) or exc
        raise WriteError(
            f"Cannot create the output folder {str(folder)[:200]!r}: {reason}."
        ) from exc
    if not folder.is_dir():
        raise WriteError(f"The output path {folder} is not a folder.")


def write_json_atomic(path: Path, value: Any) -> None:
    """Write JSON to `path` through a temporary file and a rename."""
    name: str | None = None
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(value, handle, indent=2, ensure_ascii=False, default=str)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(name, 0o644)
        os.replace(name, path)
    except OSError as exc:
        if name is not None:
            Path(name).unlink(missing_ok=True)
        raise WriteError(f"Cannot write {path}: {exc.strerror or exc}.") from exc


def _file_entry(file: DownloadedFile) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": file.path.name, "size": file.size}
    if file.sha256 is not None:
        entry["sha256"] = file.sha256
    if file.mtime_ns is not None:
        entry["mtimeNs"] = file.mtime_ns
    entry["url"] = file.url
    return entry


def write_metadata(
    folder: Path, job: Job, model: str, inputs: dict[str, Any], files: list[DownloadedFile]
) -> Path:
    """`<jobId>.json` beside the outputs: the job, the model and the inputs."""
    ensure_folder(folder)
    path = folder / f"{sanitize_component(job.id, 'job')}.json"
    write_json_atomic(
        path,
        {
            "jobId": job.id,
            "model": model,
            "inputs": inputs,
            "job": job.raw,
            "files": [_file_entry(f) for f in files],
        },
    )
    return path
