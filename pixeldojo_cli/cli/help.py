"""Help pages that read at any width, on Typer's `cls=` hook.

Typer's own pages cut names that do not fit their columns, show type
placeholders (`<int>`) and read help text as markup. `PixelDojoCommand` and
`PixelDojoGroup` override the documented `format_help` and `format_usage`: the
page is laid out by `helptext` (names whole, text printed as written), types
read `INTEGER`, `[a|b]`, and defaults `[default: ...]`.
"""

from __future__ import annotations

import sys
from enum import Enum
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from pixeldojo_cli.cli.helptext import BOLD, RESET, Page, paragraphs, wrap_words
from pixeldojo_cli.cli.render import color_wanted
from pixeldojo_cli.cli.terminal import terminal_size

MAX_WIDTH = 100  # wider lines are harder to read, even on a wide terminal


def help_width() -> int:
    """The terminal's width (COLUMNS wins), at most MAX_WIDTH; 80 when unknown."""
    return max(20, min(terminal_size()[0], MAX_WIDTH))


def _metavar(param: Any) -> str:
    """The metavar given, else one from the type: `[a|b]`, INTEGER, NUMBER, TEXT."""
    if getattr(param, "metavar", None):
        return str(param.metavar)
    descriptor = getattr(param, "type_descriptor", None)
    if choices := getattr(descriptor, "choices", None):
        return "[" + "|".join(str(c.value if isinstance(c, Enum) else c) for c in choices) + "]"
    annotation: Any = getattr(descriptor, "annotation", None)
    if getattr(annotation, "__origin__", None) is list:
        annotation = annotation.__args__[0]
    return {int: "INTEGER", float: "NUMBER"}.get(annotation, "TEXT")


def _argument_name(param: Any) -> str:
    name = str(getattr(param, "metavar", None) or str(param.name).upper())
    return name + "..." if param.nargs != 1 and not name.endswith("...") else name


def option_names(param: Any) -> str:
    """`-p, --param KEY=VALUE`, `--checksum / --no-checksum`, `-h, --help`."""
    names = ", ".join(sorted(param.opts, key=lambda o: o.startswith("--")))
    if param.secondary_opts:
        names += " / " + ", ".join(param.secondary_opts)
    return names if getattr(param, "is_flag", False) else f"{names} {_metavar(param)}"


def _default_text(param: Any) -> str | None:
    """What `[default: ...]` shows, or None when there is nothing to show."""
    show, default = getattr(param, "show_default", False), param.default
    if isinstance(show, str):
        return show
    if not show:
        return None
    if getattr(param, "is_flag", False):  # `--checksum / --no-checksum`: the name set
        if not param.secondary_opts or not isinstance(default, bool):
            return None
        return str((param.opts if default else param.secondary_opts)[0]).lstrip("-")
    if default is None or callable(default) or default in ((), []):
        return None
    if isinstance(default, list | tuple):
        return ", ".join(str(d) for d in default)
    return str(default.value if isinstance(default, Enum) else default)


def _range_text(param: Any) -> str | None:
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if low is not None and high is not None:
        return f"{low}<=x<={high}"
    if low is not None or high is not None:
        return f"x>={low}" if low is not None else f"x<={high}"
    return None


def describe_parameter(param: Any) -> str:
    """The help of an option or argument, with its default, range and requirement."""
    parts = [" ".join(str(getattr(param, "help", None) or "").split())]
    if (default := _default_text(param)) is not None:
        parts.append(f"[default: {default}]")
    if limits := _range_text(param):
        parts.append(f"[{limits}]")
    if param.required:
        parts.append("[required]")
    return " ".join(p for p in parts if p)


def usage_line(command: Any, ctx: typer.Context, width: int, colour: bool = False) -> str:
    """`Usage: pixeldojo run [OPTIONS] MODEL [PROMPT]`, wrapped under itself if long:
    required arguments bare, optional ones in brackets."""
    pieces = ["[OPTIONS]"]
    for param in command.get_params(ctx):
        if param.param_type_name == "argument" and not getattr(param, "hidden", False):
            name = _argument_name(param)
            pieces.append(name if param.required else f"[{name}]")
    if isinstance(command, TyperGroup):
        pieces.append(command.subcommand_metavar or "COMMAND [ARGS]...")
    head = f"Usage: {ctx.command_path} "
    lines = wrap_words(" ".join(pieces), max(width, len(head) + 20), head, " " * len(head))
    if colour:
        lines[0] = BOLD + "Usage:" + RESET + lines[0][len("Usage:") :]
    return "\n".join(lines)


def short_help(command: Any) -> str:
    """A command's line in its group's list: its short help, or its first sentence."""
    if command.short_help:
        return " ".join(str(command.short_help).split())
    first = next((p for verbatim, p in paragraphs(command.help or "") if not verbatim), "")
    sentence, dot, _ = first.partition(". ")
    return sentence + ("." if dot else "")


def render_help(command: Any, ctx: typer.Context, width: int, colour: bool = False) -> str:
    """The whole help page of `command` as text."""
    page = Page(width, colour)
    page.lines.append(usage_line(command, ctx, width, colour))
    if command.help:
        page.text(command.help)
    params = [p for p in command.get_params(ctx) if not getattr(p, "hidden", False)]
    page.rows("Arguments:", [(_argument_name(p), describe_parameter(p))
                             for p in params if p.param_type_name == "argument"])  # fmt: skip
    page.rows("Options:", [(option_names(p), describe_parameter(p))
                           for p in params if p.param_type_name == "option"])  # fmt: skip
    if isinstance(command, TyperGroup):
        subs = [(name, command.get_command(ctx, name)) for name in command.list_commands(ctx)]
        page.rows("Commands:", [(name, short_help(sub)) for name, sub in subs
                                if sub is not None and not sub.hidden])  # fmt: skip
    if command.epilog:
        page.text(command.epilog)
    return page.render()


class _OurHelp:
    """Typer's documented formatting hooks, drawing our page and usage line."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        state = ctx.find_root().obj  # None before the root callback ran
        colour = color_wanted(bool(getattr(state, "no_color", False)), sys.stdout)
        formatter.write(render_help(self, ctx, help_width(), colour))

    def format_usage(self, ctx: Any, formatter: Any) -> None:
        formatter.write(usage_line(self, ctx, help_width()) + "\n")


class PixelDojoCommand(_OurHelp, TyperCommand):
    """A Typer command with our help page: `@app.command(cls=PixelDojoCommand)`."""


class PixelDojoGroup(_OurHelp, TyperGroup):
    """A Typer group with our help page: `typer.Typer(cls=PixelDojoGroup)`."""


def help_for(path: list[str], root: Any, width: int) -> str:
    """The help page of `pixeldojo PATH...` as `--help` prints it, without colour.

    Raises LookupError naming the first word that is not a command."""
    ctx = root.make_context("pixeldojo", [], resilient_parsing=True)
    command = root
    for name in path:
        sub = command.get_command(ctx, name) if isinstance(command, TyperGroup) else None
        if sub is None:
            raise LookupError(name)
        ctx = sub.make_context(name, [], parent=ctx, resilient_parsing=True)
        command = sub
    return render_help(command, ctx, width)
