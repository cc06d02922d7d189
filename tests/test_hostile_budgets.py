"""Budgets under attack (issue 27, parts 3-5, as an outside reviewer broke them):
a process killed while its POST is in flight, a hostile model price, a bad value
in the config file, a damaged ledger, `pixeldojo api POST models/X/run`, the same
API spelled another way. Each must never let one more job through. Against the
emulator over real sockets."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.store.settings import ledger_path

from conftest import Invoke, exit_code_within, run_subprocess_env

NO_WAIT = ("--no-wait",)


def posts(emulator: Emulator) -> int:
    return len(emulator.requests_to("POST", r"/run$"))


def daily(credits: str) -> dict[str, str]:
    return {"PIXELDOJO_BUDGET_DAILY": credits}


def states() -> list[str]:
    with sqlite3.connect(ledger_path()) as db:
        return [row[0] for row in db.execute("SELECT state FROM reservations")]


def write_config(home: Path, text: str) -> Path:
    folder = home / "xdg_config_home" / "pixeldojo"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


def start_run(emulator: Emulator, cwd: Path, prompt: str) -> subprocess.Popen[str]:
    env = run_subprocess_env(emulator, PIXELDOJO_BUDGET_DAILY="1")
    return subprocess.Popen(
        [sys.executable, "-m", "pixeldojo_cli", "run", "flux-dev", prompt, *NO_WAIT],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_post(emulator: Emulator, count: int) -> None:
    """Until the server has received `count` POSTs (their answers held back)."""
    deadline = time.monotonic() + 60
    while posts(emulator) < count:
        assert time.monotonic() < deadline, "the POST never reached the server"
        time.sleep(0.05)
    time.sleep(0.2)


# --- #3/#4: killed while the POST is in flight -------------------------------------------


def test_a_process_killed_while_its_post_is_in_flight_keeps_its_reservation(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    # The server holds each answer back: the POST has reached it when the kill lands.
    emulator.add_fault("delay", method="POST", path=r"/run$", delay=3.0, count=-1)
    proc = start_run(emulator, tmp_path, "fox")
    wait_for_post(emulator, 1)
    proc.kill()
    proc.wait()
    for _ in range(2):
        refused = cli("run", "flux-dev", "a fox", *NO_WAIT, env=daily("1"))
        assert refused.exit_code == 4 and "(budget_exceeded)" in refused.stderr
    assert posts(emulator) == 1
    assert states() == ["uncertain"]  # its process is gone: the POST may have been taken


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_post_keeps_its_reservation_and_says_the_job_may_be_charged(
    cli: Invoke, emulator: Emulator, tmp_path: Path, signum: int, code: int
) -> None:
    emulator.add_fault("delay", method="POST", path=r"/run$", delay=3.0, count=-1)
    proc = start_run(emulator, tmp_path, "fox")
    wait_for_post(emulator, 1)
    proc.send_signal(signum)
    assert exit_code_within(proc, 60) == code
    _, err = proc.communicate()
    assert err.strip().splitlines() == [
        "Interrupted. The job may have been submitted and charged: check "
        "`pixeldojo jobs list` before submitting it again."
    ]
    assert states() == ["uncertain"]
    refused = cli("run", "flux-dev", "a fox", *NO_WAIT, env=daily("1"))
    assert refused.exit_code == 4 and posts(emulator) == 1


def test_a_held_reservation_of_a_live_process_counts_however_old(
    cli: Invoke, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from pixeldojo_cli.store.ledger import Ledger, reservations
    from pixeldojo_cli.store.ledger.claims import this_host

    Ledger().close()
    with sqlite3.connect(ledger_path()) as db:  # this (live) process's, its uploads slow
        db.execute(
            "INSERT INTO reservations (base_url, profile, credits, state, pid, host,"
            " reserved_at) VALUES (?, 'default', 1, 'held', ?, ?, ?)",
            (emulator.base_url, os.getpid(), this_host(), datetime.now(UTC).isoformat()),
        )
    later = datetime.now(UTC) + timedelta(hours=2)
    monkeypatch.setattr(reservations, "now", lambda: later)
    refused = cli("run", "flux-dev", "a fox", *NO_WAIT, env=daily("1"))
    assert refused.exit_code == 4, refused.output
    assert posts(emulator) == 0


# --- #11: a hostile model price -------------------------------------------------------------


def priced(value: Any) -> Any:
    """A `reshape` fault: every model's `creditCost` becomes `value`."""

    def reshape(answer: Any) -> Any:
        if isinstance(answer, dict) and isinstance(answer.get("model"), dict):
            return {**answer, "model": {**answer["model"], "creditCost": value}}
        if isinstance(answer, dict) and "creditCost" in answer and "jobId" not in answer:
            return {**answer, "creditCost": value}
        return answer

    return reshape


