"""The ledger under faults: held by another process, read-only, records kept for
later, and `--batch` lines claimed by exactly one process."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pixeldojo_cli.api.results import parse_job
from pixeldojo_cli.core.errors import ExitCode, LedgerError
from pixeldojo_cli.store.ledger import (
    Ledger,
    LedgerFile,
    defer,
    pending_records_path,
    status_record,
    submission_record,
)

API = "https://api.example/api/v1"


def a_job(job_id: str = "job_1", status: str = "pending", **extra: Any) -> Any:
    return parse_job({"jobId": job_id, "status": status, **extra})


def record(ledger: Ledger, job_id: str = "job_1", *, input_hash: str | None = None) -> None:
    ledger.record_submission(
        a_job(job_id),
        base_url=API,
        profile="default",
        model="flux-dev",
        inputs={"prompt": "x"},
        estimated_credits=1,
        output_dir=ledger.path.parent,
        input_hash=input_hash,
    )


@pytest.fixture
def ledger_file(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "jobs.sqlite3"
    Ledger(path).close()  # created, in WAL mode
    return path


HOLD = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
if sys.argv[2] != "wal":
    db.execute("PRAGMA journal_mode = " + sys.argv[2])
db.execute("BEGIN EXCLUSIVE")
if sys.argv[2] != "wal":
    db.execute("CREATE TABLE IF NOT EXISTS held (x)")
print("locked", flush=True)
time.sleep(float(sys.argv[3]))
db.execute("ROLLBACK")
"""


@pytest.fixture
def hold_lock() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Another process holding `BEGIN EXCLUSIVE` on a ledger for `seconds`."""
    started: list[subprocess.Popen[str]] = []

    def hold(path: Path, seconds: float = 60, mode: str = "wal") -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(path), mode, str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        return proc

    yield hold
    for proc in started:
        proc.kill()
        proc.wait()


def test_a_ledger_error_is_exit_10_never_1() -> None:
    assert LedgerError("locked").exit_code == ExitCode.NETWORK == 10


def test_a_write_held_up_longer_than_the_wait_is_a_ledger_error_within_the_bound(
    ledger_file: Path, hold_lock: Callable[..., subprocess.Popen[str]]
) -> None:
    hold_lock(ledger_file)
    ledger = Ledger(ledger_file, lock_wait=1.0, busy_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(LedgerError, match="locked by another process"):
        record(ledger)
    assert time.monotonic() - started < 10  # bounded (1 s asked), not the old 30 s per call
    assert ledger.get(API, "job_1") is None


def test_a_lock_is_not_waited_for_past_the_deadline_in_force(
    ledger_file: Path, hold_lock: Callable[..., subprocess.Popen[str]]
) -> None:
    # Issue 24 class 5: `run --timeout 3s` with the ledger held took 11-12 s.
    from pixeldojo_cli.core import deadlines

    hold_lock(ledger_file)
    ledger = Ledger(ledger_file, lock_wait=10.0, busy_timeout=0.2)
    started = time.monotonic()
    with deadlines.within(0.5), pytest.raises(LedgerError, match="locked by another process"):
        record(ledger)
    assert time.monotonic() - started < 5  # the deadline's 0.5 s, not the 10 s wait
    assert ledger.get(API, "job_1") is None


def test_a_lock_held_for_less_than_the_wait_is_waited_for(
    ledger_file: Path, hold_lock: Callable[..., subprocess.Popen[str]]
) -> None:
    holder = hold_lock(ledger_file, seconds=1.0)
    ledger = Ledger(ledger_file, lock_wait=20.0, busy_timeout=0.2)
    record(ledger)  # waits for the other process, then writes
    assert holder.wait(timeout=20) == 0
    assert ledger.get(API, "job_1") is not None


def test_opening_a_ledger_another_process_holds_is_a_ledger_error_within_the_bound(
    tmp_path: Path, hold_lock: Callable[..., subprocess.Popen[str]]
) -> None:
    path = tmp_path / "jobs.sqlite3"
    hold_lock(path, mode="delete")  # a rollback-journal lock: even reading must wait
    started = time.monotonic()
    with pytest.raises(LedgerError, match="locked by another process"):
        Ledger(path, lock_wait=1.0, busy_timeout=0.2)
    assert time.monotonic() - started < 10


def test_every_other_sqlite_failure_is_a_ledger_error(tmp_path: Path) -> None:
    folder = tmp_path / "a-file"
    folder.write_text("not a folder")
    with pytest.raises(LedgerError):
        Ledger(folder / "jobs.sqlite3")


def as_another_user(check: Callable[[], Any]) -> Any:
    """Run `check` where permission bits apply: as is for a normal user; as root
    (where they do not), in a forked child that dropped to `nobody`."""
    if os.geteuid() != 0:
        return check()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read)
            os.setgid(65534)
            os.setuid(65534)
            result: Any = {"value": check()}
        except BaseException as exc:
            result = {"error": f"{type(exc).__name__}: {exc}"}
        os.write(write, json.dumps(result, default=str).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    answer = json.loads(data)
    if "error" in answer:
        raise AssertionError(answer["error"])
    return answer["value"]


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder `nobody` can reach (pytest's own are private to their owner)."""
    folder = Path(tempfile.mkdtemp(prefix="pixeldojo-ro-"))
    folder.chmod(0o755)
    yield folder
    for path in sorted(folder.rglob("*"), reverse=True):
        path.chmod(0o755)
    subprocess.run(["rm", "-rf", str(folder)], check=False)


