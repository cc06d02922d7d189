"""The ledger's tables, and the upgrades from each older version of them.

SQLite's `user_version` holds the version a ledger file was written with;
`upgrade` brings any older one to `SCHEMA_VERSION`, in place.
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 9

FILES_TABLE = """CREATE TABLE IF NOT EXISTS files (
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
BATCH_LINES_TABLE = """CREATE TABLE IF NOT EXISTS batch_lines (
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

# v6: the credits balance the API last reported on a submit answer, per API and
# profile (`pixeldojo credits`). Only finite numbers are kept.
BALANCES_TABLE = """CREATE TABLE IF NOT EXISTS balances (
    base_url TEXT NOT NULL,
    profile TEXT NOT NULL,
    credits REAL NOT NULL,
    seen_at TEXT NOT NULL,
    job_id TEXT,
    PRIMARY KEY (base_url, profile)
)"""

# v7: the jobs of a sweep or a comparison (`run --matrix`, `compare`), and what
# varied for each (a JSON object: input or `prompt{N}` or `model` -> value), so a
# contact sheet can group them. A job may belong to several groups.
JOB_GROUPS_TABLE = """CREATE TABLE IF NOT EXISTS job_groups (
    base_url TEXT NOT NULL,
    job_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    varied TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (base_url, job_id, group_id)
)"""

# v8: budgets. Each process reserves a job's estimate here before its POST, in one
# write transaction with the check, so processes started together never pass a
# budget together. state: `held` (the POST may be on its way; released once its
# process is gone or it is stale), `uncertain` (the POST may have been taken: it
# counts in its window), `submitted` (job_id known; counts until the job's row does).
RESERVATIONS_TABLE = """CREATE TABLE IF NOT EXISTS reservations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    base_url TEXT NOT NULL,
    profile TEXT NOT NULL,
    credits REAL NOT NULL,
    state TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    reserved_at TEXT NOT NULL,
    job_id TEXT
)"""

# v8: what a profile spent since a time (budgets, `usage`) is read by this index.
SPEND_INDEX = "CREATE INDEX IF NOT EXISTS jobs_by_spend ON jobs (base_url, profile, submitted_at)"

# v9: `@PATH` inputs. Each upload's URL, by uploader and SHA-256, reused while
# `upload_ttl` lasts; and each job's file inputs as sent (source, SHA-256, URL).
UPLOADS_TABLE = """CREATE TABLE IF NOT EXISTS uploads (
    uploader TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    url TEXT NOT NULL,
    size INTEGER,
    mime TEXT,
    uploaded_at TEXT NOT NULL,
    PRIMARY KEY (uploader, sha256)
)"""
INPUT_FILES_TABLE = """CREATE TABLE IF NOT EXISTS input_files (
    base_url TEXT NOT NULL,
    job_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    input TEXT NOT NULL,
    item INTEGER,
    path TEXT,
    source_job TEXT,
    sha256 TEXT,
    size INTEGER,
    mime TEXT,
    url TEXT NOT NULL,
    PRIMARY KEY (base_url, job_id, position)
)"""

SCHEMA = f"""
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
{FILES_TABLE};
{BATCH_LINES_TABLE};
{BALANCES_TABLE};
{JOB_GROUPS_TABLE};
{RESERVATIONS_TABLE};
{UPLOADS_TABLE};
{INPUT_FILES_TABLE};
CREATE INDEX IF NOT EXISTS jobs_by_time ON jobs (submitted_at);
CREATE INDEX IF NOT EXISTS jobs_by_input ON jobs (base_url, profile, input_hash);
CREATE INDEX IF NOT EXISTS jobs_by_model ON jobs (base_url, model, completed_at);
{SPEND_INDEX};
"""

# Upgrades from each older schema version (user_version) to the next.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: ("ALTER TABLE jobs ADD COLUMN input_hash TEXT",),
    # v3: SHA-256 became optional (`--checksum`) and the file's time is kept.
    2: (
        "ALTER TABLE files RENAME TO files_v2",
        FILES_TABLE,
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
    4: (BATCH_LINES_TABLE,),
    # v6: the balance as last reported (a new table only, like v5: renumber freely).
    5: (BALANCES_TABLE,),
    # v7: sweeps and comparisons (a new table only, like v5: renumber freely).
    6: (JOB_GROUPS_TABLE,),
    # v8: budgets reserve each job's estimate before its POST (a new table only).
    7: (RESERVATIONS_TABLE, SPEND_INDEX),
    # v9: uploads and file inputs (new tables only: may be renumbered freely).
    8: (UPLOADS_TABLE, INPUT_FILES_TABLE),
}


def configure(db: sqlite3.Connection, busy_timeout: float) -> None:
    """WAL mode (so readers never wait for a writer), and how long SQLite itself
    waits for a lock inside one call."""
    db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")


def is_current(db: sqlite3.Connection) -> bool:
    """The ledger's tables are of this version (or a newer one)."""
    return bool(db.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION)


def upgrade(db: sqlite3.Connection) -> None:
    """Create the tables, or bring older ones to `SCHEMA_VERSION`, inside the
    caller's write transaction (a second process may be doing the same)."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    has_tables = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'jobs'").fetchone()
    while has_tables and 0 < version < SCHEMA_VERSION:
        for step in MIGRATIONS[version]:
            db.execute(step)
        version += 1
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
