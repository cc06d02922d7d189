"""Hostile input to the spend reports and their neighbours: dates at the ends
of what Python can hold (in flags and in ledger rows, in any time zone), a
balance seen "in the future", a ledger that cannot be read, hand-edited rows,
and ids that would climb out of their URL path segment.

Each bad input is one line and its exit code, never a traceback; a value no
job can have reads as unknown.
"""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.store.ledger import Ledger, ledger_path

from conftest import FAST, Invoke, pixeldojo, run_subprocess_env

ZONES = ("Pacific/Kiritimati", "America/Los_Angeles", "UTC")  # UTC+14, UTC-8/-7, UTC
FAR_DATES = (
    "0001-01-01",
    "0001-01-01T00:00+00:00",
    "0001-01-01T00:00+05:00",
    "9999-12-31",
    "9999-12-31T23:59:59+00:00",
    "9999-12-31T23:59:59-05:00",
)
# Ledger times no job can have, as a hand edit could leave them.
FAR_STAMPS = (
    "9999-12-31T23:59:59.999999+00:00",
    "0001-01-01T00:00:00+00:00",
    "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:59:59-05:00",
)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def assert_one_clean_line(stderr: str, code: int, expected: int) -> str:
    lines = error_lines(stderr)
    assert code == expected, stderr
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    assert "Unexpected" not in stderr and "Traceback" not in stderr
    return lines[0]


def submit(cli: Invoke, *args: str) -> str:
    result = cli("run", "flux-dev", "a fox", *args, "--no-wait")
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def plant(base_url: str, job_id: str, submitted: str, **columns: Any) -> None:
    """A hand-edited row in the ledger's `jobs` table."""
    values = {
        "base_url": base_url.rstrip("/"),
        "id": job_id,
        "profile": "default",
        "model": "flux-dev",
        "inputs": '{"prompt": "x"}',
        "estimated_credits": 1.0,
        "charged_credits": 1.0,
        "submitted_at": submitted,
        "status": "completed",
        "output_dir": "/tmp",
        "updated_at": submitted,
        **columns,
    }
    names = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    Ledger().close()  # made (or upgraded) as the CLI makes it
    with sqlite3.connect(ledger_path()) as db:
        db.execute(f"INSERT INTO jobs ({names}) VALUES ({marks})", tuple(values.values()))


def sql(statement: str, *args: Any) -> None:
    with sqlite3.connect(ledger_path()) as db:
        db.execute(statement, args)


def usage_json(cli: Invoke, *args: str) -> dict[str, Any]:
    result = cli("usage", "--json", *args)
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


# --- B1: --since / --until dates at the ends of the calendar ------------------------


@pytest.mark.parametrize("zone", ZONES)
def test_far_dates_in_since_and_until_are_one_line_and_exit_2_in_every_zone(
    zone: str, tmp_path: Path
) -> None:
    env = run_subprocess_env(TZ=zone)
    for date in FAR_DATES:
        for command in (
            ("usage", "--since", date),
            ("usage", "--until", date),
            ("jobs", "list", "--local", "--since", date),
            ("gallery", "--since", date, "-o", str(tmp_path / "g.html")),
        ):
            done = pixeldojo(*command, env=env, cwd=tmp_path)
            line = assert_one_clean_line(done.stderr, done.returncode, 2)
            assert "from 1970-01-01 to 8999-12-31" in line, (command, zone)
    assert not (tmp_path / "g.html").exists()


@pytest.mark.parametrize("zone", ZONES)
def test_the_ends_of_the_accepted_range_work_in_every_zone(zone: str, emulator: Emulator) -> None:
    env = run_subprocess_env(emulator, TZ=zone)
    done = pixeldojo("usage", "--since", "1970-01-01", "--until", "8999-12-31", env=env)
    assert done.returncode == 0, done.stderr


# --- B2: ledger times no job can have -----------------------------------------------