def ledger_with_one_job(folder: Path) -> Path:
    path = folder / "jobs.sqlite3"
    with Ledger(path) as ledger:
        record(ledger)
    return path


def test_a_read_only_ledger_is_read_and_every_write_is_a_ledger_error(
    shared_folder: Path,
) -> None:
    path = ledger_with_one_job(shared_folder)
    path.chmod(0o444)
    shared_folder.chmod(0o555)

    def check() -> list[str]:
        ledger = Ledger(path, lock_wait=1.0)
        seen = [j.id for j in ledger.unsaved(base_url=API, profile="default")]
        for write in (
            lambda: ledger.update_job(API, a_job(status="completed")),
            lambda: ledger.claim_line("h", base_url=API, profile="default"),
            lambda: ledger.apply_or_defer(status_record(API, a_job(status="completed"))),
        ):
            try:
                write()
            except LedgerError:
                seen.append("LedgerError")
        return seen

    # Still readable (`download --pending` finds its jobs); nothing written, nothing kept.
    assert as_another_user(check) == ["job_1", "LedgerError", "LedgerError", "LedgerError"]


def test_a_read_only_ledger_file_keeps_records_for_later_beside_it(shared_folder: Path) -> None:
    path = ledger_with_one_job(shared_folder)
    path.chmod(0o444)
    shared_folder.chmod(0o777)

    def check() -> bool:
        ledger = Ledger(path, lock_wait=1.0)
        try:
            ledger.update_job(API, a_job(status="completed"))
        except LedgerError:
            pass
        else:
            raise AssertionError("a read-only ledger took a write")
        return ledger.apply_or_defer(status_record(API, a_job(status="completed")))

    assert as_another_user(check) is False  # not written: kept for later
    assert pending_records_path(path).exists()
    path.chmod(0o644)
    with Ledger(path) as ledger:  # writable again: the record lands
        local = ledger.get(API, "job_1")
        assert local is not None and local.status == "completed"
    assert pending_records_path(path).read_bytes() == b""


def test_a_record_the_ledger_could_not_take_is_written_when_it_frees(
    ledger_file: Path, hold_lock: Callable[..., subprocess.Popen[str]]
) -> None:
    holder = hold_lock(ledger_file)
    ledger = Ledger(ledger_file, lock_wait=0.5, busy_timeout=0.1)
    job = a_job("job_paid", "completed", output={"images": ["https://files.example/1.png"]})
    written = ledger.apply_or_defer(
        submission_record(
            job,
            base_url=API,
            profile="default",
            model="flux-dev",
            inputs={"prompt": "a paid job"},
            estimated_credits=1,
            output_dir=ledger_file.parent,
        )
    )
    assert written is False
    ledger.close()
    holder.kill()
    holder.wait()
    with Ledger(ledger_file) as reopened:
        [pending] = reopened.unsaved(base_url=API, profile="default")
    assert pending.id == "job_paid" and pending.output_urls == ["https://files.example/1.png"]
    assert pending_records_path(ledger_file).read_bytes() == b""


def test_a_record_kept_while_the_ledger_could_not_even_be_opened_is_replayed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.sqlite3"
    defer(
        submission_record(
            a_job("job_a"),
            base_url=API,
            profile="default",
            model="flux-dev",
            inputs={},
            estimated_credits=None,
            output_dir=tmp_path,
        ),
        path,
    )
    files = [LedgerFile(1, str(tmp_path / "job_a-1.png"), 10, None, "https://f/1.png", 5)]
    from pixeldojo_cli.store.ledger import files_record

    defer(files_record(API, "job_a", files), path)
    with Ledger(path) as ledger:
        local = ledger.get(API, "job_a")
    assert local is not None and local.files == tuple(files)


