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
