"""Shell completion: generated scripts kept fresh, model ids and -p names offered from a cache."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from pixeldojo_cli.emulator import Emulator

from conftest import PYTHON, run_subprocess_env

ROOT = Path(__file__).resolve().parent.parent


def complete(line: str, env: dict[str, str], *, importtime: bool = False) -> list[str]:
    """What bash would offer for the last word of `line` (Typer's completion protocol)."""
    words = shlex.split(line)
    env = {
        **env,
        "COMP_WORDS": line,
        "COMP_CWORD": str(len(words) - 1),
        "_PIXELDOJO_COMPLETE": "complete_bash",
    }
    done = subprocess.run(
        [PYTHON, *(["-X", "importtime"] if importtime else []), "-m", "pixeldojo_cli"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    if importtime:
        return [line.split("|")[-1].strip() for line in done.stderr.splitlines()]
    return done.stdout.split()


def test_checked_in_completions_and_docs_are_not_stale() -> None:
    done = subprocess.run(
        [PYTHON, str(ROOT / "scripts" / "generate_docs.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("pixeldojo.bash", "_pixeldojo", "pixeldojo.fish"):
        assert "pixeldojo" in (ROOT / "completions" / name).read_text()


def test_model_ids_are_completed_and_cached(emulator: Emulator, isolated_env: Path) -> None:
    env = run_subprocess_env(emulator)
    offered = complete("pixeldojo run fl", env)
    assert "flux-dev" in offered and "flux-1.1-pro" in offered
    assert all(word.startswith("fl") for word in offered)
    assert list((isolated_env / "xdg_cache_home" / "pixeldojo").glob("models-*.json"))
    fetched = len(emulator.requests_to("GET", r"/models$"))
    seeds = complete("pixeldojo models show seed", env)
    assert seeds and all(word.startswith("seed") for word in seeds)
    assert len(emulator.requests_to("GET", r"/models$")) == fetched  # from the cache now


def test_completion_works_offline_from_the_cache(emulator: Emulator) -> None:
    env = run_subprocess_env(emulator)
    complete("pixeldojo run fl", env)
    emulator.stop()
    assert "flux-dev" in complete("pixeldojo run fl", env)


def test_models_list_fills_the_cache(emulator: Emulator, isolated_env: Path) -> None:
    env = run_subprocess_env(emulator)
    subprocess.run(
        [PYTHON, "-m", "pixeldojo_cli", "models"], env=env, capture_output=True, check=True
    )
    emulator.stop()
    assert "flux-dev" in complete("pixeldojo run flux-d", env)


def test_parameter_names_and_values_after_p(emulator: Emulator) -> None:
    env = run_subprocess_env(emulator)
    assert complete("pixeldojo run flux-dev -p asp", env) == ["aspect_ratio="]
    assert "aspect_ratio=16:9" in complete("pixeldojo run flux-dev -p aspect_ratio=", env)
    assert "seed=" in complete('pixeldojo run flux-dev "a fox" -p se', env)


def test_emulator_completion_needs_no_server() -> None:
    env = run_subprocess_env(PIXELDOJO_EMULATOR="1")
    assert "flux-dev" in complete("pixeldojo run flux-d", env)
    assert "duration=" in complete("pixeldojo run seedance-1.5 -p dur", env)


def test_completion_from_a_warm_cache_does_not_import_httpx_or_rich(emulator: Emulator) -> None:
    env = run_subprocess_env(emulator)
    complete("pixeldojo run fl", env)  # a cache miss asks the API (through httpx) once
    imported = complete("pixeldojo run fl", env, importtime=True)
    assert "httpx" not in imported
    assert not any(name.startswith("rich.progress") for name in imported)
