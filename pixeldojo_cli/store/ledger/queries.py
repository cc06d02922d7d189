"""Reading the ledger: a job as it knows it (`LedgerJob`), which jobs to list
(`JobQuery`), and the quick read-only look TAB completion takes."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pixeldojo_cli.api.results import DEFAULT_OUTPUT_LIFETIME, FAILED_STATUSES
from pixeldojo_cli.core.ownfolders import check_folder
from pixeldojo_cli.store.ledger.guard import claim_ledger, connect_ledger, opened_as_checked
from pixeldojo_cli.store.ledger.records import LOST_REFUSED, LedgerFile
from pixeldojo_cli.store.ledger.values import (
    EPOCH,
    iso,
    json_column,
    json_readable,
    number_or_none,
    parse_time,
    stamp,
    text_or,
    text_or_none,
    whole_or_none,
)
from pixeldojo_cli.store.settings import ledger_path

# The `jobs` columns a `LedgerJob` is read from, in `job_from_row`'s order.
JOB_COLUMNS = (
    "base_url, id, profile, model, inputs, estimated_credits, charged_credits,"
    " submitted_at, status, expires_at, output_urls, output_dir, lost, completed_at, duration"
)


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
    # The last try at saving its outputs was refused (`OutputRefusedError`).
    refused: bool = False
    # Its `@` inputs as sent: `input`, `index`, `path` or `job`, `sha256`, `size`, `type`, `url`.
    input_files: tuple[dict[str, Any], ...] = ()
    # Its `inputs` column is damaged (not a JSON object): `inputs` reads as {}.
    inputs_damaged: bool = False

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
        """Paid for, not failed, not yet on disk and not given up on (expired, or
        its outputs refused: no sweep would do better)."""
        return not self.failed and not self.downloaded and not self.lost and not self.refused


def files_of(db: sqlite3.Connection, base_url: str, job_id: str) -> tuple[LedgerFile, ...]:
    """The files recorded for one job, by output number. A file whose path is not
    text (a hand-edited row) is left out; its other damaged values read as unknown."""
    rows = db.execute(
        "SELECT n, path, size, sha256, url, mtime_ns FROM files"
        " WHERE base_url = ? AND job_id = ? ORDER BY n",
        (base_url, job_id),
    ).fetchall()
    return tuple(
        LedgerFile(
            n=whole_or_none(n) or position,
            path=path,
            size=whole_or_none(size) or 0,
            sha256=text_or_none(sha256),
            url=text_or(url, ""),
            mtime_ns=whole_or_none(mtime_ns),
        )
        for position, (n, path, size, sha256, url, mtime_ns) in enumerate(rows, 1)
        if isinstance(path, str) and path
    )


def input_files_of(
    db: sqlite3.Connection, base_url: str, job_id: str
) -> tuple[dict[str, Any], ...]:
    """A job's file inputs as sent, in order (none for a ledger without the table;
    a damaged value reads as None, a row without its input's name or URL is left out)."""
    try:
        rows = db.execute(
            "SELECT input, item, path, source_job, sha256, size, mime, url FROM input_files"
            " WHERE base_url = ? AND job_id = ? ORDER BY position",
            (base_url, job_id),
        ).fetchall()
    except sqlite3.OperationalError:  # a read-only ledger of an older version
        return ()
    keys = ("input", "index", "path", "job", "sha256", "size", "type", "url")
    wholes = ("index", "size")
    return tuple(
        {
            key: whole_or_none(value) if key in wholes else text_or_none(value)
            for key, value in zip(keys, row, strict=True)
        }
        for row in rows
        if isinstance(row[0], str) and isinstance(row[-1], str)
    )


def job_from_row(db: sqlite3.Connection, row: Sequence[Any]) -> LedgerJob | None:
    """A `LedgerJob` from a row of `JOB_COLUMNS`. Each value is read as the type its
    column holds: a damaged one (a hand-edited row: text for a number, a BLOB for
    text, infinity) reads as unknown, so no reader of the ledger meets it. None for
    a row without a text API and id: nothing could find it again."""
    (base_url, job_id, profile, model, inputs, estimated, charged, submitted, status,
     expires, urls, output_dir, lost, completed, duration) = row  # fmt: skip
    if not (isinstance(base_url, str) and isinstance(job_id, str)):
        return None
    return LedgerJob(
        base_url=base_url,
        id=job_id,
        profile=text_or(profile, ""),
        model=text_or(model, ""),
        inputs=json_column(inputs, dict),
        estimated_credits=number_or_none(estimated, least=0),
        charged_credits=number_or_none(charged, least=0),
        submitted_at=parse_time(submitted) or EPOCH,
        status=text_or(status, "unknown"),
        expires_at=parse_time(expires),
        output_urls=[str(url) for url in json_column(urls, list)],
        output_dir=text_or(output_dir, ""),
        lost=lost == 1,
        refused=lost == LOST_REFUSED,
        files=files_of(db, base_url, job_id),
        input_files=input_files_of(db, base_url, job_id),
        completed_at=parse_time(completed),
        duration=number_or_none(duration, least=0),
        inputs_damaged=not json_readable(inputs, dict),
    )