def test_a_replayed_record_never_overwrites_what_the_ledger_learnt_since(
    ledger_file: Path,
) -> None:
    stale = status_record(API, a_job(status="processing"))
    stale["at"] = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    with Ledger(ledger_file) as ledger:
        record(ledger)
        ledger.update_job(API, a_job(status="completed"))
    defer(stale, ledger_file)
    defer(  # a submission replayed after the job was recorded directly
        submission_record(
            a_job(status="pending"),
            base_url=API,
            profile="default",
            model="old",
            inputs={},
            estimated_credits=None,
            output_dir=ledger_file.parent,
        ),
        ledger_file,
    )
    with Ledger(ledger_file) as ledger:
        local = ledger.get(API, "job_1")
    assert local is not None and (local.status, local.model) == ("completed", "flux-dev")


def test_a_torn_line_in_the_side_file_is_skipped(ledger_file: Path) -> None:
    defer(status_record(API, a_job(status="completed")), ledger_file)
    with pending_records_path(ledger_file).open("ab") as handle:
        handle.write(b'{"op": "status", "base_u')  # a crash mid-write
    with Ledger(ledger_file) as ledger:
        assert ledger.replay_deferred() == 0  # already replayed on open; file emptied


# --- --batch lines ---------------------------------------------------------------

CLAIM = """
import sys
from pathlib import Path
from pixeldojo_cli.store.ledger import Ledger
path, go = Path(sys.argv[1]), Path(sys.argv[2])
ledger = Ledger(path)
print("ready", flush=True)
while not go.exists():
    pass
result = ledger.claim_line("line-1", base_url=sys.argv[3], profile="default")
print(result.outcome, flush=True)
sys.stdin.read()  # stay alive (a live claimer) until the test has every answer
"""


def test_two_processes_claiming_one_line_at_once_exactly_one_gets_it(
    ledger_file: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIM, str(ledger_file), str(go), API],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        go.touch()
        answers = [proc.stdout.readline().strip() for proc in procs if proc.stdout]
    finally:
        for proc in procs:
            proc.communicate(timeout=30)
    assert sorted(answers) == ["claimed", "taken", "taken", "taken"]


def claim(ledger: Ledger, key: str = "line-1") -> Any:
    return ledger.claim_line(key, base_url=API, profile="default")


def put_claim(path: Path, pid: int, *, at: datetime, state: str = "claimed") -> None:
    import socket

    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT OR REPLACE INTO batch_lines VALUES (?, 'default', 'line-1', ?, ?, ?, ?, NULL)",
            (API, state, pid, socket.gethostname(), at.isoformat()),
        )


def test_a_line_claimed_by_a_live_process_is_taken(ledger_file: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.2)
        put_claim(ledger_file, other.pid, at=datetime.now(UTC))
        with Ledger(ledger_file) as ledger:
            found = claim(ledger)
        assert (found.outcome, found.pid) == ("taken", other.pid)
    finally:
        other.kill()
        other.wait()


