"""Terminal awareness, interruption: what a CI log, a pipe and a person at a terminal see."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.store.ledger import Ledger

from conftest import PYTHON, pixeldojo, run_in_pty, run_subprocess_env

ANSI = re.compile(r"\x1b\[")
FAST = ["--poll-interval", "0.1", "--max-poll-interval", "0.2"]


@pytest.mark.slow
def test_piped_stderr_gets_plain_status_lines_and_no_escape_codes(
    emulator: Emulator, tmp_path: Path
) -> None:
    env = run_subprocess_env(emulator)
    done = pixeldojo("run", "flux-dev", "a fox", *FAST, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^job_\w+: pending \(\d+s\)$", done.stderr, re.M)
    assert re.search(r"^job_\w+: completed \(\d+s\)$", done.stderr, re.M)
    for args in (
        ["models"],
        ["models", "show", "flux-dev"],
        ["run", "flux-dev", "x", "-p", "nope=1"],
        ["jobs", "list"],
        ["auth", "status"],
        ["config", "list"],
    ):
        out = pixeldojo(*args, env=env, cwd=tmp_path)
        assert not ANSI.search(out.stdout + out.stderr), args


def test_force_color_colours_even_a_pipe(emulator: Emulator, tmp_path: Path) -> None:
    env = run_subprocess_env(emulator, FORCE_COLOR="1")
    out = pixeldojo("models", "show", "nope", env=env, cwd=tmp_path)
    assert out.returncode == 6 and ANSI.search(out.stderr)


def test_a_terminal_gets_a_live_progress_display(emulator: Emulator, tmp_path: Path) -> None:
    env = run_subprocess_env(emulator, TERM="xterm-256color")
    env.pop("CI", None)
    code, screen = run_in_pty(["run", "flux-dev", "a fox", *FAST], env, tmp_path)
    assert code == 0, screen
    assert ANSI.search(screen)  # Rich's live display redraws with escape codes
    assert "pending (" not in screen  # ...instead of one plain line per state


@pytest.mark.parametrize("variable", [{"TERM": "dumb"}, {"CI": "true", "TERM": "xterm"}])
def test_dumb_terminals_and_ci_get_plain_lines(
    emulator: Emulator, tmp_path: Path, variable: dict[str, str]
) -> None:
    env = run_subprocess_env(emulator, **variable)
    code, screen = run_in_pty(["run", "flux-dev", "a fox", *FAST], env, tmp_path)
    assert code == 0, screen
    assert re.search(r"job_\w+: completed \(\d+s\)", screen)
    if variable.get("TERM") == "dumb":
        assert not ANSI.search(screen)


def test_no_color_keeps_colour_codes_out_of_a_terminal(emulator: Emulator, tmp_path: Path) -> None:
    env = run_subprocess_env(emulator, TERM="xterm-256color", NO_COLOR="1")
    code, screen = run_in_pty(["models", "show", "nope"], env, tmp_path)
    assert code == 6
    assert not re.search(r"\x1b\[[0-9;]*3[0-9]m", screen)  # no foreground colours


def test_sigint_while_waiting_exits_130_with_the_resume_command(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator(latency=60)
    env = run_subprocess_env(emulator)
    proc = subprocess.Popen(
        [PYTHON, "-m", "pixeldojo_cli", "run", "flux-dev", "slow", *FAST],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    deadline = time.time() + 20
    # Until it polls the job: submitted, and waiting (a fixed pause was not always enough).
    while not emulator.requests_to("GET", r"/jobs/job_") and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    [job_id] = emulator.jobs
    assert proc.returncode == 130, err
    assert f"pixeldojo jobs wait {job_id}" in err
    assert "Traceback" not in err and out == ""
    with Ledger() as ledger:
        assert [j.id for j in ledger.jobs()] == [job_id]  # still there to be resumed


def test_sigint_during_a_hanging_download_exits_at_once(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator(latency=0.1)
    env = run_subprocess_env(emulator)
    # A download that hangs: the file server accepted the connection and sends
    # nothing. One Ctrl-C must be enough (a second one: tests/test_signals.py).
    emulator.add_fault("delay", target="files", delay=120, count=-1)
    proc = subprocess.Popen(
        [PYTHON, "-m", "pixeldojo_cli", "run", "flux-dev", "x", *FAST],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    deadline = time.time() + 20
    while not emulator.requests_to(target="files") and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    try:  # the download stays blocked for 120 s: only not waiting for it ends in time
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "pixeldojo download" in err
    assert not any(p.name.endswith((".png", ".part")) for p in tmp_path.iterdir())
