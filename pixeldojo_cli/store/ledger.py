"""The local job ledger: every job this CLI submitted, so no paid output is lost.

SQLite (standard library) in WAL mode in `platformdirs.user_data_dir("pixeldojo")`.
Each write is one short `BEGIN IMMEDIATE` transaction, so several CLI processes
can record jobs at once. Jobs are keyed by (base URL, job id): the same id on
another API is another job.

A ledger that another process holds (a long write, a backup tool, a second
`pixeldojo`) is waited for, boundedly: SQLite waits `busy_timeout` inside each
call (short, so Ctrl-C is seen within it) and the call is retried until
`lock_wait` has passed; then, or when the file or its folder is read-only,
`LedgerError` (exit 10, never 1). A write that could not be done can be kept
in `pending-records.jsonl` beside the ledger (`Ledger.apply_or_defer`, `defer`)
and is replayed into it the next time a `Ledger` is opened.

`run --batch` claims each line here before submitting it (`claim_line`), so
two processes never submit the same line and a rerun never pays for it twice.

It also keeps, per job, when it completed and how long it took: the history the
poll schedule learns from (`durations`). That history never leaves the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

from pixeldojo_cli.api.results import (
    DEFAULT_OUTPUT_LIFETIME,
    FAILED_STATUSES,
    TERMINAL_STATUSES,
    Job,
    parse_job,
)
from pixeldojo_cli.core.errors import LedgerError, PixelDojoError
from pixeldojo_cli.core.untrusted import loads, open_regular
from pixeldojo_cli.store.settings import ledger_path as ledger_path  # re-exported

SCHEMA_VERSION = 5

# SQLite waits this long for a lock inside one call; Python sees Ctrl-C only
# between calls, so it is kept short and the wait is made of many calls.
DEFAULT_BUSY_TIMEOUT = 0.5
# The whole bounded wait for a lock, across those calls.
DEFAULT_LOCK_WAIT = 10.0
# Writes that could not be done, kept beside the ledger until they can.
PENDING_RECORDS = "pending-records.jsonl"
# What a damaged submission time reads as.
_EPOCH = datetime.fromtimestamp(0, UTC)
_Column = TypeVar("_Column", dict, list)  # type: ignore[type-arg]
# A --batch line claimed on another machine (a shared home folder) this long ago
# by a process that never recorded a job is taken to have died.
STALE_CLAIM = timedelta(hours=1)

T = TypeVar("T")

_FILES_TABLE = """CREATE TABLE IF NOT EXISTS files (
    base_url TEXT NOT NULL,
    job_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT,
    url TEXT NOT NULL,
    downloaded_at TEXT NOT NULL,
    mtime_ns INTEGER,
    PRIMARY KEY (base_url, job_id, n)
)"""

# v4: the intent of `run --batch` for each line, recorded before it is submitted.
# state: `claimed` (the POST may be on its way), `submitted` (job_id known),
# `uncertain` (the POST may have reached the server; nobody knows its job).
_BATCH_LINES_TABLE = """CREATE TABLE IF NOT EXISTS batch_lines (
    base_url TEXT NOT NULL,
    profile TEXT NOT NULL,
    input_hash TEXT NOT NULL,
    state TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    claimed_at TEXT NOT NULL,
    job_id TEXT,
    PRIMARY KEY (base_url, profile, input_hash)
)"""

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS jobs (
    base_url TEXT NOT NULL,
    id TEXT NOT NULL,
    profile TEXT NOT NULL,
    model TEXT NOT NULL,
    inputs TEXT NOT NULL,
    estimated_credits REAL,
    charged_credits REAL,
    submitted_at TEXT NOT NULL,
    status TEXT NOT NULL,
    expires_at TEXT,
    output_urls TEXT NOT NULL DEFAULT '[]',
    output_dir TEXT NOT NULL,
    lost INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL,
    input_hash TEXT,
    completed_at TEXT,
    duration REAL,
    PRIMARY KEY (base_url, id)
);
{_FILES_TABLE};
{_BATCH_LINES_TABLE};
CREATE INDEX IF NOT EXISTS jobs_by_time ON jobs (submitted_at);
CREATE INDEX IF NOT EXISTS jobs_by_input ON jobs (base_url, profile, input_hash);
CREATE INDEX IF NOT EXISTS jobs_by_model ON jobs (base_url, model, completed_at);
"""

