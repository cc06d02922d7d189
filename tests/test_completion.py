"""Shell completion: generated scripts kept fresh, model ids and -p names offered from a cache."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from pixeldojo_cli.emulator import Emulator

from conftest import PYTHON, Invoke, run_subprocess_env

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


def bash_tab(words: list[str], env: dict[str, str], tmp_path: Path) -> list[str]:
    """COMPREPLY from the generated bash script, with COMP_WORDS and COMP_CWORD as
    bash sets them (it splits `aspect_ratio=16:` into `aspect_ratio`, `=`, `16`,
    `:`; the word being completed is the last one)."""
    wrapper = tmp_path / "bin" / "pixeldojo"
    wrapper.parent.mkdir(exist_ok=True)
    wrapper.write_text(f'#!/bin/sh\nexec "{PYTHON}" -m pixeldojo_cli "$@"\n')
    wrapper.chmod(0o755)
    script = (
        f"source {shlex.quote(str(ROOT / 'completions' / 'pixeldojo.bash'))}\n"
        f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        "_pixeldojo_completion pixeldojo\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script],
        capture_output=True,
        text=True,
        env={**env, "PATH": f"{wrapper.parent}:{env['PATH']}"},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line]


def test_enum_values_complete_after_an_equals_sign_as_bash_splits_words(
    emulator: Emulator, tmp_path: Path
) -> None:
    env = run_subprocess_env(emulator)
    start = ["pixeldojo", "run", "flux-dev", "-p"]
    offered = bash_tab([*start, "aspect_ratio", "="], env, tmp_path)
    assert "16:9" in offered and "1:1" in offered  # bash puts them after the `=`
    assert bash_tab([*start, "aspect_ratio", "=", "16", ":"], env, tmp_path) == ["9"]
    assert bash_tab([*start, "aspect_ratio", "=", "2"], env, tmp_path) == ["2:3", "21:9"]
    assert bash_tab([*start, "output_f"], env, tmp_path) == ["output_format="]
    after = [*start, "aspect_ratio", "=", "16", ":", "9", "-p", "output_format", "=", "w"]
    assert bash_tab(after, env, tmp_path) == ["webp"]


def test_an_option_value_after_an_equals_sign_still_completes(tmp_path: Path) -> None:
    env = run_subprocess_env(PIXELDOJO_EMULATOR="1")
    words = ["pixeldojo", "run", "flux-dev", "--progress", "=", "r"]
    assert bash_tab(words, env, tmp_path) == ["rich"]


def test_job_ids_complete_from_the_ledger_newest_first_without_httpx(
    emulator: Emulator, cli: Invoke, tmp_path: Path
) -> None:
    env = run_subprocess_env(emulator)
    ids = [
        cli("run", "flux-dev", prompt, "--no-wait").stdout.strip() for prompt in ("first", "second")
    ]
    newest_first = ids[::-1]
    for line in ("jobs show ", "jobs wait ", "download ", "webhook replay ", "jobs show job_"):
        assert (
            bash_tab(shlex.split(f"pixeldojo {line}") + [""] * line.endswith(" "), env, tmp_path)
            == newest_first
        ), line
    assert complete(f"pixeldojo jobs wait {ids[0]} job_", env) == [ids[1]]  # not twice
    assert complete(f"pixeldojo jobs show {ids[0]} job_", env) == []  # takes one id
    assert complete("pixeldojo download --pending job_", env) == []
    imported = complete("pixeldojo jobs show job_", env, importtime=True)
    assert "httpx" not in imported and "typer" not in imported
