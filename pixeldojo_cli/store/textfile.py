"""A generated text file put in place whole: SKILL.md for `pixeldojo skill --install`.

The file is written to a temporary name beside it, flushed and renamed, so a
reader (an assistant loading its skills) sees the old file or the new one,
never a part; a link at the name is replaced, never written through. A file
already there with other content is someone's (an edited copy, another
program's skill) and is kept unless the caller says to replace it.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Literal

from pixeldojo_cli.core.errors import UsageError, WriteError
from pixeldojo_cli.core.ownfiles import NOFOLLOW, read_at_most
from pixeldojo_cli.store.files import set_output_mode

# Any SKILL.md is far smaller: past this, the file there is not one to compare.
MAX_COMPARED = 1024 * 1024

Placed = Literal["written", "unchanged", "replaced"]


def _current(path: Path) -> bytes | None:
    """The bytes at `path` (None when nothing is there). Anything but a regular
    file of reasonable size (a link, a FIFO, a device) counts as other content,
    never opened through or waited on; a folder is refused."""
    try:
        fd = os.open(path, os.O_RDONLY | NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None
    except OSError:
        if path.is_dir() and not path.is_symlink():
            raise UsageError(f"{path} is a folder, not a file: nothing was written.") from None
        return b""  # a link at the name (ELOOP): replaced by the rename, if allowed
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise UsageError(f"{path} is a folder, not a file: nothing was written.")
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_COMPARED:
            return b""
        return read_at_most(fd, MAX_COMPARED) or b""
    finally:
        os.close(fd)


def place_text(path: Path, text: str, *, replace: bool) -> Placed:
    """Put `text` at `path` atomically. Nothing is done when the file already holds
    exactly `text`; a different file there is refused (`UsageError`, exit 2)
    unless `replace`. The folder must exist. Returns what happened."""
    data = text.encode("utf-8")
    try:
        current = _current(path)
    except OSError as exc:
        raise WriteError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    if current == data:
        return "unchanged"
    if current is not None and not replace:
        raise UsageError(
            f"{path} exists with other content: kept.",
            hint="Add --force to replace it.",
        )
    _write_atomic(path, data)
    return "written" if current is None else "replaced"


def _write_atomic(path: Path, data: bytes) -> None:
    name: str | None = None
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            set_output_mode(handle.fileno())
        os.replace(name, path)
    except OSError as exc:
        if name is not None:
            Path(name).unlink(missing_ok=True)
        raise WriteError(f"Cannot write {path}: {exc.strerror or exc}.") from exc