def outputs_named(db: sqlite3.Connection, names: Sequence[str]) -> list[tuple[str, str]]:
    """(job id, path) of every file the ledger records, of any API and profile,
    whose path ends in one of `names` (ASCII case ignored, as a case-insensitive
    file system would): the candidates for "is this path a saved output?"."""
    if not names:
        return []
    where = " OR ".join("path LIKE ? ESCAPE '\\'" for _ in names)
    rows = db.execute(
        f"SELECT job_id, path FROM files WHERE {where}", [f"%{like_escaped(n)}" for n in names]
    ).fetchall()
    return [(text_or(job_id, "?"), path) for job_id, path in rows if isinstance(path, str)]


def like_escaped(text: str) -> str:
    """`text` matched literally by `LIKE ? ESCAPE '\\'`."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class JobQuery:
    """Which ledger jobs to list, newest first: each field given narrows the list.

    `model` matches exactly, or as a glob with `*`; `status` ignores case;
    `since` keeps jobs submitted at or after it, `until` those submitted before
    it; `unsaved` keeps jobs whose outputs were never all downloaded (not
    failed, not given up on); `search` finds text in any string input (the
    prompt first of all), ignoring ASCII case; `job_id` keeps that job (of
    any API, unless `base_url` says).
    """

    base_url: str | None = None
    profile: str | None = None
    model: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    unsaved: bool = False
    search: str | None = None
    limit: int | None = None
    job_id: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition on `jobs` and its arguments."""
        clauses: list[str] = []
        args: list[Any] = []
        pairs = (("base_url", self.base_url), ("profile", self.profile), ("id", self.job_id))
        for column, value in pairs:
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if self.model:
            clauses.append("model GLOB ?" if "*" in self.model else "model = ?")
            args.append(self.model)
        if self.status:
            clauses.append("lower(status) = lower(?)")
            args.append(self.status)
        # A time read as `job_time` reads it (a damaged one is in no window).
        if self.since is not None:
            clauses.append("job_time(submitted_at) >= ?")
            args.append(iso(self.since))
        if self.until is not None:  # to the microsecond, as submission times are kept
            clauses.append("job_time(submitted_at) < ?")
            args.append(stamp(self.until))
        if self.unsaved:
            clauses.append(
                "status != 'failed' AND lost != 1 AND (SELECT COUNT(*) FROM files"
                " WHERE files.base_url = jobs.base_url AND files.job_id = jobs.id)"
                " < MAX(1, json_array_length(output_urls))"
            )
        if self.search:
            clauses.append(
                "EXISTS (SELECT 1 FROM json_tree(jobs.inputs) AS t"
                " WHERE t.type = 'text' AND t.value LIKE ? ESCAPE '\\')"
            )
            args.append(f"%{like_escaped(self.search)}%")
        return " AND ".join(clauses) or "1 = 1", args


def recent_job_ids(
    *, base_url: str, profile: str, limit: int = 50, path: Path | None = None
) -> list[tuple[str, str, str]]:
    """(job id, model, status) of the newest jobs, newest first: what TAB offers
    after `jobs show`. Opens the ledger read-only and quickly, through the same
    checks as every opening (`guard`): nothing planted at its names (a link, a
    FIFO, a hard link) is read, written or waited on. [] on any trouble."""
    path = path or ledger_path()
    try:
        check_folder(path.parent)
        fd = claim_ledger(path, create=False)
    except OSError:
        return []
    if fd is None:
        return []
    try:
        db = connect_ledger(path, "ro", timeout=1.0)
        try:
            if not opened_as_checked(db, path, fd):
                return []
            rows = db.execute(
                "SELECT id, model, status FROM jobs WHERE base_url = ? AND profile = ?"
                " ORDER BY submitted_at DESC, rowid DESC LIMIT ?",
                (base_url.rstrip("/"), profile, limit),
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return []
    finally:
        os.close(fd)
    return [(str(job_id), str(model), str(status)) for job_id, model, status in rows]
