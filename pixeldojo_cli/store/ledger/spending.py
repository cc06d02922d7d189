"""What the ledger says was spent: per job (`SpentJob`) and summed (`Spend`).

A job's credits are what the API said it charged (`creditCost` on the submit
answer or a later look); where the API never said, the estimate made before
submitting, counted apart. Jobs that failed on the server are counted apart
too: the API may refund them, and nothing tells this CLI whether it did.

A value no job can have (negative, NaN, past `MAX_JOB_CREDITS`, text in a
hand-edited row) counts as unknown, never as a number that would break a sum.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pixeldojo_cli.api.results import FAILED_STATUSES
from pixeldojo_cli.store.ledger.queries import JobQuery
from pixeldojo_cli.store.ledger.values import parse_time, stamp

# No one job costs more; a larger value in the ledger is damage, not a price.
MAX_JOB_CREDITS = 1e12
# Nor lasts longer (seconds of video asked for).
MAX_JOB_SECONDS = 1e7


def _amount(value: Any, most: float) -> float | None:
    """A number of credits or seconds as kept, or None when it is none a job can have."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and 0 <= number <= most else None


@dataclass(frozen=True)
class SpentJob:
    """One job's cost as the ledger knows it."""

    profile: str
    model: str
    submitted_at: datetime | None  # None: damaged (a hand-edited row), in no day
    failed: bool
    charged: float | None  # what the API said it charged
    estimated: float | None  # the estimate made before submitting
    seconds: float | None  # the `duration` input, when the job was asked for one


@dataclass(frozen=True)
class Spend:
    """Jobs and credits summed over a window (`Ledger.spent`) or a row of
    `pixeldojo usage`.

    `charged`: credits the API said it charged for the jobs that did not fail;
    `estimated`: the estimates of those whose charge it never said
    (`estimated_jobs` of them); `unpriced_jobs`: with neither (they count 0);
    `failed_jobs` and `failed_credits` (charged, else estimated): the jobs that
    failed, apart. `seconds`: seconds of video asked for by `timed_jobs` jobs.
    """

    jobs: int = 0
    charged: float = 0.0
    estimated: float = 0.0
    estimated_jobs: int = 0
    unpriced_jobs: int = 0
    failed_jobs: int = 0
    failed_credits: float = 0.0
    seconds: float = 0.0
    timed_jobs: int = 0

    @property
    def credits(self) -> float:
        """Charged plus estimated, failed jobs aside: what was spent, as far as known."""
        return self.charged + self.estimated

    @property
    def all_jobs(self) -> int:
        """Every job counted, failed ones included."""
        return self.jobs + self.failed_jobs


class _Tally:
    """A `Spend` being summed (math.fsum: the order of the rows never changes a total)."""

    def __init__(self) -> None:
        self.jobs = self.estimated_jobs = self.unpriced_jobs = 0
        self.failed_jobs = self.timed_jobs = 0
        self.charged: list[float] = []
        self.estimated: list[float] = []
        self.failed: list[float] = []
        self.seconds: list[float] = []

    def add(self, job: SpentJob, seconds: float | None) -> None:
        if job.failed:
            self.failed_jobs += 1
            price = job.charged if job.charged is not None else job.estimated
            self.failed.append(price or 0.0)
            return
        self.jobs += 1
        if job.charged is not None:
            self.charged.append(job.charged)
        elif job.estimated is not None:
            self.estimated_jobs += 1
            self.estimated.append(job.estimated)
        else:
            self.unpriced_jobs += 1
        if seconds is not None:
            self.timed_jobs += 1
            self.seconds.append(seconds)

    def spend(self) -> Spend:
        return Spend(
            jobs=self.jobs,
            charged=math.fsum(self.charged),
            estimated=math.fsum(self.estimated),
            estimated_jobs=self.estimated_jobs,
            unpriced_jobs=self.unpriced_jobs,
            failed_jobs=self.failed_jobs,
            failed_credits=math.fsum(self.failed),
            seconds=math.fsum(self.seconds),
            timed_jobs=self.timed_jobs,
        )