@pytest.mark.parametrize("price", [-1000, -1, {"default": -2, "type": "fixed"}])
def test_a_negative_model_price_is_unknown_so_a_budget_refuses_the_job(
    cli: Invoke, emulator: Emulator, price: Any
) -> None:
    emulator.add_fault("reshape", method="GET", path=r"/models/", other=priced(price), count=-1)
    for _ in range(3):
        refused = cli("run", "flux-dev", "a fox", *NO_WAIT, env=daily("2"))
        assert refused.exit_code == 4, refused.output
        assert "(budget_unchecked)" in refused.stderr and "unknown" in refused.stderr
    assert posts(emulator) == 0


def test_a_negative_price_or_duration_gives_no_estimate() -> None:
    from pixeldojo_cli.api.results import parse_cost, parse_model
    from pixeldojo_cli.inputs.schema import estimate_cost

    for price in (-1, float("nan"), float("-inf"), {"perSecond": -3}):
        assert parse_cost(price).default is None
    assert parse_cost({"default": 1, "byResolution": {"1 MP": -100}}).by_resolution == {}
    video = parse_model({"apiId": "v", "creditCost": {"perSecond": 2, "type": "per_second"}})
    assert estimate_cost(video, None, {"duration": -5}) is None
    assert estimate_cost(video, None, {"duration": 5}) == 10


def test_a_negative_reservation_in_the_ledger_never_lowers_what_others_count(
    cli: Invoke, emulator: Emulator
) -> None:
    from pixeldojo_cli.store.ledger import Ledger

    assert cli("run", "flux-dev", "a fox", *NO_WAIT, env=daily("1")).exit_code == 0
    Ledger().close()
    with sqlite3.connect(ledger_path()) as db:  # as a version that took a negative price left it
        db.execute(
            "INSERT INTO reservations (base_url, profile, credits, state, pid, host,"
            " reserved_at) VALUES (?, 'default', -50, 'uncertain', 1, 'h', ?)",
            (emulator.base_url, datetime.now(UTC).isoformat()),
        )
    refused = cli("run", "flux-dev", "a fox", *NO_WAIT, env=daily("1"))
    assert refused.exit_code == 4 and posts(emulator) == 1


# --- #24: a damaged ledger, moved aside ---------------------------------------------------


def test_a_budget_refuses_to_spend_when_a_damaged_ledger_was_moved_aside_in_its_window(
    cli: Invoke, emulator: Emulator
) -> None:
    assert cli("run", "flux-dev", "a fox", *NO_WAIT, env=daily("1")).exit_code == 0
    with open(ledger_path(), "r+b") as damaged:
        damaged.write(b"garbage garbage garbage garbage!")
    for suffix in ("-wal", "-shm"):
        Path(f"{ledger_path()}{suffix}").unlink(missing_ok=True)
    for _ in range(2):  # the command that moves it aside, and the next one
        refused = cli("run", "flux-dev", "a fox", *NO_WAIT, env=daily("1"))
        assert refused.exit_code == 4, refused.output
        [line] = [x for x in refused.stderr.splitlines() if x.startswith("error:")]
        assert "damaged" in line and "--ignore-budget" in line
        assert line.endswith("(budget_unchecked)")
    assert posts(emulator) == 1
    dry = cli("run", "flux-dev", "a fox", "--dry-run", env=daily("1"))
    assert dry.exit_code == 0 and "moved to" in dry.output
    assert cli("run", "flux-dev", "a", *NO_WAIT, "--ignore-budget", env=daily("1")).exit_code == 0
    [aside] = ledger_path().parent.glob("jobs.sqlite3.damaged-*")
    aside.rename(aside.parent.parent / aside.name)  # the user moved it out: counted afresh
    assert cli("run", "flux-dev", "a", *NO_WAIT, env=daily("2")).exit_code == 0
    assert cli("run", "flux-dev", "a", *NO_WAIT, env=daily("2")).exit_code == 4
    assert posts(emulator) == 3


# --- #16/#15: a bad value in the config file ------------------------------------------------


