"""Regenerate what is derived from the CLI itself: shell completions, docs/cli.md and
the man pages in man/man1/ (shipped in the wheel under share/man/man1).

    python scripts/generate_docs.py          # rewrite the files
    python scripts/generate_docs.py --check  # exit 1 if any is stale (the tests do this)

Completion scripts come from Typer's own generator (`_PIXELDOJO_COMPLETE=source_<shell>`);
they call back into `pixeldojo` for the candidates, so they only change when Typer does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MAN_DIR = ROOT / "man" / "man1"
SHELLS = {"bash": "pixeldojo.bash", "zsh": "_pixeldojo", "fish": "pixeldojo.fish"}


def completion_script(shell: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIXELDOJO_", "_PIXELDOJO"))}
    env["_PIXELDOJO_COMPLETE"] = f"source_{shell}"
    done = subprocess.run(
        [sys.executable, "-m", "pixeldojo_cli"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=ROOT,
    )
    # zsh reads `#compdef` only from the very first line of a file in $fpath.
    return done.stdout.lstrip("\n")


def _node(command: Any) -> dict[str, Any]:
    """A command's completion facts: its short help, the options that take a
    value, and its subcommands (in the order Typer lists them)."""
    node: dict[str, Any] = {
        "help": command.get_short_help_str(),
        "value_options": sorted(
            opt
            for param in command.params
            if param.param_type_name == "option" and not param.is_flag
            for opt in param.opts
        ),
    }
    if hasattr(command, "list_commands"):
        node["commands"] = {
            name: _node(command.get_command(None, name))
            for name in command.list_commands(None)
            if not command.get_command(None, name).hidden
        }
    return node


def command_tree() -> str:
    """pixeldojo_cli/cli/completion/commands.json: the command tree the fast TAB path reads
    instead of building the whole Typer app."""
    import json

    import typer

    from pixeldojo_cli.cli.app import app

    return json.dumps(_node(typer.main.get_command(app)), indent=1) + "\n"


def expected_files() -> dict[Path, str]:
    import typer

    from pixeldojo_cli.cli.app import app
    from pixeldojo_cli.cli.manpages import man_pages
    from pixeldojo_cli.cli.reference import cli_reference

    root = typer.main.get_command(app)
    files = {
        ROOT / "completions" / name: completion_script(shell) for shell, name in SHELLS.items()
    }
    files[ROOT / "docs" / "cli.md"] = cli_reference(root)
    files[ROOT / "pixeldojo_cli" / "cli" / "completion" / "commands.json"] = command_tree()
    files.update({MAN_DIR / name: page for name, page in man_pages(root).items()})
    return files


def leftover_pages(expected: dict[Path, str]) -> list[Path]:
    """Man pages of commands that no longer exist."""
    return sorted(p for p in MAN_DIR.glob("*.1") if p not in expected)


def main() -> int:
    check = "--check" in sys.argv[1:]
    stale = []
    expected = expected_files()
    for path in leftover_pages(expected):
        stale.append(path.relative_to(ROOT))
        if not check:
            path.unlink()
            print(f"removed {path.relative_to(ROOT)}")
    for path, text in expected.items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path.relative_to(ROOT))
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if check and stale:
        print("stale: " + ", ".join(map(str, stale)) + " (run python scripts/generate_docs.py)")
        return 1
    for name in stale:
        if (ROOT / name).exists():
            print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
