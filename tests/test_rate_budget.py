"""One rate budget per (API origin, key), shared by every `pixeldojo` process on
the machine through a small file in the user cache folder; and never a reason
for a command to fail."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from pixeldojo_cli.api import ratelimit
from pixeldojo_cli.api.client import Client
from pixeldojo_cli.api.origin import origin_of
from pixeldojo_cli.api.ratelimit import RateLimiter, SharedBudget, budget_file_name
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.store.settings import cache_dir

from conftest import PYTHON, TEST_KEY, Invoke, max_in_any_window, run_subprocess_env

fcntl = pytest.importorskip("fcntl")  # the budget is shared only where flock exists

ORIGIN = ("https", "api.example", 443)


class FakeClock:
    """One clock for every limiter and budget of a test: wall and monotonic alike."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def limiter(folder: Path, clock: FakeClock, *, per_window: int = 10) -> RateLimiter:
    budget = SharedBudget(folder / budget_file_name(ORIGIN, TEST_KEY), window=2.0, clock=clock)
    return RateLimiter(per_window, clock=clock, sleep=clock.sleep, window=2.0, budget=budget)


# --- the budget file, with a fake clock ------------------------------------------


def test_limiters_sharing_a_file_stay_under_the_limit_together(tmp_path: Path) -> None:
    clock = FakeClock()
    limiters = [limiter(tmp_path, clock) for _ in range(4)]
    sent = []
    for n in range(60):
        one = limiters[n % 4]
        one.answered(one.acquire())
        sent.append(clock.now)
    assert max_in_any_window(sent, 2.0) <= 10
    assert all(one.shared for one in limiters)


def test_separate_limiters_without_the_file_would_not(tmp_path: Path) -> None:
    clock = FakeClock()
    limiters = [RateLimiter(10, clock=clock, sleep=clock.sleep, window=2.0) for _ in range(4)]
    sent = []
    for n in range(40):
        limiters[n % 4].acquire()
        sent.append(clock.now)
    assert max_in_any_window(sent, 2.0) == 40


def test_a_slot_is_held_until_the_answer_arrives(tmp_path: Path) -> None:
    clock = FakeClock()
    one = limiter(tmp_path, clock, per_window=1)
    ticket = one.acquire()
    clock.now += 1.5  # a slow answer
    one.answered(ticket)
    started = clock.now
    one.acquire()
    assert clock.now - started >= 2.0  # a full window after the answer, not after the send


def test_a_retry_after_pause_is_shared(tmp_path: Path) -> None:
    clock = FakeClock()
    first, second = limiter(tmp_path, clock), limiter(tmp_path, clock)
    first.on_rate_limited(1.5)
    started = clock.now
    second.acquire()
    assert clock.now - started >= 1.5


