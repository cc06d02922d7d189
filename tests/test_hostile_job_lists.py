"""Issue 24, class 2, after an outside attack: a job list is a hint and the
job's own answer the truth. An end the list shows other than "completed with
outputs" is confirmed by the job's own `GET /jobs/{id}` (so it never takes a
paid job out of `download --pending`); a list caught saying a job ended that
did not is not asked again; own looks fit the deadline, and the last look at
the deadline asks each job itself without waiting on the rate budget past it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pixeldojo_cli import Client
from pixeldojo_cli.api.ratelimit import RateLimiter
from pixeldojo_cli.api.results import Job
from pixeldojo_cli.core.errors import RequestTimeoutError, WaitTimeoutError
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.engine import following
from pixeldojo_cli.engine.options import WaitOptions

from conftest import FAST, TEST_KEY, Invoke

THE_LIST = r"/jobs$"


def submitted(cli: Invoke, prompt: str = "x") -> str:
    result = cli("run", "flux-dev", prompt, "--no-wait", "--json")
    assert result.exit_code == 0, result.output
    return str(json.loads(result.stdout)["jobId"])


def completed(cli: Invoke, *prompts: str) -> list[str]:
    """Jobs submitted and finished on the server (not saved yet)."""
    jobs = [submitted(cli, prompt) for prompt in prompts]
    assert cli("jobs", "wait", *jobs, "--no-download", *FAST).exit_code == 0
    return jobs


def outputs_of(jobs: list[str]) -> list[str]:
    return sorted(f"{job}{end}" for job in jobs for end in ("-1.png", ".json"))


def saved_here(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(("job_", ".job_")))


def unsaved_in_ledger(cli: Invoke) -> list[str]:
    result = cli("jobs", "list", "--local", "--unsaved", "--all", "--json")
    assert result.exit_code == 0, result.output
    return sorted(entry["jobId"] for entry in json.loads(result.stdout))


def list_says(emulator: Emulator, status: str) -> None:
    """From now on `GET /jobs` shows every job with `status`, without outputs."""
    emulator.add_fault("list_says", method="GET", path=THE_LIST, other=status, count=-1)


# --- an end the list shows is a hint ------------------------------------------------

ENDS = ["failed", "expired", "canceled", "weird", "completed"]  # completed: without outputs


@pytest.mark.parametrize("status", ENDS)
def test_an_end_the_list_shows_is_confirmed_by_the_jobs_own_answer(
    cli: Invoke, emulator: Emulator, tmp_path: Path, status: str
) -> None:
    jobs = [submitted(cli, "a"), submitted(cli, "b")]
    list_says(emulator, status)
    result = cli("jobs", "wait", *jobs, "--timeout", "10", *FAST)
    assert result.exit_code == 0, result.output
    assert saved_here(tmp_path) == outputs_of(jobs)
    assert unsaved_in_ledger(cli) == []


def test_a_job_the_list_said_failed_stays_pending_for_download_pending(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    jobs = completed(cli, "a", "b")
    list_says(emulator, "failed")
    result = cli("jobs", "wait", *jobs, "--no-download", "--timeout", "10", *FAST)
    assert result.exit_code == 0, result.output
    assert cli("jobs", "list").exit_code == 0  # the remote list, recorded where it is taken
    assert unsaved_in_ledger(cli) == sorted(jobs)
    result = cli("download", "--pending")
    assert result.exit_code == 0, result.output
    assert saved_here(tmp_path) == outputs_of(jobs) and unsaved_in_ledger(cli) == []


def test_jobs_list_does_not_record_an_end_the_list_alone_shows(
    cli: Invoke, emulator: Emulator
) -> None:
    jobs = completed(cli, "a")
    for status in ("failed", "expired", "canceled"):
        list_says(emulator, status)
        result = cli("jobs", "list")
        assert result.exit_code == 0 and status in result.stdout, result.output
        emulator.faults.clear()
        assert unsaved_in_ledger(cli) == jobs, status


def test_a_list_caught_saying_jobs_ended_is_not_asked_again(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    jobs = [submitted(cli, "a"), submitted(cli, "b"), submitted(cli, "c")]
    list_says(emulator, "failed")
    before = len(emulator.requests_to("GET", THE_LIST))
    result = cli("jobs", "wait", *jobs, "--timeout", "20", *FAST)
    assert result.exit_code == 0, result.output
    assert saved_here(tmp_path) == outputs_of(jobs)
    assert len(emulator.requests_to("GET", THE_LIST)) - before == 1


def test_a_batch_is_not_ended_by_a_list_saying_its_jobs_failed(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    Path("b.txt").write_text("one\ntwo\nthree\n")
    list_says(emulator, "failed")
    result = cli("run", "flux-dev", "--batch", "b.txt", "--timeout", "20", "--json", *FAST)
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert [line["outcome"] for line in lines] == ["saved"] * 3
    assert unsaved_in_ledger(cli) == []


# --- own looks fit the deadline -------------------------------------------------------


def test_a_lagging_list_and_a_timeout_under_a_minute_end_with_the_jobs(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    jobs = completed(cli, "a", "b")
    emulator.add_fault("stale_list", method="GET", path=THE_LIST, count=-1)
    result = cli("jobs", "wait", *jobs, "--timeout", "8", *FAST)
    assert result.exit_code == 0, result.output
    assert saved_here(tmp_path) == outputs_of(jobs)


def test_a_lagging_list_and_a_batch_timeout_under_a_minute_end_with_the_jobs(
    cli: Invoke, emulator: Emulator
) -> None:
    Path("b.txt").write_text("one\ntwo\nthree\n")
    emulator.add_fault("stale_list", method="GET", path=THE_LIST, count=-1)
    result = cli("run", "flux-dev", "--batch", "b.txt", "--timeout", "8", "--json", *FAST)
    assert result.exit_code == 0, result.output
    assert [json.loads(x)["outcome"] for x in result.stdout.splitlines()] == ["saved"] * 3


def test_own_looks_come_by_half_the_time_left_and_not_more_often_than_the_floor() -> None:
    clock = [0.0]
    follower = following.Follower(
        Client(api_key=TEST_KEY), WaitOptions(timeout=20), clock=lambda: clock[0]
    )
    follower.add("job_a", look_now=False)
    tracked = follower._tracked["job_a"]
    due = following.Follower._own_look_due
    assert not due(follower, tracked, 9.9) and due(follower, tracked, 10.0)
    tracked.own_look = 19.9  # 0.1 s before the deadline: still no faster than the floor
    assert not due(follower, tracked, 19.9 + following.FLOOR / 2)
    assert due(follower, tracked, 19.9 + following.FLOOR)
    without = following.Follower(Client(api_key=TEST_KEY), WaitOptions(), clock=lambda: 0.0)
    without.add("job_a", look_now=False)
    assert not due(without, without._tracked["job_a"], following.OWN_LOOK_INTERVAL - 1)


def follower_of(client: Client, jobs: list[str], timeout: float = 600) -> following.Follower:
    follower = following.Follower(client, WaitOptions(poll_interval=30, timeout=timeout))
    for job in jobs:
        follower.add(job, look_now=False)  # first due in 30 s: only the last look asks
    return follower


def test_the_last_look_at_the_deadline_asks_each_job_itself(
    cli: Invoke, emulator: Emulator
) -> None:
    jobs = completed(cli, "a", "b", "c")
    emulator.add_fault("stale_list", method="GET", path=THE_LIST, count=-1)
    with Client(api_key=TEST_KEY, base_url=emulator.base_url) as client:
        ended = follower_of(client, jobs).at_deadline()
    assert sorted(ended) == sorted(jobs)
    assert all(isinstance(end, Job) and end.succeeded for end in ended.values()), ended


def test_the_last_look_does_not_wait_for_the_rate_budget(cli: Invoke, emulator: Emulator) -> None:
    jobs = completed(cli, "a", "b", "c")
    emulator.add_fault("stale_list", method="GET", path=THE_LIST, count=-1)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if seconds > following.LAST_LOOK_TIMEOUT:
            raise AssertionError(f"waited {seconds:.1f} s for the rate budget")
        time.sleep(seconds)

    # Two requests a minute: the list and one job's own answer, then no room.
    with Client(api_key=TEST_KEY, base_url=emulator.base_url, rate_limit=2, sleep=sleep) as client:
        ended = follower_of(client, jobs).at_deadline()
    assert sorted(ended) == sorted(jobs)
    timed_out = [job for job, end in ended.items() if isinstance(end, WaitTimeoutError)]
    assert len(timed_out) == 2 and all(w <= following.LAST_LOOK_TIMEOUT for w in waits)


def test_the_rate_limiter_gives_up_rather_than_wait_past_a_deadline() -> None:
    waits: list[float] = []
    limiter = RateLimiter(1, sleep=waits.append)
    limiter.acquire()
    with pytest.raises(RequestTimeoutError):
        limiter.acquire(by=time.monotonic() + 1.0)
    assert len(waits) == 1 and waits[0] <= 1.0  # up to the deadline, never the minute
