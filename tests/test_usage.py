"""What it costs: `pixeldojo usage` sums what the ledger says was spent (rows
that add up to the ledger), and `pixeldojo credits` shows the balance the API
last reported on a submit answer, without a request."""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pixeldojo_cli.api.results import parse_job
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.store.ledger import (
    Ledger,
    balance_record,
    ledger_path,
    submission_record,
)

from conftest import FAST, PYTHON, Invoke, pixeldojo, run_subprocess_env

VIDEO = "seedance-1.5"  # 1.5 credits per second, 5 s by default


def submit(cli: Invoke, *args: str) -> str:
    result = cli("run", *args, "--no-wait")
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def usage(cli: Invoke, *args: str, before: tuple[str, ...] = ()) -> dict[str, Any]:
    result = cli(*before, "usage", "--json", *args)
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def credits_json(cli: Invoke, *before: str) -> dict[str, Any]:
    result = cli(*before, "credits", "--json")
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def insert_job(
    base_url: str,
    job_id: str,
    *,
    charged: float | None,
    estimated: float | None,
    status: str = "completed",
    model: str = "flux-dev",
    profile: str = "default",
    inputs: dict[str, Any] | None = None,
    when: datetime | None = None,
) -> None:
    """A job in the ledger with known credits, as if submitted at `when`."""
    job = parse_job({"jobId": job_id, "status": status, "creditCost": charged})
    with Ledger() as ledger:
        ledger.apply(
            submission_record(
                job,
                base_url=base_url,
                profile=profile,
                model=model,
                inputs=inputs or {"prompt": "x"},
                estimated_credits=estimated,
                output_dir=Path.cwd(),
            )
        )
        if when is not None:
            set_time(ledger, job_id, when)


def set_time(ledger: Ledger, job_id: str, when: datetime) -> None:
    ledger._db.execute(
        "UPDATE jobs SET submitted_at = ? WHERE id = ?",
        (when.astimezone(UTC).isoformat(timespec="microseconds"), job_id),
    )


def ledger_sums(base_url: str) -> tuple[int, float]:
    """Every job on this API, and what it cost (charged, else estimated), straight from SQL."""
    db = sqlite3.connect(ledger_path())
    try:
        count, credits = db.execute(
            "SELECT COUNT(*), TOTAL(COALESCE(charged_credits, estimated_credits, 0))"
            " FROM jobs WHERE base_url = ?",
            (base_url,),
        ).fetchone()
    finally:
        db.close()
    return int(count), float(credits)


@pytest.fixture
def spent(cli: Invoke, emulator: Emulator) -> dict[str, str]:
    """Jobs run on the emulator (2 images, a video of 3 s, a video of its default
    5 s, a failed one) and ledger rows whose credits are known: one the API
    never priced (estimated 2.5), one with neither a charge nor an estimate."""
    jobs = {
        "two images": submit(cli, "flux-dev", "a fox", "-p", "num_outputs=2"),
        "3 s": submit(cli, VIDEO, "a wave", "-p", "duration=3"),
        "5 s": submit(cli, VIDEO, "a wave"),
    }
    failed = cli("run", "flux-dev", "broken #fail", *FAST, "--no-download")
    assert failed.exit_code == 5, failed.output
    with Ledger() as ledger:
        jobs["failed"] = next(j.id for j in ledger.jobs() if j.failed)
    base = emulator.base_url.rstrip("/")
    insert_job(base, "job_estimated", charged=None, estimated=2.5)
    insert_job(base, "job_unpriced", charged=None, estimated=None, model="other-model")
    return jobs


def test_usage_rows_add_up_to_the_ledger(
    cli: Invoke, emulator: Emulator, spent: dict[str, str]
) -> None:
    count, credits = ledger_sums(emulator.base_url.rstrip("/"))
    assert count == 6
    for by in ("day", "model", "profile"):
        report = usage(cli, "--by", by)
        rows, total = report["rows"], report["total"]
        for field in ("jobs", "credits", "charged", "estimated", "estimatedJobs", "unpricedJobs"):
            assert sum(row[field] for row in rows) == pytest.approx(total[field]), (by, field)
        for field in ("jobs", "credits"):
            assert sum(row["failed"][field] for row in rows) == total["failed"][field]
        assert total["jobs"] + total["failed"]["jobs"] == count
        assert total["credits"] + total["failed"]["credits"] == pytest.approx(credits)
    # 2 images at 1 + 3 s and 5 s at 1.5/s, charged; 2.5 estimated; the failed one apart.
    assert total["charged"] == 14 and total["estimated"] == 2.5 and total["credits"] == 16.5
    assert total["estimatedJobs"] == 1 and total["unpricedJobs"] == 1
    assert total["failed"] == {"jobs": 1, "credits": 1}