def far_ledger(cli: Invoke, emulator: Emulator) -> str:
    """A ledger with a real job and rows (and a balance) dated at the calendar's ends."""
    job_id = submit(cli)
    for n, stamp in enumerate(FAR_STAMPS):
        plant(emulator.base_url, f"job_far{n}", stamp, expires_at=stamp, completed_at=stamp)
    far = FAR_STAMPS[0]
    sql("UPDATE jobs SET submitted_at = ?, expires_at = ?, completed_at = ? WHERE id = ?",
        far, far, FAR_STAMPS[2], job_id)  # fmt: skip
    sql("UPDATE balances SET seen_at = ?", far)
    return job_id


@pytest.mark.parametrize("zone", ZONES)
def test_ledger_rows_dated_at_the_calendars_ends_never_crash_a_reader(
    zone: str, cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    job_id = far_ledger(cli, emulator)
    env = run_subprocess_env(emulator, TZ=zone)
    for command in (
        ("usage",),
        ("usage", "--json"),
        ("usage", "--by", "model"),
        ("usage", "--since", "1w"),
        ("credits",),
        ("credits", "--json"),
        ("jobs", "list", "--local"),
        ("jobs", "list", "--local", "--json"),
        ("jobs", "show", job_id),
        ("jobs", "show", job_id, "--json"),
        ("gallery", "-o", str(tmp_path / "g.html")),
    ):
        done = pixeldojo(*command, env=env, cwd=tmp_path)
        assert done.returncode == 0, (command, done.stderr)
        assert "Unexpected" not in done.stderr and "Traceback" not in done.stderr


def test_a_job_whose_time_cannot_be_read_counts_on_the_day_unknown_and_in_no_window(
    cli: Invoke, emulator: Emulator
) -> None:
    submit(cli)
    for n, stamp in enumerate([*FAR_STAMPS, "garbage", ""]):
        plant(emulator.base_url, f"job_far{n}", stamp)
    document = usage_json(cli)
    rows = {row["key"]: row for row in document["rows"]}
    assert rows["unknown"]["jobs"] == len(FAR_STAMPS) + 2
    assert document["total"]["jobs"] == len(FAR_STAMPS) + 3
    assert sum(row["jobs"] for row in document["rows"]) == document["total"]["jobs"]
    assert usage_json(cli, "--since", "1w")["total"]["jobs"] == 1
    assert usage_json(cli, "--until", "8999-12-31")["total"]["jobs"] == 1


def test_a_balance_dated_at_the_calendars_end_is_shown_at_an_unknown_time(
    cli: Invoke, emulator: Emulator
) -> None:
    submit(cli)
    sql("UPDATE balances SET seen_at = ?", FAR_STAMPS[0])
    shown = cli("credits")
    assert shown.exit_code == 0, shown.output
    assert "999 credits remaining" in shown.stdout and "an unknown time" in shown.stdout
    assert json.loads(cli("credits", "--json").stdout)["seenAt"] is None


def test_an_answer_dated_at_the_calendars_end_reads_as_no_time() -> None:
    from pixeldojo_cli.api.results import parse_job

    job = parse_job(
        {
            "jobId": "job_1",
            "status": "completed",
            "completedAt": "9999-12-31T23:59:59Z",
            "createdAt": "0001-01-01T00:00:00+05:00",
        }
    )
    assert job.completed_at is None and job.created_at is None
    assert job.output_expiry() is None or job.output_expiry() > datetime.now(UTC)


# --- B3: a balance seen "in the future" -----------------------------------------------


def test_a_balance_seen_in_the_future_is_shown_so_and_replaced_by_the_next(
    cli: Invoke, emulator: Emulator
) -> None:
    submit(cli)
    ahead = (datetime.now(UTC) + timedelta(days=1200)).isoformat(timespec="microseconds")
    sql("UPDATE balances SET seen_at = ?, credits = 123", ahead)
    shown = cli("credits").stdout
    assert "123 credits" in shown and "in the future" in shown and "0s ago" not in shown
    second = submit(cli)
    balance = json.loads(cli("credits", "--json").stdout)
    assert balance["jobId"] == second and balance["credits"] == 998
    assert "ago" in cli("credits").stdout


def test_a_balance_whose_time_cannot_be_read_is_replaced_by_the_next(
    cli: Invoke, emulator: Emulator
) -> None:
    submit(cli)
    sql("UPDATE balances SET seen_at = 'garbage', credits = 123")
    second = submit(cli)
    assert json.loads(cli("credits", "--json").stdout)["jobId"] == second


def test_a_replayed_record_older_than_the_balance_kept_does_not_replace_it(
    emulator: Emulator,
) -> None:
    from pixeldojo_cli.store.ledger import balance_record
    from pixeldojo_cli.store.ledger.sidefile import defer

    base = emulator.base_url.rstrip("/")
    older = balance_record(base, "default", 99, "job_old")
    newer = balance_record(base, "default", 7, "job_new")
    assert older is not None and newer is not None
    older["at"] = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    with Ledger() as ledger:
        ledger.apply(newer)
    defer(older, ledger_path())
    with Ledger() as ledger:  # replays the side file on opening
        balance = ledger.balance(base, "default")
    assert balance is not None and balance.job_id == "job_new"


# --- B4: a ledger that cannot be read -------------------------------------------------

READERS = (
    ("usage",),
    ("credits",),
    ("jobs", "list", "--local"),
    ("gallery", "-o", "g.html"),
)


@pytest.mark.parametrize("command", READERS, ids=" ".join)
def test_a_ledger_that_is_a_folder_is_one_error_line_for_every_reader(
    command: tuple[str, ...], cli: Invoke
) -> None:
    ledger_path().parent.mkdir(parents=True, exist_ok=True)
    ledger_path().mkdir()
    done = cli(*command)
    line = assert_one_clean_line(done.stderr, done.exit_code, 10)
    assert "is not a regular file" in line
    assert "Another program" not in done.stderr and "not being recorded" not in done.stderr


@pytest.mark.parametrize("command", READERS, ids=" ".join)
def test_an_unreadable_ledger_is_one_error_line_saying_so_for_every_reader(
    command: tuple[str, ...], cli: Invoke, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    submit(cli)
    if os.geteuid() == 0:  # root reads a file of mode 000: fail as the kernel would
        from pixeldojo_cli.store.ledger import guard

        opened = guard.open_private

        def refused(path: Path, flags: int, *args: Any, **kwargs: Any) -> int:
            if Path(path) == ledger_path():
                raise PermissionError(13, "Permission denied", str(path))
            return opened(path, flags, *args, **kwargs)

        monkeypatch.setattr(guard, "open_private", refused)
    ledger_path().chmod(0o000)
    try:
        done = cli(*command)
    finally:
        ledger_path().chmod(0o600)
    lines = error_lines(done.stderr)
    assert done.exit_code == 10, done.output
    assert lines[0].startswith("error:") and "cannot be read" in lines[0]
    assert len(lines) <= 2 and "Another program" not in done.stderr
    assert "not being recorded" not in done.stderr and "cannot be written" not in done.stderr


def test_a_command_that_records_still_says_jobs_are_not_being_recorded(cli: Invoke) -> None:
    ledger_path().parent.mkdir(parents=True, exist_ok=True)
    ledger_path().mkdir()
    done = cli("run", "flux-dev", "a fox", "--no-wait")
    assert done.exit_code == 0 and "not being recorded" in done.stderr


# --- hand-edited rows -----------------------------------------------------------------


def test_a_hand_edited_submission_time_is_compared_as_a_time_not_as_text(
    cli: Invoke, emulator: Emulator
) -> None:
    three_hours_ago = datetime.now(UTC) - timedelta(hours=3)
    # Written at UTC+05:00, its text reads two hours ahead of now in UTC: compared
    # as text, it would be in every recent window.
    plus5 = three_hours_ago.astimezone(timezone(timedelta(hours=5)))
    plant(emulator.base_url, "job_plus5", plus5.isoformat(timespec="seconds"))
    plant(emulator.base_url, "job_garbage", "garbage")
    assert usage_json(cli, "--since", "2h")["total"]["jobs"] == 0
    assert usage_json(cli, "--since", "4h")["total"]["jobs"] == 1
    listed = cli("jobs", "list", "--local", "--since", "2h", "--json")
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []


def test_a_duration_of_true_is_no_seconds(cli: Invoke, emulator: Emulator) -> None:
    submit(cli)
    plant(emulator.base_url, "job_true", datetime.now(UTC).isoformat(), inputs='{"duration": true}')
    total = usage_json(cli)["total"]
    assert total["seconds"] is None


def test_a_charge_of_0_is_shown_as_0_credits_not_the_estimate(
    cli: Invoke, emulator: Emulator
) -> None:
    emulator.add_fault(
        "reshape", method="POST", path=r"/run$", other=lambda a: {**a, "creditCost": 0}
    )
    done = cli("run", "flux-dev", "a fox", "--no-wait")
    assert done.exit_code == 0, done.output
    assert "0 credits" in done.stderr and "1 credit," not in done.stderr
    job_id = done.stdout.strip()
    listed = cli("jobs", "list", "--local")
    row = next(line for line in listed.stdout.splitlines() if line.startswith(job_id))
    assert "\t0\t" in row


def test_a_bad_by_is_echoed_as_typed(cli: Invoke) -> None:
    done = cli("usage", "--by", "MODELS")
    line = assert_one_clean_line(done.stderr, done.exit_code, 2)
    assert "'MODELS'" in line


# --- skill --install -------------------------------------------------------------------


def test_skill_install_where_the_skill_folder_is_a_file_is_one_line(
    cli: Invoke, tmp_path: Path
) -> None:
    (tmp_path / "skills").mkdir()
    (tmp_path / "skills" / "pixeldojo").write_text("mine")
    done = cli("skill", "--install", str(tmp_path / "skills"))
    line = assert_one_clean_line(done.stderr, done.exit_code, 2)
    assert "is not a folder" in line and "output folder" not in done.stderr
    assert (tmp_path / "skills" / "pixeldojo").read_text() == "mine"


@pytest.mark.parametrize("name", ["a\nb", "a\tb", "a\x1b[31mb", "a\u2028b"])
def test_skill_install_refuses_a_folder_name_with_a_control_character(
    name: str, cli: Invoke, tmp_path: Path
) -> None:
    folder = tmp_path / name
    folder.mkdir()
    done = cli("skill", "--install", str(folder))
    line = assert_one_clean_line(done.stderr, done.exit_code, 2)
    assert "control character" in line and done.stdout == ""
    assert not (folder / "pixeldojo").exists()


# --- ids in URL paths ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "sent"),
    [
        (("run", "../../x", "a", *FAST), "/api/v1/models/..%2F..%2Fx"),
        (("jobs", "show", "../x"), "/api/v1/jobs/..%2Fx"),
        (("jobs", "wait", "a/b?c#d", *FAST), "/api/v1/jobs/a%2Fb%3Fc%23d"),
        (("download", "x/../../models"), "/api/v1/jobs/x%2F..%2F..%2Fmodels"),
    ],
)
def test_an_id_is_one_encoded_path_segment(
    command: tuple[str, ...], sent: str, cli: Invoke, emulator: Emulator
) -> None:
    done = cli(*command)
    assert done.exit_code == 6, done.output  # not found: nothing else was reached
    paths = {request.raw_path for request in emulator.requests}
    assert sent in paths
    assert paths <= {sent, "/api/v1/models"}  # (the list, for a "did you mean")


@pytest.mark.parametrize(
    "command",
    [
        ("run", "..", "a"),
        ("run", ".", "a"),
        ("run", "", "a"),
        ("models", "show", ".."),
        ("jobs", "show", ".."),
        ("jobs", "show", "."),
        ("jobs", "wait", "..", *FAST),
        ("download", ".."),
        ("webhook", "replay", ".."),
    ],
    ids=repr,
)
def test_a_dot_or_empty_id_is_refused_before_any_request(
    command: tuple[str, ...], cli: Invoke, emulator: Emulator
) -> None:
    done = cli(*command)
    line = assert_one_clean_line(done.stderr, done.exit_code, 2)
    assert "id" in line and "resume" not in done.stderr
    assert emulator.requests == []


def test_a_dot_job_in_a_file_input_is_refused_before_any_job_request(
    cli: Invoke, emulator: Emulator
) -> None:
    done = cli("run", "flux-kontext-pro", "a fox", "-p", "image_url=@job:..", *FAST)
    assert done.exit_code == 2, done.output
    assert not emulator.requests_to(path=r"/jobs") and not emulator.requests_to("POST")
