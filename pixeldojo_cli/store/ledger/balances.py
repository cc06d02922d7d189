"""The credits balance as the API last reported it: `creditsRemaining` on a
submit answer, kept per (API, profile) in the `balances` table.

No route of the API tells the balance (none is published), so this is the
only place `pixeldojo credits` can read it from, and it is as old as the last
job submitted. Only finite numbers are kept: a balance the server sends as a
string, NaN, infinity or an integer beyond any float is not a balance.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pixeldojo_cli.store.ledger.records import LedgerRecord, record_time
from pixeldojo_cli.store.ledger.values import now, parse_time, stamp


@dataclass(frozen=True)
class Balance:
    """The balance the API last reported for one API and profile."""

    base_url: str
    profile: str
    credits: float
    seen_at: datetime | None  # None: damaged (a hand-edited row)
    job_id: str | None = None


def finite_credits(value: Any) -> float | None:
    """`value` as a finite number of credits, else None (a bool, a string, NaN,
    infinity, an integer too big for a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def balance_record(
    base_url: str, profile: str, credits: Any, job_id: str | None
) -> LedgerRecord | None:
    """A record of the balance a submit answer carried; None when it is no
    finite number (nothing to keep)."""
    number = finite_credits(credits)
    if number is None:
        return None
    return {
        "op": "balance",
        "at": now().isoformat(),
        "base_url": base_url,
        "profile": profile,
        "credits": number,
        "job_id": job_id,
    }


def apply_balance(db: sqlite3.Connection, record: Mapping[str, Any]) -> None:
    """Keep the balance unless the ledger already has a newer one (a record
    replayed from the side file may be older than what was seen since).

    A kept time that is later than now, or no time at all, orders nothing (a
    clock that was ahead once, a hand-edited row): any balance replaces it,
    or one such row would hide every later balance for good."""
    number = finite_credits(record.get("credits"))
    if number is None:  # a hand-edited side file: nothing to keep
        return
    job_id = record.get("job_id")
    db.execute(
        "INSERT INTO balances (base_url, profile, credits, seen_at, job_id)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (base_url, profile) DO UPDATE SET"
        " credits = excluded.credits, seen_at = excluded.seen_at, job_id = excluded.job_id"
        " WHERE excluded.seen_at >= job_time(balances.seen_at)"
        " OR job_time(balances.seen_at) IS NULL OR job_time(balances.seen_at) > ?",
        (
            str(record["base_url"]),
            str(record["profile"]),
            number,
            stamp(record_time(record)),
            job_id if isinstance(job_id, str) else None,
            stamp(now()),
        ),
    )


def last_balance(db: sqlite3.Connection, base_url: str, profile: str) -> Balance | None:
    """The balance last seen for this API and profile, or None. A ledger from
    before the `balances` table (opened read-only, never upgraded) has none."""
    try:
        row = db.execute(
            "SELECT credits, seen_at, job_id FROM balances WHERE base_url = ? AND profile = ?",
            (base_url, profile),
        ).fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    if row is None:
        return None
    credits, seen_at, job_id = row
    number = finite_credits(credits)  # a hand-edited row: nothing to show
    if number is None:
        return None
    return Balance(
        base_url=base_url,
        profile=profile,
        credits=number,
        seen_at=parse_time(seen_at),
        job_id=job_id if isinstance(job_id, str) else None,
    )
