"""Our files on disk: output names, sidecars, and writing that is never seen half done.

Names: `<jobId>-<n>.<ext>` beside `<jobId>.json`, the sidecar that says which
job (`jobId`) of which API (`baseUrl`) the files are. Two jobs never share a
name: an id that had to be sanitised gets a short hash of the raw id, and a
job whose plain name is already another job's (same id from another API) gets
a short hash of its API and id (see `job_stem`). Whatever the server sends,
a name stays in its folder.

Every file here is written into a hidden temporary file in its folder
(`.<name>.<random characters>.part`) and renamed to its final name only when
complete, so a final name or a sidecar name never holds a partial file
(`write_json_atomic`; `downloads.py` streams outputs the same way).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import mimetypes
import os
import re
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

from pixeldojo_cli.api.results import Job
from pixeldojo_cli.core.errors import WriteError
from pixeldojo_cli.core.ownfiles import NOFOLLOW, output_mode, read_private
from pixeldojo_cli.core.untrusted import loads, open_regular

# --- names -------------------------------------------------------------------

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


def output_path(
    folder: Path, job_id: str, index: int, ext: str, *, stem: str | None = None
) -> Path:
    """`<folder>/<stem>-<n>.<ext>`, always inside `folder`. `stem` is the job's
    name in that folder (`job_stem`); by default the id as sanitised."""
    stem = stem if stem is not None else sanitize_component(job_id, "job")
    name = f"{sanitize_component(stem, 'job')}-{index}.{sanitize_component(ext, 'bin')}"
    path = folder / name
    # Belt and braces. The name itself is not resolved: a link planted there is
    # replaced by the rename that saves the file, never followed.
    if path.name != name or path.parent.resolve() != folder.resolve():
        raise WriteError(f"Refusing to write {name!r} outside {folder}.")
    return path


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def plain_stem(job_id: str) -> str:
    """The job's name before any clash with another job is looked at: its id,
    or, when sanitising changed the id, the sanitised id and a short hash of the
    raw one (`job_é` and `job_e` are two names)."""
    clean = sanitize_component(job_id, "job")
    return clean if clean == job_id else f"{clean[:90]}-{_short_hash(job_id)}"


# --- saved files ---------------------------------------------------------------


@dataclass(frozen=True)
class DownloadedFile:
    """One output on disk: where, how big, its SHA-256 (with `--checksum`), its URL."""

    path: Path
    size: int
    sha256: str | None  # only with checksum=True: SHA-256 costs ~0.5 s of CPU per GiB
    url: str
    skipped: bool = False  # already on disk, complete, not downloaded again
    mtime_ns: int | None = None  # the file's modification time once in place
    # When metadata was written into the file (`embedding`): the size and SHA-256
    # of the bytes as served, and the SHA-256 of the file as saved (both always:
    # the sidecar says what changed); `size` and `sha256` are the saved file's.
    served_size: int | None = None
    served_sha256: str | None = None
    saved_sha256: str | None = None


def file_sha256(path: Path) -> str:
    """The SHA-256 of the regular file at `path` (a link there is not followed)."""
    digest = hashlib.sha256()
    with os.fdopen(open_regular(path, os.O_RDONLY | NOFOLLOW), "rb") as handle:
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
    try:  # a link at the name is not a file we saved (lstat): it is saved again, replacing it
        info = record.path.lstat()
        if not S_ISREG(info.st_mode) or info.st_size != record.size:
            return None
        if checksum or record.mtime_ns is None:
            same = record.sha256 is not None and file_sha256(record.path) == record.sha256
        else:
            same = info.st_mtime_ns == record.mtime_ns
    except OSError:
        return None
    return info.st_mtime_ns if same else None


# --- sidecars: which job of which API the files beside them are ---------------

# A sidecar lists one job's files: far below this. Past it, it is not one of ours.
MAX_SIDECAR_BYTES = 16 * 1024 * 1024


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """A sidecar's JSON object, None when there is none we can read (see below)."""
    return _read_sidecar(path)


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    """A sidecar's JSON object; None when there is none, or none we can read (a
    link, never followed: the sidecar written next replaces it; a FIFO, a
    device, too big, damaged, nested too deep)."""
    data = read_private(path, MAX_SIDECAR_BYTES, private=False)
    if data is None:
        return None
    try:
        meta = loads(data)
    except ValueError:
        return None
    return meta if isinstance(meta, dict) else None


