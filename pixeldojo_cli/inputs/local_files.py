"""A local file named by a `@PATH` value, checked before anything is uploaded
or spent: a regular file (never a folder, a FIFO or a device: checked on the
opened descriptor, which is the one read), readable, not empty, under the size
cap, and a picture, video or sound by its bytes (never its name) of a kind the
input takes. A path holding a line break or bytes that are not UTF-8 is refused.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pixeldojo_cli.core.errors import UsageError
from pixeldojo_cli.core.text import safe_text
from pixeldojo_cli.core.untrusted import open_regular
from pixeldojo_cli.inputs.file_refs import ANY_MEDIA

_CHUNK = 1024 * 1024
_HEAD = 64
_KIND_WORDS = {"image": "a picture", "video": "a video", "audio": "a sound"}


@dataclass(frozen=True)
class LocalFile:
    """A checked local file: its absolute path, size, type (by its bytes) and SHA-256."""

    path: Path
    size: int
    mime: str
    sha256: str

    @property
    def kind(self) -> str:
        """`image`, `video` or `audio`."""
        return self.mime.split("/")[0]


def sniff(head: bytes) -> str | None:
    """The media type the first bytes of a file say it is (None: none we take)."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] in _RIFF:
        return _RIFF[head[8:12]]
    if head[4:8] == b"ftyp":
        return _ftyp(head[8:12])
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm" if b"webm" in head else "video/x-matroska"
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"ID3") or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    return None


_RIFF = {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}
_FTYP = {
    b"avif": "image/avif",
    b"avis": "image/avif",
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"mif1": "image/heif",
    b"qt  ": "video/quicktime",
    b"M4A ": "audio/mp4",
    b"M4B ": "audio/mp4",
}


def _ftyp(brand: bytes) -> str:
    return _FTYP.get(brand, "video/mp4")  # isom, mp41, mp42, avc1, M4V, 3gp...


# Every type `sniff` may say (the emulator takes the same list: a test checks).
SNIFFED_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/gif", "image/tiff", "video/mp4", "video/webm"}
    | {"video/x-matroska", "audio/ogg", "audio/flac", "audio/mpeg"}
    | set(_RIFF.values())
    | set(_FTYP.values())
)


def check_path_text(text: str, label: str) -> Path:
    """The path of a `@PATH` value: one line of UTF-8 text (a leading `~/` is the
    home folder), else a usage error."""
    shown = safe_text(text[:200])
    if any(char in text for char in "\n\r\x00"):
        raise UsageError(f"{label}: the path {shown!r} holds a line break or NUL; rename the file.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(
            f"{label}: the path {shown!r} is not UTF-8 text; rename the file."
        ) from None
    return Path(os.path.expanduser(text) if text.startswith("~/") else text)


def check_local_file(
    text: str, label: str, *, kinds: Iterable[str] = ANY_MEDIA, max_bytes: int
) -> LocalFile:
    """The file `text` names, checked (see the module's docstring): a `LocalFile`,
    or a usage error that names the input, the file and what is wrong."""
    path = check_path_text(text, label)
    shown = safe_text(text[:200])
    try:
        fd = open_regular(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UsageError(f"{label}: {shown} {why_not_readable(path, exc)}.") from None
    try:
        return _checked(fd, path.absolute(), label, shown, frozenset(kinds), max_bytes)
    finally:
        os.close(fd)


def _checked(
    fd: int, path: Path, label: str, shown: str, kinds: frozenset[str], max_bytes: int
) -> LocalFile:
    size = os.fstat(fd).st_size
    if size == 0:
        raise UsageError(f"{label}: {shown} is empty.")
    if size > max_bytes:
        raise UsageError(
            f"{label}: {shown} is {_mib(size)}; at most {_mib(max_bytes)} can be sent.",
            hint='See `upload` in the README\'s "Your own pictures as inputs".',
        )
    try:
        digest, head = _digest(fd, max_bytes)
    except OSError as exc:
        raise UsageError(f"{label}: {shown} cannot be read: {exc.strerror or exc}.") from None
    mime = sniff(head)
    wanted = " or ".join(_KIND_WORDS[k] for k in sorted(kinds))
    if mime is None or mime.split("/")[0] not in kinds:
        what = "not a picture, video or sound file" if mime is None else f"{mime}"
        raise UsageError(
            f"{label} takes {wanted}, but {shown} is {what} (by its bytes, not its name)."
        )
    return LocalFile(path, size, mime, digest)


def _digest(fd: int, max_bytes: int) -> tuple[str, bytes]:
    """The SHA-256 and first bytes of the open file (read once, up to the cap)."""
    sha = hashlib.sha256()
    head = b""
    total = 0
    while chunk := os.read(fd, _CHUNK):
        if not head:
            head = chunk[:_HEAD]
        total += len(chunk)
        if total > max_bytes:
            raise OSError(errno.EFBIG, f"it grew past {_mib(max_bytes)} while being read")
        sha.update(chunk)
    return sha.hexdigest(), head


def read_checked(file: LocalFile, max_bytes: int) -> bytes:
    """The bytes of a checked file, read again for sending: a usage error when it
    is no longer the file that was checked (another size or SHA-256)."""
    data = bytearray()
    copy_checked(file, data.extend, max_bytes)
    return bytes(data)


def copy_checked(file: LocalFile, write: Callable[[bytes], object], max_bytes: int) -> None:
    """The bytes of a checked file, read again from one descriptor and handed to
    `write` as they are read, hashed on the way: a usage error (after the fact:
    `write` has seen them) when they are not the bytes that were checked, or
    grow past `max_bytes`. Only the caller's copy of those bytes is ever sent."""
    label = safe_text(str(file.path)[:200])
    try:
        fd = open_regular(file.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UsageError(f"{label} {why_not_readable(file.path, exc)}.") from None
    sha, total = hashlib.sha256(), 0
    try:
        while total <= min(max_bytes, file.size):
            try:
                chunk = os.read(fd, _CHUNK)
            except OSError as exc:
                raise UsageError(f"{label} cannot be read: {exc.strerror or exc}.") from None
            if not chunk:
                break
            total += len(chunk)
            sha.update(chunk)
            write(chunk)
    finally:
        os.close(fd)
    if total != file.size or sha.hexdigest() != file.sha256:
        raise UsageError(f"{label} changed after it was checked; nothing was sent.")


def why_not_readable(path: Path, exc: OSError) -> str:
    """What stops a path being read as a file, in words."""
    if exc.errno == errno.ENOENT:
        return "does not exist"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "cannot be read (permission denied)"
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return f"cannot be opened: {exc.strerror or exc}"
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if stat.S_ISFIFO(mode):
        return "is a FIFO (a named pipe), not a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a file"
    return f"cannot be opened: {exc.strerror or exc}"


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB" if size >= 1024 * 1024 else f"{size:,} bytes"
