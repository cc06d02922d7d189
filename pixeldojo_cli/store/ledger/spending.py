"""What the ledger says was spent: the credits of the jobs one API and profile
submitted in a window of time (what budgets count)."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from pixeldojo_cli.store.ledger.values import stamp


def spent_in_window(db: sqlite3.Connection, base_url: str, profile: str, since: datetime) -> float:
    """Credits of the jobs of `base_url` and `profile` submitted at `since` or
    later: what each was charged (the API's `creditCost`), else its estimate.

    Failed jobs count too: the API may refund them, which the CLI cannot know.
    A job with neither (one adopted from a webhook) counts nothing.
    """
    row = db.execute(
        "SELECT SUM(COALESCE(charged_credits, estimated_credits, 0)) FROM jobs"
        " WHERE base_url = ? AND profile = ? AND submitted_at >= ?",
        (base_url, profile, stamp(since)),
    ).fetchone()
    return float(row[0] or 0.0)