def _sidecar_owner(path: Path) -> tuple[str | None, str | None] | None:
    """(jobId, baseUrl) of an existing sidecar, None when there is none to read."""
    meta = _read_sidecar(path)
    if meta is None:
        return None
    job_id, base_url = meta.get("jobId"), meta.get("baseUrl")
    return (
        job_id if isinstance(job_id, str) else None,
        base_url if isinstance(base_url, str) else None,
    )


def job_stem(folder: Path, job_id: str, base_url: str | None) -> str:
    """The name of a job's files in `folder`: `plain_stem(job_id)`, unless that
    name's sidecar says it is another job's (another id, or the same id from
    another API): then a short hash of this job's API and id is added. The
    first job to use a name keeps it, so the usual `<jobId>-<n>.<ext>` holds."""
    stem = plain_stem(job_id)
    owner = _sidecar_owner(folder / f"{stem}.json")
    if owner is None:
        return stem
    owner_id, owner_api = owner
    same_api = base_url is None or owner_api is None or owner_api == base_url
    if owner_id == job_id and same_api:
        return stem
    origin = base_url or ""
    return f"{stem}-{_short_hash(origin + chr(10) + job_id)}"


def sidecar_path(folder: Path, job_id: str, base_url: str | None) -> Path:
    """`<folder>/<stem>.json`: which job of which API the files beside it are."""
    return folder / f"{job_stem(folder, job_id, base_url)}.json"


def sidecar_document(folder: Path, job_id: str, base_url: str | None) -> dict[str, Any] | None:
    """The job's sidecar in `folder` as a JSON object, when it is this job's (its
    `jobId`, and its `baseUrl` unless `base_url` is None); else None."""
    meta = _read_sidecar(sidecar_path(folder, job_id, base_url))
    if meta is None or meta.get("jobId") != job_id:
        return None
    if base_url is not None and meta.get("baseUrl") != base_url:
        return None
    return meta


def _optional(entry: Mapping[str, Any], key: str, kind: Callable[[Any], Any]) -> Any:
    value = entry.get(key)
    return None if value is None else kind(value)


def recorded_files(folder: Path, job_id: str, base_url: str | None) -> dict[int, DownloadedFile]:
    """What the job's sidecar in `folder` says was downloaded, by output number.

    Only a sidecar of this job is believed: its `jobId` must be `job_id` and its
    `baseUrl` must be `base_url` (None: any API, for callers that cannot tell).
    """
    path = sidecar_path(folder, job_id, base_url)
    meta = _read_sidecar(path)
    if meta is None or "files" not in meta:
        return {}
    entries = meta["files"]
    if meta.get("jobId") != job_id or (base_url is not None and meta.get("baseUrl") != base_url):
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
                served_size=_optional(entry, "servedSize", int),
                served_sha256=_optional(entry, "servedSha256", str),
                saved_sha256=_optional(entry, "savedSha256", str),
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            continue
    return found


def _file_entry(file: DownloadedFile) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": file.path.name, "size": file.size}
    if file.sha256 is not None:
        entry["sha256"] = file.sha256
    if file.mtime_ns is not None:
        entry["mtimeNs"] = file.mtime_ns
    if file.served_size is not None:  # metadata written into it: the bytes as served
        entry["servedSize"] = file.served_size
    if file.served_sha256 is not None:
        entry["servedSha256"] = file.served_sha256
    if file.saved_sha256 is not None:
        entry["savedSha256"] = file.saved_sha256
    entry["url"] = file.url
    return entry