# Upgrades from each older schema version (user_version) to the next.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: ("ALTER TABLE jobs ADD COLUMN input_hash TEXT",),
    # v3: SHA-256 became optional (`--checksum`) and the file's time is kept.
    2: (
        "ALTER TABLE files RENAME TO files_v2",
        _FILES_TABLE,
        "INSERT INTO files (base_url, job_id, n, path, size, sha256, url, downloaded_at)"
        " SELECT base_url, job_id, n, path, size, sha256, url, downloaded_at FROM files_v2",
        "DROP TABLE files_v2",
    ),
    # v4: when each job completed, and its duration (the poll schedule's history).
    3: (
        "ALTER TABLE jobs ADD COLUMN completed_at TEXT",
        "ALTER TABLE jobs ADD COLUMN duration REAL",
    ),
    # v5: --batch records each line's intent before submitting it (a new table only:
    # independent of any other migration, so it may be renumbered freely).
    4: (_BATCH_LINES_TABLE,),
}

# At most this many durations are read back for one model (the history is bounded).
MAX_HISTORY = 200
# A duration seen only by polling is kept when the last look that found the job
# still running was at most this far (a share of its time, or 1 s) before the
# look that found it done; it is the middle of that gap. Anything vaguer (a job
# picked up hours later by `download --pending`) would teach the schedule wrong.
_SEEN_GAP_SHARE = 0.5
_SEEN_GAP_MIN = 1.0


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat(timespec="seconds")


def _stamp(value: datetime) -> str:
    """A time to the microsecond: durations of one-second jobs are made of these."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _parse_time(value: str | None) -> datetime | None:
    """A stored time; None when there is none or it is damaged (a hand-edited row)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _json_column(text: Any, kind: type[_Column]) -> _Column:
    """A stored JSON column of the type `kind`; empty when it is damaged (a
    hand-edited row must not stop `jobs list` or a batch's resume)."""
    if isinstance(text, str | bytes):
        try:
            value = loads(text)
        except ValueError:
            return kind()
        if isinstance(value, kind):
            return value
    return kind()


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


@dataclass(frozen=True)
class LedgerFile:
    n: int
    path: str
    size: int
    sha256: str | None
    url: str
    mtime_ns: int | None = None


@dataclass(frozen=True)
class LedgerJob:
    """One job as the ledger knows it."""

    base_url: str
    id: str
    profile: str
    model: str
    inputs: dict[str, Any]
    estimated_credits: float | None
    charged_credits: float | None
    submitted_at: datetime
    status: str
    expires_at: datetime | None
    output_urls: list[str]
    output_dir: str
    lost: bool
    files: tuple[LedgerFile, ...] = ()
    completed_at: datetime | None = None
    duration: float | None = None

    @property
    def downloaded(self) -> bool:
        """Every known output is on disk (as far as the ledger knows)."""
        return bool(self.files) and len(self.files) >= max(1, len(self.output_urls))

    def deadline(self) -> datetime:
        """When the outputs go: `expiresAt`, else at the earliest 24 h after submission."""
        return self.expires_at or self.submitted_at + DEFAULT_OUTPUT_LIFETIME

    @property
    def failed(self) -> bool:
        """The job failed (or errored, or was cancelled) on the server."""
        return self.status in FAILED_STATUSES

    def needs_saving(self) -> bool:
        """Paid for, not failed, not yet on disk and not given up on."""
        return not self.failed and not self.downloaded and not self.lost


