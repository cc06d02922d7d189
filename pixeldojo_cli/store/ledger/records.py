"""Every write to the ledger, as a record: JSON that can wait in the side file.

A record is `{"op": ..., "at": ISO time, ...fields}`, built by the functions
below, applied by `Ledger.apply` (see `apply.py`), or kept by `defer` (see
`sidefile.py`) until the ledger can take it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pixeldojo_cli.api.results import Job, parse_job
from pixeldojo_cli.core.timestamps import plausible
from pixeldojo_cli.store.ledger.values import now

# `jobs.lost`: 0 to be saved, 1 expired unsaved, LOST_REFUSED its outputs refused
# (the `download --pending` sweep skips it; `download ID` tries again).
LOST_REFUSED = 2

# One write to the ledger: {"op": ..., "at": ISO time, ...fields}.
LedgerRecord = dict[str, Any]


@dataclass(frozen=True)
class LedgerFile:
    """One output of a job, on disk as the ledger last knew it."""

    n: int
    path: str
    size: int
    sha256: str | None
    url: str
    mtime_ns: int | None = None


@dataclass(frozen=True)
class JobGroup:
    """A sweep or comparison a job belongs to (`kind`: `sweep` or `compare`), and
    what varied for that job: input name (or `prompt{N}`, or `model`) -> value."""

    group_id: str
    kind: str
    varied: dict[str, Any]


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
    file_inputs: Sequence[Mapping[str, Any]] = (),
) -> LedgerRecord:
    """A job the API just accepted (`Ledger.record_submission`), with its file
    inputs as sent (`input`, `index`, `path` or `job`, `sha256`, `size`, `type`, `url`)."""
    return {
        "op": "submission",
        "at": now().isoformat(),
        "base_url": base_url,
        "profile": profile,
        "model": model,
        "inputs": json.loads(json.dumps(dict(inputs), default=str)),
        "estimated_credits": estimated_credits,
        "output_dir": str(output_dir.resolve()),
        "input_hash": input_hash,
        "job": job.raw,
        **({"file_inputs": [dict(f) for f in file_inputs]} if file_inputs else {}),
    }


def upload_record(uploader: str, sha256: str, url: str, size: int, mime: str) -> LedgerRecord:
    """A file uploaded by `uploader`, for reuse while `upload_ttl` lasts."""
    return {"op": "upload", "at": now().isoformat(), "uploader": uploader, "sha256": sha256,
            "url": url, "size": size, "mime": mime}  # fmt: skip


def status_record(base_url: str, job: Job) -> LedgerRecord:
    """What the API last said about a job (`Ledger.update_job`)."""
    return {"op": "status", "at": now().isoformat(), "base_url": base_url, "job": job.raw}


def files_record(base_url: str, job_id: str, files: Sequence[LedgerFile]) -> LedgerRecord:
    """Outputs now on disk (`Ledger.record_files`)."""
    return {
        "op": "files",
        "at": now().isoformat(),
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
    return {"op": "lost", "at": now().isoformat(), "base_url": base_url, "job_id": job_id}


def refused_record(base_url: str, job_id: str, refused: bool) -> LedgerRecord:
    """Whether the last try at saving a job's outputs was refused (an address
    inside the network, not an http(s) URL...): `download --pending` skips it."""
    return {
        "op": "refused",
        "at": now().isoformat(),
        "base_url": base_url,
        "job_id": job_id,
        "refused": bool(refused),
    }


def group_record(
    base_url: str, job_id: str, group_id: str, kind: str, varied: Mapping[str, Any]
) -> LedgerRecord:
    """A job belongs to a sweep or a comparison (`group_id`), and what varied for it."""
    return {
        "op": "group",
        "at": now().isoformat(),
        "base_url": base_url,
        "job_id": job_id,
        "group_id": group_id,
        "kind": kind,
        "varied": json.loads(json.dumps(dict(varied), default=str)),
    }


def record_job(record: Mapping[str, Any]) -> Job:
    """The job a submission or status record carries."""
    return parse_job(record["job"])


def record_time(record: Mapping[str, Any]) -> datetime:
    """When a record was made (records from the side file keep their own time;
    one no record can have, as `parse_time` reads it, is now)."""
    try:
        at = datetime.fromisoformat(str(record["at"]))
    except (KeyError, ValueError):
        return now()
    return plausible(at if at.tzinfo else at.replace(tzinfo=UTC)) or now()