def test_the_table_has_a_total_row_and_says_what_it_guesses(
    cli: Invoke, spent: dict[str, str]
) -> None:
    result = cli("usage", "--by", "model")
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [row[0] for row in rows] == ["flux-dev", "other-model", VIDEO, "total"]
    assert rows[-1][1:3] == ["5", "16.5"]  # jobs, credits
    assert "every profile" in result.stderr and "by model" in result.stderr
    assert "counted at the estimate" in result.stderr
    assert "may refund a failed job" in result.stderr and "cannot know" in result.stderr


def test_failed_jobs_are_counted_apart(cli: Invoke, spent: dict[str, str]) -> None:
    (flux,) = [row for row in usage(cli, "--by", "model")["rows"] if row["key"] == "flux-dev"]
    assert flux["jobs"] == 2 and flux["failed"] == {"jobs": 1, "credits": 1}
    assert flux["credits"] == 4.5  # 2 images and the estimated job; not the failed one


def test_video_seconds_come_from_the_inputs_or_the_models_default(
    cli: Invoke, spent: dict[str, str]
) -> None:
    rows = {row["key"]: row for row in usage(cli, "--by", "model")["rows"]}
    assert rows[VIDEO]["seconds"] == 8  # 3 s asked, 5 s by the schema's default
    assert rows["flux-dev"]["seconds"] is None


def test_days_are_local_calendar_days_and_said_so(cli: Invoke, emulator: Emulator) -> None:
    base = emulator.base_url.rstrip("/")
    noon = datetime.now().astimezone().replace(hour=12, minute=0, second=0, microsecond=0)
    insert_job(base, "job_today", charged=1, estimated=1, when=noon)
    insert_job(base, "job_before", charged=2, estimated=2, when=noon - timedelta(days=2))
    report = usage(cli)
    assert [row["key"] for row in report["rows"]] == [
        (noon - timedelta(days=2)).date().isoformat(),
        noon.date().isoformat(),
    ]
    assert report["timezone"].startswith("UTC") and report["by"] == "day"
    assert "days in local time" in cli("usage").stderr


def test_since_and_until_take_the_same_durations_and_dates_as_jobs_list(
    cli: Invoke, emulator: Emulator
) -> None:
    base = emulator.base_url.rstrip("/")
    now = datetime.now(UTC)
    for days in (1, 3, 10):
        insert_job(
            base, f"job_{days}d", charged=days, estimated=None, when=now - timedelta(days=days)
        )
    assert usage(cli, "--since", "2d")["total"]["credits"] == 1
    assert usage(cli, "--since", "1w", "--until", "2d")["total"]["credits"] == 3
    assert usage(cli, "--until", "1w")["total"]["credits"] == 10
    day = (now - timedelta(days=3)).astimezone().date()
    report = usage(
        cli, "--since", day.isoformat(), "--until", (day + timedelta(days=1)).isoformat()
    )
    assert report["total"]["credits"] == 3 and report["since"].endswith("Z")


def test_the_window_is_half_open_in_ledger_spent(emulator: Emulator) -> None:
    base = emulator.base_url.rstrip("/")
    start = datetime(2025, 3, 1, tzinfo=UTC)
    insert_job(base, "job_at_start", charged=1, estimated=None, when=start)
    insert_job(base, "job_at_end", charged=2, estimated=None, when=start + timedelta(days=1))
    insert_job(base, "job_other", charged=4, estimated=None, profile="work", when=start)
    with Ledger() as ledger:
        day = ledger.spent(base, "default", start, start + timedelta(days=1))
        every = ledger.spent(base, None, start, None)
        elsewhere = ledger.spent("https://elsewhere.example/api/v1", None, None, None)
    assert (day.jobs, day.credits) == (1, 1)
    assert (every.jobs, every.credits) == (3, 7)
    assert elsewhere.all_jobs == 0