@dataclass(frozen=True)
class JobQuery:
    """Which ledger jobs to list, newest first: each field given narrows the list.

    `model` matches exactly, or as a glob with `*`; `status` ignores case;
    `since` keeps jobs submitted at or after it; `unsaved` keeps jobs whose
    outputs were never all downloaded (not failed, not given up on); `search`
    finds text in any string input (the prompt first of all), ignoring ASCII case.
    """

    base_url: str | None = None
    profile: str | None = None
    model: str | None = None
    status: str | None = None
    since: datetime | None = None
    unsaved: bool = False
    search: str | None = None
    limit: int | None = None

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition on `jobs` and its arguments."""
        clauses: list[str] = []
        args: list[Any] = []
        for column, value in (("base_url", self.base_url), ("profile", self.profile)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if self.model:
            clauses.append("model GLOB ?" if "*" in self.model else "model = ?")
            args.append(self.model)
        if self.status:
            clauses.append("lower(status) = lower(?)")
            args.append(self.status)
        if self.since is not None:
            clauses.append("submitted_at >= ?")
            args.append(_iso(self.since))
        if self.unsaved:
            clauses.append(
                "status != 'failed' AND lost = 0 AND (SELECT COUNT(*) FROM files"
                " WHERE files.base_url = jobs.base_url AND files.job_id = jobs.id)"
                " < MAX(1, json_array_length(output_urls))"
            )
        if self.search:
            clauses.append(
                "EXISTS (SELECT 1 FROM json_tree(jobs.inputs) AS t"
                " WHERE t.type = 'text' AND t.value LIKE ? ESCAPE '\\')"
            )
            escaped = self.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            args.append(f"%{escaped}%")
        return " AND ".join(clauses) or "1 = 1", args


# --- records: every write, as JSON that can wait in the side file ----------------

# One write to the ledger: {"op": ..., "at": ISO time, ...fields}. Built by the
# functions below, applied by `Ledger.apply`, or kept by `defer` until it can be.
LedgerRecord = dict[str, Any]


def submission_record(
    job: Job,
    *,
    base_url: str,
    profile: str,
    model: str,
    inputs: Mapping[str, Any],
    estimated_credits: float | None,
    output_dir: Path,
    input_hash: str | None = None,
) -> LedgerRecord:
    """A job the API just accepted (`Ledger.record_submission`)."""
    return {
        "op": "submission",
        "at": _now().isoformat(),
        "base_url": base_url,
        "profile": profile,
        "model": model,
        "inputs": json.loads(json.dumps(dict(inputs), default=str)),
        "estimated_credits": estimated_credits,
        "output_dir": str(output_dir.resolve()),
        "input_hash": input_hash,
        "job": job.raw,
    }


def status_record(base_url: str, job: Job) -> LedgerRecord:
    """What the API last said about a job (`Ledger.update_job`)."""
    return {"op": "status", "at": _now().isoformat(), "base_url": base_url, "job": job.raw}


def files_record(base_url: str, job_id: str, files: Sequence[LedgerFile]) -> LedgerRecord:
    """Outputs now on disk (`Ledger.record_files`)."""
    return {
        "op": "files",
        "at": _now().isoformat(),
        "base_url": base_url,
        "job_id": job_id,
        "files": [
            {
                "n": f.n,
                "path": f.path,
                "size": f.size,
                "sha256": f.sha256,
                "url": f.url,
                "mtime_ns": f.mtime_ns,
            }
            for f in files
        ],
    }


def lost_record(base_url: str, job_id: str) -> LedgerRecord:
    """Outputs that expired unsaved (`Ledger.mark_lost`)."""
    return {"op": "lost", "at": _now().isoformat(), "base_url": base_url, "job_id": job_id}


def _record_job(record: Mapping[str, Any]) -> Job:
    return parse_job(record["job"])


def _at(record: Mapping[str, Any]) -> datetime:
    """When a record was made (records from the side file keep their own time)."""
    try:
        at = datetime.fromisoformat(str(record["at"]))
    except (KeyError, ValueError):
        return _now()
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _parse_records(data: bytes) -> list[LedgerRecord]:
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


def pending_records_path(ledger: Path | None = None) -> Path:
    """`pending-records.jsonl` beside the ledger."""
    return (ledger or ledger_path()).with_name(PENDING_RECORDS)


@contextmanager
def _locked(handle: Any, wait: float) -> Iterator[bool]:
    """An exclusive lock on the side file (POSIX), waited for at most `wait` s.
    Yields whether it was had; appends are whole lines either way (O_APPEND)."""
    try:
        import fcntl
    except ImportError:  # Windows: appends stay whole; replays may repeat a record
        yield True
        return
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            if time.monotonic() >= deadline:
                yield False
                return
            time.sleep(0.02)
    try:
        yield True
    finally:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def defer(record: LedgerRecord, ledger: Path | None = None) -> Path:
    """Keep a write the ledger could not take in `pending-records.jsonl` beside it,
    durably (fsync), to be replayed when a `Ledger` is next opened. Works when the
    ledger itself cannot even be opened. Raises `LedgerError` when the side file
    cannot be written either (the caller then names the job ids)."""
    path = pending_records_path(ledger)
    line = (json.dumps(record, default=str, ensure_ascii=True) + "\n").encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        with os.fdopen(fd, "ab") as handle, _locked(handle, 2.0):
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise LedgerError(
            f"Cannot keep the record for later in {path}: {exc.strerror or exc}."
        ) from exc
    return path


# --- the ledger ---------------------------------------------------------------


def _is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _is_read_only(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "readonly" in text or "read-only" in text or "unable to open" in text


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


def _host() -> str:
    return socket.gethostname() or "localhost"


def _process_started_at(pid: int) -> datetime | None:
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


def _holder_alive(pid: int, host: str, claimed_at: datetime) -> bool:
    """Whether the process that claimed a line may still be submitting it."""
    if host != _host():  # cannot be asked: alive until the claim is stale
        return _now() - claimed_at < STALE_CLAIM
    if sys.platform == "win32":  # os.kill(pid, 0) would end the process there
        return _now() - claimed_at < STALE_CLAIM
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but another user's
        pass
    started = _process_started_at(pid)
    # A process that started after the claim only has the dead claimer's pid.
    return started is None or started <= claimed_at + timedelta(seconds=2)


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
        self.lock_wait = DEFAULT_LOCK_WAIT if lock_wait is None else lock_wait
        self._held_elsewhere = False  # the last wait ran out: wait briefly until one succeeds
        self.busy_timeout = busy_timeout
        self.moved_aside: Path | None = None
        self.read_only = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerError(
                f"Cannot create the folder of the job ledger {self.path.parent}: "
                f"{exc.strerror or exc}."
            ) from exc
        self._db = self._connect()
        try:
            self._retrying(self._setup)
        except LedgerError as exc:
            cause = exc.__cause__
            if isinstance(cause, sqlite3.DatabaseError) and (
                "not a database" in str(cause) or "malformed" in str(cause)
            ):
                self._start_afresh()
            elif isinstance(cause, sqlite3.Error) and _is_read_only(cause):
                self._open_read_only(exc)
            else:
                self._db.close()
                raise
        if replay and not self.read_only:
            with contextlib.suppress(LedgerError):
                self.replay_deferred()

    def _connect(self, uri: str | None = None) -> sqlite3.Connection:
        try:
            return sqlite3.connect(
                uri or self.path,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
                uri=uri is not None,
            )
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _error(self, exc: sqlite3.Error, waited: float | None = None) -> LedgerError:
        if waited is not None:
            return LedgerError(
                f"The job ledger {self.path} is locked by another process; "
                f"gave up after waiting {waited:.0f} s."
            )
        if _is_read_only(exc):
            return LedgerError(f"The job ledger {self.path} cannot be written: {exc}.")
        return LedgerError(f"The job ledger {self.path} cannot be used: {exc}.")

    def _retrying(self, action: Callable[[], T], *, write: bool = False) -> T:
        """Run `action`, retrying while another process holds a lock, for at most
        `lock_wait` seconds in all; any SQLite failure becomes a `LedgerError`."""
        started = time.monotonic()
        brief = write and self._held_elsewhere
        limit = min(self.lock_wait, self.busy_timeout) if brief else self.lock_wait
        pause = 0.01
        while True:
            try:
                result = action()
            except sqlite3.Error as exc:
                waited = time.monotonic() - started
                if not _is_busy(exc):
                    raise self._error(exc) from exc
                if waited >= limit:
                    self._held_elsewhere = self._held_elsewhere or write
                    raise self._error(exc, waited) from exc
                # Short sleeps: Ctrl-C is taken between them.
                time.sleep(min(pause, max(0.0, limit - waited)))
                pause = min(pause * 2, 0.2)
            else:
                if write:  # (a read says nothing: WAL readers never wait for a writer)
                    self._held_elsewhere = False
                return result

    def _open_read_only(self, cause: LedgerError) -> None:
        """A ledger that cannot be written can still be read: `download --pending`
        then still finds the unsaved jobs. Every write raises `LedgerError`."""
        self._db.close()
        # `immutable`: a WAL ledger in a folder that cannot be written has no
        # shared-memory file to open; nobody can be writing it there either.
        for mode in ("mode=ro", "mode=ro&immutable=1"):
            try:
                self._db = self._connect(f"{self.path.resolve().as_uri()}?{mode}")
                self._retrying(lambda: self._db.execute("SELECT count(*) FROM jobs").fetchone())
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
        self._db = self._connect()
        self._retrying(self._setup)

    def _setup(self) -> None:
        """WAL mode and the tables. (SQLite answers "locked" at once, without
        waiting, when two processes switch a new database to WAL together:
        `_retrying` takes care of it.)"""
        self._db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        if self._db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            with self._write() as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                has_tables = db.execute(
                    "SELECT 1 FROM sqlite_master WHERE name = 'jobs'"
                ).fetchone()
                while has_tables and 0 < version < SCHEMA_VERSION:
                    for step in _MIGRATIONS[version]:
                        db.execute(step)
                    version += 1
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

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

        return self._retrying(attempt, write=True)

    def _read(self, body: Callable[[], T]) -> T:
        return self._retrying(body)

    # --- writes --------------------------------------------------------------

    def apply(self, record: LedgerRecord) -> None:
        """Write one record (see `submission_record` and its siblings) now, or
        raise `LedgerError` after the bounded wait."""
        self._transaction(lambda db: self._apply_in(db, record, replaying=False))

    def apply_or_defer(self, record: LedgerRecord) -> bool:
        """Write the record now if the ledger takes it within the bounded wait,
        else keep it in the side file for later. True when written now. Raises
        `LedgerError` only when it can be neither written nor kept. Ctrl-C while
        waiting keeps the record in the side file too, then goes on as Ctrl-C."""
        try:
            self.apply(record)
        except LedgerError:
            defer(record, self.path)
            return False
        except KeyboardInterrupt:  # Ctrl-C during the wait: keep the record all the same
            with contextlib.suppress(LedgerError):
                defer(record, self.path)
            raise
        return True

    def replay_deferred(self) -> int:
        """Write the records kept in `pending-records.jsonl` (all in one
        transaction), then empty it. Returns how many were written; 0 when there
        were none or the ledger is still unavailable (they stay for next time).
        A record older than what the ledger already holds never overwrites it."""
        spill = pending_records_path(self.path)
        if self.read_only or not spill.exists():
            return 0
        try:
            fd = open_regular(spill, os.O_RDWR)
            with os.fdopen(fd, "r+b") as handle, _locked(handle, 1.0) as have_lock:
                if not have_lock:
                    return 0
                records = _parse_records(handle.read())
                if records:
                    self._transaction(lambda db: self._apply_all(db, records))
                handle.seek(0)
                handle.truncate()
                handle.flush()
                os.fsync(handle.fileno())
        except OSError:
            return 0
        # (Emptied, never removed: a process waiting to append holds it open.)
        return len(records)

    def _apply_all(self, db: sqlite3.Connection, records: Sequence[LedgerRecord]) -> None:
        for record in records:
            try:
                self._apply_in(db, record, replaying=True)
            except (
                KeyError,
                TypeError,
                ValueError,
                AttributeError,
                OverflowError,  # 1e999, or an integer SQLite cannot hold
                sqlite3.InterfaceError,  # a value of a type SQLite cannot bind
                sqlite3.IntegrityError,
                PixelDojoError,
            ):
                continue  # a record this version cannot read is dropped, not retried for ever

    def _apply_in(
        self, db: sqlite3.Connection, record: Mapping[str, Any], *, replaying: bool
    ) -> None:
        op = record.get("op")
        if op == "submission":
            self._apply_submission(db, record, replaying=replaying)
        elif op == "status":
            self._apply_status(db, record, replaying=replaying)
        elif op == "files":
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
                        _iso(_at(record)),
                        f.get("mtime_ns"),
                    )
                    for f in record["files"]
                ],
            )
        elif op == "lost":
            db.execute(
                "UPDATE jobs SET lost = 1, updated_at = ? WHERE base_url = ? AND id = ?",
                (_stamp(_at(record)), record["base_url"], record["job_id"]),
            )
        elif op == "attach":
            self._attach_in(db, record["base_url"], record["profile"], record["input_hash"],
                            record["job_id"])  # fmt: skip
        else:
            raise ValueError(f"unknown ledger record {op!r}")

    def _apply_status(
        self, db: sqlite3.Connection, record: Mapping[str, Any], *, replaying: bool
    ) -> None:
        """What the API said about a job we know (unknown jobs are ignored). The
        first time it is seen finished, its completion time and duration are set,
        once (see `durations`). A replayed record older than what the ledger
        learnt since changes nothing."""
        job, now, base_url = _record_job(record), _at(record), record["base_url"]
        row = db.execute(
            "SELECT status, submitted_at, updated_at, completed_at FROM jobs"
            " WHERE base_url = ? AND id = ?",
            (base_url, job.id),
        ).fetchone()
        if row is None:
            return
        status, submitted, updated, completed = row
        last_seen = _parse_time(updated)
        if replaying and last_seen is not None and last_seen > now:
            return
        finished, duration = None, None
        if job.is_terminal and completed is None:
            finished, duration = _completion(
                job,
                submitted=datetime.fromisoformat(submitted),
                last_seen=last_seen,
                was_running=status not in TERMINAL_STATUSES,
                now=now,
            )
        db.execute(
            "UPDATE jobs SET status = ?, expires_at = COALESCE(?, expires_at),"
            " output_urls = CASE WHEN ? = '[]' THEN output_urls ELSE ? END,"
            " charged_credits = COALESCE(?, charged_credits), updated_at = ?,"
            " completed_at = COALESCE(completed_at, ?), duration = COALESCE(duration, ?)"
            " WHERE base_url = ? AND id = ?",
            (
                job.status,
                _iso(job.output_expiry()),
                json.dumps(job.output_urls),
                json.dumps(job.output_urls),
                job.credit_cost,
                _stamp(now),
                None if finished is None else _stamp(finished),
                None if finished is None or job.status != "completed" else duration,
                base_url,
                job.id,
            ),
        )

    def _apply_submission(
        self, db: sqlite3.Connection, record: Mapping[str, Any], *, replaying: bool
    ) -> None:
        job = _record_job(record)
        at = _stamp(_at(record))
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
                _iso(job.output_expiry()),
                json.dumps(job.output_urls),
                record["output_dir"],
                at,
                record.get("input_hash"),
            ),
        )
        if record.get("input_hash"):
            self._attach_in(db, record["base_url"], record["profile"], record["input_hash"], job.id)

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
        return self._transaction(lambda db: self._claim_in(db, input_hash, base_url, profile))

    def _claim_in(
        self, db: sqlite3.Connection, input_hash: str, base_url: str, profile: str
    ) -> ClaimResult:
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
                if not self._retry_worthy(db, base_url, job_id):
                    return found
            elif state == "uncertain" or not _holder_alive(pid, host, claimed_at):
                return ClaimResult("unknown", None, pid, host, claimed_at)
            else:
                return found
        now = _now()
        db.execute(
            "INSERT OR REPLACE INTO batch_lines (base_url, profile, input_hash, state, pid,"
            " host, claimed_at, job_id) VALUES (?, ?, ?, 'claimed', ?, ?, ?, NULL)",
            (*key, os.getpid(), _host(), now.isoformat()),
        )
        return ClaimResult("claimed", None, os.getpid(), _host(), now)

    @staticmethod
    def _retry_worthy(db: sqlite3.Connection, base_url: str, job_id: str) -> bool:
        row = db.execute(
            "SELECT status, lost FROM jobs WHERE base_url = ? AND id = ?", (base_url, job_id)
        ).fetchone()
        return row is not None and (row[0] in FAILED_STATUSES or bool(row[1]))

    def attach_job(self, input_hash: str, job: Job | str, *, base_url: str, profile: str) -> None:
        """The claimed line's POST answered: its job id, so a rerun follows the job
        instead of submitting again. (`record_submission` with `input_hash` does
        this in the same transaction.)"""
        job_id = job if isinstance(job, str) else job.id
        self._transaction(lambda db: self._attach_in(db, base_url, profile, input_hash, job_id))

    @staticmethod
    def _attach_in(
        db: sqlite3.Connection, base_url: str, profile: str, input_hash: str, job_id: str
    ) -> None:
        db.execute(
            "UPDATE batch_lines SET state = 'submitted', job_id = ?"
            " WHERE base_url = ? AND profile = ? AND input_hash = ?",
            (job_id, base_url, profile, input_hash),
        )

    def mark_uncertain(self, input_hash: str, *, base_url: str, profile: str) -> None:
        """The claimed line's POST may have reached the server but no job id came
        back (a timeout, a reset, a 5xx): later claims answer `unknown`."""
        self._transaction(
            lambda db: db.execute(
                "UPDATE batch_lines SET state = 'uncertain' WHERE base_url = ? AND profile = ?"
                " AND input_hash = ? AND job_id IS NULL",
                (base_url, profile, input_hash),
            )
        )

    def release_line(self, input_hash: str, *, base_url: str, profile: str) -> None:
        """Give a claimed line up: its POST certainly did not reach the server (or
        the user has checked that it did not). A line with a job is kept."""
        self._transaction(
            lambda db: db.execute(
                "DELETE FROM batch_lines WHERE base_url = ? AND profile = ? AND input_hash = ?"
                " AND job_id IS NULL",
                (base_url, profile, input_hash),
            )
        )

    # --- reads ---------------------------------------------------------------

    def _files(self, base_url: str, job_id: str) -> tuple[LedgerFile, ...]:
        rows = self._db.execute(
            "SELECT n, path, size, sha256, url, mtime_ns FROM files"
            " WHERE base_url = ? AND job_id = ? ORDER BY n",
            (base_url, job_id),
        ).fetchall()
        return tuple(LedgerFile(*row) for row in rows)

    def _job(self, row: sqlite3.Row | tuple[Any, ...]) -> LedgerJob:
        (base_url, job_id, profile, model, inputs, estimated, charged, submitted, status,
         expires, urls, output_dir, lost, completed, duration) = row  # fmt: skip
        return LedgerJob(
            base_url=base_url,
            id=job_id,
            profile=profile,
            model=model,
            inputs=_json_column(inputs, dict),
            estimated_credits=estimated,
            charged_credits=charged,
            submitted_at=_parse_time(submitted) or _EPOCH,
            status=status,
            expires_at=_parse_time(expires),
            output_urls=[str(url) for url in _json_column(urls, list)],
            output_dir=output_dir,
            lost=bool(lost),
            files=self._files(base_url, job_id),
            completed_at=_parse_time(completed),
            duration=duration,
        )

    _COLUMNS = (
        "base_url, id, profile, model, inputs, estimated_credits, charged_credits,"
        " submitted_at, status, expires_at, output_urls, output_dir, lost, completed_at, duration"
    )

    def _select(self, query: str, args: Sequence[Any]) -> list[LedgerJob]:
        """Jobs for a query, read in one go (retried while the ledger is locked)."""
        return self._read(
            lambda: [self._job(row) for row in self._db.execute(query, args).fetchall()]
        )

    def get(self, base_url: str, job_id: str) -> LedgerJob | None:
        found = self._select(
            f"SELECT {self._COLUMNS} FROM jobs WHERE base_url = ? AND id = ?", (base_url, job_id)
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
        sql = (
            f"SELECT {self._COLUMNS} FROM jobs WHERE {where} ORDER BY submitted_at DESC, rowid DESC"
        )
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
        return [float(duration) for (duration,) in rows]

    def find_by_input(self, *, base_url: str, profile: str, input_hash: str) -> LedgerJob | None:
        """The newest job submitted for exactly this request, if any."""
        found = self._select(
            f"SELECT {self._COLUMNS} FROM jobs WHERE base_url = ? AND profile = ?"
            " AND input_hash = ? ORDER BY submitted_at DESC, rowid DESC LIMIT 1",
            (base_url, profile, input_hash),
        )
        return found[0] if found else None

    def unsaved(self, *, base_url: str, profile: str) -> list[LedgerJob]:
        """Jobs whose outputs were never downloaded, oldest first."""
        return [
            j for j in reversed(self.jobs(base_url=base_url, profile=profile)) if j.needs_saving()
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


def recent_job_ids(
    *, base_url: str, profile: str, limit: int = 50, path: Path | None = None
) -> list[tuple[str, str, str]]:
    """(job id, model, status) of the newest jobs, newest first: what TAB offers
    after `jobs show`. Opens the ledger read-only and quickly; [] on any trouble."""
    path = path or ledger_path()
    if not path.exists():
        return []
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=1.0)
        try:
            rows = db.execute(
                "SELECT id, model, status FROM jobs WHERE base_url = ? AND profile = ?"
                " ORDER BY submitted_at DESC, rowid DESC LIMIT ?",
                (base_url.rstrip("/"), profile, limit),
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return []
    return [(str(job_id), str(model), str(status)) for job_id, model, status in rows]
