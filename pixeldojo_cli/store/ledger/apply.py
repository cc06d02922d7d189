"""Writing a record (see `records.py`) into the ledger's tables.

Each function runs inside the caller's write transaction. `replaying`: the
record comes from the side file, and may be older than what the ledger has
learnt since; it then never overwrites that.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pixeldojo_cli.api.results import TERMINAL_STATUSES, Job
from pixeldojo_cli.core.errors import PixelDojoError
from pixeldojo_cli.store.ledger import balances, claims
from pixeldojo_cli.store.ledger.records import (
    LOST_REFUSED,
    LedgerRecord,
    record_job,
    record_time,
)
from pixeldojo_cli.store.ledger.values import iso, parse_time, stamp

# A duration seen only by polling is kept when the last look that found the job
# still running was at most this far (a share of its time, or 1 s) before the
# look that found it done; it is the middle of that gap. Anything vaguer (a job
# picked up hours later by `download --pending`) would teach the schedule wrong.
_SEEN_GAP_SHARE = 0.5
_SEEN_GAP_MIN = 1.0

# What a record kept in the side file may fail with once this version reads it.
_UNREADABLE = (
    KeyError,
    TypeError,
    ValueError,
    AttributeError,
    OverflowError,  # 1e999, or an integer SQLite cannot hold
    sqlite3.InterfaceError,  # a value of a type SQLite cannot bind
    sqlite3.IntegrityError,
    PixelDojoError,
)


def apply_record(db: sqlite3.Connection, record: Mapping[str, Any], *, replaying: bool) -> None:
    """Write one record; `ValueError` for an operation this version does not know."""
    op = record.get("op")
    if op == "submission":
        _apply_submission(db, record, replaying=replaying)
    elif op == "status":
        _apply_status(db, record, replaying=replaying)
    elif op == "files":
        _apply_files(db, record, replaying=replaying)
    elif op == "lost":
        db.execute(
            "UPDATE jobs SET lost = 1, updated_at = ? WHERE base_url = ? AND id = ?",
            (stamp(record_time(record)), record["base_url"], record["job_id"]),
        )
    elif op == "refused":  # `lost` 2; never over 1, the outputs expired unsaved
        old, new = (0, LOST_REFUSED) if record["refused"] else (LOST_REFUSED, 0)
        db.execute(
            "UPDATE jobs SET lost = ?, updated_at = ? WHERE base_url = ? AND id = ? AND lost = ?",
            (new, stamp(record_time(record)), record["base_url"], record["job_id"], old),
        )
    elif op == "balance":
        balances.apply_balance(db, record)
    elif op == "upload":
        db.execute(
            "INSERT OR REPLACE INTO uploads (uploader, sha256, url, size, mime, uploaded_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (record["uploader"], record["sha256"], record["url"], record.get("size"),
             record.get("mime"), stamp(record_time(record))),
        )  # fmt: skip
    elif op == "attach":
        claims.attach(db, record["base_url"], record["profile"], record["input_hash"],
                      record["job_id"])  # fmt: skip
    elif op == "group":
        db.execute(
            "INSERT OR IGNORE INTO job_groups (base_url, job_id, group_id, kind, varied,"
            " recorded_at) VALUES (?, ?, ?, ?, ?, ?)",
            (record["base_url"], record["job_id"], str(record["group_id"]), str(record["kind"]),
             json.dumps(record["varied"]), stamp(record_time(record))),
        )  # fmt: skip
    else:
        raise ValueError(f"unknown ledger record {op!r}")


def apply_replayed(db: sqlite3.Connection, records: Sequence[LedgerRecord]) -> None:
    """Write records kept in the side file. A record this version cannot read is
    dropped, not retried for ever."""
    for record in records:
        try:
            apply_record(db, record, replaying=True)
        except _UNREADABLE:
            continue


def _apply_files(db: sqlite3.Connection, record: Mapping[str, Any], *, replaying: bool) -> None:
    newer = " WHERE excluded.downloaded_at >= files.downloaded_at" if replaying else ""
    db.executemany(
        "INSERT INTO files"
        " (base_url, job_id, n, path, size, sha256, url, downloaded_at, mtime_ns)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (base_url, job_id, n) DO UPDATE SET path = excluded.path,"
        " size = excluded.size, sha256 = excluded.sha256, url = excluded.url,"
        f" downloaded_at = excluded.downloaded_at, mtime_ns = excluded.mtime_ns{newer}",
        [
            (
                record["base_url"],
                record["job_id"],
                int(f["n"]),
                str(f["path"]),
                int(f["size"]),
                f.get("sha256"),
                str(f.get("url", "")),
                iso(record_time(record)),
                f.get("mtime_ns"),
            )
            for f in record["files"]
        ],
    )


def _apply_submission(
    db: sqlite3.Connection, record: Mapping[str, Any], *, replaying: bool
) -> None:
    job = record_job(record)
    at = stamp(record_time(record))
    # A replayed submission never overwrites what the ledger learnt since.
    verb = "INSERT OR IGNORE" if replaying else "INSERT OR REPLACE"
    db.execute(
        f"{verb} INTO jobs (base_url, id, profile, model, inputs,"
        " estimated_credits, charged_credits, submitted_at, status, expires_at,"
        " output_urls, output_dir, lost, updated_at, input_hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
        (
            record["base_url"],
            job.id,
            record["profile"],
            record["model"],
            json.dumps(record["inputs"], default=str),
            record.get("estimated_credits"),
            job.credit_cost,
            at,
            job.status,
            iso(job.output_expiry()),
            json.dumps(job.output_urls),
            record["output_dir"],
            at,
            record.get("input_hash"),
        ),
    )
    _apply_input_files(db, record["base_url"], job.id, record.get("file_inputs") or [])
    if record.get("input_hash"):
        claims.attach(db, record["base_url"], record["profile"], record["input_hash"], job.id)


def _apply_input_files(
    db: sqlite3.Connection, base_url: str, job_id: str, files: Sequence[Mapping[str, Any]]
) -> None:
    """A job's file inputs as sent (kept as they were first recorded)."""
    db.executemany(
        "INSERT OR IGNORE INTO input_files (base_url, job_id, position, input, item, path,"
        " source_job, sha256, size, mime, url) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (base_url, job_id, position, str(f["input"]), f.get("index"), f.get("path"),
             f.get("job"), f.get("sha256"), f.get("size"), f.get("type"), str(f["url"]))
            for position, f in enumerate(files)
        ],
    )  # fmt: skip