def test_a_line_whose_claimer_died_without_a_job_id_is_unknown_not_free(
    ledger_file: Path,
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    put_claim(ledger_file, dead.pid, at=datetime.now(UTC))
    with Ledger(ledger_file) as ledger:
        assert claim(ledger).outcome == "unknown"
        assert claim(ledger).outcome == "unknown"  # asking again does not free it
        ledger.release_line("line-1", base_url=API, profile="default")  # checked: never sent
        assert claim(ledger).outcome == "claimed"


def test_a_claim_older_than_the_process_with_its_pid_is_a_dead_claimers(
    ledger_file: Path,
) -> None:
    # Our own pid, claimed before this process started: pid reuse, not us.
    put_claim(ledger_file, os.getpid(), at=datetime.now(UTC) - timedelta(days=30))
    with Ledger(ledger_file) as ledger:
        found = claim(ledger)
    if sys.platform.startswith("linux"):
        assert found.outcome == "unknown"
    else:  # no process start time to compare: the safe answer
        assert found.outcome == "taken"


def test_a_claimed_line_with_its_job_recorded_is_taken_with_the_job_id(ledger_file: Path) -> None:
    with Ledger(ledger_file) as ledger:
        assert claim(ledger).claimed
        record(ledger, "job_9", input_hash="line-1")  # attaches the job in the same write
        found = claim(ledger)
        assert (found.outcome, found.job_id) == ("taken", "job_9")
        ledger.release_line("line-1", base_url=API, profile="default")  # a job: kept
        assert claim(ledger).job_id == "job_9"


def test_attach_job_and_an_uncertain_post(ledger_file: Path) -> None:
    with Ledger(ledger_file) as ledger:
        assert claim(ledger, "a").claimed and claim(ledger, "b").claimed
        ledger.attach_job("a", "job_a", base_url=API, profile="default")
        ledger.mark_uncertain("b", base_url=API, profile="default")
        assert claim(ledger, "a").job_id == "job_a"
        assert claim(ledger, "b").outcome == "unknown"  # even while this process lives


def test_a_line_whose_job_failed_may_be_claimed_again(ledger_file: Path) -> None:
    with Ledger(ledger_file) as ledger:
        assert claim(ledger).claimed
        record(ledger, "job_f", input_hash="line-1")
        ledger.update_job(API, a_job("job_f", "failed"))
        assert claim(ledger).claimed


def test_claims_are_per_api_and_profile(ledger_file: Path) -> None:
    with Ledger(ledger_file) as ledger:
        assert ledger.claim_line("k", base_url=API, profile="default").claimed
        assert ledger.claim_line("k", base_url=API, profile="work").claimed
        assert ledger.claim_line("k", base_url="http://other/api/v1", profile="default").claimed


def test_an_older_ledger_gains_the_batch_lines_table(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    with Ledger(path) as ledger:
        record(ledger)
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE batch_lines")
        db.execute("PRAGMA user_version = 4")  # v4: before the batch_lines table
    with Ledger(path) as ledger:
        assert claim(ledger).claimed
        assert ledger.get(API, "job_1") is not None


def test_after_one_wait_ran_out_later_writes_wait_only_briefly(
    ledger_file: Path, hold_lock: Callable[..., subprocess.Popen[str]]
) -> None:
    holder = hold_lock(ledger_file)
    ledger = Ledger(ledger_file, lock_wait=2.0, busy_timeout=0.1)
    with pytest.raises(LedgerError):
        record(ledger, "job_a")
    started = time.monotonic()
    for job_id in ("job_b", "job_c", "job_d"):
        with pytest.raises(LedgerError):
            record(ledger, job_id)
    assert time.monotonic() - started < 2.0  # three writes, less than one full wait
    holder.kill()
    holder.wait()
    record(ledger, "job_e")  # free again: written, and full waits from now on
    assert ledger.get(API, "job_e") is not None


def test_run_with_a_ledger_held_by_another_process_still_saves_the_output(
    make_emulator: Callable[..., Any],
    hold_lock: Callable[..., subprocess.Popen[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pixeldojo_cli.store.ledger import locking
    from pixeldojo_cli.store.settings import ledger_path

    from conftest import FAST, as_served, make_invoker

    monkeypatch.setattr(locking, "DEFAULT_LOCK_WAIT", 1.0)
    Ledger().close()
    hold_lock(ledger_path())
    emulator = make_emulator(latency=0.2)
    result = make_invoker(emulator)("run", "flux-dev", "a paid job", "-o", "out", *FAST)
    assert result.exit_code == 0, result.output  # never 1: a warning, and the work goes on
    [job_id] = emulator.jobs
    assert as_served(Path(result.stdout.strip()).read_bytes()) == emulator.output_file(job_id, 1)
    assert "ledger" in result.stderr and job_id in result.stderr  # said plainly, with the id


def test_ctrl_c_while_waiting_for_the_ledger_still_keeps_the_record(
    ledger_file: Path, hold_lock: Callable[..., subprocess.Popen[str]]
) -> None:
    import signal

    holder = hold_lock(ledger_file)
    ledger = Ledger(ledger_file, lock_wait=30.0, busy_timeout=0.1)
    record_of_a_paid_job = submission_record(
        a_job("job_paid"),
        base_url=API,
        profile="default",
        model="flux-dev",
        inputs={},
        estimated_credits=1,
        output_dir=ledger_file.parent,
    )

    def ctrl_c(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, ctrl_c)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            ledger.apply_or_defer(record_of_a_paid_job)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - started < 10  # taken at once, not after the 30 s wait
    ledger.close()
    holder.kill()
    holder.wait()
    with Ledger(ledger_file) as reopened:
        assert reopened.get(API, "job_paid") is not None
