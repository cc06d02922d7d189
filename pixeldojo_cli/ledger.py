"""The local job ledger: every job this CLI submitted, so no paid output is lost.

SQLite (standard library) in WAL mode in `platformdirs.user_data_dir("pixeldojo")`.
Each write is one short `BEGIN IMMEDIATE` transaction and the connection waits
up to 30 s for a lock, so several CLI processes can record jobs at once.
Jobs are keyed by (base URL, job id): the same id on another API is another job.

It also keeps, per job, when it completed and how long it took: the history the
poll schedule learns from (`durations`). That history never leaves the machine.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pixeldojo_cli.errors import WriteError
from pixeldojo_cli.results import (
    DEFAULT_OUTPUT_LIFETIME,
    FAILED_STATUSES,
    TERMINAL_STATUSES,
    Job,
)
from pixeldojo_cli.settings import ledger_path as ledger_path  # re-exported

SCHEMA_VERSION = 4

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
    return None if value is None else datetime.fromisoformat(value)


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


class Ledger:
    """The job ledger. Open it, record, query; each write is its own transaction."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or ledger_path()
        self.moved_aside: Path | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            try:
                self._setup()
            except sqlite3.DatabaseError as exc:
                if "not a database" not in str(exc) and "malformed" not in str(exc):
                    raise
                self._start_afresh()
        except (OSError, sqlite3.Error) as exc:
            raise WriteError(f"Cannot open the job ledger {self.path}: {exc}.") from exc

    def _start_afresh(self) -> None:
        """A damaged ledger is kept, renamed, for a person to look at; recording
        goes on in a new one rather than failing every command from now on."""
        self._db.close()
        aside = self.path.with_name(f"{self.path.name}.damaged-{int(time.time())}")
        os.replace(self.path, aside)
        for suffix in ("-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        self.moved_aside = aside
        self._db = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._setup()

    def _setup(self) -> None:
        """WAL mode and the tables, retried: SQLite answers "locked" at once, without
        waiting, when two processes switch a new database to WAL together."""
        for attempt in range(40):
            try:
                self._db.execute("PRAGMA busy_timeout = 30000")
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
                return
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or attempt == 39:
                    raise
                time.sleep(0.05 + 0.01 * attempt)

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
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- writes --------------------------------------------------------------

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

        `input_hash` identifies the request (`batch` finds it again on a rerun).
        """
        now = _stamp(_now())
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO jobs (base_url, id, profile, model, inputs,"
                " estimated_credits, charged_credits, submitted_at, status, expires_at,"
                " output_urls, output_dir, lost, updated_at, input_hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
                (
                    base_url,
                    job.id,
                    profile,
                    model,
                    json.dumps(inputs, default=str),
                    estimated_credits,
                    job.credit_cost,
                    now,
                    job.status,
                    _iso(job.output_expiry()),
                    json.dumps(job.output_urls),
                    str(output_dir.resolve()),
                    now,
                    input_hash,
                ),
            )

    def update_job(self, base_url: str, job: Job, *, now: datetime | None = None) -> None:
        """What the API last said about a job we know (unknown jobs are ignored).

        The first time it is seen finished, its completion time and duration are
        set, once (see `durations`). `now` is when the answer arrived.
        """
        now = now or _now()
        with self._write() as db:
            row = db.execute(
                "SELECT status, submitted_at, updated_at, completed_at FROM jobs"
                " WHERE base_url = ? AND id = ?",
                (base_url, job.id),
            ).fetchone()
            if row is None:
                return
            status, submitted, updated, completed = row
            finished, duration = None, None
            if job.is_terminal and completed is None:
                finished, duration = _completion(
                    job,
                    submitted=datetime.fromisoformat(submitted),
                    last_seen=_parse_time(updated),
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

    def record_files(self, base_url: str, job_id: str, files: Sequence[LedgerFile]) -> None:
        """Each downloaded file's path, size, time and (with --checksum) SHA-256."""
        now = _iso(_now())
        with self._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO files"
                " (base_url, job_id, n, path, size, sha256, url, downloaded_at, mtime_ns)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (base_url, job_id, f.n, f.path, f.size, f.sha256, f.url, now, f.mtime_ns)
                    for f in files
                ],
            )

    def mark_lost(self, base_url: str, job_id: str) -> None:
        """The outputs expired before they were saved: stop offering to save them."""
        with self._write() as db:
            db.execute(
                "UPDATE jobs SET lost = 1, updated_at = ? WHERE base_url = ? AND id = ?",
                (_stamp(_now()), base_url, job_id),
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
            inputs=json.loads(inputs),
            estimated_credits=estimated,
            charged_credits=charged,
            submitted_at=datetime.fromisoformat(submitted),
            status=status,
            expires_at=_parse_time(expires),
            output_urls=json.loads(urls),
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

    def get(self, base_url: str, job_id: str) -> LedgerJob | None:
        row = self._db.execute(
            f"SELECT {self._COLUMNS} FROM jobs WHERE base_url = ? AND id = ?", (base_url, job_id)
        ).fetchone()
        return None if row is None else self._job(row)

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
        return [self._job(row) for row in self._db.execute(sql, args).fetchall()]

    def durations(self, base_url: str, model: str, limit: int = 20) -> list[float]:
        """Seconds each recent completed job of `model` on this API took, most
        recent first, at most `limit` (and never more than `MAX_HISTORY`).

        What the poll schedule learns from. Failed jobs, and jobs whose
        completion was only seen long after the fact, have no duration.
        """
        limit = max(0, min(int(limit), MAX_HISTORY))
        rows = self._db.execute(
            "SELECT duration FROM jobs WHERE base_url = ? AND model = ? AND status = 'completed'"
            " AND duration IS NOT NULL ORDER BY completed_at DESC, rowid DESC LIMIT ?",
            (base_url, model, limit),
        ).fetchall()
        return [float(duration) for (duration,) in rows]

    def find_by_input(self, *, base_url: str, profile: str, input_hash: str) -> LedgerJob | None:
        """The newest job submitted for exactly this request, if any."""
        row = self._db.execute(
            f"SELECT {self._COLUMNS} FROM jobs WHERE base_url = ? AND profile = ?"
            " AND input_hash = ? ORDER BY submitted_at DESC, rowid DESC LIMIT 1",
            (base_url, profile, input_hash),
        ).fetchone()
        return None if row is None else self._job(row)

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
