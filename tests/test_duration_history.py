"""The history the poll schedule learns from: each job's completion time and
duration in the local ledger, per model and per API, bounded and private."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pixeldojo_cli.api.results import Job, parse_job
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.store.ledger import MAX_HISTORY, SCHEMA_VERSION, Ledger, ledger_path

from conftest import FAST, Invoke, make_invoker

API = "https://api.example/v1"


def submit(
    ledger: Ledger, job_id: str, *, model: str = "flux-dev", base_url: str = API
) -> datetime:
    """Record a submission; returns the submission time the ledger keeps."""
    ledger.record_submission(
        parse_job({"jobId": job_id, "status": "pending"}),
        base_url=base_url,
        profile="default",
        model=model,
        inputs={"prompt": "x"},
        estimated_credits=1,
        output_dir=Path("."),
    )
    record = ledger.get(base_url, job_id)
    assert record is not None
    return record.submitted_at


def job(job_id: str, status: str, **times: datetime) -> Job:
    body: dict[str, Any] = {"jobId": job_id, "status": status}
    for name, value in times.items():
        body[name] = value.isoformat().replace("+00:00", "Z")
    return parse_job(body)


def complete(
    ledger: Ledger, job_id: str, seconds: float, *, base_url: str = API, at: datetime | None = None
) -> None:
    created = at or datetime.now(UTC)
    done = job(
        job_id, "completed", createdAt=created, completedAt=created + timedelta(seconds=seconds)
    )
    ledger.update_job(base_url, done)


def test_the_apis_completion_time_and_duration_are_recorded(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        submit(ledger, "job_1")
        created = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
        ledger.update_job(API, job("job_1", "processing", createdAt=created))
        ledger.update_job(
            API,
            job(
                "job_1",
                "completed",
                createdAt=created,
                completedAt=created + timedelta(seconds=2.25),
            ),
        )
        record = ledger.get(API, "job_1")
        assert record is not None
        assert record.completed_at == created + timedelta(seconds=2.25)
        assert ledger.durations(API, "flux-dev") == [2.25]


def test_the_completion_is_set_once(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        submit(ledger, "job_1")
        created = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
        complete(ledger, "job_1", 3.0, at=created)
        complete(ledger, "job_1", 9.0, at=created)  # a later look, another answer
        ledger.update_job(API, job("job_1", "completed"))
        record = ledger.get(API, "job_1")
        assert record is not None and record.completed_at == created + timedelta(seconds=3)
        assert ledger.durations(API, "flux-dev") == [3.0]


def test_without_api_times_the_duration_is_when_polling_saw_it_finish(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        submitted = submit(ledger, "job_1")
        ledger.update_job(API, job("job_1", "processing"), now=submitted + timedelta(seconds=4))
        seen = submitted + timedelta(seconds=4.5)
        ledger.update_job(API, job("job_1", "completed"), now=seen)
        record = ledger.get(API, "job_1")
        assert record is not None and record.completed_at == seen
        # The middle of the last look that found it running and the one that found it done.
        assert ledger.durations(API, "flux-dev") == [pytest.approx(4.25)]


def test_a_job_first_seen_done_long_after_teaches_nothing(tmp_path: Path) -> None:
    # `run --no-wait`, then `download --pending` an hour later: not a duration.
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        submitted = submit(ledger, "job_1")
        later = submitted + timedelta(hours=1)
        ledger.update_job(API, job("job_1", "completed"), now=later)
        record = ledger.get(API, "job_1")
        assert record is not None and record.completed_at == later
        assert ledger.durations(API, "flux-dev") == []


def test_failed_jobs_are_not_history(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        submit(ledger, "job_1")
        created = datetime.now(UTC)
        ledger.update_job(
            API,
            job("job_1", "failed", createdAt=created, completedAt=created + timedelta(seconds=1)),
        )
        assert ledger.durations(API, "flux-dev") == []


def test_durations_are_per_model_and_per_api_most_recent_first(tmp_path: Path) -> None:
    other_api = "http://127.0.0.1:8765/api/v1"  # a standalone emulator
    start = datetime(2026, 3, 1, tzinfo=UTC)
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        for n, seconds in enumerate([1.0, 2.0, 3.0]):
            submit(ledger, f"job_{n}")
            complete(ledger, f"job_{n}", seconds, at=start + timedelta(minutes=n))
        submit(ledger, "job_video", model="xai-video")
        complete(ledger, "job_video", 60.0, at=start)
        submit(ledger, "job_emulated", base_url=other_api)
        complete(ledger, "job_emulated", 0.2, base_url=other_api, at=start)
        assert ledger.durations(API, "flux-dev") == [3.0, 2.0, 1.0]
        assert ledger.durations(API, "xai-video") == [60.0]
        assert ledger.durations(other_api, "flux-dev") == [0.2]
        assert ledger.durations(API, "flux-dev", limit=2) == [3.0, 2.0]


def test_the_history_read_back_is_bounded(tmp_path: Path) -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        for n in range(MAX_HISTORY + 5):
            submit(ledger, f"job_{n}")
            complete(ledger, f"job_{n}", 1.0 + n, at=start + timedelta(seconds=n))
        assert len(ledger.durations(API, "flux-dev")) == 20
        assert len(ledger.durations(API, "flux-dev", limit=10**6)) == MAX_HISTORY


def test_a_ledger_from_schema_version_3_gains_the_history_columns(tmp_path: Path) -> None:
    from pixeldojo_cli.store.ledger import schema

    path = tmp_path / "v3.sqlite3"
    v3 = schema.SCHEMA.replace("    completed_at TEXT,\n    duration REAL,\n", "").split(
        "CREATE INDEX IF NOT EXISTS jobs_by_model"
    )[0]
    db = sqlite3.connect(path)
    for statement in v3.split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute(
        "INSERT INTO jobs (base_url, id, profile, model, inputs, submitted_at, status, output_dir,"
        f" updated_at) VALUES ('{API}', 'job_old', 'default', 'flux-dev', '{{}}',"
        " '2026-01-01T00:00:00+00:00', 'processing', '/x', '2026-01-01T00:00:00+00:00')"
    )
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()
    with Ledger(path) as ledger:
        assert ledger.durations(API, "flux-dev") == []
        complete(ledger, "job_old", 5.0)
        assert ledger.durations(API, "flux-dev") == [5.0]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


# --- end to end ---------------------------------------------------------------------


def test_a_run_records_the_duration_the_api_reports(cli: Invoke, emulator: Emulator) -> None:
    assert cli("run", "flux-dev", "a test", *FAST).exit_code == 0
    with Ledger() as ledger:
        # The emulator's createdAt and completedAt are its fixed latency apart.
        assert ledger.durations(emulator.base_url, "flux-dev") == [pytest.approx(0.2, abs=1e-3)]


def test_an_api_without_timing_fields_still_gives_a_history(
    make_emulator: Callable[..., Emulator],
) -> None:
    emulator = make_emulator(job_times=False)
    cli = make_invoker(emulator)
    result = cli("run", "flux-dev", "a test", *FAST)
    assert result.exit_code == 0, result.output
    assert "completedAt" not in emulator.job_json(next(iter(emulator.jobs.values())), 1e12)
    with Ledger() as ledger:
        [duration] = ledger.durations(emulator.base_url, "flux-dev")
        assert duration > 0


def test_the_embedded_emulator_leaves_no_history(tmp_path: Path) -> None:
    result = make_invoker(None, key=None)("--emulator", "run", "flux-dev", "x", *FAST)
    assert result.exit_code == 0, result.output
    assert not ledger_path().exists()