BAD_VALUES = [
    ("[defaults]\nbudget_monthly = -1\n", "budget_monthly", "5"),
    ('[profiles.default]\nbudget_daily = "ten"\n', "budget_daily", "5"),
    ("[defaults]\nrate_limit = -1\n", "rate_limit", "30"),
    ("[defaults]\npoll_interval = -1\n", "poll_interval", "3"),
]


@pytest.mark.parametrize(("text", "key", "good"), BAD_VALUES)
def test_a_bad_value_in_the_config_file_is_one_line_that_names_the_fix(
    cli: Invoke, emulator: Emulator, isolated_env: Path, text: str, key: str, good: str
) -> None:
    write_config(isolated_env, text)
    result = cli("run", "flux-dev", "a fox", *NO_WAIT)
    assert result.exit_code == 2 and posts(emulator) == 0
    [line] = result.stderr.strip().splitlines()
    assert f"{key} must be" in line and line.endswith(
        f"Fix it with `pixeldojo config set {key} VALUE`. (config_error)"
    )


@pytest.mark.parametrize(("text", "key", "good"), BAD_VALUES)
def test_config_set_replaces_a_bad_value_every_command_refuses(
    cli: Invoke, emulator: Emulator, isolated_env: Path, text: str, key: str, good: str
) -> None:
    path = write_config(isolated_env, text)
    fixed = cli("config", "set", key, good)
    assert fixed.exit_code == 0, fixed.output
    assert cli("config", "get", key).stdout.strip() == str(float(good))
    assert cli("run", "flux-dev", "a fox", *NO_WAIT).exit_code == 0, path.read_text()


@pytest.mark.parametrize(("text", "key", "good"), BAD_VALUES)
def test_config_unset_removes_a_bad_value(
    cli: Invoke, emulator: Emulator, isolated_env: Path, text: str, key: str, good: str
) -> None:
    path = write_config(isolated_env, text)
    assert cli("config", "unset", key).exit_code == 0
    assert key not in path.read_text()
    assert cli("run", "flux-dev", "a fox", *NO_WAIT).exit_code == 0


def test_config_get_and_list_report_a_bad_value_and_still_work(
    cli: Invoke, isolated_env: Path
) -> None:
    import json

    write_config(isolated_env, "[defaults]\nbudget_monthly = -1\n")
    bad = cli("config", "get", "budget_monthly")
    assert bad.exit_code == 2
    [line] = bad.stderr.strip().splitlines()
    assert "budget_monthly must be a number of credits, 0 or more; got '-1'" in line
    assert "`pixeldojo config set budget_monthly VALUE`" in line
    assert "`pixeldojo config unset budget_monthly`" in line
    good = cli("config", "get", "output_dir")
    assert good.exit_code == 0 and good.stdout.strip() == "."
    listed = cli("config", "list")
    assert listed.exit_code == 0 and "budget_monthly" in listed.stdout
    assert "got '-1'" in listed.stderr
    document = json.loads(cli("config", "list", "--json").stdout)
    entry = document["settings"]["budget_monthly"]
    assert entry["value"] == -1 and "0 or more" in entry["problem"]
    assert "problem" not in document["settings"]["output_dir"]


def test_an_unknown_profile_names_each_known_profile_once(cli: Invoke, isolated_env: Path) -> None:
    write_config(isolated_env, "[profiles.default]\nbudget_daily = 1\n[profiles.ci]\nx = 1\n")
    refused = cli("--profile", "nope", "config", "set", "budget_daily", "5")
    assert refused.exit_code == 2 and "(known: default, ci)" in refused.stderr


@pytest.mark.parametrize("blank", [" ", "\n", " \t "])
def test_a_blank_budget_variable_is_unset_as_an_empty_one_is(
    cli: Invoke, emulator: Emulator, blank: str
) -> None:
    assert cli("run", "flux-dev", "a", *NO_WAIT, env=daily(blank)).exit_code == 0
    assert cli("run", "flux-dev", "a", *NO_WAIT, env=daily("1\n")).exit_code == 4


# --- #33: the same API spelled another way ------------------------------------------------


def test_the_same_api_spelled_another_way_shares_one_budget(
    cli: Invoke, emulator: Emulator
) -> None:
    port = emulator.base_url.split(":")[2].split("/")[0]
    spellings = [
        emulator.base_url,
        f"HTTP://127.0.0.1:{port}/api/v1",
        f"http://127.0.0.1:{port}//api/v1/",
        f"http://127.0.0.1:{port}/api/v1/.",
        f"http://127.0.0.1:{port}/api/x/../v1",
        f"http://2130706433:{port}/api/v1",
        f"http://[::ffff:127.0.0.1]:{port}/api/v1",
    ]
    codes = [
        cli(
            "run", "flux-dev", "a", *NO_WAIT, env={**daily("1"), "PIXELDOJO_BASE_URL": url}
        ).exit_code
        for url in spellings
    ]
    assert codes == [0] + [4] * (len(spellings) - 1)
    assert posts(emulator) == 1
    with sqlite3.connect(ledger_path()) as db:
        assert db.execute("SELECT DISTINCT base_url FROM jobs").fetchall() == [(emulator.base_url,)]


