"""The local job ledger: every job this CLI submitted, so no paid output is lost.

SQLite (standard library) in WAL mode in `platformdirs.user_data_dir("pixeldojo")`.
Each write is one short `BEGIN IMMEDIATE` transaction, so several CLI processes
can record jobs at once. Jobs are keyed by (base URL, job id): the same id on
another API is another job.

A ledger that another process holds (a long write, a backup tool, a second
`pixeldojo`) is waited for, boundedly (`locking.py`); then, or when the file or
its folder is read-only, `LedgerError` (exit 10, never 1). A write that could
not be done can be kept in `pending-records.jsonl` beside the ledger
(`Ledger.apply_or_defer`, `defer`: `sidefile.py`) and is replayed into it the
next time a `Ledger` is opened.

`run --batch` claims each line here before submitting it (`claim_line`,
`claims.py`), so two processes never submit the same line and a rerun never
pays for it twice.

It also keeps, per job, when it completed and how long it took: the history the
poll schedule learns from (`durations`). That history never leaves the machine.

The modules, one concern each: `schema` (tables, upgrades), `records` (every
write as a record), `apply` (a record into the tables), `sidefile` (records
kept for later), `claims` (`--batch` lines), `locking` (bounded waits),
`queries` (`LedgerJob`, `JobQuery`), `spending` (what was spent: `Spend`),
`balances` (the credits balance as last reported), `ledger` (the `Ledger` itself) and
`values` (how times and JSON are stored).
"""

from __future__ import annotations

from pixeldojo_cli.store.ledger.balances import Balance, balance_record
from pixeldojo_cli.store.ledger.claims import STALE_CLAIM, ClaimResult
from pixeldojo_cli.store.ledger.ledger import MAX_HISTORY, Ledger
from pixeldojo_cli.store.ledger.locking import DEFAULT_BUSY_TIMEOUT, DEFAULT_LOCK_WAIT
from pixeldojo_cli.store.ledger.queries import JobQuery, LedgerJob, recent_job_ids
from pixeldojo_cli.store.ledger.records import (
    JobGroup,
    LedgerFile,
    LedgerRecord,
    files_record,
    group_record,
    lost_record,
    refused_record,
    status_record,
    submission_record,
    upload_record,
)
from pixeldojo_cli.store.ledger.schema import SCHEMA_VERSION
from pixeldojo_cli.store.ledger.sidefile import (
    PENDING_RECORDS,
    defer,
    kept_unsaved,
    pending_records_path,
)
from pixeldojo_cli.store.ledger.spending import Spend, SpentJob, default_seconds, grouped, total
from pixeldojo_cli.store.settings import ledger_path

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "DEFAULT_LOCK_WAIT",
    "MAX_HISTORY",
    "PENDING_RECORDS",
    "SCHEMA_VERSION",
    "STALE_CLAIM",
    "Balance",
    "ClaimResult",
    "JobGroup",
    "JobQuery",
    "Ledger",
    "LedgerFile",
    "LedgerJob",
    "LedgerRecord",
    "Spend",
    "SpentJob",
    "balance_record",
    "default_seconds",
    "defer",
    "files_record",
    "group_record",
    "grouped",
    "kept_unsaved",
    "ledger_path",
    "lost_record",
    "pending_records_path",
    "recent_job_ids",
    "refused_record",
    "status_record",
    "submission_record",
    "total",
    "upload_record",
]
