"""The TAB fast path answers exactly as Typer does, for every shell.

The answers are compared in-process, through the same `main()` that
`python -m pixeldojo_cli` runs (two hundred interpreters starting took two
minutes); a process of its own is kept where the process is the point: what it
imports, and that the entry point answers as `main()` does here."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable

import pytest

from pixeldojo_cli.cli import main
from pixeldojo_cli.emulator import Emulator

from conftest import PYTHON, TEST_KEY, run_subprocess_env

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


def request_env(line: str, shell: str, *, slow: bool, action: str) -> dict[str, str]:
    """The variables a shell's completion script sets for one TAB on `line`."""
    extra = {"_PIXELDOJO_COMPLETE": f"complete_{shell}"}
    if shell == "bash":
        import shlex

        parts = shlex.split(line)
        extra.update(COMP_WORDS=line, COMP_CWORD=str(len(parts) - (0 if line.endswith(" ") else 1)))
    else:
        extra.update(_TYPER_COMPLETE_ARGS=line, _TYPER_COMPLETE_FISH_ACTION=action)
    if slow:
        extra["PIXELDOJO_SLOW_COMPLETE"] = "1"
    return extra


def ask_process(
    line: str, shell: str, env: dict[str, str], *, slow: bool, action: str = "get-args"
) -> tuple[str, int]:
    """The answer of `python -m pixeldojo_cli`, a process of its own."""
    done = subprocess.run(
        [PYTHON, "-m", "pixeldojo_cli"],
        capture_output=True,
        text=True,
        env={**env, **request_env(line, shell, slow=slow, action=action)},
        timeout=60,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout, done.returncode


Ask = Callable[..., tuple[str, int]]


@pytest.fixture
def ask(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Ask:
    """The answer of the entry point's `main()`, run here with the request's environment."""
    monkeypatch.setenv("PIXELDOJO_BASE_URL", emulator.base_url)
    monkeypatch.setenv("PIXELDOJO_API_KEY", TEST_KEY)
    monkeypatch.setattr(sys, "argv", ["pixeldojo"])

    def answer(line: str, shell: str, *, slow: bool, action: str = "get-args") -> tuple[str, int]:
        handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
        code: int | str | None = 0
        capsys.readouterr()
        with monkeypatch.context() as request:
            for name, value in request_env(line, shell, slow=slow, action=action).items():
                request.setenv(name, value)
            try:
                main()
            except SystemExit as done:
                code = done.code
            finally:  # main() installs its own; this process keeps pytest's
                signal.signal(signal.SIGINT, handlers[0])
                signal.signal(signal.SIGTERM, handlers[1])
        out, err = capsys.readouterr()
        assert "Traceback" not in err, err
        return out, code if isinstance(code, int) else (0 if code is None else 1)

    return answer


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_fast_path_answers_as_typer_does(ask: Ask, shell: str) -> None:
    for line in LINES:
        assert ask(line, shell, slow=False) == ask(line, shell, slow=True), line
        if shell == "fish":
            fast = ask(line, shell, slow=False, action="is-args")
            assert fast == ask(line, shell, slow=True, action="is-args"), line


def test_the_fast_path_answers_bash_split_words_as_typer_does(ask: Ask) -> None:
    for line in BASH_SPLIT:
        fast = ask(line, "bash", slow=False)
        assert fast == ask(line, "bash", slow=True), line
        assert fast[0].strip(), line  # something is offered


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
@pytest.mark.parametrize("slow", [False, True])
def test_the_entry_point_answers_as_main_does_in_process(
    ask: Ask, emulator: Emulator, shell: str, slow: bool
) -> None:
    env = run_subprocess_env(emulator)
    for line in ["pixeldojo run fl", "pixeldojo run flux-dev -p aspect_ratio="]:
        expected = ask(line, shell, slow=slow)
        # A TAB gives up at its 3 s deadline and offers nothing: on a loaded machine
        # the process's start-up alone can take that long, so a miss is asked again.
        answers = [ask_process(line, shell, env, slow=slow) for _ in range(1)]
        while answers[-1] != expected and len(answers) < 3:
            answers.append(ask_process(line, shell, env, slow=slow))
        assert answers[-1] == expected, (line, answers)


def test_the_fast_path_does_not_build_the_typer_app(emulator: Emulator) -> None:
    ask_process("pixeldojo run fl", "bash", run_subprocess_env(emulator), slow=False)  # warm it
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