def test_a_base_url_has_one_spelling_and_the_default_keeps_its_own() -> None:
    from pixeldojo_cli.api.base_url import canonical_base_url
    from pixeldojo_cli.store.settings import DEFAULT_BASE_URL, parse_setting, resolve_settings

    assert canonical_base_url(DEFAULT_BASE_URL) == DEFAULT_BASE_URL  # old ledgers still found
    for spelling in (
        "HTTPS://PixelDojo.AI/api/v1",
        "https://pixeldojo.ai:443/api/v1/",
        "https://pixeldojo.ai//api//v1/./",
    ):
        assert canonical_base_url(spelling) == DEFAULT_BASE_URL
        assert parse_setting("base_url", spelling) == DEFAULT_BASE_URL
        settings = resolve_settings(env={"PIXELDOJO_BASE_URL": spelling}, config={})
        assert settings.base_url.value == DEFAULT_BASE_URL
    assert canonical_base_url("http://h:8080/api") == "http://h:8080/api"  # not the default


# --- #28: what --dry-run says --------------------------------------------------------------


def test_compare_and_matrix_dry_runs_show_the_budget_as_a_batch_does(
    cli: Invoke, emulator: Emulator
) -> None:
    compare = cli("compare", "flux-dev,seedream-4", "a fox", "--dry-run", env=daily("3"))
    assert compare.exit_code == 0, compare.output
    assert "Daily budget: 0 of 3 credits spent today; the comparison's 2 credits " in (
        compare.stderr
    )
    matrix = cli("run", "flux-dev", "a fox", "-m", "seed=1..4", "--dry-run", env=daily("3"))
    assert matrix.exit_code == 0, matrix.output
    assert "the sweep's 4 credits (estimated) would pass it" in matrix.stderr
    assert posts(emulator) == 0


def test_a_refusal_says_spent_or_reserved_and_many_credits_fit(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    assert cli("run", "flux-dev", "a", *NO_WAIT, env=daily("1")).exit_code == 0
    refused = cli("run", "flux-dev", "a", *NO_WAIT, env=daily("1"))
    assert "error: 1 credit spent or reserved today + this job's" in refused.stderr
    lines = tmp_path / "b.txt"
    lines.write_text("one\ntwo\nthree\n")
    dry = cli("run", "flux-dev", "--batch", str(lines), "--dry-run", env=daily("10"))
    assert "the batch's 3 credits (estimated) fit." in dry.stderr, dry.stderr


# --- #31: `pixeldojo api POST models/X/run` -----------------------------------------------


def test_api_post_to_a_run_route_is_budgeted_and_recorded_however_spelled(
    cli: Invoke, emulator: Emulator
) -> None:
    first = cli("api", "POST", "models/flux-dev/run", "-f", "prompt=a fox", env=daily("2"))
    assert first.exit_code == 0, first.output
    job_id = json.loads(first.stdout)["jobId"]
    with sqlite3.connect(ledger_path()) as db:
        assert db.execute("SELECT id, model FROM jobs").fetchall() == [(job_id, "flux-dev")]
    assert cli("run", "flux-dev", "a fox", *NO_WAIT, env=daily("2")).exit_code == 0
    for words in (
        ("POST", "models/flux-dev/run"),
        ("POST", "/api/v1/models/flux-dev/run"),
        ("POST", f"{emulator.base_url}/MODELS/flux-dev/run/"),
        ("POST", "models%2Fflux-dev%2Frun"),
        ("-X", "PUT", "models/flux-dev//run"),
    ):
        refused = cli("api", *words, "-f", "prompt=a fox", env=daily("2"))
        assert refused.exit_code == 4, (words, refused.output)
        assert "(budget_exceeded)" in refused.stderr
    assert posts(emulator) == 2
    ignored = cli(
        "api", "POST", "models/flux-dev/run", "-f", "prompt=x", "--ignore-budget", env=daily("2")
    )
    assert ignored.exit_code == 0 and posts(emulator) == 3
