"""Folders of ours, made and checked through descriptors, never written through a
link planted at their names.

Our top folders are the `pixeldojo` folders in the user's config, data and
cache folders. Every folder made here is 0700 whatever the umask, and one of
ours that is looser is tightened: both through a descriptor opened with
`O_NOFOLLOW` (`fchmod`), so a link swapped in at the name between making and
tightening is refused instead of followed.

- A folder below a top folder (`ratelimit/`) holds only what we put there: a
  link at its name is removed (the name only, never its target) and a fresh
  folder made in its place.
- A top folder that is a symbolic link may be the user's own dotfiles setup:
  it is followed only when the link belongs to the current user and points to
  a folder of the current user that nobody else may write in (then tightened
  to 0700). Any other link there is refused (`ForeignFolder`), in one line.

Windows has no `O_NOFOLLOW` and no modes: there folders are simply made.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

_POSIX = os.name == "posix"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
# O_NONBLOCK: a FIFO at a folder's name is never waited on.
_OPEN_DIR = os.O_RDONLY | _DIRECTORY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


class ForeignFolder(OSError):
    """Something at the name of one of our folders that we do not write through:
    a link we do not follow, a folder that changed while it was opened."""

    def __init__(self, path: Path, problem: str) -> None:
        advice = "remove the link, or point it at a folder of yours that only you can write in"
        super().__init__(errno.EPERM, f"{problem}; pixeldojo does not write through it ({advice})")
        self.filename = str(path)
        self.path = path


def private_folder(folder: Path, *, top: Path | None = None, tighten_existing: bool = True) -> Path:
    """Make `folder` (and any missing parent) 0700 whatever the umask; return it.

    `top` is our top folder (`folder` itself unless given): every folder below
    it is ours alone, and a link there is replaced by a real folder. `top`
    itself, when it exists, is tightened to 0700 (`tighten_existing`) and, if
    it is a symbolic link, followed only under the rule in this module's
    docstring. `tighten_existing=False` is for a folder the caller named: it is
    the caller's, used as it is (a link followed, nothing tightened).
    Raises `ForeignFolder` or `NotADirectoryError` (both `OSError`).
    """
    top = folder if top is None else top
    inner = folder.relative_to(top).parts
    if not _POSIX:
        folder.mkdir(parents=True, exist_ok=True)
        if not folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "Not a folder", str(folder))
        return folder
    fd = _open_top(top, ours=tighten_existing)
    try:
        here = top
        for name in inner:
            here = here / name
            child = _inner_folder(fd, name, here)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)
    return folder


def check_folder(top: Path) -> None:
    """Raise `ForeignFolder` when our top folder `top` is a symbolic link that
    `private_folder` would not follow; change nothing (a reader's check). A
    link to nothing is let be: nothing can be read through it."""
    if _POSIX and os.path.islink(top) and os.path.exists(top):
        os.close(_follow_top_link(top, os.lstat(top)))


def _open_top(top: Path, *, ours: bool) -> int:
    """A descriptor of the top folder, made if missing (with its missing parents)."""
    made = not os.path.lexists(top)
    if made:
        _make_missing(top)
    try:
        info = os.lstat(top)
    except FileNotFoundError:  # removed meanwhile: made afresh once
        made = True
        _make_missing(top)
        info = os.lstat(top)
    if not stat.S_ISLNK(info.st_mode):
        fd = _open_dir(top, follow=False)
    elif made:  # not the user's setup: it appeared while we made the folder
        raise ForeignFolder(top, f"{top} became a symbolic link while it was made")
    else:
        fd = _follow_top_link(top, info) if ours else _open_dir(top, follow=True)
    if ours:
        _tighten(fd)
    return fd


def _make_missing(folder: Path) -> None:
    """Make `folder` and its missing parents, each 0700 through a descriptor."""
    missing: list[Path] = []
    here = folder
    while not os.path.lexists(here) and here.parent != here:
        missing.append(here)
        here = here.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue  # another process made it: it tightens it too
        os.close(_open_dir(path, follow=False, tighten=True))


def _open_dir(path: Path, *, follow: bool, tighten: bool = False) -> int:
    """Open a folder (`O_NOFOLLOW` unless `follow`); a link at the name is
    `ForeignFolder`, anything else not a folder `NotADirectoryError`."""
    try:
        fd = os.open(path, _OPEN_DIR | (0 if follow else _NOFOLLOW))
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(path):
            raise ForeignFolder(path, f"{path} became a symbolic link while it was opened") from exc
        if exc.errno in (errno.ENOTDIR, errno.ENXIO, errno.ELOOP):
            raise NotADirectoryError(errno.ENOTDIR, "Not a folder", str(path)) from exc
        raise
    if not stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotADirectoryError(errno.ENOTDIR, "Not a folder", str(path))
    if tighten:
        _tighten(fd)
    return fd


def _follow_top_link(top: Path, link: os.stat_result) -> int:
    """A descriptor of the folder a top-folder link points to, when the link is
    the current user's and so is the folder, which nobody else may write in."""
    me = os.geteuid()
    target = os.path.realpath(top)
    if link.st_uid != me:
        raise ForeignFolder(top, f"{top} is a symbolic link of another user (uid {link.st_uid})")
    try:
        info = os.stat(top)
    except OSError:
        problem = f"{top} is a symbolic link to {target}, which is missing"
        raise ForeignFolder(top, problem) from None
    if not stat.S_ISDIR(info.st_mode):
        raise ForeignFolder(top, f"{top} is a symbolic link to {target}, which is not a folder")
    if info.st_uid != me:
        problem = f"{top} is a symbolic link to {target}, a folder of another user"
        raise ForeignFolder(top, f"{problem} (uid {info.st_uid})")
    if info.st_mode & 0o022:
        raise ForeignFolder(
            top,
            f"{top} is a symbolic link to {target}, a folder others may write in "
            f"(mode {stat.S_IMODE(info.st_mode):o})",
        )
    fd = _open_dir(top, follow=True)
    opened = os.fstat(fd)
    if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
        os.close(fd)
        raise ForeignFolder(top, f"{top} changed while it was opened")
    return fd


def _inner_folder(parent: int, name: str, shown: Path) -> int:
    """A descriptor of the folder `name` in the open folder `parent`, made 0700
    if missing; a link at the name is removed and a folder made in its place."""
    for _ in range(3):
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o700, dir_fd=parent)
        try:
            fd = os.open(name, _OPEN_DIR | _NOFOLLOW, dir_fd=parent)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT, errno.ENXIO):
                raise
            if not _remove_link(parent, name):
                raise NotADirectoryError(errno.ENOTDIR, "Not a folder", str(shown)) from exc
            continue
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            _tighten(fd)
            return fd
        os.close(fd)
        break
    raise NotADirectoryError(errno.ENOTDIR, "Not a folder", str(shown))


def _remove_link(parent: int, name: str) -> bool:
    """Remove a link (the name only) at `name` in `parent`; whether there was
    one (or nothing at all: then the folder can be made)."""
    try:
        info = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return True
    if not stat.S_ISLNK(info.st_mode):
        return False
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=parent)
    return True


def _tighten(fd: int) -> None:
    """Take group and other bits off an open folder of ours (not another user's)."""
    info = os.fstat(fd)
    if info.st_uid == os.geteuid() and info.st_mode & 0o077:
        os.fchmod(fd, 0o700)
