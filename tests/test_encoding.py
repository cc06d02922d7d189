"""Terminals without UTF-8, and `--progress rich` without a terminal."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from test_tables import in_terminal

from pixeldojo_cli.emulator import Emulator

from conftest import FAST, PYTHON, Invoke, run_subprocess_env


def test_an_ascii_terminal_gets_an_ascii_spinner(emulator: Emulator, tmp_path: Path) -> None:
    env = run_subprocess_env(emulator, PYTHONIOENCODING="ascii")
    env.pop("CI", None)
    code, screen = in_terminal(["run", "flux-dev", "a fox", *FAST], env, tmp_path, 80)
    assert code == 0, screen
    assert "\\u28" not in screen  # no braille dots printed as escapes
    assert re.search(r"[-\\|/] job_\w+: ", screen), screen  # the live line, with "-\|/"


def test_an_ascii_terminal_gets_tables_cut_with_dots_not_a_crash(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    cli("run", "flux-dev", "a prompt long enough to be cut in a narrow table " * 2, "--no-wait")
    env = run_subprocess_env(emulator, PYTHONIOENCODING="ascii")
    code, screen = in_terminal(["jobs", "list", "--local"], env, tmp_path, 80)
    assert code == 0, screen
    assert "a prompt" in screen and "..." in screen
    assert "Traceback" not in screen


def test_text_an_ascii_stdout_cannot_encode_is_escaped_not_a_crash(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    job_id = cli("run", "flux-dev", "un café", "--no-wait").stdout.strip()
    done = subprocess.run(
        [PYTHON, "-m", "pixeldojo_cli", "jobs", "show", job_id],
        capture_output=True,
        text=True,
        encoding="ascii",
        errors="strict",
        env=run_subprocess_env(emulator, PYTHONIOENCODING="ascii"),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Prompt:     un caf\\xe9" in done.stdout


def test_progress_rich_in_a_pipe_says_it_needs_a_terminal_and_prints_plain_lines(
    emulator: Emulator, tmp_path: Path
) -> None:
    done = subprocess.run(
        [PYTHON, "-m", "pixeldojo_cli", "run", "flux-dev", "x", "--progress", "rich", *FAST],
        capture_output=True,
        text=True,
        env=run_subprocess_env(emulator),
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("--progress rich needs a terminal") == 1
    assert ": completed (" in done.stderr
    assert "\n\n" not in done.stderr and "\x1b[" not in done.stderr