def _apply_status(db: sqlite3.Connection, record: Mapping[str, Any], *, replaying: bool) -> None:
    """What the API said about a job we know (unknown jobs are ignored). The
    first time it is seen finished, its completion time and duration are set,
    once (see `Ledger.durations`). A replayed record older than what the ledger
    learnt since changes nothing."""
    job, seen, base_url = record_job(record), record_time(record), record["base_url"]
    row = db.execute(
        "SELECT status, submitted_at, updated_at, completed_at FROM jobs"
        " WHERE base_url = ? AND id = ?",
        (base_url, job.id),
    ).fetchone()
    if row is None:
        return
    status, submitted, updated, completed = row
    last_seen = parse_time(updated)
    if replaying and last_seen is not None and last_seen > seen:
        return
    finished, duration = None, None
    if job.is_terminal and completed is None:
        finished, duration = _completion(
            job,
            submitted=datetime.fromisoformat(submitted),
            last_seen=last_seen,
            was_running=status not in TERMINAL_STATUSES,
            now=seen,
        )
    db.execute(
        "UPDATE jobs SET status = ?, expires_at = COALESCE(?, expires_at),"
        " output_urls = CASE WHEN ? = '[]' THEN output_urls ELSE ? END,"
        " charged_credits = COALESCE(?, charged_credits), updated_at = ?,"
        " completed_at = COALESCE(completed_at, ?), duration = COALESCE(duration, ?)"
        " WHERE base_url = ? AND id = ?",
        (
            job.status,
            iso(job.output_expiry()),
            json.dumps(job.output_urls),
            json.dumps(job.output_urls),
            job.credit_cost,
            stamp(seen),
            None if finished is None else stamp(finished),
            None if finished is None or job.status != "completed" else duration,
            base_url,
            job.id,
        ),
    )


def _completion(
    job: Job, *, submitted: datetime, last_seen: datetime | None, was_running: bool, now: datetime
) -> tuple[datetime, float | None]:
    """When a job that has just been seen finished did finish, and how long it took.

    The API's `completedAt` (against its `createdAt`, else our submission time)
    when it gives them; else the moment it was seen done, with a duration only
    when the look before found it still running shortly before.
    """
    if job.completed_at is not None:
        start = job.created_at or submitted
        duration: float | None = (job.completed_at - start).total_seconds()
        finished = job.completed_at
    else:
        finished = now
        duration = None
        if was_running and last_seen is not None:
            gap = (now - last_seen).total_seconds()
            elapsed = (now - submitted).total_seconds()
            if 0 <= gap <= max(_SEEN_GAP_MIN, _SEEN_GAP_SHARE * elapsed):
                duration = elapsed - gap / 2
    if duration is not None and not 0 < duration < 86400:
        duration = None
    return finished, duration
