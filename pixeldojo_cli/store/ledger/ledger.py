"""The `Ledger`: open it, record, query; each write is its own transaction.

See the package's docstring for what the ledger is; this module holds the
connection and its life (setup, a damaged or read-only file), the writes as
records, the `--batch` line claims and the reads.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from pixeldojo_cli.api.results import Job
from pixeldojo_cli.core.errors import LedgerError
from pixeldojo_cli.core.ownfiles import ForeignFile
from pixeldojo_cli.core.ownfolders import private_folder
from pixeldojo_cli.store.ledger import balances, claims, reservations, schema, sidefile, spending
from pixeldojo_cli.store.ledger.apply import apply_record, apply_replayed
from pixeldojo_cli.store.ledger.balances import Balance
from pixeldojo_cli.store.ledger.claims import ClaimResult
from pixeldojo_cli.store.ledger.guard import claim_ledger, connect_ledger, opened_as_checked
from pixeldojo_cli.store.ledger.locking import (
    DEFAULT_BUSY_TIMEOUT,
    BoundedWait,
    is_read_only,
    ledger_error,
)
from pixeldojo_cli.store.ledger.queries import (
    JOB_COLUMNS,
    JobQuery,
    LedgerJob,
    job_from_row,
    outputs_named,
)
from pixeldojo_cli.store.ledger.records import (
    JobGroup,
    LedgerFile,
    LedgerRecord,
    files_record,
    lost_record,
    status_record,
    submission_record,
)
from pixeldojo_cli.store.ledger.spending import Spend, SpentJob
from pixeldojo_cli.store.ledger.values import now as _now
from pixeldojo_cli.store.ledger.values import number_or_none, stamp
from pixeldojo_cli.store.settings import ledger_path

# At most this many durations are read back for one model (the history is bounded).
MAX_HISTORY = 200

T = TypeVar("T")


class Ledger:
    """The job ledger. Open it, record, query; each write is its own transaction.

    `lock_wait` (default `DEFAULT_LOCK_WAIT`) bounds how long any call waits for
    another process's lock (then `LedgerError`); `busy_timeout` is how long SQLite
    waits inside one call. Once a wait has run out, later calls wait only
    `busy_timeout` until one succeeds again: a ledger held for minutes costs a
    command one full wait, not one per write.
    """

    def __init__(
        self,
        path: Path | None = None,
        *,
        lock_wait: float | None = None,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        replay: bool = True,
    ) -> None:
        self.path = path or ledger_path()
        self._wait = BoundedWait(self.path, lock_wait, busy_timeout)
        self.moved_aside: Path | None = None
        self.read_only = False
        try:  # the default folder is ours: 0700; a folder named by the caller is theirs
            private_folder(self.path.parent, tighten_existing=self.path == ledger_path())
        except OSError as exc:
            raise LedgerError(
                f"Cannot create the folder of the job ledger {self.path.parent}: "
                f"{exc.strerror or exc}."
            ) from exc
        self._db = self._connect_own_file()
        self._open()
        if replay and not self.read_only:
            with contextlib.suppress(LedgerError):
                self.replay_deferred()

    @property
    def lock_wait(self) -> float:
        """How long, in all, any call waits for another process's lock."""
        return self._wait.lock_wait

    @property
    def busy_timeout(self) -> float:
        """How long SQLite waits for a lock inside one call."""
        return self._wait.busy_timeout

    # --- the connection ------------------------------------------------------

    def _open(self) -> None:
        """Set the ledger up; a damaged one is moved aside, one that cannot be
        written is opened read-only."""
        try:
            self._wait.run(self._setup)
        except LedgerError as exc:
            cause = exc.__cause__
            if isinstance(cause, sqlite3.DatabaseError) and (
                "not a database" in str(cause) or "malformed" in str(cause)
            ):
                self._start_afresh()
            elif isinstance(cause, sqlite3.Error) and is_read_only(cause):
                self._open_read_only(exc)
            else:
                self._db.close()
                raise

    def _connect_own_file(self, mode: str = "rw") -> sqlite3.Connection:
        """Connect to the ledger once its files are checked (`guard.claim_ledger`):
        made 0600, never a link; and the file SQLite opened is the one checked."""
        try:
            fd = claim_ledger(self.path, create=mode == "rw")
        except ForeignFile as exc:  # its message says what to do
            raise LedgerError(exc.advice("The job ledger"), hint="") from exc
        except PermissionError as exc:
            raise LedgerError(
                f"The job ledger {self.path} cannot be read: {exc.strerror or exc}.",
                hint=f"Check the file's owner and permissions: ls -l '{self.path}'",
            ) from exc
        try:
            db = connect_ledger(
                self.path,
                mode,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                checked = opened_as_checked(db, self.path, fd)
            except sqlite3.Error:
                db.close()
                raise
            if not checked:
                db.close()
                raise LedgerError(self._changed())
            return db
        except sqlite3.Error as exc:
            if os.path.islink(self.path):  # swapped in after the check: SQLite made nothing
                raise LedgerError(self._changed()) from exc
            raise ledger_error(self.path, exc) from exc
        finally:
            if fd is not None:
                os.close(fd)

    def _changed(self) -> str:
        return (
            f"The job ledger {self.path} changed while it was opened (a link or another "
            "file was put at its name); nothing was written through it."
        )

    def _open_read_only(self, cause: LedgerError) -> None:
        """A ledger that cannot be written can still be read: `download --pending`
        then still finds the unsaved jobs. Every write raises `LedgerError`."""
        self._db.close()
        # `immutable`: a WAL ledger in a folder that cannot be written has no
        # shared-memory file to open; nobody can be writing it there either.
        for mode in ("ro", "ro&immutable=1"):
            try:
                self._db = self._connect_own_file(mode)
            except LedgerError:
                continue
            try:
                self._wait.run(lambda: self._db.execute("SELECT count(*) FROM jobs").fetchone())
            except LedgerError:
                self._db.close()
                continue
            self.read_only = True
            return
        raise cause

    def _start_afresh(self) -> None:
        """A damaged ledger is kept, renamed, for a person to look at; recording
        goes on in a new one rather than failing every command from now on."""
        self._db.close()
        aside = self.path.with_name(f"{self.path.name}.damaged-{int(time.time())}")
        try:
            os.replace(self.path, aside)
        except OSError as exc:
            raise LedgerError(
                f"The job ledger {self.path} is damaged and cannot be moved aside: "
                f"{exc.strerror or exc}."
            ) from exc
        for suffix in ("-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        self.moved_aside = aside
        self._db = self._connect_own_file()
        self._wait.run(self._setup)

    def _setup(self) -> None:
        """WAL mode and the tables. (SQLite answers "locked" at once, without
        waiting, when two processes switch a new ledger to WAL together:
        `BoundedWait.run` takes care of it.)"""
        schema.configure(self._db, self.busy_timeout)
        if not schema.is_current(self._db):
            with self._write() as db:
                schema.upgrade(db)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _transaction(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """`body` in one write transaction, retried while the ledger is locked."""
        if self.read_only:
            raise LedgerError(f"The job ledger {self.path} is read-only; nothing can be recorded.")

        def attempt() -> T:
            with self._write() as db:
                return body(db)

        return self._wait.run(attempt, write=True)

    def _read(self, body: Callable[[], T]) -> T:
        return self._wait.run(body)

    # --- writes --------------------------------------------------------------

    def apply(self, record: LedgerRecord) -> None:
        """Write one record (see `submission_record` and its siblings) now, or
        raise `LedgerError` after the bounded wait."""
        self._transaction(lambda db: apply_record(db, record, replaying=False))

    def apply_or_defer(self, record: LedgerRecord) -> bool:
        """Write the record now if the ledger takes it within the bounded wait,
        else keep it in the side file for later. True when written now. Raises
        `LedgerError` only when it can be neither written nor kept. Ctrl-C while
        waiting keeps the record in the side file too, then goes on as Ctrl-C."""
        try:
            self.apply(record)
        except LedgerError:
            sidefile.defer(record, self.path)
            return False
        except KeyboardInterrupt:  # Ctrl-C during the wait: keep the record all the same
            with contextlib.suppress(LedgerError):
                sidefile.defer(record, self.path)
            raise
        return True

    def replay_deferred(self) -> int:
        """Write the records kept in `pending-records.jsonl` (all in one
        transaction), then empty it. Returns how many were written; 0 when there
        were none or the ledger is still unavailable (they stay for next time).
        A record older than what the ledger already holds never overwrites it."""
        if self.read_only:
            return 0
        return sidefile.replay(
            self.path,
            lambda records: self._transaction(lambda db: apply_replayed(db, records)),
        )

    def record_submission(
        self,
        job: Job,
        *,
        base_url: str,
        profile: str,
        model: str,
        inputs: dict[str, Any],
        estimated_credits: float | None,
        output_dir: Path,
        input_hash: str | None = None,
    ) -> None:
        """Record a job the moment the API accepted it, before any waiting.

        `input_hash` identifies the request (`batch` finds it again on a rerun);
        a `--batch` line claimed with that hash gets the job id in the same
        transaction.
        """
        self.apply(
            submission_record(
                job,
                base_url=base_url,
                profile=profile,
                model=model,
                inputs=inputs,
                estimated_credits=estimated_credits,
                output_dir=output_dir,
                input_hash=input_hash,
            )
        )

    def update_job(self, base_url: str, job: Job, *, now: datetime | None = None) -> None:
        """What the API last said about a job we know (unknown jobs are ignored).

        The first time it is seen finished, its completion time and duration are
        set, once (see `durations`). `now` is when the answer arrived.
        """
        record = status_record(base_url, job)
        if now is not None:
            record["at"] = now.isoformat()
        self.apply(record)

    def record_files(self, base_url: str, job_id: str, files: Sequence[LedgerFile]) -> None:
        """Each downloaded file's path, size, time and (with --checksum) SHA-256."""
        self.apply(files_record(base_url, job_id, files))

    def mark_lost(self, base_url: str, job_id: str) -> None:
        """The outputs expired before they were saved: stop offering to save them."""
        self.apply(lost_record(base_url, job_id))

    # --- --batch lines ----------------------------------------------------------

    def claim_line(self, input_hash: str, *, base_url: str, profile: str) -> ClaimResult:
        """Claim one `--batch` line before submitting it, atomically (one
        `BEGIN IMMEDIATE`): see `ClaimResult` for the three answers. A line whose
        job failed or expired unsaved is free again (worth another try).
        Raises `LedgerError` when the claim cannot be recorded: then do not submit."""
        return self._transaction(lambda db: claims.claim(db, input_hash, base_url, profile))

    def attach_job(self, input_hash: str, job: Job | str, *, base_url: str, profile: str) -> None:
        """The claimed line's POST answered: its job id, so a rerun follows the job
        instead of submitting again. (`record_submission` with `input_hash` does
        this in the same transaction.)"""
        job_id = job if isinstance(job, str) else job.id
        self._transaction(lambda db: claims.attach(db, base_url, profile, input_hash, job_id))

    def mark_uncertain(self, input_hash: str, *, base_url: str, profile: str) -> None:
        """The claimed line's POST may have reached the server but no job id came
        back (a timeout, a reset, a 5xx): later claims answer `unknown`."""
        self._transaction(lambda db: claims.mark_uncertain(db, base_url, profile, input_hash))

    def release_line(self, input_hash: str, *, base_url: str, profile: str) -> None:
        """Give a claimed line up: its POST certainly did not reach the server (or
        the user has checked that it did not). A line with a job is kept."""
        self._transaction(lambda db: claims.release(db, base_url, profile, input_hash))

    # --- budgets ---------------------------------------------------------------

    def reserve(
        self,
        credits: float,
        windows: Sequence[tuple[datetime, float]],
        *,
        base_url: str,
        profile: str,
    ) -> reservations.Reservation:
        """Check and reserve a job's `credits` before its POST, atomically (one
        `BEGIN IMMEDIATE`): refused (`id` None) when, in one of the `windows`
        (start, budget), the spent plus `credits` would pass the budget.
        `LedgerError` when it cannot be done: then do not submit."""
        return self._transaction(
            lambda db: reservations.reserve(db, base_url, profile, credits, windows)
        )

    def moved_aside_since(self, since: datetime) -> Path | None:
        """A damaged ledger moved aside at `since` or later (see `reservations`)."""
        return reservations.moved_aside_since(self.path, since)

    def mark_sending(self, reservation: int) -> bool:
        """Right before the POST (see `reservations.mark_sending`); False: the
        reservation is gone, do not send."""
        return self._transaction(lambda db: reservations.mark_sending(db, reservation))

    def settle_reservation(
        self, reservation: int, job_id: str | None, *, uncertain: bool = False
    ) -> None:
        """After the POST: the job's id, or `uncertain` (it may have been taken),
        or neither (it certainly was not: released)."""
        self._transaction(
            lambda db: reservations.settle(db, reservation, job_id, uncertain=uncertain)
        )

    def spent_since(self, since: datetime, *, base_url: str, profile: str) -> float:
        """What a budget counts since `since`: jobs' credits and reservations."""
        return self._read(lambda: reservations.spent_since(self._db, base_url, profile, since))

    # --- reads ---------------------------------------------------------------

    def _select(self, query: str, args: Sequence[Any]) -> list[LedgerJob]:
        """Jobs for a query, read in one go (retried while the ledger is locked)."""

        def read() -> list[LedgerJob]:
            rows = self._db.execute(query, args).fetchall()
            jobs = (job_from_row(self._db, row) for row in rows)
            return [job for job in jobs if job is not None]

        return self._read(read)

    def get(self, base_url: str, job_id: str) -> LedgerJob | None:
        """The job `job_id` of the API `base_url`, if the ledger has it."""
        found = self._select(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE base_url = ? AND id = ?", (base_url, job_id)
        )
        return found[0] if found else None

    def jobs(
        self, *, base_url: str | None = None, profile: str | None = None, limit: int | None = None
    ) -> list[LedgerJob]:
        """Newest first; optionally only one API and profile."""
        return self.find(JobQuery(base_url=base_url, profile=profile, limit=limit))

    def find(self, query: JobQuery) -> list[LedgerJob]:
        """The jobs `query` selects, newest first."""
        where, args = query.where()
        sql = f"SELECT {JOB_COLUMNS} FROM jobs WHERE {where} ORDER BY submitted_at DESC, rowid DESC"
        if query.limit:
            sql += " LIMIT ?"
            args.append(query.limit)
        return self._select(sql, args)

    def durations(self, base_url: str, model: str, limit: int = 20) -> list[float]:
        """Seconds each recent completed job of `model` on this API took, most
        recent first, at most `limit` (and never more than `MAX_HISTORY`).

        What the poll schedule learns from. Failed jobs, and jobs whose
        completion was only seen long after the fact, have no duration.
        """
        limit = max(0, min(int(limit), MAX_HISTORY))
        rows = self._read(
            lambda: self._db.execute(
                "SELECT duration FROM jobs WHERE base_url = ? AND model = ?"
                " AND status = 'completed' AND duration IS NOT NULL"
                " ORDER BY completed_at DESC, rowid DESC LIMIT ?",
                (base_url, model, limit),
            ).fetchall()
        )
        seconds = (number_or_none(duration, least=0) for (duration,) in rows)
        return [value for value in seconds if value is not None]

    def find_by_input(self, *, base_url: str, profile: str, input_hash: str) -> LedgerJob | None:
        """The newest job submitted for exactly this request, if any."""
        found = self._select(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE base_url = ? AND profile = ?"
            " AND input_hash = ? ORDER BY submitted_at DESC, rowid DESC LIMIT 1",
            (base_url, profile, input_hash),
        )
        return found[0] if found else None

    def outputs_named(self, names: Sequence[str]) -> list[tuple[str, str]]:
        """(job id, path) of the files recorded, of any API and profile, whose path
        ends in one of `names` (ASCII case ignored)."""
        return self._read(lambda: outputs_named(self._db, names))

    def groups_of(self, base_url: str, job_ids: Sequence[str]) -> dict[str, list[JobGroup]]:
        """The sweeps and comparisons each of `job_ids` belongs to (jobs in none
        are left out), oldest group first."""
        import functools
        import json

        wanted = list(dict.fromkeys(job_ids))
        found: dict[str, list[JobGroup]] = {}

        def read(chunk: list[str]) -> list[Any]:
            marks = ", ".join("?" * len(chunk))
            return self._db.execute(
                "SELECT job_id, group_id, kind, varied FROM job_groups"
                f" WHERE base_url = ? AND job_id IN ({marks}) ORDER BY recorded_at, rowid",
                (base_url, *chunk),
            ).fetchall()

        for start in range(0, len(wanted), 500):  # (SQLite's bound on parameters)
            rows = self._read(functools.partial(read, wanted[start : start + 500]))
            for job_id, group_id, kind, varied in rows:
                found.setdefault(job_id, []).append(JobGroup(group_id, kind, json.loads(varied)))
        return found

    def upload_url(self, uploader: str, sha256: str, ttl: float) -> str | None:
        """The URL `uploader` gave for the file `sha256` less than `ttl` seconds
        ago, if any: the same file is not uploaded again while it is good."""
        since = stamp(_now() - timedelta(seconds=ttl))
        row = self._read(
            lambda: self._db.execute(
                "SELECT url FROM uploads WHERE uploader = ? AND sha256 = ? AND uploaded_at > ?",
                (uploader, sha256, since),
            ).fetchone()
        )
        return str(row[0]) if row else None

    def unsaved(self, *, base_url: str, profile: str) -> list[LedgerJob]:
        """Jobs whose outputs were never downloaded, oldest first."""
        return [
            j for j in reversed(self.jobs(base_url=base_url, profile=profile)) if j.needs_saving()
        ]

    def refused(
        self, *, base_url: str, profile: str, now: datetime | None = None
    ) -> list[LedgerJob]:
        """Unsaved jobs whose outputs were refused the last time (skipped by the
        sweep) and have not expired yet, oldest first."""
        now = now or _now()
        return [
            j
            for j in reversed(self.jobs(base_url=base_url, profile=profile))
            if j.refused and not j.downloaded and not j.failed and j.deadline() > now
        ]

    def expiring_soon(
        self, *, base_url: str, profile: str, within: timedelta, now: datetime | None = None
    ) -> list[LedgerJob]:
        """Unsaved jobs whose outputs go within `within` (and have not gone yet)."""
        now = now or _now()
        return [
            job
            for job in self.unsaved(base_url=base_url, profile=profile)
            if now < job.deadline() <= now + within
        ]

    # --- what was spent, and the balance -----------------------------------------

    def spending(self, query: JobQuery) -> list[SpentJob]:
        """Each job `query` selects (by API, profile, model, `since`, `until`),
        oldest first, with what it cost: `pixeldojo usage` groups them."""
        return self._read(lambda: spending.spent_jobs(self._db, query))

    def spent(
        self,
        base_url: str,
        profile: str | None,
        since: datetime | None,
        until: datetime | None,
        *,
        model: str | None = None,
    ) -> Spend:
        """What the ledger says was spent on the API `base_url` by `profile`
        (None: every profile) on jobs submitted in [`since`, `until`) (None: no
        bound), optionally of one `model` (a glob with `*`). `Spend.credits` is
        charged plus estimated; failed jobs are apart (`failed_credits`)."""
        query = JobQuery(base_url=base_url, profile=profile, model=model, since=since, until=until)
        return spending.total(self.spending(query))

    def balance(self, base_url: str, profile: str) -> Balance | None:
        """The credits balance the API last reported on a submit answer for this
        API and profile, or None when none was ever seen."""
        return self._read(lambda: balances.last_balance(self._db, base_url, profile))
