"""The TAB fast path: command names, model ids, `-p` names and values, and job
ids, without Typer.

Completion runs on every TAB, and building the Typer app (and the pydantic
machinery Typer coerces parameters with) costs ~100 ms. The common cases are
answered here from `commands.json` (generated from the app by
scripts/generate_docs.py, checked for staleness by the tests) in Typer's own
output formats for bash, zsh and fish. Anything else returns None and Typer
answers as usual; `PIXELDOJO_SLOW_COMPLETE=1` forces that, and the tests
compare both paths line by line.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping, MutableMapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

COMPLETE_VAR = "_PIXELDOJO_COMPLETE"
# A TAB answers within 3 s: every request it makes (connecting, the headers and
# the body) ends this long after it starts, whatever the server does, leaving the
# rest for starting Python and offering what the cache has.
TAB_DEADLINE = 2.0
GLOBAL_FLAGS = frozenset({"-v", "--verbose", "-q", "--quiet", "--no-color", "--emulator"})
MODEL_COMMANDS = {("run",), ("models", "show"), ("models", "schema")}
# Commands whose arguments are job ids: True when they take several.
JOB_COMMANDS = {
    ("jobs", "show"): False,
    ("jobs", "wait"): True,
    ("download",): True,
    ("webhook", "replay"): False,
}
# The COMP_WORDBREAKS characters bash makes words of their own (the others are
# shell operators, or quotes, which bash keeps inside a word).
WORD_BREAKS = frozenset("=:@")

Candidates = list[tuple[str, str]]


def tab_deadline() -> AbstractContextManager[None]:
    """The deadline of one TAB, from now (`core.deadlines`)."""
    from pixeldojo_cli.core.deadlines import within

    return within(TAB_DEADLINE)


def _tree() -> dict[str, Any]:
    tree: dict[str, Any] = json.loads(
        (Path(__file__).with_name("commands.json")).read_text(encoding="utf-8")
    )
    return tree


def glue_bash_words(words: list[str], cword: int) -> tuple[list[str], str]:
    """COMP_WORDS up to the word being completed, with the pieces bash split off
    at `=`, `:` and `@` glued back on; and the part of the last word that bash
    keeps (it replaces only what follows the last break character)."""
    current = words[cword] if cword < len(words) else ""
    glued: list[str] = []
    joining = False
    for word in words[: cword + 1]:
        is_break = bool(word) and set(word) <= WORD_BREAKS
        if len(glued) > 1 and (is_break or joining):
            glued[-1] += word
        else:
            glued.append(word)
        joining = is_break
    if cword >= len(words):
        glued.append("")
    replaced = "" if current and set(current) <= WORD_BREAKS else current
    last = glued[-1]
    return glued, last[: len(last) - len(replaced)]


def _words(env: Mapping[str, str], shell: str) -> tuple[list[str], str, str] | None:
    """(words before the one being completed, the incomplete word, the part of it
    the shell keeps), as Typer splits them."""
    try:
        if shell == "bash":
            words = shlex.split(env.get("COMP_WORDS", ""))
            cword = int(env.get("COMP_CWORD", "0"))
            glued, kept = glue_bash_words(words, cword)
            return glued[1:-1], glued[-1], kept
        line = env.get("_TYPER_COMPLETE_ARGS", "")
        words = shlex.split(line)[1:]
    except ValueError:  # an unclosed quote: let Typer decide
        return None
    if words and not line.endswith(" "):
        return words[:-1], words[-1], ""
    return words, "", ""


def bash_words_for_typer(env: MutableMapping[str, str]) -> str:
    """Before Typer answers a bash TAB: COMP_WORDS and COMP_CWORD with the words
    glued back together (see `glue_bash_words`); returns the part bash keeps."""
    try:
        words = shlex.split(env.get("COMP_WORDS", ""))
        glued, kept = glue_bash_words(words, int(env.get("COMP_CWORD", "0")))
    except ValueError:
        return ""
    env["COMP_WORDS"] = "\n".join(shlex.quote(word) for word in glued)
    env["COMP_CWORD"] = str(len(glued) - 1)
    return kept


def trim_for_bash(lines: str, kept: str) -> str:
    """Answers without the part of the word bash keeps (`aspect_ratio=16:9` -> `9`).
    An answer that does not start with it is already what follows it (Click
    answers `--progress=r` with `rich`)."""
    if not kept:
        return lines
    return "\n".join(
        line[len(kept) :] if line.startswith(kept) else line
        for line in lines.splitlines()
        if line != kept
    )


def candidates(args: list[str], incomplete: str, env: Mapping[str, str]) -> Candidates | None:
    """What to offer, or None when this is a case for Typer."""
    if incomplete.startswith("-"):
        return None
    tree = _tree()
    root: dict[str, Any] = {"emulator": False, "api_key": None, "base_url": None, "profile": None}
    node = tree
    path: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        if word in GLOBAL_FLAGS:
            root["emulator"] = root["emulator"] or word == "--emulator"
        elif word in tree["value_options"]:  # --api-key, --base-url, --profile
            if i + 1 >= len(args):
                return None
            root[word.lstrip("-").replace("-", "_")] = args[i + 1]
            i += 1
        elif not rest and word in node.get("commands", {}):
            node = node["commands"][word]
            path.append(word)
        else:
            rest.append(word)
        i += 1
    if "commands" in node:
        if rest:
            return None
        return [(name, sub["help"]) for name, sub in node["commands"].items()
                if name.startswith(incomplete)]  # fmt: skip
    return _leaf(tuple(path), node, rest, incomplete, root, env)


def _leaf(
    path: tuple[str, ...],
    node: dict[str, Any],
    rest: list[str],
    incomplete: str,
    root: dict[str, Any],
    env: Mapping[str, str],
) -> Candidates | None:
    positionals: list[str] = []
    i = 0
    while i < len(rest):
        word = rest[i]
        if word in node["value_options"]:
            if i + 1 >= len(rest):  # completing this option's value
                if path == ("run",) and word in ("-p", "--param") and positionals:
                    return _parameters(positionals[0], incomplete, root, env)
                return None
            i += 2
            continue
        if word.startswith("-") and word != "-":
            if "=" in word:
                return None
            i += 1
            continue
        positionals.append(word)
        i += 1
    if path in MODEL_COMMANDS and not positionals:
        return _models(incomplete, root, env)
    if path in JOB_COMMANDS and (JOB_COMMANDS[path] or not positionals):
        if path == ("download",) and "--pending" in rest:
            return []
        return _jobs(incomplete, root, env, positionals)
    return None


def _target(root: dict[str, Any], env: Mapping[str, str]) -> tuple[str | None, str | None]:
    from pixeldojo_cli.cli.completion.candidates import completion_target

    return completion_target(
        emulator=root["emulator"],
        api_key=root["api_key"],
        base_url=root["base_url"],
        profile=root["profile"],
        env=env,
    )


def _models(incomplete: str, root: dict[str, Any], env: Mapping[str, str]) -> Candidates:
    from pixeldojo_cli.cli.completion.candidates import model_candidates

    return model_candidates(*_target(root, env), incomplete)


def _jobs(
    incomplete: str, root: dict[str, Any], env: Mapping[str, str], taken: list[str]
) -> Candidates:
    from pixeldojo_cli.cli.completion.candidates import job_candidates

    return job_candidates(
        emulator=root["emulator"],
        base_url=root["base_url"],
        profile=root["profile"],
        incomplete=incomplete,
        exclude=taken,
        env=env,
    )


def _parameters(
    model_id: str, incomplete: str, root: dict[str, Any], env: Mapping[str, str]
) -> Candidates:
    from pixeldojo_cli.cli.completion.candidates import parameter_candidates

    return parameter_candidates(*_target(root, env), model_id, incomplete)


# --- Typer's output formats ------------------------------------------------------


def _one_line(text: str) -> str:
    return re.sub(r"\s", " ", text)


def _zsh_escape(text: str) -> str:
    return (
        text.replace('"', '""')
        .replace("'", "''")
        .replace("$", "\\$")
        .replace("`", "\\`")
        .replace(":", r"\\:")
    )


def render(
    shell: str, items: Candidates, env: Mapping[str, str], kept: str = ""
) -> tuple[str | None, int]:
    """(line for stdout or None for nothing at all, exit code), as Typer answers."""
    if shell == "bash":
        return trim_for_bash("\n".join(value for value, _ in items), kept), 0
    if shell == "zsh":
        if not items:
            return "_files", 0
        lines = [
            f'"{_zsh_escape(value)}":"{_zsh_escape(help_)}"' if help_ else f'"{_zsh_escape(value)}"'
            for value, help_ in items
        ]
        return "_arguments '*: :((" + "\n".join(lines) + "))'", 0
    lines = [f"{value}\t{_one_line(help_)}" if help_ else value for value, help_ in items]
    action = env.get("_TYPER_COMPLETE_FISH_ACTION", "")
    if action == "is-args":  # Typer exits with the answer and prints nothing
        return None, 0 if lines else 1
    return "\n".join(lines), 0


def fast_complete(env: Mapping[str, str] = os.environ) -> tuple[str | None, int] | None:
    """Answer a completion request, or None to let Typer do it."""
    request = env.get(COMPLETE_VAR, "")
    shell = request.removeprefix("complete_")
    if not request.startswith("complete_") or shell not in ("bash", "zsh", "fish"):
        return None
    if env.get("PIXELDOJO_SLOW_COMPLETE"):
        return None
    words = _words(env, shell)
    if words is None:
        return None
    args, incomplete, kept = words
    try:
        items = candidates(args, incomplete, env)
    except Exception:  # never break the shell: Typer gets its turn
        return None
    if items is None or any("[" in help_ for _, help_ in items):
        return None  # Rich markup in a help text: Typer renders it
    return render(shell, items, env, kept)
