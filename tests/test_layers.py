"""The layers one can see in the tree. `lint-imports` (contracts in pyproject.toml,
run by .ci/run) keeps every import pointing down: core < api < inputs | store <
engine < cli, the emulator alone. What a contract cannot say is said here: no
two modules import each other, even through others; the library never imports
the CLI's toolkits; the emulator imports neither the client nor the CLI."""

from __future__ import annotations

import ast
import subprocess
import sys
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


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports(path: Path, known: set[str]) -> set[str]:
    """Every module of ours `path` imports: at load time, in a function or under
    TYPE_CHECKING alike. `from a import b` is an import of `a.b` when that is a
    module, else of `a` (as import-linter reads it)."""
    here = module_name(path)
    base = here.split(".") if path.name == "__init__.py" else here.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                stem = base[: len(base) - (node.level - 1)]
                target = ".".join([*stem, *([node.module] if node.module else [])])
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found.add(submodule if submodule in known else target)
    return {name for name in found if name in known and name != here}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in modules(PACKAGE)}
    return {name: package_imports(path, set(paths)) for name, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            step = next(edges, None)
            if step is not None:
                if step not in index:
                    index[step] = low[step] = len(index)
                    stack.append(step)
                    on_stack.add(step)
                    work.append((step, iter(sorted(graph[step]))))
                elif step in on_stack:
                    low[node] = min(low[node], index[step])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def test_no_two_modules_import_each_other_even_through_others() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_finder_sees_a_cycle_through_a_third_module() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_the_package_root_holds_no_module_but_its_entry_points() -> None:
    flat = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert flat == ["__init__.py", "__main__.py"]


def test_the_layer_contracts_hold() -> None:
    """`lint-imports` over the contracts in pyproject.toml (where it is installed)."""
    linter = Path(sys.executable).with_name("lint-imports")
    if not linter.exists():
        pytest.skip("import-linter is not installed here (.ci/run installs it)")
    done = subprocess.run(
        [str(linter), "--no-cache"],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:]
