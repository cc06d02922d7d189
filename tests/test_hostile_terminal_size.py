"""Every terminal size, however odd, in every combination (issue 24, class 8, after
review): Rich parses COLUMNS and LINES itself (`isdigit()`, then `int()`) whichever
of the two it was handed, and measures the terminal again as it draws; so COLUMNS or
LINES alone set to `²` or to 5,000 digits failed most commands, and a pty reporting
65535 columns got progress lines 65,535 characters wide."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from test_hostile_preview import run_on_terminal, terminal_env

from pixeldojo_cli.cli.terminal import SANE_COLUMNS
from pixeldojo_cli.emulator import Emulator

from conftest import FAST, make_invoker

ODD = [None, "\u00b2", "9" * 5000, "99999999999999999999", "0", "-5", "abc"]
PAIRS = list(itertools.product(ODD, ODD))  # (COLUMNS, LINES); None: not set
COMMANDS = {
    "config list": ["config", "list"],
    "models list": ["models", "list"],
    "jobs list": ["jobs", "list"],
    "run --no-wait": ["run", "flux-dev", "a fox", "--no-wait"],
}
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def _shown(value: str | None) -> str:
    return "unset" if value is None else repr(value[:8] + ("..." if len(value) > 8 else ""))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_pair_of_columns_and_lines_leaves_the_command_working(
    make_emulator: Callable[..., Emulator], command: str
) -> None:
    cli = make_invoker(make_emulator(latency=0.0, rate_limit=0))
    cli("config", "set", "rate_limit", "6000")  # 49 paid jobs, not one a second
    cli("run", "flux-dev", "a fox", *FAST)  # a job for `jobs list`
    failed = []
    for columns, lines in PAIRS:
        env = {"COLUMNS": columns, "LINES": lines}  # None: removed for the command
        result = cli(*COMMANDS[command], env=env)
        if result.exit_code != 0 or "bug" in result.output:
            failed.append(
                f"COLUMNS={_shown(columns)} LINES={_shown(lines)}: {result.output[-200:]!r}"
            )
    assert failed == [], "\n".join(failed[:5])


@pytest.mark.parametrize(
    ("columns", "lines"),
    [("\u00b2", None), (None, "\u00b2"), ("9" * 5000, None), (None, "9" * 5000)],
    ids=["columns-superscript", "lines-superscript", "columns-5000-digits", "lines-5000-digits"],
)
def test_one_odd_variable_alone_on_a_terminal_leaves_run_preview_working(
    emulator: Emulator, tmp_path: Path, columns: str | None, lines: str | None
) -> None:
    env = terminal_env(emulator)
    for name, value in (("COLUMNS", columns), ("LINES", lines)):
        env.pop(name)
        if value is not None:
            env[name] = value
    code, screen, _ = run_on_terminal(
        ["run", "flux-dev", "a fox", "--preview", *FAST], env, tmp_path
    )
    assert code == 0, screen[-500:]
    assert "\u2580" in screen and "bug" not in screen


@pytest.mark.parametrize("preview", [False, True], ids=["run", "run-preview"])
def test_a_terminal_reporting_65535_columns_gets_lines_no_wider_than_the_clamp(
    emulator: Emulator, tmp_path: Path, preview: bool
) -> None:
    env = terminal_env(emulator)
    del env["COLUMNS"], env["LINES"]  # the terminal's own answer, then: 1 x 65535
    args = ["run", "flux-dev", "a fox", *FAST, *(["--preview"] if preview else [])]
    code, screen, _ = run_on_terminal(args, env, tmp_path, winsize=(1, 65535, 0, 0))
    assert code == 0, screen[-500:]
    longest = max(len(line) for line in re.split(r"[\r\n]", ESCAPES.sub("", screen)))
    assert 0 < longest <= SANE_COLUMNS[1]