def test_profile_narrows_and_by_profile_splits(cli: Invoke, emulator: Emulator) -> None:
    submit(cli, "flux-dev", "mine")
    work = {"PIXELDOJO_PROFILE": "work"}
    result = cli("run", "flux-dev", "theirs", "-p", "num_outputs=3", "--no-wait", env=work)
    assert result.exit_code == 0, result.output
    rows = usage(cli, "--by", "profile")["rows"]
    assert [(row["key"], row["credits"]) for row in rows] == [("default", 1), ("work", 3)]
    assert usage(cli, before=("--profile", "work"))["total"]["credits"] == 3
    narrowed = cli("usage", "--json", env=work)
    assert json.loads(narrowed.stdout)["profile"] == "work"
    assert usage(cli)["profile"] is None


def test_model_filter_takes_a_glob(cli: Invoke, spent: dict[str, str]) -> None:
    assert usage(cli, "--model", VIDEO)["total"]["credits"] == 12
    assert usage(cli, "--model", "flux-*")["total"]["jobs"] == 2
    assert usage(cli, "--model", "nothing")["rows"] == []


@pytest.mark.parametrize(
    "args",
    [
        ["--since", "yesterday"],
        ["--until", "soon"],
        ["--since", "90"],
        ["--by", "week"],
        ["--since", "1d", "--until", "2d"],
    ],
)
def test_bad_flags_exit_2_on_one_line(cli: Invoke, args: list[str]) -> None:
    result = cli("usage", *args)
    assert result.exit_code == 2, result.output
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1
    assert "Traceback" not in result.output


def test_an_empty_ledger_is_a_sentence_and_exit_0(cli: Invoke) -> None:
    result = cli("usage")
    assert result.exit_code == 0 and "No jobs in the local ledger" in result.stderr
    assert not ledger_path().exists()  # a report creates nothing
    Ledger().close()
    assert cli("usage").exit_code == 0
    report = usage(cli)
    assert report["rows"] == [] and report["total"]["jobs"] == 0


@pytest.mark.parametrize("command", ["usage", "credits"])
def test_a_ledger_that_cannot_be_read_is_one_error_and_exit_10(cli: Invoke, command: str) -> None:
    ledger_path().parent.mkdir(parents=True, exist_ok=True)
    ledger_path().mkdir()  # a folder where the file should be
    result = cli(command)
    assert result.exit_code == 10, result.output
    assert result.stderr.startswith("error:") and "Traceback" not in result.output
    as_json = cli(command, "--json")
    assert json.loads(as_json.stdout)["error"]["exit_code"] == 10


def test_hostile_ledger_values_count_as_unknown(cli: Invoke, emulator: Emulator) -> None:
    base = emulator.base_url.rstrip("/")
    insert_job(base, "job_text", charged=None, estimated=2)
    insert_job(base, "job_negative", charged=None, estimated=None)
    insert_job(base, "job_huge", charged=None, estimated=3)
    with Ledger() as ledger:
        for job_id, value in (
            ("job_text", "'lots'"),
            ("job_negative", "-5"),
            ("job_huge", "1e300"),
        ):
            ledger._db.execute(f"UPDATE jobs SET charged_credits = {value} WHERE id = ?", (job_id,))
        ledger._db.execute("UPDATE jobs SET inputs = '{not json' WHERE id = 'job_huge'")
    total = usage(cli)["total"]
    assert total["credits"] == 5 and total["unpricedJobs"] == 1 and total["estimatedJobs"] == 2


def test_usage_refuses_the_embedded_emulator(cli: Invoke) -> None:
    result = cli("--emulator", "usage")
    assert result.exit_code == 2 and "not recorded" in result.stderr


# --- credits -------------------------------------------------------------------


def test_credits_shows_the_balance_the_last_submit_reported(
    cli: Invoke, emulator: Emulator
) -> None:
    submit(cli, "flux-dev", "one")
    last = submit(cli, "flux-dev", "two", "-p", "num_outputs=2")
    document = credits_json(cli)
    assert document["credits"] == emulator.credits
    assert document["jobId"] == last and document["profile"] == "default"
    assert document["baseUrl"] == emulator.base_url.rstrip("/")
    seen = datetime.fromisoformat(document["seenAt"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - seen).total_seconds()) < 600
    line = cli("credits").stdout
    assert f"{emulator.credits:g} credits remaining for profile 'default'" in line
    assert last in line


