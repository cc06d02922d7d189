"""Man pages: generated from the command tree into man/man1, rendered cleanly by man
and groff, and shipped in the wheel under share/man/man1."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import typer

from pixeldojo_cli.cli.app import app
from pixeldojo_cli.cli.manpages import escape, man_pages

ROOT = Path(__file__).resolve().parent.parent
MAN_DIR = ROOT / "man" / "man1"
PAGES = sorted(MAN_DIR.glob("*.1"))


def rendered(page: Path) -> str:
    """The page as `man -l` shows it, at 80 columns, with no warnings."""
    env = {**os.environ, "MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat", "LC_ALL": "C.UTF-8"}
    done = subprocess.run(
        ["man", "--warnings", "-l", str(page)], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return done.stdout


def top_level() -> dict[str, object]:
    root = typer.main.get_command(app)
    return {name: cmd for name, cmd in root.commands.items() if not cmd.hidden}


def test_a_page_for_the_program_and_each_command() -> None:
    expected = {"pixeldojo.1", *(f"pixeldojo-{name}.1" for name in top_level())}
    assert {p.name for p in PAGES} == expected


def test_committed_pages_are_what_the_generator_writes() -> None:
    assert {p.name: p.read_text(encoding="utf-8") for p in PAGES} == man_pages(
        typer.main.get_command(app)
    )


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_groff_renders_each_page_without_warnings(page: Path) -> None:
    done = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z", str(page)], capture_output=True, timeout=60
    )
    assert done.returncode == 0 and done.stderr == b"", done.stderr


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
def test_man_shows_every_command_on_its_page() -> None:
    main = rendered(MAN_DIR / "pixeldojo.1")
    for name, command in top_level().items():
        assert f"pixeldojo-{name}(1)" in main
        page = rendered(MAN_DIR / f"pixeldojo-{name}.1")
        assert f"pixeldojo {name}" in page
        for sub, inner in getattr(command, "commands", {}).items():
            if not inner.hidden:
                assert f"pixeldojo {name} {sub}" in page, (name, sub)


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
def test_options_render_with_plain_hyphens_to_paste() -> None:
    page = rendered(MAN_DIR / "pixeldojo-run.1")
    assert "--max-poll-interval" in page and "-o, --output-dir DIR" in page


def test_roff_escapes_what_would_be_read_as_roff() -> None:
    assert escape("a-b \\n é") == "a\\-b \\en \\[u00E9]"
    pages = man_pages(typer.main.get_command(app))
    for text in pages.values():
        body = [line for line in text.splitlines() if not line.startswith(".")]
        assert all(line.isascii() for line in text.splitlines())
        assert not any(line.startswith("'") for line in body)


def test_the_wheel_installs_the_pages_in_share_man_man1() -> None:
    # .ci/run builds the wheel, installs it with pipx and finds the pages there.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    targets = config["tool"]["hatch"]["build"]["targets"]
    assert targets["wheel"]["shared-data"] == {"man/man1": "share/man/man1"}
    assert "man" in targets["sdist"]["include"]  # a wheel built from the sdist has them too
