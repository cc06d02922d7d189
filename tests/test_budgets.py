"""Budgets (issue 27, parts 3-5): budget_daily / budget_monthly per profile,
--max-credits on a single run, --ignore-budget; checked and reserved in the
ledger before each POST, across processes; bad budgets and ledgers that cannot
tell refuse to spend. Against the emulator over real sockets."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.store.settings import ledger_path

from conftest import TEST_KEY, Invoke, exit_code_within, run_subprocess_env

NO_WAIT = ("--no-wait",)


def posts(emulator: Emulator) -> int:
    return len(emulator.requests_to("POST", r"/run$"))


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def daily(credits: str) -> dict[str, str]:
    return {"PIXELDOJO_BUDGET_DAILY": credits}


def write_config(home: Path, text: str) -> None:
    folder = home / "xdg_config_home" / "pixeldojo"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.toml").write_text(text)


def reservations() -> list[tuple[object, ...]]:
    with sqlite3.connect(ledger_path()) as db:
        return db.execute("SELECT state, credits, job_id FROM reservations").fetchall()


# --- part 3: budgets and --max-credits -------------------------------------------------


def test_a_run_past_the_daily_budget_is_refused_with_one_line_and_exit_4(
    cli: Invoke, emulator: Emulator
) -> None:
    for _ in range(2):
        assert cli("run", "flux-dev", "a fox", *NO_WAIT, env=daily("2")).exit_code == 0
    refused = cli("run", "flux-dev", "a fox", *NO_WAIT, env=daily("2"))
    assert refused.exit_code == 4, refused.output
    assert posts(emulator) == 2
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith(
        "error: 2 credits spent or reserved today + this job's 1 credit (estimated)"
    )
    assert "the daily budget of 2 credits" in line and "(budget_exceeded)" in line
    tomorrow = (datetime.now().astimezone() + timedelta(days=1)).strftime("%Y-%m-%d 00:00")
    assert f"it resets {tomorrow}" in line


def test_the_monthly_budget_counts_the_whole_calendar_month(
    cli: Invoke, emulator: Emulator, isolated_env: Path
) -> None:
    from pixeldojo_cli.api.results import parse_job
    from pixeldojo_cli.store.ledger import Ledger, submission_record

    write_config(isolated_env, "[profiles.default]\nbudget_daily = 5\nbudget_monthly = 5\n")
    start_of_month = datetime.now().astimezone().replace(day=1, hour=0, minute=0, second=1)
    with Ledger() as ledger:  # jobs earlier this month (and one the month before)
        for n, at in enumerate([start_of_month, start_of_month - timedelta(seconds=2)]):
            record = submission_record(
                parse_job({"jobId": f"job_old{n}", "status": "completed", "creditCost": 2}),
                base_url=emulator.base_url,
                profile="default",
                model="flux-dev",
                inputs={},
                estimated_credits=2,
                output_dir=Path("."),
            )
            ledger.apply({**record, "at": at.astimezone(UTC).isoformat()})
    assert cli("run", "flux-dev", "a", "-p", "num_outputs=3", *NO_WAIT).exit_code == 0
    refused = cli("run", "flux-dev", "a", *NO_WAIT)
    assert refused.exit_code == 4 and posts(emulator) == 1
    assert "5 credits spent or reserved this month" in refused.stderr
    assert "monthly budget of 5 credits" in refused.stderr


def test_calendar_windows_are_local_days_and_months(monkeypatch: pytest.MonkeyPatch) -> None:
    from pixeldojo_cli.engine.budget import Budget, windows

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        # 2025-03-09 is the day clocks go forward there: a day of 23 hours.
        day, month = windows(Budget(daily=1, monthly=1), at=datetime(2025, 3, 9, 12, tzinfo=UTC))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert day.start.isoformat() == "2025-03-09T00:00:00-05:00"
    assert day.resets_at.isoformat() == "2025-03-10T00:00:00-04:00"
    assert month.start.isoformat() == "2025-03-01T00:00:00-05:00"
    assert month.resets_at.isoformat() == "2025-04-01T00:00:00-04:00"


def test_budgets_belong_to_a_profile_and_its_spending(
    cli: Invoke, emulator: Emulator, isolated_env: Path
) -> None:
    write_config(isolated_env, '[profiles.work]\napi_key = "pd_test_work1234"\nbudget_daily = 1\n')
    for _ in range(2):  # the default profile has no budget; its jobs are not work's
        assert cli("run", "flux-dev", "a", *NO_WAIT).exit_code == 0
    work = ("--profile", "work", "run", "flux-dev", "a", *NO_WAIT)
    assert cli(*work, env={"PIXELDOJO_API_KEY": ""}).exit_code == 0
    refused = cli(*work, env={"PIXELDOJO_API_KEY": ""})
    assert refused.exit_code == 4 and "daily budget of 1 credit " in refused.stderr
    assert posts(emulator) == 3


def test_ignore_budget_submits_past_the_budget_for_one_command(
    cli: Invoke, emulator: Emulator
) -> None:
    assert cli("run", "flux-dev", "a", *NO_WAIT, env=daily("0")).exit_code == 4
    ignored = cli("run", "flux-dev", "a", *NO_WAIT, "--ignore-budget", env=daily("0"))
    assert ignored.exit_code == 0, ignored.output
    assert posts(emulator) == 1
    assert cli("run", "flux-dev", "a", *NO_WAIT, env=daily("0")).exit_code == 4


def test_max_credits_caps_a_single_run(cli: Invoke, emulator: Emulator) -> None:
    two = ("run", "flux-dev", "a", "-p", "num_outputs=2", *NO_WAIT)
    refused = cli(*two, "--max-credits", "1.5")
    assert refused.exit_code == 4 and posts(emulator) == 0
    assert error_lines(refused.stderr) == [
        "error: This job's 2 credits (estimated) would pass --max-credits 1.5; nothing was "
        "submitted. (budget_exceeded)"
    ]
    assert cli(*two, "--max-credits", "2").exit_code == 0 and posts(emulator) == 1
    # --ignore-budget is about the budgets: the command's own cap still holds.
    assert cli(*two, "--max-credits", "1", "--ignore-budget").exit_code == 4
    assert posts(emulator) == 1


def test_a_job_without_an_estimate_counts_at_the_models_listed_cost_and_says_so(
    emulator: Emulator, tmp_path: Path
) -> None:
    from pixeldojo_cli.api.client import Client
    from pixeldojo_cli.core.errors import BudgetExceededError
    from pixeldojo_cli.engine import Budget, Recorder, Submission, submit
    from pixeldojo_cli.store.ledger import Ledger

    unknown = Submission("flux-dev", {"prompt": "x"}, tmp_path, estimate=None, listed_cost=2)
    budget = Budget(daily=2.5)
    with Client(api_key=TEST_KEY, base_url=emulator.base_url) as client, Ledger() as ledger:
        recorder = Recorder(ledger, emulator.base_url, "default")
        submit(client, unknown, recorder=recorder, budget=budget)  # counts 2; charged 1
        with pytest.raises(BudgetExceededError) as refused:
            submit(client, unknown, recorder=recorder, budget=budget)
    assert (
        "1 credit spent or reserved today + this job's 2 credits (the model's listed cost: it could "
        in (refused.value.message)
    )
    assert refused.value.exit_code == 4 and posts(emulator) == 1


def test_a_job_whose_cost_nobody_knows_is_refused_under_a_budget_or_a_cap(
    emulator: Emulator, tmp_path: Path
) -> None:
    from pixeldojo_cli.api.client import Client
    from pixeldojo_cli.core.errors import BudgetUncheckedError
    from pixeldojo_cli.engine import Budget, Recorder, Submission, submit
    from pixeldojo_cli.store.ledger import Ledger

    unknown = Submission("flux-dev", {"prompt": "x"}, tmp_path)  # no estimate, no price
    with Client(api_key=TEST_KEY, base_url=emulator.base_url) as client, Ledger() as ledger:
        recorder = Recorder(ledger, emulator.base_url, "default")
        ways_out = [(Budget(daily=5), "--ignore-budget"), (Budget(max_credits=5), "without --max")]
        for budget, way_out in ways_out:
            with pytest.raises(BudgetUncheckedError, match=way_out) as refused:
                submit(client, unknown, recorder=recorder, budget=budget)
            assert refused.value.exit_code == 4
    assert posts(emulator) == 0


def test_a_library_caller_without_a_budget_is_unaffected(
    emulator: Emulator, tmp_path: Path
) -> None:
    from pixeldojo_cli.api.client import Client
    from pixeldojo_cli.engine import Submission, submit

    job = Submission("flux-dev", {"prompt": "x"}, tmp_path, estimate=None)
    with Client(api_key=TEST_KEY, base_url=emulator.base_url) as client:
        assert submit(client, job).id  # no recorder, no ledger, no budget: as before
    assert posts(emulator) == 1 and not ledger_path().exists()


def test_dry_run_shows_the_budget_state_without_reserving(cli: Invoke, emulator: Emulator) -> None:
    assert cli("run", "flux-dev", "a", *NO_WAIT, env=daily("2")).exit_code == 0
    before = reservations()
    dry = cli("run", "flux-dev", "a", "--dry-run", "--max-credits", "3", env=daily("2"))
    assert dry.exit_code == 0, dry.output
    assert "--max-credits 3: this job's 1 credit (estimated) fits." in dry.stderr
    assert "Daily budget: 1 of 2 credits spent today; this job's 1 credit (estimated) fits." in (
        dry.stderr
    )
    document = json.loads(cli("run", "flux-dev", "a", "--dry-run", "--json", env=daily("1")).stdout)
    [window] = document["budget"]["windows"]
    assert window["name"] == "daily" and window["spent"] == 1 and window["fits"] is False
    assert document["budget"]["counted"] == 1 and document["budget"]["countedAs"] == "estimate"
    assert reservations() == before  # nothing reserved: the one credit left is there to spend
    assert cli("run", "flux-dev", "a", *NO_WAIT, env=daily("2")).exit_code == 0
    assert posts(emulator) == 2


def test_a_batch_skips_the_lines_past_the_budget(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    batch = tmp_path / "b.txt"
    batch.write_text("".join(f"prompt {n}\n" for n in range(5)))
    dry = cli("run", "flux-dev", "--batch", str(batch), "--dry-run", env=daily("3"))
    assert "Daily budget: 0 of 3 credits spent today; the batch's 5 credits (estimated) would " in (
        dry.stderr
    )
    result = cli("run", "flux-dev", "--batch", str(batch), "--no-wait", "--json", env=daily("3"))
    assert result.exit_code == 4, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(d["outcome"] for d in lines) == ["skipped"] * 2 + ["submitted"] * 3
    skipped = [d for d in lines if d["outcome"] == "skipped"]
    assert all("daily budget of 3 credits" in d["reason"] for d in skipped)
    assert posts(emulator) == 3
    assert "2 lines not submitted" in result.stderr


# --- part 4: reservations, across processes ---------------------------------------------


def test_eight_processes_started_at_once_never_pass_the_budget_together(
    emulator: Emulator, tmp_path: Path
) -> None:
    # Each POST takes two seconds, and nothing paces the processes apart (no shared
    # rate budget): a check that reserved nothing would let all eight through.
    emulator.add_fault("delay", method="POST", path=r"/run$", delay=2.0, count=-1)
    env = run_subprocess_env(emulator, PIXELDOJO_BUDGET_DAILY="3", PIXELDOJO_SHARED_RATE_BUDGET="0")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "pixeldojo_cli", "run", "flux-dev", f"p{n}", "--no-wait"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(8)
    ]
    codes = [exit_code_within(proc, 120) for proc in procs]
    errors = [proc.stderr.read() for proc in procs if proc.stderr is not None]
    assert set(codes) <= {0, 4}, errors
    assert posts(emulator) <= 3  # the budget: three jobs of one credit
    assert codes.count(0) == posts(emulator) >= 1
    refused = [e for c, e in zip(codes, errors, strict=True) if c == 4]
    # (budget_unchecked only if a machine under load kept one from the ledger past its wait)
    assert all("(budget_exceeded)" in e or "(budget_unchecked)" in e for e in refused), refused


def test_a_reservation_is_released_when_the_post_is_refused_before_it_is_taken(
    cli: Invoke, emulator: Emulator
) -> None:
    emulator.add_fault("status", method="POST", path=r"/run$", status=402, count=1)
    assert cli("run", "flux-dev", "a", *NO_WAIT, env=daily("1")).exit_code == 4
    assert reservations() == []
    assert cli("run", "flux-dev", "a", *NO_WAIT, env=daily("1")).exit_code == 0


def test_a_post_that_may_have_been_taken_keeps_its_reservation(
    cli: Invoke, emulator: Emulator
) -> None:
    emulator.add_fault("reset", method="POST", path=r"/run$", count=1)
    assert cli("run", "flux-dev", "a", *NO_WAIT, env=daily("1")).exit_code == 10
    assert [state for state, *_ in reservations()] == ["uncertain"]
    refused = cli("run", "flux-dev", "a", *NO_WAIT, env=daily("1"))
    assert refused.exit_code == 4 and "1 credit spent or reserved today" in refused.stderr


def test_a_reservation_of_a_process_gone_or_stale_is_released(
    cli: Invoke, emulator: Emulator
) -> None:
    from pixeldojo_cli.store.ledger import Ledger
    from pixeldojo_cli.store.ledger.claims import this_host

    Ledger().close()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    now = datetime.now(UTC)
    rows = [
        (gone.pid, this_host(), now),  # its process has ended: never submitted
        (os.getpid(), "another-host", now - timedelta(minutes=31)),  # stale
        (os.getpid(), this_host(), now),  # alive (this test): still counts
    ]
    with sqlite3.connect(ledger_path()) as db:
        db.executemany(
            "INSERT INTO reservations (base_url, profile, credits, state, pid, host,"
            " reserved_at) VALUES (?, 'default', 1, 'held', ?, ?, ?)",
            [(emulator.base_url, pid, host, at.isoformat()) for pid, host, at in rows],
        )
    result = cli("run", "flux-dev", "a", *NO_WAIT, env=daily("2"))
    assert result.exit_code == 0, result.output
    refused = cli("run", "flux-dev", "a", *NO_WAIT, env=daily("2"))
    assert refused.exit_code == 4 and "2 credits spent or reserved today" in refused.stderr


# --- part 5: bad input ------------------------------------------------------------------


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "-inf", "1e999", "ten", "0x10", "5 credits"])
def test_a_bad_budget_in_the_environment_is_one_line_and_exit_2(
    cli: Invoke, emulator: Emulator, value: str
) -> None:
    result = cli("run", "flux-dev", "a", *NO_WAIT, env={"PIXELDOJO_BUDGET_MONTHLY": value})
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        f"error: In $PIXELDOJO_BUDGET_MONTHLY: budget_monthly must be a number of credits, "
        f"0 or more; got {value!r}. (config_error)"
    ]
    assert posts(emulator) == 0


@pytest.mark.parametrize("value", ["-1", "nan", "inf", '"ten"', "true", "[1]"])
def test_a_bad_budget_in_the_config_file_is_one_error_line_and_exit_2(
    cli: Invoke, emulator: Emulator, isolated_env: Path, value: str
) -> None:
    write_config(isolated_env, f"[profiles.default]\nbudget_daily = {value}\n")
    result = cli("run", "flux-dev", "a", *NO_WAIT)
    assert result.exit_code == 2, result.output
    [line] = error_lines(result.stderr)
    assert "budget_daily must be a number of credits, 0 or more" in line
    assert "Traceback" not in result.output and posts(emulator) == 0


def test_a_bad_max_credits_is_a_usage_error(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    batch = tmp_path / "b.txt"
    batch.write_text("one\ntwo\n")
    for value in ("nan", "inf", "-1", "x"):
        for job in (("a",), ("--batch", str(batch))):
            result = cli("run", "flux-dev", *job, *NO_WAIT, "--max-credits", value)
            assert result.exit_code == 2, (value, result.output)
            assert len(error_lines(result.stderr)) == 1
    assert posts(emulator) == 0


def test_a_budget_for_a_profile_that_does_not_exist_is_refused(
    cli: Invoke, isolated_env: Path
) -> None:
    from pixeldojo_cli.store.settings import config_path

    refused = cli("--profile", "wrok", "config", "set", "budget_daily", "10")
    assert refused.exit_code == 2
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith("error: Profile 'wrok' does not exist in ")
    assert "known: default)" in line and not config_path().exists()
    assert cli("config", "set", "budget_daily", "10").exit_code == 0
    assert cli("config", "set", "budget_daily", "-3").exit_code == 2
    text = config_path().read_text()
    assert "[profiles.default]\nbudget_daily = 10.0" in text and "wrok" not in text


def test_a_busy_ledger_refuses_to_spend_with_a_hint(
    cli: Invoke, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pixeldojo_cli.store.ledger import Ledger, locking

    Ledger().close()
    monkeypatch.setattr(locking, "DEFAULT_LOCK_WAIT", 1.0)
    holder = sqlite3.connect(ledger_path(), timeout=1, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = cli("run", "flux-dev", "a", *NO_WAIT, env=daily("5"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 4, result.output
    [line] = error_lines(result.stderr)
    assert line.startswith("error: The budget cannot be checked: The job ledger ")
    assert "locked by another process" in line and "--ignore-budget" in line
    assert line.endswith("(budget_unchecked)") and posts(emulator) == 0


def test_a_ledger_that_cannot_be_opened_refuses_to_spend(cli: Invoke, emulator: Emulator) -> None:
    ledger_path().mkdir(parents=True)  # a folder where the file should be
    result = cli("run", "flux-dev", "a", *NO_WAIT, env=daily("5"))
    assert result.exit_code == 4, result.output
    [line] = error_lines(result.stderr)
    assert "The budget cannot be checked: the job ledger, which keeps what was spent, could " in (
        line
    )
    assert "--ignore-budget" in line and posts(emulator) == 0
    ignored = cli("run", "flux-dev", "a", *NO_WAIT, "--ignore-budget", env=daily("5"))
    assert ignored.exit_code == 0 and posts(emulator) == 1


def test_a_read_only_ledger_refuses_to_spend(
    cli: Invoke, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pixeldojo_cli.store.ledger import Ledger

    Ledger().close()
    ledger_path().chmod(0o444)
    ledger_path().parent.chmod(0o555)
    if os.geteuid() == 0:  # root writes through permission bits: open it as they would
        opened = Ledger.__init__

        def read_only(self: Ledger, *args: object, **kwargs: object) -> None:
            opened(self, *args, **kwargs)  # type: ignore[arg-type]
            self.read_only = True

        monkeypatch.setattr(Ledger, "__init__", read_only)
    try:
        result = cli("run", "flux-dev", "a", *NO_WAIT, env=daily("5"))
    finally:
        ledger_path().parent.chmod(0o700)
        ledger_path().chmod(0o600)
    assert result.exit_code == 4, result.output
    [line] = error_lines(result.stderr)
    assert "The budget cannot be checked: The job ledger " in line and "read-only" in line
    assert "--ignore-budget" in line and posts(emulator) == 0


def test_a_ledger_of_the_version_before_gets_the_reservations_table(
    cli: Invoke, emulator: Emulator
) -> None:
    from pixeldojo_cli.store.ledger import SCHEMA_VERSION, Ledger

    Ledger().close()
    with sqlite3.connect(ledger_path()) as db:
        db.execute("DROP TABLE reservations")
        db.execute("DROP INDEX jobs_by_spend")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
    assert cli("run", "flux-dev", "a", *NO_WAIT, env=daily("1")).exit_code == 0
    assert cli("run", "flux-dev", "a", *NO_WAIT, env=daily("1")).exit_code == 4
    with sqlite3.connect(ledger_path()) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'jobs_by_spend'").fetchone()
