"""Files and folders of ours, opened so that nothing planted at their names is
written through.

Our files (the ledger, its side file, the rate-budget file, lock files, the
model cache) are opened with `O_NOFOLLOW` and checked after opening: a regular
file, of one name (`st_nlink == 1`: no hard link to someone else's file).
Anything else at the name (a symbolic link, a FIFO, a device, a hard link)
is either replaced (its name removed, never its target touched, and a fresh
file made with `O_EXCL`) or refused with `ForeignFile`, which names the file
and says what to do. They are 0600 in 0700 folders whatever the umask; an
older, looser one is tightened when next opened.

Outputs in the user's folder keep ordinary permissions (`output_mode`: what
the umask leaves of 0666). Windows has no `O_NOFOLLOW`: there the flag is 0
and modes are left alone.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from pathlib import Path

# Folders of ours live in `ownfolders`; this name stays importable from here.
from pixeldojo_cli.core.ownfolders import private_folder as private_folder

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_POSIX = os.name == "posix"
# What an open with O_NOFOLLOW (and O_NONBLOCK) reports for a link, a FIFO
# without a reader, or a folder at the name.
_NOT_A_FILE = {errno.ELOOP, errno.EMLINK, errno.ENXIO, errno.EISDIR}


class ForeignFile(OSError):
    """Something at the name of one of our files that is not a file of ours: a
    symbolic link, a FIFO, a device, a folder, a hard link."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(errno.EPERM, f"{path} {problem}")
        self.path = path
        self.problem = problem

    def advice(self, what: str) -> str:
        """One line: which file, what is wrong, what to do."""
        return (
            f"{what} {self.path} {self.problem}; pixeldojo never writes through one. "
            f"Remove it (rm '{self.path}') or put a regular file of yours there."
        )


def _problem(info: os.stat_result, *, one_name: bool = True) -> str | None:
    """Why an opened file is not a file of ours (None: it is). Only a file we
    write must have one name: reading a hard-linked one harms nothing."""
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if one_name and info.st_nlink != 1:
        return "has other names (hard links)"
    return None


def _describe(path: Path) -> str:
    """What is at `path`, for a refusal."""
    try:
        info = os.lstat(path)
    except OSError:
        return "cannot be opened as a regular file"
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    return _problem(info) or "cannot be opened as a regular file"


def _open_checked(path: Path, flags: int, mode: int, *, private: bool = True) -> int:
    """`os.open` without following a link, then checked; `ForeignFile` otherwise.
    `private`: a file we write (one name only) and tighten."""
    try:
        fd = os.open(path, flags | NOFOLLOW | _NONBLOCK | _CLOEXEC, mode)
    except OSError as exc:
        if exc.errno in _NOT_A_FILE or os.path.islink(path):
            raise ForeignFile(path, _describe(path)) from exc
        raise
    try:
        info = os.fstat(fd)
        problem = _problem(info, one_name=private)
        if problem is not None:
            raise ForeignFile(path, "is a symbolic link" if os.path.islink(path) else problem)
        if private:
            tighten(fd, info)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_private(path: Path, flags: int, *, replace: bool = False, mode: int = 0o600) -> int:
    """Open one of our private files without following a link; a new one is
    made `mode` (0600) whatever the umask, an older looser one is tightened.

    `replace`: something foreign at the name is removed (the name only: a link's
    target is never touched) and, with `O_CREAT`, a fresh file made in its
    place with `O_EXCL`; without `O_CREAT` the file is then missing
    (`FileNotFoundError`). Otherwise `ForeignFile` (an OSError) is raised.
    """
    try:
        return _open_checked(path, flags, mode)
    except ForeignFile:
        if not replace:
            raise
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except IsADirectoryError:  # a folder: not ours to remove
        raise ForeignFile(path, "is a folder") from None
    if not flags & os.O_CREAT:
        raise FileNotFoundError(errno.ENOENT, f"{path} was not a file of ours", str(path))
    return _open_checked(path, flags | os.O_EXCL, mode)


def tighten(fd: int, info: os.stat_result | None = None) -> None:
    """Take group and other permissions off an open file of ours (POSIX); one
    that belongs to another user (a ledger shared read-only) is left alone."""
    if not _POSIX:
        return
    info = info or os.fstat(fd)
    if info.st_mode & 0o077 and info.st_uid == os.geteuid():
        os.fchmod(fd, stat.S_IMODE(info.st_mode) & 0o700)


def read_private(path: Path, max_bytes: int, *, private: bool = True) -> bytes | None:
    """The bytes of one of our files (at most `max_bytes`), tightened if looser
    than 0600 (`private`; a sidecar in the user's output folder is not); None
    when it is missing, unreadable, too big or not a file of ours (a link, a
    FIFO, a device: never followed or waited on)."""
    try:
        fd = _open_checked(path, os.O_RDONLY, 0o600, private=private)
    except OSError:
        return None
    try:
        return read_at_most(fd, max_bytes)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_at_most(fd: int, max_bytes: int) -> bytes | None:
    """What is left to read of `fd`, or None when that is more than `max_bytes`."""
    data = b""
    while len(data) <= max_bytes:
        more = os.read(fd, min(1 << 20, max_bytes + 1 - len(data)))
        if not more:
            break
        data += more
    return None if len(data) > max_bytes else data


def same_file(fd: int, path: Path) -> bool:
    """Whether the name `path` (not followed) is the file open as `fd`."""
    try:
        named, opened = os.lstat(path), os.fstat(fd)
    except OSError:
        return False
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it where the OS says it
    (Linux), else by setting and restoring it under a lock."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def output_mode() -> int:
    """The mode of a file saved in the user's output folder: what the umask
    leaves of 0666, as any program's new file."""
    return 0o666 & ~current_umask()