def test_credits_makes_no_request(cli: Invoke, emulator: Emulator) -> None:
    submit(cli, "flux-dev", "one")
    before = len(emulator.requests)
    assert credits_json(cli)["credits"] is not None
    assert len(emulator.requests) == before


def test_credits_says_never_seen(cli: Invoke) -> None:
    result = cli("credits")
    assert result.exit_code == 0 and "No balance seen yet" in result.stdout
    assert credits_json(cli) == {
        "credits": None,
        "seenAt": None,
        "jobId": None,
        "baseUrl": credits_json(cli)["baseUrl"],
        "profile": "default",
    }


def test_each_profile_has_its_own_balance(cli: Invoke) -> None:
    submit(cli, "flux-dev", "one")
    assert credits_json(cli, "--profile", "work")["credits"] is None
    assert credits_json(cli)["credits"] is not None


@pytest.mark.parametrize(
    "hostile", [math.nan, math.inf, "lots", 10**400, True, None, {"credits": 5}]
)
def test_a_balance_that_is_no_number_is_not_kept(
    cli: Invoke, emulator: Emulator, hostile: Any
) -> None:
    submit(cli, "flux-dev", "first")
    kept = credits_json(cli)

    def reshape(answer: Any) -> Any:
        return {**answer, "creditsRemaining": hostile}

    emulator.add_fault("reshape", method="POST", path=r"/run$", other=reshape)
    job_id = submit(cli, "flux-dev", "second")
    with Ledger() as ledger:
        assert (
            ledger.get(emulator.base_url.rstrip("/"), job_id) is not None
        )  # recorded all the same
    assert credits_json(cli) == kept
    assert cli("credits").exit_code == 0


@pytest.mark.parametrize(("value", "shown"), [(-5, "-5 credits"), (1e300, "1e+300 credits")])
def test_odd_but_finite_balances_are_shown_as_said(
    cli: Invoke, emulator: Emulator, value: float, shown: str
) -> None:
    emulator.add_fault(
        "reshape", method="POST", path=r"/run$", other=lambda a: {**a, "creditsRemaining": value}
    )
    submit(cli, "flux-dev", "one")
    assert credits_json(cli)["credits"] == value
    assert shown in cli("credits").stdout


def test_an_older_balance_replayed_never_overwrites_a_newer_one(emulator: Emulator) -> None:
    base = emulator.base_url.rstrip("/")
    newer = balance_record(base, "default", 7, "job_new")
    older = balance_record(base, "default", 99, "job_old")
    assert newer is not None and older is not None
    older["at"] = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    with Ledger() as ledger:
        ledger.apply(newer)
        ledger.apply(older)
        balance = ledger.balance(base, "default")
    assert balance is not None and (balance.credits, balance.job_id) == (7, "job_new")
    assert balance_record(base, "default", math.nan, "job_x") is None


def test_a_version_5_ledger_gains_the_balances_table(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with Ledger(path) as ledger:
        ledger._db.execute("DROP TABLE balances")
        ledger._db.execute("PRAGMA user_version = 5")
    with Ledger(path) as ledger:
        assert ledger.balance("https://x.example", "default") is None
        ledger.apply(balance_record("https://x.example", "default", 3, None) or {})
        assert ledger.balance("https://x.example", "default") is not None


def test_a_read_only_old_ledger_has_no_balance_and_no_crash(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with Ledger(path) as ledger:
        ledger._db.execute("DROP TABLE balances")
        ledger._db.execute("PRAGMA user_version = 5")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        from pixeldojo_cli.store.ledger.balances import last_balance

        assert last_balance(db, "https://x.example", "default") is None
    finally:
        db.close()


# --- as a user's script runs it --------------------------------------------------


@pytest.mark.parametrize("command", ["usage", "credits"])
def test_help_has_examples_and_imports_no_httpx(command: str) -> None:
    done = subprocess.run(
        [PYTHON, "-X", "importtime", "-m", "pixeldojo_cli", command, "--help"],
        capture_output=True,
        text=True,
        env=run_subprocess_env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Examples" in done.stdout and "--json" in done.stdout
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()}
    assert "httpx" not in imported


def test_profile_after_the_command_narrows_the_report(cli: Invoke, emulator: Emulator) -> None:
    submit(cli, "flux-dev", "mine")
    done = pixeldojo("usage", "--profile", "work", "--json", env=run_subprocess_env(emulator))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["profile"] == "work" and report["total"]["jobs"] == 0
