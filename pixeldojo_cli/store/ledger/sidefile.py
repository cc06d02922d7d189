"""The side file: writes the ledger could not take, kept until it can.

`pending-records.jsonl` beside the ledger holds one record (see `records.py`)
a line. `defer` appends to it, durably, even when the ledger cannot be opened
at all; `replay` hands its records to the ledger the next time one is opened,
then empties it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from pixeldojo_cli.core.errors import LedgerError
from pixeldojo_cli.core.ownfiles import open_private, read_private
from pixeldojo_cli.core.ownfolders import private_folder
from pixeldojo_cli.core.untrusted import loads
from pixeldojo_cli.store.ledger.locking import side_file_lock
from pixeldojo_cli.store.ledger.records import LedgerRecord
from pixeldojo_cli.store.settings import ledger_path

# Writes that could not be done, kept beside the ledger until they can.
PENDING_RECORDS = "pending-records.jsonl"
# A side file past this is read no further by `kept_unsaved` (replay reads it all).
_MAX_LOOK = 64 * 1024 * 1024


def pending_records_path(ledger: Path | None = None) -> Path:
    """`pending-records.jsonl` beside the ledger."""
    return (ledger or ledger_path()).with_name(PENDING_RECORDS)


def parse_records(data: bytes) -> list[LedgerRecord]:
    """The side file's records; a line cut short by a crash is skipped."""
    records = []
    for line in data.splitlines():
        try:
            record = loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("op"), str):
            records.append(record)
    return records


def defer(record: LedgerRecord, ledger: Path | None = None) -> Path:
    """Keep a write the ledger could not take in `pending-records.jsonl` beside it,
    durably (fsync), to be replayed when a `Ledger` is next opened. Works when the
    ledger itself cannot even be opened. Raises `LedgerError` when the side file
    cannot be written either (the caller then names the job ids)."""
    path = pending_records_path(ledger)
    line = (json.dumps(record, default=str, ensure_ascii=True) + "\n").encode()
    try:
        private_folder(path.parent, tighten_existing=path.parent == ledger_path().parent)
        # A link (or FIFO, device, hard link) planted at the name is replaced.
        fd = open_private(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, replace=True)
        with os.fdopen(fd, "ab") as handle, side_file_lock(handle, 2.0):
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise LedgerError(
            f"Cannot keep the record for later in {path}: {exc.strerror or exc}."
        ) from exc
    return path


def replay(ledger: Path, write_all: Callable[[list[LedgerRecord]], object]) -> int:
    """Hand the side file's records to `write_all` (one transaction), then empty
    the file. Returns how many there were; 0 when there were none, or the file
    cannot be read or locked (they stay for next time). A `LedgerError` from
    `write_all` leaves them in the file too, and is raised."""
    side_file = pending_records_path(ledger)
    if not os.path.lexists(side_file):
        return 0
    try:  # something not ours at the name holds none of our records: it goes
        fd = open_private(side_file, os.O_RDWR, replace=True)
        with os.fdopen(fd, "r+b") as handle, side_file_lock(handle, 1.0) as have_lock:
            if not have_lock:
                return 0
            records = parse_records(handle.read())
            if records:
                write_all(records)
            handle.seek(0)
            handle.truncate()
            handle.flush()
            os.fsync(handle.fileno())
    except OSError:
        return 0
    # (Emptied, never removed: a process waiting to append holds it open.)
    return len(records)


def kept_unsaved(ledger: Path, base_url: str, profile: str) -> list[str]:
    """Ids of the jobs of this API and profile submitted while the ledger could
    not take them, kept in the side file with no saved files or loss recorded
    there: what `download --pending` cannot see while the ledger stays shut."""
    data = read_private(pending_records_path(ledger), _MAX_LOOK) or b""
    submitted: dict[str, None] = {}
    done: set[str] = set()
    for record in parse_records(data):
        if record.get("base_url") != base_url.rstrip("/"):
            continue
        job = record.get("job")
        if record["op"] == "submission" and record.get("profile") == profile:
            if isinstance(job, dict) and isinstance(job.get("jobId"), str):
                submitted[job["jobId"]] = None
        elif record["op"] in ("files", "lost") and isinstance(record.get("job_id"), str):
            done.add(record["job_id"])
    return [job_id for job_id in submitted if job_id not in done]