def total(
    jobs: Iterable[SpentJob], seconds_of: Callable[[SpentJob], float | None] | None = None
) -> Spend:
    """The jobs summed. `seconds_of` says a job's seconds where its inputs do not
    (a model's default duration); by default only the inputs say."""
    tally = _Tally()
    for job in jobs:
        tally.add(job, job.seconds if seconds_of is None else seconds_of(job))
    return tally.spend()


def grouped(
    jobs: Iterable[SpentJob],
    key: Callable[[SpentJob], str],
    seconds_of: Callable[[SpentJob], float | None] | None = None,
) -> dict[str, Spend]:
    """The jobs summed per `key` (a day, a model, a profile), keys in order."""
    tallies: dict[str, _Tally] = {}
    for job in jobs:
        tally = tallies.setdefault(key(job), _Tally())
        tally.add(job, job.seconds if seconds_of is None else seconds_of(job))
    return {name: tallies[name].spend() for name in sorted(tallies)}


def spent_jobs(db: sqlite3.Connection, query: JobQuery) -> list[SpentJob]:
    """The jobs `query` selects (its base URL, profile, model, since and until),
    oldest first, with what each cost."""
    where, args = query.where()
    rows = db.execute(
        "SELECT profile, model, submitted_at, status, charged_credits, estimated_credits,"
        # Only a JSON number: json_extract reads `true` as 1.
        " CASE WHEN json_valid(inputs) THEN CASE WHEN json_type(inputs, '$.duration')"
        " IN ('integer', 'real') THEN json_extract(inputs, '$.duration') END END"
        f" FROM jobs WHERE {where} ORDER BY submitted_at, rowid",
        args,
    ).fetchall()
    return [
        SpentJob(
            profile=str(profile),
            model=str(model),
            submitted_at=parse_time(submitted),
            failed=str(status).lower() in FAILED_STATUSES,
            charged=_amount(charged, MAX_JOB_CREDITS),
            estimated=_amount(estimated, MAX_JOB_CREDITS),
            seconds=_amount(duration, MAX_JOB_SECONDS),
        )
        for profile, model, submitted, status, charged, estimated, duration in rows
    ]


def default_seconds(value: Any) -> float | None:
    """A model's default `duration` (from its schema) as seconds, or None."""
    return _amount(value, MAX_JOB_SECONDS)


# A job's credits as budgets count them, in SQL: charged, else estimated, and only
# a value a job can have (a negative or huge charge from a hostile server, or text
# in a hand-edited row, would otherwise lower or break the sum).
_BUDGET_CREDITS = f"""CASE
    WHEN typeof(charged_credits) IN ('integer', 'real')
         AND charged_credits BETWEEN 0 AND {MAX_JOB_CREDITS:.0f} THEN charged_credits
    WHEN typeof(estimated_credits) IN ('integer', 'real')
         AND estimated_credits BETWEEN 0 AND {MAX_JOB_CREDITS:.0f} THEN estimated_credits
    ELSE 0 END"""


def spent_in_window(db: sqlite3.Connection, base_url: str, profile: str, since: datetime) -> float:
    """Credits of the jobs of `base_url` and `profile` submitted at `since` or
    later, as budgets count them: what each was charged (the API's
    `creditCost`), else its estimate.

    Unlike `Spend.credits`, failed jobs count too: the API may refund them,
    which the CLI cannot know, and a budget errs on the side of not spending.
    A job with neither (one adopted from a webhook) counts nothing.
    """
    row = db.execute(
        f"SELECT SUM({_BUDGET_CREDITS}) FROM jobs"
        " WHERE base_url = ? AND profile = ? AND submitted_at >= ?",
        (base_url, profile, stamp(since)),
    ).fetchone()
    return float(row[0] or 0.0)
