"""Budgets: each job's estimate is reserved in the ledger before its POST.

The check (what was spent in each window, plus this job) and the reservation
are one write transaction (`BEGIN IMMEDIATE`, see `Ledger.reserve`), so
processes started together see each other's reservations: together they never
pass a budget by more than one job. A reservation is `held` while the job is
being readied (its uploads), `sending` from right before its POST (committed
first: a process killed while its POST is in flight leaves it counting, as
`uncertain`), `submitted` with the job's id once the API answered (it counts
until the job's own row does), or `uncertain` when the POST may have been taken
without an answer (it counts in its window). A `held` one is released once its
process is gone (it never sent its POST); one held on another machine, which
cannot be asked, once it is older than `STALE_RESERVATION`.
"""

from __future__ import annotations

import math
import os
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pixeldojo_cli.store.ledger.claims import holder_alive, this_host
from pixeldojo_cli.store.ledger.spending import spent_in_window
from pixeldojo_cli.store.ledger.values import now, parse_time, stamp

# A held reservation of another machine's process (which cannot be asked whether
# it is alive) this old is released: readying a job never takes this long.
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
    """Whether a reservation without a recorded job still counts: every one but
    a `held` one whose process is gone (a live one keeps it however long its
    uploads take)."""
    if state != "held":
        return True  # `sending` (its POST may be on its way), `uncertain`, `submitted`
    if reserved_at is None:
        return False
    if host == this_host() and sys.platform != "win32":
        return holder_alive(pid, host, reserved_at)
    return now() - reserved_at < STALE_RESERVATION


def _credits(value: object) -> float:
    """A reservation's credits as counted: a value no job can cost (negative, in
    a row written by hand or by an older version) counts 0, never less."""
    number = float(value) if isinstance(value, int | float) else 0.0
    return number if math.isfinite(number) and number > 0 else 0.0


def reserved_since(db: sqlite3.Connection, base_url: str, profile: str, since: datetime) -> float:
    """Credits reserved at `since` or later whose job is not in the ledger yet
    (held ones only while their process may still submit)."""
    rows = db.execute(
        "SELECT credits, state, pid, host, reserved_at FROM reservations r"
        " WHERE base_url = ? AND profile = ? AND reserved_at >= ? AND (job_id IS NULL OR"
        " NOT EXISTS (SELECT 1 FROM jobs j WHERE j.base_url = r.base_url AND j.id = r.job_id))",
        (base_url, profile, stamp(since)),
    ).fetchall()
    return math.fsum(
        _credits(credits)
        for credits, state, pid, host, at in rows
        if _counts(state, pid, host, parse_time(at))
    )


def spent_since(db: sqlite3.Connection, base_url: str, profile: str, since: datetime) -> float:
    """What a budget counts for a window starting at `since`: the jobs' credits
    and the reservations of jobs not recorded yet."""
    return spent_in_window(db, base_url, profile, since) + reserved_since(
        db, base_url, profile, since
    )


def _of_processes_gone(db: sqlite3.Connection, state: str) -> list[tuple[int]]:
    """The reservations in `state` whose process is gone (or, on another
    machine, that are stale)."""
    rows = db.execute(
        "SELECT id, pid, host, reserved_at FROM reservations WHERE state = ?", (state,)
    ).fetchall()
    return [(rid,) for rid, pid, host, at in rows if not _counts("held", pid, host, parse_time(at))]


def _release_stale(db: sqlite3.Connection) -> None:
    """Forget the reservations that no longer count: held ones of a process gone
    (it never sent its POST), ones whose job row carries the cost, and old
    ones. A `sending` one of a process gone becomes `uncertain`: its POST may
    have been taken, so it keeps counting."""
    db.execute("DELETE FROM reservations WHERE reserved_at < ?", (stamp(now() - KEPT_FOR),))
    db.execute(
        "DELETE FROM reservations WHERE job_id IS NOT NULL AND EXISTS (SELECT 1 FROM jobs j"
        " WHERE j.base_url = reservations.base_url AND j.id = reservations.job_id)"
    )
    db.executemany("DELETE FROM reservations WHERE id = ?", _of_processes_gone(db, "held"))
    db.executemany(
        "UPDATE reservations SET state = 'uncertain' WHERE id = ?",
        _of_processes_gone(db, "sending"),
    )


def reserve(
    db: sqlite3.Connection,
    base_url: str,
    profile: str,
    credits: float,
    windows: Sequence[tuple[datetime, float]],
) -> Reservation:
    """Inside the caller's write transaction: reserve `credits` unless, in one
    of the `windows` (its start, its budget), what was spent plus `credits`
    would pass the budget. `credits` must be a cost a job can have (finite, 0
    or more): a negative one would lower what the others count."""
    if not math.isfinite(credits) or credits < 0:
        raise ValueError(f"a reservation's credits must be finite and 0 or more, not {credits!r}")
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


def mark_sending(db: sqlite3.Connection, reservation: int) -> bool:
    """Right before the POST: the reservation counts from now on whatever becomes
    of its process. False when it is no longer there (released meanwhile): then
    the POST must not be sent."""
    cursor = db.execute(
        "UPDATE reservations SET state = 'sending' WHERE id = ? AND state = 'held'",
        (reservation,),
    )
    return cursor.rowcount == 1


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


def moved_aside_since(ledger: Path, since: datetime) -> Path | None:
    """The latest damaged ledger moved aside (`jobs.sqlite3.damaged-<unix time>`,
    see `Ledger._start_afresh`) at `since` or later: what was spent before it
    is not in the fresh one, so a budget whose window began before it cannot be
    checked. None when there is none."""
    found: list[tuple[float, Path]] = []
    prefix = f"{ledger.name}.damaged-"
    try:
        names = [entry.name for entry in os.scandir(ledger.parent)]
    except OSError:
        return None
    for name in names:
        stamp_text = name[len(prefix) :] if name.startswith(prefix) else ""
        if stamp_text.isdigit() and len(stamp_text) < 15:
            when = datetime.fromtimestamp(int(stamp_text), tz=UTC)
            if when >= since:
                found.append((when.timestamp(), ledger.parent / name))
    return max(found)[1] if found else None
