"""Numbers no one can mean, round three (issue 24, class 7's variants): a planted
history of denormal durations, the deadline's last look, an emulator told to
keep outputs for ever, `config set KEY -1`, digits of other scripts, a rate
limit of 1e308, and the library handed a string or a schedule saying inf."""

from __future__ import annotations

import json
import math
import sqlite3
import sys
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pixeldojo_cli.api.client import Client
from pixeldojo_cli.core.durations import DAY, DurationError, seconds
from pixeldojo_cli.core.errors import (
    ConfigError,
    JobsInterruptedError,
    UsageError,
    WaitTimeoutError,
)
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.engine import WaitOptions, follow, wait
from pixeldojo_cli.engine.schedule import FLOOR, MAX_DELAY, choose_schedule, learned_schedule
from pixeldojo_cli.store.ledger import ledger_path
from pixeldojo_cli.store.settings import MAX_RATE_LIMIT, parse_setting

from conftest import FAST, TEST_KEY, Invoke, make_invoker

# --- a planted history --------------------------------------------------------------

ODD_DURATIONS = [5e-324, sys.float_info.min, 1e-300, 1e-9, 0.0, -1.0, math.nan, math.inf]


@pytest.mark.parametrize("odd", ODD_DURATIONS, ids=repr)
def test_a_planted_history_of_odd_durations_does_not_crash_a_paid_run(
    cli: Invoke, emulator: Emulator, odd: float
) -> None:
    for n in range(3):
        assert cli("run", "flux-dev", f"seed {n}", "--no-download", *FAST).exit_code == 0
    with sqlite3.connect(ledger_path()) as db:
        db.execute("update jobs set duration = ?", (odd,))
    result = cli("run", "flux-dev", "after", "--no-download")  # the learned schedule
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "unexpected" not in result.output


FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(ODD_DURATIONS)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=st.lists(FLOATS, max_size=25)
    | st.lists(FLOATS, min_size=3, max_size=3).map(
        lambda three: three * 5  # duplicates
    ),
    elapsed=st.floats(min_value=0, max_value=1e9),
    polls=st.integers(min_value=0, max_value=10**6),
)
def test_every_learned_schedule_waits_a_finite_time_at_the_floor_or_more(
    history: list[float], elapsed: float, polls: int
) -> None:
    for schedule in (learned_schedule(history), learned_schedule(history, "video")):
        delay = schedule.delay(elapsed, polls)
        assert math.isfinite(delay) and FLOOR <= delay <= MAX_DELAY, (history, elapsed, delay)
        eta = schedule.eta(elapsed)
        assert eta is None or math.isfinite(eta)
    fixed = choose_schedule(history, 0.3, None)
    assert math.isfinite(fixed.delay(elapsed, polls)) and fixed.delay(elapsed, polls) >= FLOOR


# --- the deadline's last look keeps the floor ---------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert math.isfinite(seconds), seconds
        self.now += seconds


def test_the_last_look_at_the_deadline_keeps_the_floor(
    make_emulator: Callable[..., Emulator],
) -> None:
    """A poll at 0.25 s, the deadline at 0.3 s: the job was seen 0.05 s ago, so
    the deadline's last look is not another GET (it was one, under the floor)."""
    emulator = make_emulator(latency=600, rate_limit=0)
    fake = FakeTime()
    with Client(api_key=TEST_KEY, base_url=emulator.base_url, rate_limit=100000) as client:
        job_id = client.run("flux-dev", {"prompt": "x"}).id
        waiting = wait(
            client,
            job_id,
            poll_interval=0.25,
            max_poll_interval=10,
            timeout=0.3,
            sleep=fake.sleep,
            clock=fake.clock,
        )
        with pytest.raises(WaitTimeoutError):
            list(waiting)
    assert len(emulator.requests_to("GET", rf"/jobs/{job_id}$")) == 1


# --- the emulator's endless ttl ------------------------------------------------------


