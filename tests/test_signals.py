"""Ctrl-C and SIGTERM: within a second in every phase of a download, the resume
hint always, no `.part` file left behind, exit 130 (SIGINT) or 143 (SIGTERM)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pixeldojo_cli.api.client import Client
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.engine import wait

from conftest import FAST, PYTHON, TEST_KEY, run_subprocess_env

# Generous: an exit "within a second" must at least come well before the 120 s
# the stalled server would hold the connection (or the 158 s it used to take).
BOUND = 15


def completed_job_id(emulator: Emulator) -> str:
    client = Client(api_key=TEST_KEY, base_url=emulator.base_url)
    job = client.run("flux-dev", {"prompt": "p"})
    list(wait(client, job.id, poll_interval=0.05, max_poll_interval=0.1))
    client.close()
    return job.id


def start(args: list[str], emulator: Emulator, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PYTHON, "-m", "pixeldojo_cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=run_subprocess_env(emulator),
        cwd=cwd,
    )


def wait_for_file_request(emulator: Emulator, settle: float = 0.5) -> None:
    deadline = time.monotonic() + 30
    while not emulator.requests_to(target="files") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert emulator.requests_to(target="files"), "the download never started"
    time.sleep(settle)  # now blocked reading: headers, or the rest of the body


def stop(proc: subprocess.Popen[str], signum: int) -> tuple[str, str]:
    proc.send_signal(signum)
    try:
        return proc.communicate(timeout=BOUND)
    finally:
        proc.kill()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize(
    "phase, fault",
    [
        ("headers", {"kind": "delay", "delay": 120}),  # accepted, never answers
        ("body", {"kind": "stall", "after_bytes": 100, "delay": 120}),  # stops mid-body
    ],
)
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_download_stops_at_once_with_the_hint_and_no_part_file(
    make_emulator: Callable[..., Emulator],
    tmp_path: Path,
    phase: str,
    fault: dict[str, object],
    signum: int,
    code: int,
) -> None:
    emulator = make_emulator(latency=0.1)
    job_id = completed_job_id(emulator)
    fault = dict(fault)
    kind = str(fault.pop("kind"))
    emulator.add_fault(kind, target="files", count=-1, **fault)  # type: ignore[arg-type]
    out = tmp_path / "out"
    proc = start(["download", job_id, "-o", str(out)], emulator, tmp_path)
    wait_for_file_request(emulator)
    if phase == "body":
        assert any(name.endswith(".part") for name in leftovers(out))  # one is being written
    _, err = stop(proc, signum)
    assert proc.returncode == code, err
    assert f"pixeldojo download {job_id}" in err
    assert "Traceback" not in err
    assert leftovers(out) == []  # no .part, nothing under a final name


def test_sigterm_while_waiting_exits_143_with_the_resume_command(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator(latency=60)
    proc = start(["run", "flux-dev", "slow", *FAST], emulator, tmp_path)
    deadline = time.monotonic() + 30
    # Until it polls the job: submitted, and waiting (a fixed pause was not always enough).
    while not emulator.requests_to("GET", r"/jobs/job_") and time.monotonic() < deadline:
        time.sleep(0.05)
    _, err = stop(proc, signal.SIGTERM)
    [job_id] = emulator.jobs
    assert proc.returncode == 143, err
    assert f"pixeldojo jobs wait {job_id}" in err and "Traceback" not in err


def test_sigterm_during_a_run_download_exits_143_without_part_files(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator(latency=0.1)
    emulator.add_fault("stall", target="files", after_bytes=10, delay=120, count=-1)
    out = tmp_path / "out"
    proc = start(["run", "flux-dev", "x", "-o", str(out), *FAST], emulator, tmp_path)
    wait_for_file_request(emulator)
    _, err = stop(proc, signal.SIGTERM)
    [job_id] = emulator.jobs
    assert proc.returncode == 143, err
    assert f"pixeldojo download {job_id}" in err
    assert leftovers(out) == []


HANGING_CLEANUP = """
import sys, time
from pathlib import Path
from pixeldojo_cli.core import interrupts
from pixeldojo_cli.cli import _install_signal_handlers

_install_signal_handlers()
part = Path(sys.argv[1])
part.write_bytes(b"partial")
interrupts.register_part(part)
interrupts.set_resume_hint("Resume with: pixeldojo download job_1")
try:
    # Inside the try: the test's SIGINT may arrive while print() is still returning,
    # and the KeyboardInterrupt is then raised on this line, not in sleep().
    print("ready", flush=True)
    time.sleep(60)
except KeyboardInterrupt:
    print("cleaning up", flush=True)
    while True:  # a clean-up that never ends (a thread that will not stop)
        time.sleep(1)
"""


@pytest.mark.parametrize("second, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_second_signal_exits_at_once_with_the_hint_and_no_part_file(
    tmp_path: Path, second: int, code: int
) -> None:
    part = tmp_path / ".job_1-1.abcd1234.part"
    proc = subprocess.Popen(
        [sys.executable, "-c", HANGING_CLEANUP, str(part)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=run_subprocess_env(),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    assert proc.stdout.readline().strip() == "cleaning up"
    _, err = stop(proc, second)
    assert proc.returncode == code
    assert "Resume with: pixeldojo download job_1" in err
    assert not part.exists()
