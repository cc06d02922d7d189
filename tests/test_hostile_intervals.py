"""Intervals have a floor (issue 24, class 7): no schedule polls a job more often
than every 0.25 s, whatever it was asked; values no one can mean (0, negative,
not finite, under 0.01 s) are refused alike in a flag, `config set`, the
environment and the config file, saying what range is allowed."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pixeldojo_cli.api.client import Client
from pixeldojo_cli.core.durations import LIMITS, DurationError, seconds
from pixeldojo_cli.core.errors import UsageError
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.emulator.messages import RecordedRequest
from pixeldojo_cli.engine import Follower, WaitOptions, follow, wait
from pixeldojo_cli.engine.schedule import (
    FLOOR,
    FixedSchedule,
    choose_schedule,
    fixed_schedule,
)

from conftest import TEST_KEY, Invoke, make_invoker

# A job long enough for a schedule without a floor to poll it many times.
JOB_SECONDS = 2.0
# What the arrival times of requests may lose to their transit on a busy machine.
SLACK = 0.15
NOT_MEANT = ["0", "-1", "-0.5", "nan", "inf", "-inf", "1e999", "1e-300", "1e-5", "0.001"]


@pytest.fixture
def slow(make_emulator: Callable[..., Emulator]) -> Emulator:
    """An API whose jobs take `JOB_SECONDS`, and no rate limit on either side to
    pace polls for the schedule (the floor is the schedule's, not the limiter's)."""
    emulator = make_emulator(latency=JOB_SECONDS, rate_limit=0)
    assert make_invoker(emulator)("config", "set", "rate_limit", "100000").exit_code == 0
    return emulator


def client_for(emulator: Emulator) -> Client:
    return Client(api_key=TEST_KEY, base_url=emulator.base_url, rate_limit=100000)


def assert_no_faster_than_the_floor(requests: list[RecordedRequest], what: str) -> None:
    """On average (so the transit of one request does not count) at least `FLOOR`
    between consecutive requests."""
    times = sorted(r.at for r in requests)
    assert len(times) >= 2, f"{what}: polled {len(times)} times"
    span = times[-1] - times[0]
    assert (len(times) - 1) * FLOOR <= span + SLACK, (what, len(times), round(span, 3))


def polls_per_job(emulator: Emulator) -> dict[str, list[RecordedRequest]]:
    polls: dict[str, list[RecordedRequest]] = defaultdict(list)
    for request in emulator.requests_to("GET", r"/jobs/job_[^/]*$"):
        polls[request.path].append(request)
    return polls


def one_line_error(result: object) -> str:
    stderr: str = getattr(result, "stderr")  # noqa: B009
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


# --- every schedule has the floor ----------------------------------------------------


@pytest.mark.parametrize(
    "flags",
    [
        ("--poll-interval", "0.1"),
        ("--poll-interval", "0.2", "--max-poll-interval", "0.2"),
        ("--poll-interval", "0.05", "--max-poll-interval", "0.1"),
        ("--poll-interval", "0.01", "--max-poll-interval", "0.01"),
    ],
)
def test_a_flag_under_the_floor_is_raised_to_it_not_refused(
    slow: Emulator, flags: tuple[str, ...]
) -> None:
    result = make_invoker(slow)("run", "flux-dev", "a fox", *flags)
    assert result.exit_code == 0, result.output
    for path, polls in polls_per_job(slow).items():
        assert_no_faster_than_the_floor(polls, path)


def test_a_setting_under_the_floor_is_raised_to_it_not_refused(slow: Emulator) -> None:
    cli = make_invoker(slow)
    assert cli("config", "set", "poll_interval", "0.05").exit_code == 0
    assert cli("config", "set", "max_poll_interval", "0.1").exit_code == 0
    result = cli("run", "flux-dev", "a fox")
    assert result.exit_code == 0, result.output
    for path, polls in polls_per_job(slow).items():
        assert_no_faster_than_the_floor(polls, path)


def test_the_list_follower_of_a_batch_keeps_the_floor(slow: Emulator) -> None:
    Path("b.txt").write_text("one\ntwo\nthree\nfour\n")
    flags = ("--poll-interval", "0.02", "--max-poll-interval", "0.05")
    result = make_invoker(slow)("run", "flux-dev", "--batch", "b.txt", *flags)
    assert result.exit_code == 0, result.output
    assert_no_faster_than_the_floor(slow.requests_to("GET", r"/jobs$"), "GET /jobs")
    # The list serves the batch; a job looked at by itself once or not at all
    # cannot have been polled too often.
    for path, polls in polls_per_job(slow).items():
        if len(polls) >= 2:
            assert_no_faster_than_the_floor(polls, path)


def test_jobs_wait_for_several_jobs_keeps_the_floor(slow: Emulator) -> None:
    with client_for(slow) as client:
        ids = [client.run("flux-dev", {"prompt": f"p{n}"}).id for n in range(3)]
    flags = ("--poll-interval", "0.01", "--max-poll-interval", "0.01")
    result = make_invoker(slow)("jobs", "wait", *ids, *flags)
    assert result.exit_code == 0, result.output
    assert_no_faster_than_the_floor(slow.requests_to("GET", r"/jobs$"), "GET /jobs")


def test_engine_wait_keeps_the_floor(slow: Emulator) -> None:
    with client_for(slow) as client:
        job = client.run("flux-dev", {"prompt": "a fox"})
        states = list(wait(client, job.id, poll_interval=0.01, max_poll_interval=0.01))
    assert states[-1].succeeded
    assert_no_faster_than_the_floor(polls_per_job(slow)[f"/api/v1/jobs/{job.id}"], job.id)


@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf, 1e-300, 1e-5])
def test_engine_wait_refuses_what_the_setting_refuses(slow: Emulator, value: float) -> None:
    with client_for(slow) as client:
        for kwargs in ({"poll_interval": value}, {"max_poll_interval": value}):
            with pytest.raises(UsageError, match=r"at least 0\.01s"):
                next(wait(client, "job_x", **kwargs))  # type: ignore[arg-type]
    assert slow.requests == []


class _Eager:
    """A library caller's schedule that asks to poll at once, every time."""

    def delay(self, elapsed: float, polls: int) -> float:
        return 0.0

    def eta(self, elapsed: float) -> float | None:
        return None


