"""`run --batch` claims each line in the ledger before submitting it.

So two processes never submit the same line, and a rerun never pays for it
twice. Each function here runs inside the caller's write transaction (see
`Ledger.claim_line` and its siblings).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pixeldojo_cli.api.results import FAILED_STATUSES
from pixeldojo_cli.store.ledger.values import now

# A --batch line claimed on another machine (a shared home folder) this long ago
# by a process that never recorded a job is taken to have died.
STALE_CLAIM = timedelta(hours=1)


@dataclass(frozen=True)
class ClaimResult:
    """What `claim_line` found.

    - `claimed`: the line is this process's to submit now;
    - `taken`: another live process is submitting it, or it has a job already
      (`job_id`, to be followed instead of submitted);
    - `unknown`: an earlier process claimed it and may have sent its POST, then
      died (or said it could not tell) without recording a job: submitting it
      again might pay twice, so it must not be done blindly.
    """

    outcome: Literal["claimed", "taken", "unknown"]
    job_id: str | None = None
    pid: int | None = None
    host: str | None = None
    claimed_at: datetime | None = None

    @property
    def claimed(self) -> bool:
        return self.outcome == "claimed"


def this_host() -> str:
    """This machine's name, as a claim records it."""
    return socket.gethostname() or "localhost"


def process_started_at(pid: int) -> datetime | None:
    """When process `pid` started (Linux /proc), or None when it cannot be told."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        ticks = float(stat.rsplit(")", 1)[1].split()[19])
        return datetime.fromtimestamp(boot + ticks / os.sysconf("SC_CLK_TCK"), tz=UTC)
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def holder_alive(pid: int, host: str, claimed_at: datetime) -> bool:
    """Whether the process that claimed a line may still be submitting it."""
    if host != this_host():  # cannot be asked: alive until the claim is stale
        return now() - claimed_at < STALE_CLAIM
    if sys.platform == "win32":  # os.kill(pid, 0) would end the process there
        return now() - claimed_at < STALE_CLAIM
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but another user's
        pass
    started = process_started_at(pid)
    # A process that started after the claim only has the dead claimer's pid.
    return started is None or started <= claimed_at + timedelta(seconds=2)


def claim(db: sqlite3.Connection, input_hash: str, base_url: str, profile: str) -> ClaimResult:
    """Claim one line (see `Ledger.claim_line`): a line whose job failed or
    expired unsaved is free again; one whose claimer died without a job is
    `unknown`."""
    key = (base_url, profile, input_hash)
    row = db.execute(
        "SELECT state, pid, host, claimed_at, job_id FROM batch_lines"
        " WHERE base_url = ? AND profile = ? AND input_hash = ?",
        key,
    ).fetchone()
    if row is not None:
        state, pid, host, claimed_text, job_id = row
        claimed_at = datetime.fromisoformat(claimed_text)
        found = ClaimResult("taken", job_id, pid, host, claimed_at)
        if job_id is not None:
            if not _retry_worthy(db, base_url, job_id):
                return found
        elif state == "uncertain" or not holder_alive(pid, host, claimed_at):
            return ClaimResult("unknown", None, pid, host, claimed_at)
        else:
            return found
    claimed_at = now()
    db.execute(
        "INSERT OR REPLACE INTO batch_lines (base_url, profile, input_hash, state, pid,"
        " host, claimed_at, job_id) VALUES (?, ?, ?, 'claimed', ?, ?, ?, NULL)",
        (*key, os.getpid(), this_host(), claimed_at.isoformat()),
    )
    return ClaimResult("claimed", None, os.getpid(), this_host(), claimed_at)


def _retry_worthy(db: sqlite3.Connection, base_url: str, job_id: str) -> bool:
    """The line's job failed, or its outputs expired unsaved: worth another try."""
    row = db.execute(
        "SELECT status, lost FROM jobs WHERE base_url = ? AND id = ?", (base_url, job_id)
    ).fetchone()
    return row is not None and (row[0] in FAILED_STATUSES or row[1] == 1)  # not refused: 2


def attach(
    db: sqlite3.Connection, base_url: str, profile: str, input_hash: str, job_id: str
) -> None:
    """The claimed line's POST answered with `job_id`."""
    db.execute(
        "UPDATE batch_lines SET state = 'submitted', job_id = ?"
        " WHERE base_url = ? AND profile = ? AND input_hash = ?",
        (job_id, base_url, profile, input_hash),
    )


def mark_uncertain(db: sqlite3.Connection, base_url: str, profile: str, input_hash: str) -> None:
    """The claimed line's POST may have reached the server; no job id came back."""
    db.execute(
        "UPDATE batch_lines SET state = 'uncertain' WHERE base_url = ? AND profile = ?"
        " AND input_hash = ? AND job_id IS NULL",
        (base_url, profile, input_hash),
    )


def release(db: sqlite3.Connection, base_url: str, profile: str, input_hash: str) -> None:
    """Give a claimed line without a job up."""
    db.execute(
        "DELETE FROM batch_lines WHERE base_url = ? AND profile = ? AND input_hash = ?"
        " AND job_id IS NULL",
        (base_url, profile, input_hash),
    )
