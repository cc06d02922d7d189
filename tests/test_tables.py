"""Tables a person reads: ids whole at 80 and 40 columns, sizes and numbers as people
write them, and a sentence for an empty list."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from pixeldojo_cli.cli.tables import Column, fit_columns, human_size, number_text
from pixeldojo_cli.core.text import plural
from pixeldojo_cli.emulator import Emulator

from conftest import FAST, PYTHON, Invoke, run_in_pty, run_subprocess_env

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def in_terminal(args: list[str], env: dict[str, str], cwd: Path, columns: int) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal `columns` wide; (code, screen)."""
    terminal = {**env, "COLUMNS": str(columns), "TERM": "xterm-256color"}
    code, screen = run_in_pty(args, terminal, cwd, stdout_too=True, columns=columns)
    return code, ANSI.sub("", screen)


def whole_on_a_line(word: str, screen: str) -> bool:
    return any(
        re.search(rf"(?<![\w.-]){re.escape(word)}(?![\w.-])", line) for line in screen.splitlines()
    )


@pytest.mark.parametrize("columns", [80, 40])
def test_model_ids_are_never_wrapped_or_cut(tmp_path: Path, columns: int) -> None:
    env = run_subprocess_env(PIXELDOJO_EMULATOR="1")
    code, screen = in_terminal(["models"], env, tmp_path, columns)
    assert code == 0, screen
    for model_id in ("ponyxl-ponyrealism-v23", "wan-2.6-flash", "ponyxl-waianinsfwponyxl-v140"):
        assert whole_on_a_line(model_id, screen), (model_id, screen)
    table = [line for line in screen.splitlines() if line.startswith(("ID ", "flux-", "pony"))]
    assert table and all(len(line.rstrip()) <= columns for line in table)


@pytest.mark.parametrize("columns", [80, 40])
def test_job_ids_are_never_wrapped_or_cut(
    cli: Invoke, emulator: Emulator, tmp_path: Path, columns: int
) -> None:
    job_ids = [
        cli(
            "run", "ponyxl-ponyrealism-v23", f"a long prompt number {n}", "--no-wait"
        ).stdout.strip()
        for n in range(2)
    ]
    env = run_subprocess_env(emulator)
    for args in (["jobs", "list"], ["jobs", "list", "--local"]):
        code, screen = in_terminal(args, env, tmp_path, columns)
        assert code == 0, screen
        for job_id in job_ids:
            assert whole_on_a_line(job_id, screen), (args, screen)


def test_columns_are_dropped_before_an_id_is_cut() -> None:
    columns = [Column("ID", key=True), Column("NAME", drop=1), Column("NOTES", drop=2, wrap=True)]
    rows = [["ponyxl-waianinsfwponyxl-v140", "Wai ANI", "a very long note " * 3]]
    assert fit_columns(columns, rows, 200) == [(0, 28), (1, 7), (2, 51)]
    assert fit_columns(columns, rows, 60) == [(0, 28), (1, 7), (2, 21)]  # notes shortened
    assert fit_columns(columns, rows, 40) == [(0, 28), (1, 7)]  # notes dropped first
    assert fit_columns(columns, rows, 20) == [(0, 28)]  # the id still whole


def test_people_read_sizes_numbers_and_counts_as_they_write_them() -> None:
    assert human_size(1234) == "1.2 kB" and human_size(5_000_000) == "5.0 MB"
    assert number_text(2147483647.0) == "2147483647" and number_text(0.5) == "0.5"
    assert (plural(1, "credit"), plural(2, "credit"), plural(1.5, "credit")) == (
        "1 credit",
        "2 credits",
        "1.5 credits",
    )


def test_models_show_prints_seed_ranges_as_integers(cli: Invoke) -> None:
    shown = cli("models", "show", "flux-dev")
    assert "0..2147483647" in shown.stdout and "e+09" not in shown.stdout


def test_jobs_show_gives_file_sizes_in_human_units(cli: Invoke) -> None:
    path = Path(cli("run", "flux-dev", "x", *FAST).stdout.strip())
    shown = cli("jobs", "show", path.name.rsplit("-", 1)[0])
    assert f"({human_size(path.stat().st_size)})" in shown.stdout
    assert "bytes)" not in shown.stdout


@pytest.mark.slow
def test_an_empty_list_says_so_on_a_terminal_and_prints_nothing_to_a_pipe(
    tmp_path: Path,
) -> None:
    env = run_subprocess_env(PIXELDOJO_EMULATOR="1")
    args = ["models", "--type", "image", "--feature", "audio"]
    code, screen = in_terminal(args, env, tmp_path, 80)
    assert code == 0 and "No models match." in screen
    piped = subprocess.run(
        [PYTHON, "-m", "pixeldojo_cli", *args], capture_output=True, text=True, env=env
    )
    assert (piped.returncode, piped.stdout) == (0, "")
