"""Budgets: each job's estimate is reserved in the ledger before its POST.

The check (what was spent in each window, plus this job) and the reservation
are one write transaction (`BEGIN IMMEDIATE`, see `Ledger.reserve`), so
processes started together see each other's reservations: together they never
pass a budget by more than one job. A reservation is `held` while its POST may
be on its way, becomes `submitted` with the job's id once the API answered (it
counts until the job's own row does), or `uncertain` when the POST may have
been taken without an answer (it counts in its window). A held reservation
whose process is gone (the POST refused before sending, the process killed) or
that is older than `STALE_RESERVATION` is released.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pixeldojo_cli.store.ledger.claims import holder_alive, this_host
from pixeldojo_cli.store.ledger.spending import spent_in_window
from pixeldojo_cli.store.ledger.values import now, parse_time, stamp

# A held reservation this old is released whoever holds it: a POST (and the
# uploads before it) never takes this long.
STALE_RESERVATION = timedelta(minutes=30)
# Reservations are kept this long (past the longest window: a calendar month).
KEPT_FOR = timedelta(days=40)


@dataclass(frozen=True)
class Reservation:
    """What `reserve` did: `id` of the reservation made (None: refused), and
    the credits already spent in each window asked about, in their order."""

    id: int | None
    spent: tuple[float, ...]


def _counts(state: str, pid: int, host: str, reserved_at: datetime | None) -> bool:
    """Whether a reservation without a recorded job still counts."""
    if state != "held":
        return True
    if reserved_at is None or now() - reserved_at >= STALE_RESERVATION:
        return False
    return holder_alive(pid, host, reserved_at)


def reserved_since(db: sqlite3.Connection, base_url: str, profile: str, since: datetime) -> float:
    """Credits reserved at `since` or later whose job is not in the ledger yet
    (held ones only while their process may still submit)."""
    rows = db.execute(
        "SELECT credits, state, pid, host, reserved_at FROM reservations r"
        " WHERE base_url = ? AND profile = ? AND reserved_at >= ? AND (job_id IS NULL OR"
        " NOT EXISTS (SELECT 1 FROM jobs j WHERE j.base_url = r.base_url AND j.id = r.job_id))",
        (base_url, profile, stamp(since)),
    ).fetchall()
    return sum(
        float(credits)
        for credits, state, pid, host, at in rows
        if _counts(state, pid, host, parse_time(at))
    )


def spent_since(db: sqlite3.Connection, base_url: str, profile: str, since: datetime) -> float:
    """What a budget counts for a window starting at `since`: the jobs' credits
    and the reservations of jobs not recorded yet."""
    return spent_in_window(db, base_url, profile, since) + reserved_since(
        db, base_url, profile, since
    )


def _release_stale(db: sqlite3.Connection) -> None:
    """Forget the reservations that no longer count: held ones of a process gone
    (or stale), ones whose job row carries the cost, and old ones."""
    db.execute("DELETE FROM reservations WHERE reserved_at < ?", (stamp(now() - KEPT_FOR),))
    db.execute(
        "DELETE FROM reservations WHERE job_id IS NOT NULL AND EXISTS (SELECT 1 FROM jobs j"
        " WHERE j.base_url = reservations.base_url AND j.id = reservations.job_id)"
    )
    held = db.execute(
        "SELECT id, pid, host, reserved_at FROM reservations WHERE state = 'held'"
    ).fetchall()
    gone = [(rid,) for rid, pid, host, at in held if not _counts("held", pid, host, parse_time(at))]
    db.executemany("DELETE FROM reservations WHERE id = ?", gone)


def reserve(
    db: sqlite3.Connection,
    base_url: str,
    profile: str,
    credits: float,
    windows: Sequence[tuple[datetime, float]],
) -> Reservation:
    """Inside the caller's write transaction: reserve `credits` unless, in one
    of the `windows` (its start, its budget), what was spent plus `credits`
    would pass the budget."""
    _release_stale(db)
    spent = tuple(spent_since(db, base_url, profile, since) for since, _ in windows)
    if any(used + credits > limit + 1e-9 for used, (_, limit) in zip(spent, windows, strict=True)):
        return Reservation(None, spent)
    cursor = db.execute(
        "INSERT INTO reservations (base_url, profile, credits, state, pid, host, reserved_at)"
        " VALUES (?, ?, ?, 'held', ?, ?, ?)",
        (base_url, profile, credits, os.getpid(), this_host(), stamp(now())),
    )
    return Reservation(cursor.lastrowid, spent)


def settle(
    db: sqlite3.Connection, reservation: int, job_id: str | None, *, uncertain: bool
) -> None:
    """After the POST: the job it made (`job_id`), or it may have been taken
    (`uncertain`: keep counting it), or it certainly was not (released)."""
    if job_id is not None:
        db.execute(
            "UPDATE reservations SET state = 'submitted', job_id = ? WHERE id = ?",
            (job_id, reservation),
        )
    elif uncertain:
        db.execute("UPDATE reservations SET state = 'uncertain' WHERE id = ?", (reservation,))
    else:
        db.execute("DELETE FROM reservations WHERE id = ?", (reservation,))
