"""The layers one can see in the tree: the library never imports the CLI's
toolkits, and the emulator imports neither the client nor the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pixeldojo_cli"


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def modules(where: Path) -> list[Path]:
    return sorted(where.rglob("*.py"))


LIBRARY = [p for p in modules(PACKAGE) if "cli" not in p.relative_to(PACKAGE).parts[:1]]
EMULATOR = modules(PACKAGE / "emulator")


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_nothing_outside_cli_imports_typer_or_rich(path: Path) -> None:
    toolkits = {m for m in imported_modules(path) if m.split(".")[0] in ("typer", "rich", "click")}
    assert not toolkits, f"{path.name} imports {toolkits}"


@pytest.mark.parametrize("path", EMULATOR, ids=lambda p: p.name)
def test_the_emulator_imports_neither_the_client_nor_the_cli(path: Path) -> None:
    ours = {m for m in imported_modules(path) if m.startswith("pixeldojo_cli.")}
    assert all(m.startswith("pixeldojo_cli.emulator") for m in ours), ours
    assert "httpx" not in {m.split(".")[0] for m in imported_modules(path)}


def test_the_command_layer_has_no_wait_loop_of_its_own() -> None:
    for path in modules(PACKAGE / "cli"):
        assert "sleep(" not in path.read_text(encoding="utf-8"), path.name
