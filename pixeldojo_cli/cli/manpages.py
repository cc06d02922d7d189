"""Man pages from the command tree: `pixeldojo.1`, and `pixeldojo-COMMAND.1` for each
top-level command (a group's page holds its subcommands).

Built from `reference.walk()` and the same help text and parameter descriptions
as `--help`, so the pages say what the help says. scripts/generate_docs.py writes
them to man/man1/ (checked by `--check`); the wheel installs them in
share/man/man1. The text is plain ASCII roff: every `-` is `\\-` (so an option
pastes as typed), and anything else outside ASCII is a `\\[uXXXX]` escape.
"""

from __future__ import annotations

from typing import Any

from pixeldojo_cli.cli.help import describe_parameter, option_names, short_help, usage_line
from pixeldojo_cli.cli.helptext import paragraphs
from pixeldojo_cli.cli.reference import PROGRAM, Entry, children, walk

SOURCE = "pixeldojo-cli"
MANUAL = "User Commands"


def escape(text: str) -> str:
    """Text as roff reads it literally: backslashes, hyphens and non-ASCII escaped."""
    out = []
    for char in text.replace("\\", "\\e").replace("-", "\\-"):
        out.append(char if ord(char) < 128 else f"\\[u{ord(char):04X}]")
    return "".join(out)


def _line(text: str) -> str:
    """One input line of text: a leading `.` or `'` would make it a request."""
    text = escape(text)
    return "\\&" + text if text.startswith((".", "'")) else text


def _bold(text: str) -> str:
    return f"\\fB{escape(text)}\\fR"


def page_name(path: tuple[str, ...]) -> str:
    """`pixeldojo` or `pixeldojo-jobs`: the page's name, without the section."""
    return "-".join((PROGRAM, *path))


def _text(help_text: str) -> list[str]:
    """Help text as roff paragraphs: prose reflowed by roff, examples kept as lines."""
    lines: list[str] = []
    for verbatim, paragraph in paragraphs(help_text):
        if verbatim:
            lines += [".PP", ".RS 4", ".nf", *map(_line, paragraph.splitlines()), ".fi", ".RE"]
        elif paragraph.endswith(":") and len(paragraph) < 40:
            lines += [".PP", _bold(paragraph)]
        else:
            lines += [".PP", _line(paragraph)]
    return lines


def _parameters(entry: Entry) -> list[str]:
    """An `.TP` item for each argument and option, as `--help` lists them."""
    lines: list[str] = []
    for param in entry.command.get_params(entry.ctx):
        if getattr(param, "hidden", False):
            continue
        if param.param_type_name == "argument":
            name = f"\\fI{escape(str(param.metavar or param.name).upper())}\\fR"
        else:
            name = _bold(option_names(param))
        lines += [".TP", name, _line(describe_parameter(param) or "-")]
    return lines


def _synopsis(entry: Entry) -> str:
    usage = usage_line(entry.command, entry.ctx, 10_000).removeprefix("Usage: ")
    return _bold(entry.title) + " " + escape(usage.removeprefix(entry.title).strip())


def _subcommand(entry: Entry) -> list[str]:
    """A subcommand's section on its group's page."""
    return [
        f'.SS "{escape(entry.title)}"',
        _synopsis(entry),
        *_text(entry.command.help or ""),
        *_parameters(entry),
        *_text(entry.command.epilog or ""),
    ]


def _page(entry: Entry, entries: list[Entry]) -> str:
    name = page_name(entry.path)
    summary = short_help(entry.command)
    lines = [
        f'.TH "{name.upper()}" "1" "" "{SOURCE}" "{MANUAL}"',
        ".nh",  # names and variables are never hyphenated
        ".ad l",
        ".SH NAME",
        f"{escape(name)} \\- {escape(summary.rstrip('.'))}",
        ".SH SYNOPSIS",
        _synopsis(entry),
        ".SH DESCRIPTION",
        *_text(entry.command.help or ""),
        ".SH OPTIONS",
        *_parameters(entry),
    ]
    below = children(entries, entry.path)
    if not entry.path:
        lines.append(".SH COMMANDS")
        for sub in below:
            name = f"\\fB{escape(page_name(sub.path))}\\fR(1)"
            lines += [".TP", name, _line(short_help(sub.command))]
    elif below:
        lines.append(".SH COMMANDS")
        for sub in below:
            lines += _subcommand(sub)
    if entry.command.epilog:
        lines += [".SH NOTES" if not entry.path else ".SH EXAMPLES", *_text(entry.command.epilog)]
    lines += [".SH SEE ALSO", _see_also(entry, entries)]
    return "\n".join(lines) + "\n"


def _see_also(entry: Entry, entries: list[Entry]) -> str:
    names = [page_name(e.path) for e in children(entries, ()) if e.path != entry.path]
    if entry.path:
        names.insert(0, PROGRAM)
    return ",\n".join(f"\\fB{escape(name)}\\fR(1)" for name in names)


def man_pages(root: Any) -> dict[str, str]:
    """`{"pixeldojo.1": roff, "pixeldojo-run.1": roff, ...}`: one page for the
    program and one for each top-level command of the tree `root`."""
    entries = walk(root)
    pages = [entries[0], *children(entries, ())]
    return {f"{page_name(e.path)}.1": _page(e, entries) for e in pages}