def test_a_library_callers_schedule_keeps_the_floor(slow: Emulator) -> None:
    with client_for(slow) as client:
        for options, eager in ((WaitOptions(), True), (WaitOptions(1e-300, 1e-300), False)):
            job = client.run("flux-dev", {"prompt": "a fox"})
            schedule_for = (lambda _: _Eager()) if eager else None
            ended = follow(client, [job], options, schedule_for=schedule_for)
            assert not isinstance(ended[job.id], Exception)
    for path, polls in polls_per_job(slow).items():
        assert_no_faster_than_the_floor(polls, path)


class _Staggered:
    """Every `FLOOR` after a first poll at `first`: jobs of different models fall
    due at different times, as learned schedules make them."""

    def __init__(self, first: float) -> None:
        self.first = first

    def delay(self, elapsed: float, polls: int) -> float:
        return self.first if polls == 0 else FLOOR

    def eta(self, elapsed: float) -> float | None:
        return None


def test_jobs_due_at_staggered_times_are_looked_at_no_faster_than_the_floor(
    slow: Emulator,
) -> None:
    firsts = {"flux-dev": 0.25, "flux-krea-dev": 0.375}
    with client_for(slow) as client:
        follower = Follower(
            client, WaitOptions(), schedule_for=lambda m: _Staggered(firsts[m or ""])
        )
        for model in firsts:
            follower.add(client.run(model, {"prompt": "a fox"}), model=model)
        ended: dict[str, object] = {}
        while len(follower):
            time.sleep(follower.pause())
            ended.update(follower.poll_due())
    assert all(not isinstance(end, Exception) for end in ended.values())
    assert_no_faster_than_the_floor(slow.requests_to("GET", r"/jobs$"), "GET /jobs")


def test_the_fixed_schedule_doubles_from_the_floor_however_small_it_is_built() -> None:
    assert [FixedSchedule(1e-300, 30.0).delay(0, n) for n in range(4)] == [0.25, 0.5, 1, 2]
    assert [FixedSchedule(1e-300, 1e-300).delay(0, n) for n in range(3)] == [0.25] * 3
    assert [fixed_schedule(0.01, 0.1).delay(0, n) for n in range(3)] == [0.25] * 3
    assert [fixed_schedule(0.1, 1).delay(0, n) for n in range(4)] == [0.25, 0.5, 1, 1]


def test_a_maximum_under_the_first_interval_is_raised_to_it() -> None:
    schedule = choose_schedule([], 2.0, 1.0)
    assert [schedule.delay(0, n) for n in range(3)] == [2, 2, 2]


