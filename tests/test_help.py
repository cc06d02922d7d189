"""Help that reads in full at 80 columns: every name whole, no type placeholders,
text printed as written, and a short usage line when an argument is missing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from pixeldojo_cli.cli.app import app
from pixeldojo_cli.cli.help import PixelDojoCommand, PixelDojoGroup
from pixeldojo_cli.cli.helptext import paragraphs

from conftest import pixeldojo, run_subprocess_env

PLACEHOLDER = re.compile(r"<(bool|str|int|float|text|list\[[^>]*\]|[a-z]+ range)>", re.I)
VARIABLE = re.compile(r"PIXELDOJO_[A-Z_]+")


def command_paths() -> list[tuple[list[str], Any]]:
    """Every command of the program, as (path, click command)."""
    root = typer.main.get_command(app)
    ctx = root.make_context("pixeldojo", [], resilient_parsing=True)
    found: list[tuple[list[str], Any]] = []

    def visit(command: Any, path: list[str]) -> None:
        found.append((path, command))
        for name in getattr(command, "list_commands", lambda _: [])(ctx):
            visit(command.get_command(ctx, name), [*path, name])

    visit(root, [])
    return found


def help_at(path: list[str], columns: int) -> str:
    result = CliRunner().invoke(
        app, [*path, "--help"], env={"COLUMNS": str(columns)}, prog_name="pixeldojo"
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def whole(name: str, text: str) -> bool:
    """`name` appears with nothing glued to either side (not cut, not wrapped)."""
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


def examples(command: Any) -> list[str]:
    """The example lines of a command: every verbatim line of its help and epilog."""
    lines = []
    for text in (command.help or "", command.epilog or ""):
        for verbatim, paragraph in paragraphs(text):
            if verbatim:
                lines.extend(line.strip() for line in paragraph.splitlines() if line.strip())
    return lines


def source_text(command: Any) -> str:
    params = " ".join(str(getattr(p, "help", "") or "") for p in command.params)
    return f"{command.help or ''} {command.epilog or ''} {params}"


PATHS = command_paths()


@pytest.mark.parametrize("path", [p for p, _ in PATHS], ids=lambda p: " ".join(p) or "root")
def test_every_command_and_group_draws_our_help_page(path: list[str]) -> None:
    command = dict((tuple(p), c) for p, c in PATHS)[tuple(path)]
    assert isinstance(command, PixelDojoCommand | PixelDojoGroup), type(command)


@pytest.mark.parametrize("path", [p for p, _ in PATHS], ids=lambda p: " ".join(p) or "root")
def test_every_name_variable_and_example_reads_whole_at_80_columns(path: list[str]) -> None:
    command = dict((tuple(p), c) for p, c in PATHS)[tuple(path)]
    text = help_at(path, 80)
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        for name in [*param.opts, *param.secondary_opts]:
            if param.param_type_name == "option":
                assert whole(name, text), f"{name} is cut or missing in {path} --help"
    assert whole("--help", text)
    for variable in set(VARIABLE.findall(source_text(command))):
        assert whole(variable, text), f"{variable} is cut in {path} --help"
    for line in examples(command):
        assert line in text, f"example {line!r} is not whole in {path} --help"
    assert not PLACEHOLDER.search(text), PLACEHOLDER.search(text)
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80


@pytest.mark.parametrize("path", [["run"], ["jobs", "list"], ["download"], ["auth", "login"]])
def test_option_names_stay_whole_at_40_columns(path: list[str]) -> None:
    command = dict((tuple(p), c) for p, c in PATHS)[tuple(path)]
    text = help_at(path, 40)
    for param in command.params:
        if param.param_type_name == "option":
            for name in [*param.opts, *param.secondary_opts]:
                assert whole(name, text), name
    for line in text.splitlines():
        assert len(line) <= 40 or " " not in line.strip(), line


def test_text_that_looks_like_markup_is_printed_as_written() -> None:
    assert "[defaults]" in help_at(["config", "set"], 80)
    reference = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()
    assert "under [defaults]" in reference


def test_a_missing_argument_prints_a_short_usage_on_stderr_and_exits_2(tmp_path: Path) -> None:
    done = pixeldojo("run", env=run_subprocess_env(), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Usage: pixeldojo run [OPTIONS] MODEL [PROMPT]" in done.stderr
    assert "pixeldojo run --help" in done.stderr
    assert "Missing argument 'MODEL'" in done.stderr
    assert len(done.stderr.splitlines()) <= 5
    shown = pixeldojo("models", "show", env=run_subprocess_env(), cwd=tmp_path)
    assert (shown.returncode, shown.stdout) == (2, "")
    assert "pixeldojo models show --help" in shown.stderr


def test_bare_pixeldojo_lists_the_commands_on_stderr_and_exits_2(tmp_path: Path) -> None:
    done = pixeldojo(env=run_subprocess_env(), cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert "Commands:" in done.stderr and "jobs" in done.stderr


def test_help_command_prints_the_same_page_as_dash_dash_help() -> None:
    runner = CliRunner()
    for path in (["run"], ["jobs", "wait"], []):
        via_help = runner.invoke(app, ["help", *path], env={"COLUMNS": "80"})
        assert via_help.exit_code == 0
        assert via_help.stdout == help_at(path, 80)
    unknown = runner.invoke(app, ["help", "nosuch"])
    assert unknown.exit_code == 2
    assert "No such command: 'nosuch'" in unknown.stderr


def test_a_long_example_is_continued_so_that_it_still_pastes_into_a_shell() -> None:
    from pixeldojo_cli.cli.helptext import fold_command

    line = 'pixeldojo run flux-dev "a long prompt with spaces" -p aspect_ratio=16:9 -o out/'
    folded = fold_command(line, 40, 2)
    assert all(len(part) <= 40 for part in folded)
    assert all(part.endswith(" \\") for part in folded[:-1])
    rejoined = " ".join(part.removesuffix(" \\").strip() for part in folded)
    assert rejoined == line
