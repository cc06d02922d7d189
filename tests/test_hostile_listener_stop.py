"""Stopping `webhook listen` however the signals come (issue 24, class 12, round
two): exit 0 for a stop whatever the number of signals, and no --exec command
left running behind it, holding its stderr."""

from __future__ import annotations

import os
import shlex
import signal
import time
from pathlib import Path

import pytest
from test_hostile_listener import Listening
from test_webhooks import wait_for

from pixeldojo_cli.emulator import Emulator

from conftest import PYTHON, Invoke


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_exits_0_however_many_signals_come(
    cli: Invoke, emulator: Emulator, tmp_path: Path, signum: int
) -> None:
    emulator.add_fault("stall", target="files", count=-1, after_bytes=100, delay=120)
    out = tmp_path / "out"
    listening = Listening(emulator, tmp_path, "-o", str(out), "--grace", "1s")
    process = listening.process
    try:
        cli("run", "flux-dev", "x", "--no-wait", "--webhook-url", listening.url)
        wait_for(lambda: any(p.suffix == ".part" for p in out.glob(".*")), timeout=30)
        process.send_signal(signum)
        time.sleep(0.3)
        process.send_signal(signum)  # while it stops: cuts the grace short
        while process.poll() is None:  # and on, until it is gone: after "Stopped." too
            process.send_signal(signum)
            time.sleep(0.02)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "Stopped." in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == []


EXEC_SCRIPT = """
import os, subprocess, sys, time
grandchild = subprocess.Popen(["sleep", "60"])
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {grandchild.pid}")
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(60)
"""


def gone(pid: int) -> bool:
    """No such process, or only its exit status left (a zombie nobody reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_stop_ends_the_exec_commands_still_running_after_the_grace(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    script, pids = tmp_path / "hook.py", tmp_path / "pids"
    script.write_text(EXEC_SCRIPT)
    command = shlex.join([PYTHON, str(script), str(pids)])
    out = tmp_path / "out"
    listening = Listening(emulator, tmp_path, "-o", str(out), "--grace", "0.5s", "--exec", command)
    process = listening.process
    try:
        cli("run", "flux-dev", "x", "--no-wait", "--webhook-url", listening.url)
        wait_for(pids.exists, timeout=30)
        process.send_signal(signal.SIGTERM)
        # The command and what it started are ended: nothing holds our stderr open.
        _, err = process.communicate(timeout=20)
    finally:
        process.kill()
        child_pids = [int(pid) for pid in pids.read_text().split()] if pids.exists() else []
        for pid in child_pids:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
    assert process.returncode == 0, err
    assert "--exec commands under way have 0.5 s (--grace) to finish" in err
    assert "--exec was still running after --grace; stopped it." in err
    assert len(child_pids) == 2 and all(wait_for(lambda pid=pid: gone(pid)) for pid in child_pids)


def test_an_exec_command_that_ends_within_the_grace_is_left_to_finish(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    marker = tmp_path / "done"
    script = tmp_path / "hook.py"
    script.write_text(
        f"import time, pathlib\ntime.sleep(1.5)\npathlib.Path({str(marker)!r}).write_text('x')\n"
    )
    command = shlex.join([PYTHON, str(script)])
    out = tmp_path / "out"
    listening = Listening(emulator, tmp_path, "-o", str(out), "--grace", "20s", "--exec", command)
    process = listening.process
    try:
        job_id = cli("run", "flux-dev", "x", "--no-wait", "--webhook-url", listening.url).stdout
        wait_for(lambda: (out / f"{job_id.strip()}-1.png").exists(), timeout=30)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert marker.exists(), "the command had its grace"
    assert "stopped it" not in err