@given(
    st.floats(min_value=1e-300, max_value=86000),
    st.floats(min_value=1e-300, max_value=86000),
    st.integers(min_value=0, max_value=200),
)
def test_no_fixed_schedule_waits_less_than_the_floor(
    first: float, maximum: float, polls: int
) -> None:
    for schedule in (fixed_schedule(first, maximum), FixedSchedule(first, maximum)):
        assert schedule.delay(0, polls) >= FLOOR
        assert schedule.delay(0, polls + 1) >= schedule.delay(0, polls)


# --- values that cannot be meant are refused, everywhere alike -------------------------


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_every_duration_refuses_what_cannot_be_meant(name: str) -> None:
    unit = "s" if LIMITS[name].unit else ""
    for text in ("1e-300", "1e-5", "0.001", "0.009", "-1", "nan", "1e999"):
        if unit and "e" in text:
            continue  # `--since` takes only numbers with units
        if text == "1e999" and math.isinf(LIMITS[name].most):
            continue  # the emulator's knobs take forever
        with pytest.raises(DurationError, match=r"at least 0\.01s"):
            seconds(text + unit, name)
    assert seconds("0.01" + unit, name) == 0.01


FLAGS = [
    ("run", "flux-dev", "x", "--poll-interval"),
    ("run", "flux-dev", "x", "--max-poll-interval"),
    ("run", "flux-dev", "x", "--timeout"),
    ("jobs", "wait", "job_x", "--poll-interval"),
    ("jobs", "wait", "job_x", "--max-poll-interval"),
    ("jobs", "wait", "job_x", "--timeout"),
    ("webhook", "listen", "--grace"),
]


@pytest.mark.parametrize("flag", FLAGS, ids=[" ".join(f[::3]) for f in FLAGS])
def test_a_flag_refuses_what_cannot_be_meant(
    cli: Invoke, emulator: Emulator, flag: tuple[str, ...]
) -> None:
    *command, option = flag
    for value in NOT_MEANT:
        result = cli(*command, f"{option}={value}")
        assert result.exit_code == 2, (value, result.output)
        line = one_line_error(result)
        assert option in line and "at least 0.01s" in line, line
    assert emulator.requests == []


@pytest.mark.parametrize("key", ["poll_interval", "max_poll_interval", "unknown_status_timeout"])
def test_config_set_refuses_what_cannot_be_meant(cli: Invoke, isolated_env: Path, key: str) -> None:
    for value in NOT_MEANT:
        result = cli("config", "set", "--", key, value)
        assert result.exit_code == 2, (value, result.output)
        assert key in one_line_error(result) and "at least 0.01s" in result.stderr
    assert not list(isolated_env.rglob("config.toml"))


@pytest.mark.parametrize(
    "line",
    [
        "poll_interval = 1e-300",
        "poll_interval = 0",
        "max_poll_interval = -2.5",
        "max_poll_interval = nan",
        "poll_interval = inf",
        'poll_interval = "1e-5"',
        "unknown_status_timeout = 0.001",
    ],
)
def test_the_config_file_refuses_what_cannot_be_meant(
    cli: Invoke, emulator: Emulator, isolated_env: Path, line: str
) -> None:
    path = isolated_env / "xdg_config_home" / "pixeldojo" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text(f"[defaults]\n{line}\n")
    result = cli("run", "flux-dev", "a fox")
    assert result.exit_code == 2, result.output
    first = result.stderr.splitlines()[0]
    key = line.split(" ")[0]
    assert str(path) in first and key in first and "at least 0.01s" in first, result.stderr
    assert emulator.requests == []


@pytest.mark.parametrize("value", NOT_MEANT)
def test_the_environment_refuses_what_cannot_be_meant(
    cli: Invoke, emulator: Emulator, value: str
) -> None:
    result = cli("run", "flux-dev", "a fox", env={"PIXELDOJO_UNKNOWN_STATUS_TIMEOUT": value})
    assert result.exit_code == 2, result.output
    line = one_line_error(result)
    assert "$PIXELDOJO_UNKNOWN_STATUS_TIMEOUT" in line and "at least 0.01s" in line
    assert emulator.requests == []


@pytest.mark.parametrize("value", ["0", "0.5", "1e-300", "nan", "inf", "-1"])
def test_a_rate_limit_that_cannot_be_meant_is_refused(cli: Invoke, value: str) -> None:
    result = cli("config", "set", "--", "rate_limit", value)
    assert result.exit_code == 2, result.output
    assert "at least 1" in one_line_error(result)
    assert cli("config", "set", "rate_limit", "1").exit_code == 0
