"""`pixeldojo skill`: a SKILL.md generated from the command tree, printed or installed."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import pytest
import typer

from pixeldojo_cli.cli.app import app
from pixeldojo_cli.cli.skill import skill_markdown

from conftest import make_invoker, pixeldojo, run_subprocess_env

MAX_WORDS = 1500


def fresh_root() -> Any:
    """The click command tree of the app, built anew (a test may add to it)."""
    return typer.main.get_command(app)


def every_command(command: Any, prefix: tuple[str, ...] = ()) -> list[str]:
    """Every visible command path, found by walking click itself (not our walk)."""
    found = [" ".join(("pixeldojo", *prefix))]
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            if not sub.hidden:
                found += every_command(sub, (*prefix, name))
    return found


def front_matter(text: str) -> dict[str, str]:
    assert text.startswith("---\n")
    head = text[4:].split("\n---\n", 1)[0]
    return dict(line.split(": ", 1) for line in head.splitlines())


def test_skill_names_every_command() -> None:
    text = skill_markdown(fresh_root())
    commands = every_command(fresh_root())
    assert len(commands) > 20
    for title in commands[1:]:
        assert f"`{title}" in text, title


def test_skill_picks_up_commands_added_later() -> None:
    later = copy.copy(app)  # the app as a later change registers more on it
    later.registered_commands = list(app.registered_commands)
    later.registered_groups = list(app.registered_groups)
    later.command("brand-new", help="A command from a later change.")(lambda: None)
    group = typer.Typer(help="A group from a later change.")

    @group.command("inner", help="Inside.")
    def inner(deep: str = typer.Option("", "--deep")) -> None: ...

    later.add_typer(group, name="later-group")
    text = skill_markdown(typer.main.get_command(later))
    assert "`pixeldojo brand-new [OPTIONS]`: A command from a later change." in text
    assert "`pixeldojo later-group inner [OPTIONS]`: Inside. Options: `--deep`." in text


def test_skill_stays_compact() -> None:
    words = len(skill_markdown(fresh_root()).split())
    assert words <= MAX_WORDS, f"SKILL.md has {words} words"


def test_skill_front_matter_has_name_and_description() -> None:
    meta = front_matter(skill_markdown(fresh_root()))
    assert meta["name"] == "pixeldojo"
    # The Agent Skills limits: a lowercase name, a description under 1,024 characters.
    assert re.fullmatch(r"[a-z0-9-]{1,64}", meta["name"])
    assert 50 < len(meta["description"]) <= 1024


def test_every_command_the_skill_shows_exists() -> None:
    root = fresh_root()
    ctx = root.make_context("pixeldojo", [], resilient_parsing=True)
    shown = re.findall(r"`pixeldojo ([^`]*)`", skill_markdown(root))
    assert len(shown) > 30
    for line in shown:
        words = [w for w in line.split() if w != "--emulator"]
        command = root.get_command(ctx, words[0])
        assert command is not None, line
        if hasattr(command, "commands") and len(words) > 1 and words[1][0].isalpha():
            assert command.get_command(ctx, words[1]) is not None, line


def test_skill_prints_on_stdout() -> None:
    done = pixeldojo("skill", env=run_subprocess_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("---\nname: pixeldojo\n")
    assert "`pixeldojo run [OPTIONS] MODEL [PROMPT]`" in done.stdout
    assert "\n- 3 authentication" in done.stdout and "`--base-url`" in done.stdout
    assert done.stderr == ""


def test_install_writes_the_skill_folder(tmp_path: Path) -> None:
    skills = tmp_path / "skills"
    skills.mkdir()
    done = make_invoker(None)("skill", "--install", str(skills))
    assert done.exit_code == 0, done.output
    target = skills / "pixeldojo" / "SKILL.md"
    assert done.stdout.strip() == str(target)
    assert target.read_text() == skill_markdown(fresh_root())
    assert [p.name for p in target.parent.iterdir()] == ["SKILL.md"]  # no temp file left


def test_install_into_the_skills_own_folder(tmp_path: Path) -> None:
    own = tmp_path / "pixeldojo"
    done = make_invoker(None)("skill", "--install", str(own))
    assert done.exit_code == 0, done.output
    assert (own / "SKILL.md").is_file() and not (own / "pixeldojo").exists()


def test_install_again_leaves_the_same_file(tmp_path: Path) -> None:
    invoke = make_invoker(None)
    assert invoke("skill", "--install", str(tmp_path)).exit_code == 0
    target = tmp_path / "pixeldojo" / "SKILL.md"
    os.utime(target, (1_000_000, 1_000_000))
    done = invoke("skill", "--install", str(tmp_path))
    assert done.exit_code == 0 and "already up to date" in done.stderr
    assert target.stat().st_mtime == 1_000_000


def test_install_keeps_a_different_file_unless_forced(tmp_path: Path) -> None:
    invoke = make_invoker(None)
    target = tmp_path / "pixeldojo" / "SKILL.md"
    target.parent.mkdir()
    target.write_text("my own notes\n")
    kept = invoke("skill", "--install", str(tmp_path))
    assert kept.exit_code == 2
    assert "exists with other content" in kept.stderr and "--force" in kept.stderr
    assert target.read_text() == "my own notes\n"
    forced = invoke("skill", "--install", str(tmp_path), "--force")
    assert forced.exit_code == 0, forced.output
    assert target.read_text().startswith("---\nname: pixeldojo\n")


def test_install_replaces_a_link_never_writing_through_it(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.md"
    elsewhere.write_text("not ours\n")
    target = tmp_path / "skills" / "pixeldojo" / "SKILL.md"
    target.parent.mkdir(parents=True)
    target.symlink_to(elsewhere)
    invoke = make_invoker(None)
    assert invoke("skill", "--install", str(tmp_path / "skills")).exit_code == 2
    assert invoke("skill", "--install", str(tmp_path / "skills"), "--force").exit_code == 0
    assert elsewhere.read_text() == "not ours\n"
    assert not target.is_symlink() and target.read_text().startswith("---\n")


@pytest.mark.parametrize("where", ["missing", "a-file", ""])
def test_install_into_a_bad_folder_is_one_line_and_exit_2(tmp_path: Path, where: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "a-file").write_text("x")
    folder = str(work / where) if where else ""
    done = pixeldojo("skill", "--install", folder, env=run_subprocess_env(), cwd=work)
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ") and len(done.stderr.splitlines()) <= 2
    assert sorted(p.name for p in work.iterdir()) == ["a-file"]


def test_force_without_install_is_a_usage_error() -> None:
    done = make_invoker(None)("skill", "--force")
    assert done.exit_code == 2 and "--install" in done.stderr
