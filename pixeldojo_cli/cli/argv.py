"""Global options may stand anywhere on the command line, as with `gh`.

Click only reads a group's options before the subcommand; users write
`pixeldojo run flux-dev "..." --emulator -v`. This moves the global options
(and their values) to the front before Typer parses. Everything after `--`
is left alone.
"""

from __future__ import annotations

GLOBAL_FLAGS = frozenset({"-v", "--verbose", "-q", "--quiet", "--no-color", "--emulator"})
GLOBAL_OPTIONS = frozenset({"--api-key", "--base-url", "--profile"})


def hoist_global_options(args: list[str]) -> list[str]:
    """`[sub, ..., --emulator, ...]` -> `[--emulator, sub, ...]`."""
    hoisted: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        name = arg.split("=", 1)[0]
        if arg in GLOBAL_FLAGS or (name in GLOBAL_OPTIONS and "=" in arg):
            hoisted.append(arg)
        elif arg in GLOBAL_OPTIONS and i + 1 < len(args):
            hoisted.extend(args[i : i + 2])
            i += 1
        else:
            rest.append(arg)
        i += 1
    return hoisted + rest


# The arguments that name models or jobs, by parameter name: each goes into a URL,
# so it must be text. (A path may hold any bytes, and a PROMPT or -p value that
# is not UTF-8 is refused by the inputs' own check, naming the input.)
ID_ARGUMENTS = {"model_id": "MODEL", "models": "MODELS", "job_id": "JOB_ID", "job_ids": "JOB_ID"}


def undecodable_id(params: dict[str, object]) -> tuple[str, str] | None:
    """(metavar, value) of the first model or job id argument holding bytes that
    are not UTF-8 (which reach Python as lone surrogates); None when all are text."""
    for name, metavar in ID_ARGUMENTS.items():
        value = params.get(name)
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if isinstance(item, str) and not _is_text(item):
                return metavar, item
    return None


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def json_lines_command(args: list[str]) -> bool:
    """Whether these arguments ask for JSON Lines under --json (`compare`, or
    `run` with --batch, --matrix or a PROMPT with braces), where even an error
    before the first job is one line."""
    command = next(
        (arg for at, arg in enumerate(args) if not arg.startswith("-") and not _a_value(args, at)),
        None,
    )
    many = ("--batch", "--matrix", "-m")
    return command == "compare" or (
        command == "run" and any(arg.split("=", 1)[0] in many or "{" in arg for arg in args)
    )


def _a_value(args: list[str], at: int) -> bool:
    """Whether `args[at]` is the value of a global option before it (`--profile NAME`)."""
    return at > 0 and args[at - 1] in GLOBAL_OPTIONS