def write_metadata(
    folder: Path,
    job: Job,
    model: str,
    inputs: dict[str, Any],
    files: list[DownloadedFile],
    *,
    base_url: str | None = None,
    file_inputs: list[dict[str, Any]] | None = None,
) -> Path:
    """The sidecar beside the outputs (`<jobId>.json`, see `job_stem`): the job,
    its API (`baseUrl`), the model, the inputs, the files, and (`fileInputs`)
    each `@` input as sent: its local path or source job, SHA-256 and URL."""
    ensure_folder(folder)
    path = sidecar_path(folder, job.id, base_url)
    document: dict[str, Any] = {"jobId": job.id}
    if base_url is not None:
        document["baseUrl"] = base_url
    document.update(
        {
            "model": model,
            "inputs": inputs,
            "job": job.raw,
            "files": [_file_entry(f) for f in files],
        }
    )
    if file_inputs:
        document["fileInputs"] = file_inputs
    write_json_atomic(path, document)
    return path


# --- temporary files and folders ------------------------------------------------

# A temporary file nobody has written to for this long was left by a killed process.
STALE_PART_SECONDS = 3600
# The hidden temporary files `write_json_atomic` (and `partfile.PartFile`) make:
# `.<name>.<random characters>.part`.
_PART_NAME = re.compile(r"\..+\.[A-Za-z0-9_]{6,}\.part")


def remove_stale_parts(folder: Path) -> None:
    """Clear what killed downloads left anywhere in the folder: hidden `.part`
    files nobody has written to for an hour. A live download (another process)
    keeps its file's mtime fresh, so it is spared."""
    cutoff = time.time() - STALE_PART_SECONDS
    try:
        leftovers = [p for p in folder.iterdir() if _PART_NAME.fullmatch(p.name)]
    except OSError:
        return
    for leftover in leftovers:
        with contextlib.suppress(OSError):
            info = leftover.lstat()
            if S_ISREG(info.st_mode) and info.st_mtime < cutoff:
                leftover.unlink()


def ensure_writable_folder(folder: Path) -> None:
    """Check, before anything is spent, that outputs can be written to `folder`:
    create it if needed, then create and remove a temporary file in it. Raises
    `WriteError` (exit 2) saying why not (`-o afile`, a read-only folder, ...)."""
    ensure_folder(folder)
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".pixeldojo-check.", suffix=".part")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise WriteError(
            f"Cannot write in the output folder {str(folder)[:200]!r}: {exc.strerror or exc}.",
            hint="Choose a folder you can write to with -o DIR; nothing was submitted.",
        ) from exc


def ensure_folder(folder: Path) -> None:
    """Create `folder` if needed; `WriteError` when it is, or cannot be, a folder."""
    if folder.exists() and not folder.is_dir():
        raise WriteError(f"The output path {str(folder)[:200]!r} is a file, not a folder.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = getattr(exc, "strerror", None) or exc
        raise WriteError(
            f"Cannot create the output folder {str(folder)[:200]!r}: {reason}."
        ) from exc
    if not folder.is_dir():
        raise WriteError(f"The output path {folder} is not a folder.")


def set_output_mode(fd: int) -> None:
    """An output or sidecar gets the mode any new file of the user's would: what
    the umask leaves of 0666 (the temporary file was made 0600)."""
    if os.name == "posix":
        os.fchmod(fd, output_mode())


def write_json_atomic(path: Path, value: Any) -> None:
    """Write JSON to `path` through a temporary file and a rename: `path` holds
    its old content or the new one, whole, never a part (the temporary file goes
    when the write fails; after a crash, `remove_stale_parts` takes it)."""
    with _atomic_file(path) as handle:
        text = io.TextIOWrapper(handle, encoding="utf-8")
        json.dump(value, text, indent=2, ensure_ascii=False, default=str)
        text.write("\n")
        text.flush()
        text.detach()  # the bytes are written; `_atomic_file` syncs and closes the file


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` as `write_json_atomic` writes JSON: whole or not at all."""
    with _atomic_file(path) as handle:
        handle.write(data)


@contextlib.contextmanager
def _atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A new temporary file beside `path`, renamed to `path` once written and synced."""
    name: str | None = None
    try:
        # mkstemp: a new file (O_EXCL|O_NOFOLLOW); the rename replaces a link at
        # `path`, never writing through it.
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
            set_output_mode(handle.fileno())
        os.replace(name, path)
    except OSError as exc:
        if name is not None:
            Path(name).unlink(missing_ok=True)
        raise WriteError(f"Cannot write {path}: {exc.strerror or exc}.") from exc