@pytest.mark.parametrize("ttl", [math.inf, 1e308, 1e20])
def test_an_emulator_keeping_outputs_for_ever_answers_about_finished_jobs(
    make_emulator: Callable[..., Emulator], ttl: float
) -> None:
    emulator = make_emulator(ttl=ttl)
    result = make_invoker(emulator)("run", "flux-dev", "x", "--json", "--timeout", "20s", *FAST)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["status"] == "completed" and document["files"]
    assert document["expiresAt"].startswith("9999-12-31T23:59:59")


# --- config set KEY -1 ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["-1", "-0", "-1e-300", "-inf", "-2s"])
@pytest.mark.parametrize(
    "key", ["poll_interval", "max_poll_interval", "unknown_status_timeout", "rate_limit"]
)
def test_config_set_refuses_a_negative_value_saying_the_range(
    cli: Invoke, key: str, value: str
) -> None:
    result = cli("config", "set", key, value)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert f"{key} must be" in lines[0] and "at least" in lines[0], lines[0]
    assert f"got '{value}'" in lines[0]


def test_config_set_still_has_its_help(cli: Invoke) -> None:
    result = cli("config", "set", "--help")
    assert result.exit_code == 0 and "Save a setting" in result.output


# --- ASCII digits, and a rate limit that can be meant --------------------------------

OTHER_DIGITS = ["\u0663", "\uff11\uff10", "\u0663s", "\u0967\u0966m", "1_000", "1\u06f0"]


@pytest.mark.parametrize("text", OTHER_DIGITS)
@pytest.mark.parametrize("name", ["--timeout", "--poll-interval", "poll_interval"])
def test_a_duration_takes_ascii_digits_only(text: str, name: str) -> None:
    with pytest.raises(DurationError):
        seconds(text, name)


@pytest.mark.parametrize("text", ["inf", "Infinity", "1e999", " 1E3 ", ".5", "1h30"])
def test_what_ascii_numbers_said_before_they_still_say(text: str) -> None:
    expected = {" 1E3 ": 1000.0, ".5": 0.5, "1h30": 3630.0}.get(text, math.inf)
    assert seconds(text, "--ttl") == expected


@pytest.mark.parametrize("text", OTHER_DIGITS)
def test_rate_limit_takes_ascii_digits_only(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_setting("rate_limit", text)


@pytest.mark.parametrize("text", ["1e308", "1e7", str(MAX_RATE_LIMIT + 1)])
def test_rate_limit_refuses_more_than_any_api_allows(cli: Invoke, text: str) -> None:
    result = cli("config", "set", "rate_limit", text)
    assert result.exit_code == 2, result.output
    assert f"at most {MAX_RATE_LIMIT:,}" in result.stderr


def test_rate_limit_takes_the_largest_it_allows(cli: Invoke) -> None:
    assert parse_setting("rate_limit", " 1e6 ") == MAX_RATE_LIMIT
    assert cli("config", "set", "rate_limit", "100000").exit_code == 0


# --- the library's odd arguments -----------------------------------------------------


@pytest.mark.parametrize("knob", ["poll_interval", "max_poll_interval", "timeout"])
def test_wait_refuses_an_interval_that_is_not_a_number(emulator: Emulator, knob: str) -> None:
    with (
        Client(api_key=TEST_KEY, base_url=emulator.base_url) as client,
        pytest.raises(UsageError, match=f"{knob} must be a number of seconds"),
    ):
        next(wait(client, "job_x", **{knob: "0.1"}))  # type: ignore[arg-type]
    assert emulator.requests == []


class Forever:
    def delay(self, elapsed: float, polls: int) -> float:
        return math.inf

    def eta(self, elapsed: float) -> float | None:
        return None


def test_a_schedule_saying_inf_waits_a_day_at_most(emulator: Emulator) -> None:
    asked: list[float] = []

    def sleep(seconds: float) -> None:
        asked.append(seconds)
        raise KeyboardInterrupt  # the user gives up; nothing slept

    with Client(api_key=TEST_KEY, base_url=emulator.base_url) as client:
        job = client.run("flux-dev", {"prompt": "x"})
        with pytest.raises(JobsInterruptedError):
            follow(client, [job], WaitOptions(), schedule_for=lambda _: Forever(), sleep=sleep)
    assert asked and asked[0] <= DAY, asked
