"""The ledger's files checked before SQLite opens them.

SQLite opens `jobs.sqlite3` and its `-wal`, `-shm` and `-journal` files by
name, following links. So, first: the ledger must be a regular file of one
name (a link or a hard link there is refused: it may be someone's other
file), made 0600 whatever the umask and tightened if older and looser; a
link, FIFO or device at a companion's name is removed (SQLite never makes
one), and a companion of ours is tightened too (SQLite gives new ones the
ledger's mode).

Then SQLite connects through a `file:` URI: `mode=rw` (never `rwc`: the
ledger was made above, so SQLite never creates a file, not even the target of
a dangling link swapped in meanwhile) or `mode=ro`; and the file it opened is
checked to be the one checked here (`opened_as_checked`). SQLite resolves a
link at the name when it opens the file (`PRAGMA database_list` tells where
it went) and opens the companions beside what it resolved with `O_NOFOLLOW`.
(`SQLITE_OPEN_NOFOLLOW` is a flag of `sqlite3_open_v2` that Python's
`sqlite3.connect` cannot pass; SQLite takes no such URI parameter.)
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

from pixeldojo_cli.core.ownfiles import ForeignFile, open_private, same_file
from pixeldojo_cli.store.ledger.values import job_time

COMPANIONS = ("-wal", "-shm", "-journal")


def claim_ledger(path: Path, *, create: bool = True) -> int | None:
    """Check the ledger and its companions; an open descriptor of the ledger
    (to compare with what SQLite opened), or None when it cannot be opened here
    (SQLite then says why: a read-only folder, ...; or, without `create`, it
    is missing). `ForeignFile` when something at one of the names is not a
    file of ours and cannot go; `PermissionError` when the ledger is there but
    cannot be read. Never waits on a FIFO."""
    for suffix in COMPANIONS:
        _clear_companion(Path(f"{path}{suffix}"))
    if create:
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
    except PermissionError:  # there, and not ours to read: SQLite would only say
        raise  # "unable to open database file"
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


def connect_ledger(path: Path, mode: str, **options: Any) -> sqlite3.Connection:
    """`sqlite3.connect` to the ledger through a `file:` URI with `mode` (`rw`,
    `ro`, `ro&immutable=1`): never `rwc`, so SQLite creates no file. Check the
    file it opened with `opened_as_checked` before the first statement. SQL on
    it has `job_time(text)` (`values.job_time`) to compare stored times with."""
    db: sqlite3.Connection = sqlite3.connect(
        f"{path.absolute().as_uri()}?mode={mode}", uri=True, **options
    )
    db.create_function("job_time", 1, job_time, deterministic=True)
    return db


def opened_as_checked(db: sqlite3.Connection, path: Path, fd: int | None) -> bool:
    """Whether SQLite opened the ledger at `path` itself (not a link's target)
    and, given the descriptor `claim_ledger` checked, that very file. Reads
    nothing of the file (`PRAGMA database_list` only names it)."""
    row = db.execute("PRAGMA database_list").fetchone()
    opened = str(row[2]) if row and row[2] else ""
    if os.path.basename(opened) != path.name:
        return False
    if os.path.realpath(os.path.dirname(opened)) != os.path.realpath(path.absolute().parent):
        return False
    return fd is None or same_file(fd, path)
