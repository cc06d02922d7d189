"""The ledger's files checked before SQLite opens them.

SQLite opens `jobs.sqlite3` and its `-wal`, `-shm` and `-journal` files by
name, following links. So, first: the ledger must be a regular file of one
name (a link or a hard link there is refused: it may be someone's other
file), made 0600 whatever the umask and tightened if older and looser; a
link, FIFO or device at a companion's name is removed (SQLite never makes
one), and a companion of ours is tightened too (SQLite gives new ones the
ledger's mode).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pixeldojo_cli.core.ownfiles import ForeignFile, open_private

COMPANIONS = ("-wal", "-shm", "-journal")


def claim_ledger(path: Path) -> int | None:
    """Check the ledger and its companions; an open descriptor of the ledger
    (to compare with what SQLite opened), or None when it cannot be opened here
    (SQLite then says why: a read-only folder, ...). `ForeignFile` when
    something at one of the names is not a file of ours and cannot go."""
    for suffix in COMPANIONS:
        _clear_companion(Path(f"{path}{suffix}"))
    try:
        return open_private(path, os.O_RDWR | os.O_CREAT)
    except ForeignFile:
        raise
    except OSError:  # read-only: it can still be read
        pass
    try:
        return open_private(path, os.O_RDONLY)
    except ForeignFile:
        raise
    except OSError:
        return None


def _clear_companion(path: Path) -> None:
    """Tighten a companion file of ours; remove a link, FIFO or device at its name."""
    try:
        os.close(open_private(path, os.O_RDONLY))
    except ForeignFile as exc:
        try:
            planted = not stat.S_ISREG(os.lstat(path).st_mode)
        except OSError:
            return
        if not planted:  # a hard link: may be someone's other file
            raise
        try:
            os.unlink(path)
        except OSError:
            raise exc from None
    except OSError:
        return