def test_send_times_left_by_a_crashed_process_expire(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / budget_file_name(ORIGIN, TEST_KEY)
    stale = [[clock.now - 2.5 + n * 0.01, n] for n in range(10)]
    path.write_text(json.dumps({"v": 1, "sent": stale, "not_before": 0}))
    started = clock.now
    limiter(tmp_path, clock).acquire()
    assert clock.now == started


def test_a_pause_from_the_far_future_is_not_obeyed(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / budget_file_name(ORIGIN, TEST_KEY)
    path.write_text(json.dumps({"v": 1, "sent": [], "not_before": clock.now + 10**6}))
    started = clock.now
    limiter(tmp_path, clock).acquire()
    assert clock.now == started


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00\xff garbage", b"[1, 2]", b'{"sent": [["x", 1]]}', b"{" * 300_000, b"[" * 200_000],
)
def test_a_damaged_budget_file_is_reset(tmp_path: Path, content: bytes) -> None:
    clock = FakeClock()
    path = tmp_path / budget_file_name(ORIGIN, TEST_KEY)
    path.write_bytes(content)
    one = limiter(tmp_path, clock)
    one.answered(one.acquire())
    assert one.shared
    assert len(json.loads(path.read_text())["sent"]) == 1


def test_a_lock_that_is_never_released_makes_the_process_count_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ratelimit, "_LOCK_PATIENCE", 0.05)
    clock = FakeClock()
    one = limiter(tmp_path, clock)
    with open(tmp_path / budget_file_name(ORIGIN, TEST_KEY), "rb") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)  # a stopped process holding the lock
        one.answered(one.acquire())
    assert not one.shared


def test_the_file_is_named_by_a_hash_and_never_holds_the_key(tmp_path: Path) -> None:
    clock = FakeClock()
    folder = tmp_path / "budget"
    folder.mkdir()
    one = limiter(folder, clock)
    one.answered(one.acquire())
    [path] = folder.iterdir()
    assert TEST_KEY not in path.name and "api.example" not in path.name
    assert TEST_KEY.encode() not in path.read_bytes()
    assert budget_file_name(ORIGIN, "another-key-000000") != path.name
    assert budget_file_name(("http", "127.0.0.1", 8765), TEST_KEY) != path.name


def test_a_folder_that_cannot_be_written_falls_back_to_a_per_process_budget(
    tmp_path: Path,
) -> None:
    not_a_folder = tmp_path / "ratelimit"
    not_a_folder.write_text("a file where the folder should be")
    assert SharedBudget.open(not_a_folder, ORIGIN, TEST_KEY, window=60) is None


# --- concurrent processes against the emulator ------------------------------------

WORKER = """
import sys
from pathlib import Path
from pixeldojo_cli.api.client import Client
from pixeldojo_cli.core.errors import RateLimitError
from pixeldojo_cli.api.transport import RetryPolicy

base_url, key, budget, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
client = Client(
    api_key=key, base_url=base_url, rate_limit=10, rate_window=2.0,
    budget_dir=Path(budget) if budget else None, retry=RetryPolicy(max_attempts=1),
)
refused = 0
for _ in range(count):
    try:
        client.list_jobs(limit=1)
    except RateLimitError:
        refused += 1
print(refused)
"""


def run_workers(emulator: Emulator, budget: str, processes: int, each: int) -> list[int]:
    workers = [
        subprocess.Popen(
            [PYTHON, "-c", WORKER, emulator.base_url, TEST_KEY, budget, str(each)],
            stdout=subprocess.PIPE,
            text=True,
            env=run_subprocess_env(),
        )
        for _ in range(processes)
    ]
    return [int(worker.communicate(timeout=120)[0]) for worker in workers]


@pytest.mark.slow
def test_concurrent_processes_stay_under_the_limit_together(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    # The 60-per-60 s rule scaled down 30x (10 per 2 s) so that it runs in seconds.
    emulator = make_emulator(rate_limit=10, rate_window=2.0)
    refused = run_workers(emulator, str(tmp_path / "budget"), processes=4, each=10)
    assert refused == [0, 0, 0, 0]
    assert emulator.rate_limited == 0
    requests = emulator.requests_to("GET", r"/jobs$")
    assert len(requests) == 40
    assert max_in_any_window([r.at for r in requests], 2.0) <= 10


def test_concurrent_processes_each_with_their_own_budget_are_refused(
    make_emulator: Callable[..., Emulator],
) -> None:
    # The same load without the shared file: what the shared budget prevents.
    emulator = make_emulator(rate_limit=10, rate_window=2.0)
    refused = run_workers(emulator, "", processes=4, each=5)
    assert sum(refused) > 0
    assert emulator.rate_limited > 0


# --- the CLI ----------------------------------------------------------------------


def budget_path_for(emulator: Emulator) -> Path:
    return cache_dir() / "ratelimit" / budget_file_name(origin_of(emulator.base_url), TEST_KEY)


def test_the_cli_shares_its_budget_through_the_cache_folder(
    cli: Invoke, emulator: Emulator
) -> None:
    assert cli("jobs", "list").exit_code == 0
    path = budget_path_for(emulator)
    assert len(json.loads(path.read_text())["sent"]) == 1
    assert TEST_KEY.encode() not in path.read_bytes()


def test_a_damaged_budget_file_never_fails_a_command(cli: Invoke, emulator: Emulator) -> None:
    path = budget_path_for(emulator)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00not json at all")
    result = cli("jobs", "list")
    assert result.exit_code == 0, result.output
    assert len(json.loads(path.read_text())["sent"]) == 1


def test_an_unwritable_budget_folder_never_fails_a_command(cli: Invoke) -> None:
    cache_dir().mkdir(parents=True)
    (cache_dir() / "ratelimit").write_text("a file where the folder should be")
    result = cli("jobs", "list")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


def test_the_variable_turns_sharing_off(cli: Invoke, emulator: Emulator) -> None:
    result = cli("jobs", "list", env={"PIXELDOJO_SHARED_RATE_BUDGET": "0"})
    assert result.exit_code == 0
    assert not budget_path_for(emulator).exists()


def test_the_embedded_emulator_shares_no_budget(tmp_path: Path) -> None:
    from conftest import make_invoker

    result = make_invoker(None, key=None)("--emulator", "jobs", "list")
    assert result.exit_code == 0, result.output
    assert not (cache_dir() / "ratelimit").exists()


def test_the_library_client_does_not_share_unless_asked(emulator: Emulator) -> None:
    with Client(api_key=TEST_KEY, base_url=emulator.base_url) as client:
        client.list_jobs()
        assert not client.transport.limiter.shared
    assert not (cache_dir() / "ratelimit").exists()
