"""`pixeldojo skill`: SKILL.md for coding assistants, printed or installed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pixeldojo_cli.cli.state import get_state

HELP = """\
Print a SKILL.md that teaches a coding assistant to use pixeldojo.

It is generated from the command tree (every command, its options, the global
options and the exit codes), with a few lines of advice, so it matches this
version of the CLI.

--install DIR writes it to DIR/pixeldojo/SKILL.md, where DIR is an assistant's
skills folder (each skill is a folder named after it, holding its SKILL.md);
a DIR named pixeldojo is taken as the skill's own folder. The file is written
whole (a temporary file, then a rename). One already there with other content
is kept unless --force; the same content is left as it is. The path written
goes to stdout.
"""

EXAMPLES = """\
Examples:

  pixeldojo skill

  pixeldojo skill --install ~/.claude/skills

  pixeldojo skill --install .claude/skills --force
"""

InstallOption = Annotated[
    str | None,
    typer.Option(
        "--install",
        metavar="DIR",
        help="Write DIR/pixeldojo/SKILL.md (DIR is a skills folder, which must exist).",
        show_default=False,
    ),
]
ForceOption = Annotated[
    bool, typer.Option("--force", help="With --install: replace a SKILL.md that differs.")
]


def skill_target(folder: Path) -> Path:
    """Where `--install DIR` writes: DIR/pixeldojo/SKILL.md, or DIR/SKILL.md when DIR
    is already the skill's folder (named pixeldojo)."""
    from pixeldojo_cli.cli.skill import SKILL_FILE, SKILL_NAME

    if folder.name == SKILL_NAME:
        return folder / SKILL_FILE
    return folder / SKILL_NAME / SKILL_FILE


def _check_folder(folder: Path) -> None:
    """The skills folder must exist: a typo is never made into a new tree."""
    from pixeldojo_cli.core.errors import UsageError

    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is not a folder"
        raise UsageError(
            f"--install: {folder} {what}.",
            hint="Give an existing skills folder, e.g. ~/.claude/skills.",
        )


def _install(folder: Path, text: str, force: bool) -> tuple[Path, str]:
    from pixeldojo_cli.core.errors import WriteError
    from pixeldojo_cli.store.textfile import place_text

    target = skill_target(folder)
    _check_folder(target.parent.parent)
    hint = "Give a skills folder you can write to, e.g. ~/.claude/skills."
    if target.parent.exists() and not target.parent.is_dir():
        raise WriteError(
            f"--install: {target.parent} is there but is not a folder, and the skill's "
            f"SKILL.md goes in a folder of that name; move it away first.",
            hint="",
        )
    try:
        target.parent.mkdir(exist_ok=True)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise WriteError(f"Cannot create {target.parent}: {reason}.", hint=hint) from exc
    if not target.parent.is_dir():
        raise WriteError(f"{target.parent} is not a folder.", hint=hint)
    try:
        return target, place_text(target, text, replace=force)
    except WriteError as exc:
        if exc.hint == WriteError.default_hint:  # it speaks of "the output folder"
            exc.hint = hint
        raise


def _check_name(install: str) -> None:
    """A folder name with a control character (a newline, an escape) is refused:
    no one means it, and the path printed would be unreadable or escaped."""
    import unicodedata

    from pixeldojo_cli.core.errors import UsageError

    if not install.strip():
        raise UsageError("--install needs a folder: it was given an empty one.")
    if any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in install):
        raise UsageError(
            "--install: the folder name has a control character (a newline, a tab or "
            "an escape); give a plain path."
        )


def skill(ctx: typer.Context, install: InstallOption = None, force: ForceOption = False) -> None:
    """The command: print SKILL.md, or write it into a skills folder."""
    from pixeldojo_cli.cli.skill import skill_markdown
    from pixeldojo_cli.core.errors import UsageError

    state = get_state(ctx)
    with state.guard():
        if install is None and force:
            raise UsageError("--force applies only with --install DIR.")
        if install is not None:
            _check_name(install)
        text = skill_markdown(ctx.find_root().command)
        if install is None:
            typer.echo(text, nl=False)
            return
        target, done = _install(Path(install).expanduser(), text, force)
        if done == "unchanged":
            state.render.info(f"{target} is already up to date.")
        else:
            state.render.info(f"Skill {done}: {target}")
        state.render.result(str(target.resolve()))
