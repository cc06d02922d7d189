"""The TAB fast path answers exactly as Typer does, for every shell."""

from __future__ import annotations

import subprocess

import pytest

from pixeldojo_cli.emulator import Emulator

from conftest import PYTHON, run_subprocess_env

LINES = [
    "pixeldojo ",
    "pixeldojo r",
    "pixeldojo mo",
    "pixeldojo models ",
    "pixeldojo models s",
    "pixeldojo jobs ",
    "pixeldojo --emulator con",
    "pixeldojo -v auth l",
    "pixeldojo run fl",
    "pixeldojo run ",
    "pixeldojo --emulator run flux-d",
    "pixeldojo run -o out seed",
    "pixeldojo models show kl",
    "pixeldojo models schema flux-1",
    "pixeldojo run flux-dev -p asp",
    "pixeldojo run flux-dev -p aspect_ratio=",
    'pixeldojo run flux-dev "a fox" -p see',
    "pixeldojo run flux-dev --seed 3 -p num",
    "pixeldojo nosuch ",
    "pixeldojo run flux-dev x --pro",  # options: Typer's
    "pixeldojo run flux-dev --progress ",  # an option's value: Typer's
    "pixeldojo jobs show ",  # job ids from the (here empty) ledger
    "pixeldojo webhook replay job_",
]

# As bash splits words at `=` and `:` (COMP_WORDBREAKS): the last word is completed.
BASH_SPLIT = [
    "pixeldojo run flux-dev -p aspect_ratio =",
    "pixeldojo run flux-dev -p aspect_ratio = 16 :",
    "pixeldojo run flux-dev -p aspect_ratio = 1",
    "pixeldojo run flux-dev -p aspect_ratio = 16 : 9 -p output_format = j",
    "pixeldojo run flux-dev --progress = p",
]


def ask(
    line: str, shell: str, env: dict[str, str], *, slow: bool, action: str = "get-args"
) -> tuple[str, int]:
    words = line.split(" ")
    extra = {"_PIXELDOJO_COMPLETE": f"complete_{shell}"}
    if shell == "bash":
        import shlex

        parts = shlex.split(line)
        extra.update(COMP_WORDS=line, COMP_CWORD=str(len(parts) - (0 if line.endswith(" ") else 1)))
    else:
        extra.update(_TYPER_COMPLETE_ARGS=line, _TYPER_COMPLETE_FISH_ACTION=action)
    if slow:
        extra["PIXELDOJO_SLOW_COMPLETE"] = "1"
    done = subprocess.run(
        [PYTHON, "-m", "pixeldojo_cli"],
        capture_output=True,
        text=True,
        env={**env, **extra},
        timeout=60,
    )
    assert "Traceback" not in done.stderr, done.stderr
    del words
    return done.stdout, done.returncode


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_fast_path_answers_as_typer_does(emulator: Emulator, shell: str) -> None:
    env = run_subprocess_env(emulator)
    for line in LINES:
        assert ask(line, shell, env, slow=False) == ask(line, shell, env, slow=True), line
        if shell == "fish":
            fast = ask(line, shell, env, slow=False, action="is-args")
            assert fast == ask(line, shell, env, slow=True, action="is-args"), line


def test_the_fast_path_answers_bash_split_words_as_typer_does(emulator: Emulator) -> None:
    env = run_subprocess_env(emulator)
    for line in BASH_SPLIT:
        fast = ask(line, "bash", env, slow=False)
        assert fast == ask(line, "bash", env, slow=True), line
        assert fast[0].strip(), line  # something is offered


def test_the_fast_path_does_not_build_the_typer_app(emulator: Emulator) -> None:
    ask("pixeldojo run fl", "bash", run_subprocess_env(emulator), slow=False)  # warm the cache
    env = {
        **run_subprocess_env(emulator),
        "_PIXELDOJO_COMPLETE": "complete_bash",
        "COMP_WORDS": "pixeldojo run fl",
        "COMP_CWORD": "2",
    }
    done = subprocess.run(
        [PYTHON, "-X", "importtime", "-m", "pixeldojo_cli"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()}
    assert "flux-dev" in done.stdout.split()
    assert "typer" not in imported and "httpx" not in imported and "pydantic" not in imported
