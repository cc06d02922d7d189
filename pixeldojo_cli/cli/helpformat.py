"""Help pages that read at any width: names whole, descriptions wrapped.

Typer's Rich panels put option names, types and descriptions in fixed columns
and cut whatever does not fit (`--max-poll-inter…`, `PIXELDOJO_OUTPUT_…`), show
type placeholders (`<bool>`, `<str>`) and read help text as Rich markup (so
`[defaults]` vanished). This formatter lays help out as `gh` and Click do:
an option's names on the left, its description wrapped at word boundaries
beside it, or on the next line when the names are long. Words are never
broken, so a name or a variable is always whole, and text is printed as
written (no markup).

Paragraphs are reflowed, except a paragraph that starts with `\\b` and every
paragraph after a heading that ends with a colon (`Examples:`): those are
verbatim lines, such as commands to copy. A verbatim line wider than the page
is continued with ` \\` at a space outside quotes, so it still pastes into a
shell.

Every command gets this formatter through `PixelDojoGroup`, the root group's
class: it adopts the whole command tree once Typer has built it.
"""

from __future__ import annotations

import inspect
import shutil
import textwrap
from collections.abc import Iterable, Iterator
from enum import Enum
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

MAX_WIDTH = 100  # wider lines are harder to read, even on a wide terminal
NARROW = 60  # below this, descriptions go under the names instead of beside them
NAME_COLUMN = 28  # the longest name column beside descriptions

_BOLD = "\x1b[1m"
_CYAN = "\x1b[36m"
_RESET = "\x1b[0m"


def help_width() -> int:
    """The terminal's width (COLUMNS wins), at most MAX_WIDTH; 80 when unknown."""
    columns = shutil.get_terminal_size((80, 24)).columns
    return max(20, min(columns, MAX_WIDTH))


def _colour_wanted(ctx: typer.Context | None) -> bool:
    import sys

    from pixeldojo_cli.cli.render import color_wanted

    root = ctx.find_root().obj if ctx is not None else None
    return color_wanted(bool(getattr(root, "no_color", False)), sys.stdout)


class _Page:
    """Lines of one help page, with optional bold/colour."""

    def __init__(self, width: int, colour: bool) -> None:
        self.width = width
        self.colour = colour
        self.lines: list[str] = []

    def style(self, text: str, code: str) -> str:
        return f"{code}{text}{_RESET}" if self.colour and text else text

    def blank(self) -> None:
        if self.lines and self.lines[-1] != "":
            self.lines.append("")

    def heading(self, title: str) -> None:
        self.blank()
        self.lines.append(self.style(title, _BOLD))

    def wrap(self, text: str, indent: int, first_indent: int | None = None) -> None:
        first = " " * (indent if first_indent is None else first_indent)
        self.lines.extend(
            textwrap.wrap(
                text,
                width=max(self.width, indent + 10),
                initial_indent=first,
                subsequent_indent=" " * indent,
                break_long_words=False,
                break_on_hyphens=False,
            )
            or [first.rstrip()]
        )

    def verbatim(self, line: str, indent: int) -> None:
        """A line kept as written: a command is continued with ` \\` when too
        wide; any other line wraps under itself."""
        if "pixeldojo" in line or line.startswith("$"):
            self.lines.extend(fold_command(line, self.width, indent))
        else:
            self.wrap(line, indent=indent + 5, first_indent=indent)

    def text(self) -> str:
        return "\n".join(self.lines).rstrip("\n") + "\n"


# --- text: paragraphs, verbatim blocks --------------------------------------------


def paragraphs(text: str) -> Iterator[tuple[bool, str]]:
    """(verbatim?, paragraph) for help text: reflowed prose, or lines kept as written."""
    text = inspect.cleandoc(text).partition("\f")[0]
    verbatim_after = False
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        if block.startswith("\b"):
            yield True, block.lstrip("\b\n")
            continue
        if verbatim_after:
            yield True, block
            continue
        joined = " ".join(line.strip() for line in block.splitlines())
        yield False, joined
        verbatim_after = joined.endswith(":")


def _shell_words(line: str) -> list[str]:
    """`line` split at spaces outside quotes, each piece keeping its quotes."""
    words: list[str] = []
    current = ""
    quote = ""
    for char in line:
        if quote:
            current += char
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
            current += char
        elif char == " ":
            if current:
                words.append(current)
            current = ""
        else:
            current += char
    if current:
        words.append(current)
    return words


def fold_command(line: str, width: int, indent: int) -> list[str]:
    """A verbatim line at `indent`; if too wide, continued with ` \\` at spaces
    outside quotes (a shell reads it back as the same command)."""
    pad = " " * indent
    if indent + len(line) <= width or " " not in line.strip():
        return [pad + line]
    words = _shell_words(line)
    lines: list[str] = []
    current = pad + words[0]
    for word in words[1:]:
        if len(current) + 1 + len(word) + 2 > width and current.strip():
            lines.append(current + " \\")
            current = pad + "    " + word
        else:
            current += " " + word
    lines.append(current)
    return lines


# --- parameters ---------------------------------------------------------------------


def _type_name(param: Any) -> str:
    """A metavar from the type when none was given: `[a|b|c]`, INTEGER, NUMBER, TEXT."""
    descriptor = getattr(param, "type_descriptor", None)
    choices = getattr(descriptor, "choices", None)
    if choices:
        values = [str(c.value if isinstance(c, Enum) else c) for c in choices]
        return "[" + "|".join(values) + "]"
    annotation: Any = getattr(descriptor, "annotation", None)
    if getattr(annotation, "__origin__", None) is list:
        annotation = annotation.__args__[0]
    if annotation is int:
        return "INTEGER"
    if annotation is float:
        return "NUMBER"
    return "TEXT"


def _metavar(param: Any) -> str:
    metavar = getattr(param, "metavar", None)
    return str(metavar) if metavar else _type_name(param)


def _argument_name(param: Any) -> str:
    name = str(getattr(param, "metavar", None) or str(param.name).upper())
    if param.nargs != 1 and not name.endswith("..."):
        name += "..."
    return name


def option_names(param: Any) -> str:
    """`-p, --param KEY=VALUE`, `--checksum / --no-checksum`, `-h, --help`."""
    short = [o for o in param.opts if not o.startswith("--")]
    long = [o for o in param.opts if o.startswith("--")]
    names = ", ".join(short + long)
    if param.secondary_opts:
        names += " / " + ", ".join(param.secondary_opts)
    if not getattr(param, "is_flag", False):
        names += " " + _metavar(param)
    return names


def _default_text(param: Any) -> str | None:
    show = getattr(param, "show_default", False)
    if isinstance(show, str):
        return show
    if not show:
        return None
    default = param.default
    if getattr(param, "is_flag", False):
        if not param.secondary_opts or not isinstance(default, bool):
            return None
        return str((param.opts if default else param.secondary_opts)[0]).lstrip("-")
    if default is None or callable(default) or default in ((), []):
        return None
    if isinstance(default, Enum):
        return str(default.value)
    if isinstance(default, list | tuple):
        return ", ".join(str(d) for d in default)
    return str(default)


def _range_text(param: Any) -> str | None:
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if low is not None and high is not None:
        return f"{low}<=x<={high}"
    if low is not None:
        return f"x>={low}"
    if high is not None:
        return f"x<={high}"
    return None


def describe_parameter(param: Any) -> str:
    """The help of an option or argument, with its default, range and requirement."""
    parts = [" ".join(str(getattr(param, "help", None) or "").split())]
    default = _default_text(param)
    if default is not None:
        parts.append(f"[default: {default}]")
    limits = _range_text(param)
    if limits:
        parts.append(f"[{limits}]")
    if param.required:
        parts.append("[required]")
    return " ".join(p for p in parts if p)


def _rows(page: _Page, rows: list[tuple[str, str]]) -> None:
    """Names on the left, descriptions wrapped beside them (or beneath, when narrow)."""
    if not rows:
        return
    stacked = page.width < NARROW
    column = min(max(len(name) for name, _ in rows), NAME_COLUMN)
    for name, description in rows:
        styled = "  " + page.style(name, _CYAN)
        if not description or stacked or len(name) > column:
            page.lines.append(styled)
            if description:
                page.wrap(description, indent=6 if stacked else column + 4)
            continue
        wrapped = textwrap.wrap(
            description,
            width=max(page.width - column - 4, 10),
            break_long_words=False,
            break_on_hyphens=False,
        )
        page.lines.append(styled + " " * (column - len(name) + 2) + wrapped[0])
        page.lines.extend(" " * (column + 4) + line for line in wrapped[1:])


# --- the page -------------------------------------------------------------------------


def usage_pieces(command: Any, ctx: typer.Context) -> list[str]:
    """`[OPTIONS] MODEL [PROMPT]`: required arguments bare, optional ones in brackets."""
    pieces = ["[OPTIONS]"]
    for param in command.get_params(ctx):
        if param.param_type_name != "argument" or getattr(param, "hidden", False):
            continue
        name = _argument_name(param)
        pieces.append(name if param.required else f"[{name}]")
    if isinstance(command, TyperGroup):
        pieces.append(command.subcommand_metavar or "COMMAND [ARGS]...")
    return pieces


def usage_line(command: Any, ctx: typer.Context, width: int, colour: bool = False) -> str:
    """`Usage: pixeldojo run [OPTIONS] MODEL [PROMPT]`, wrapped under itself if long."""
    head = f"Usage: {ctx.command_path} "
    lines = textwrap.wrap(
        " ".join(usage_pieces(command, ctx)),
        width=max(width, len(head) + 20),
        initial_indent=head,
        subsequent_indent=" " * len(head),
        break_long_words=False,
        break_on_hyphens=False,
    )
    if colour:
        lines[0] = _BOLD + "Usage:" + _RESET + lines[0][len("Usage:") :]
    return "\n".join(lines)


def is_heading(paragraph: str) -> bool:
    """`Examples:`, `Exit codes:`: a short paragraph ending with a colon."""
    return paragraph.endswith(":") and len(paragraph) <= 40


def _text(page: _Page, text: str) -> None:
    after_heading = False
    for verbatim, paragraph in paragraphs(text):
        if verbatim:
            if not after_heading:
                page.blank()
            for line in paragraph.splitlines():
                page.verbatim(line.strip(), indent=2)
        elif is_heading(paragraph):
            page.heading(paragraph)
        else:
            page.blank()
            page.wrap(paragraph, indent=2)
        after_heading = is_heading(paragraph) and not verbatim


def _short_help(command: Any) -> str:
    if command.short_help:
        return " ".join(str(command.short_help).split())
    first = next((p for verbatim, p in paragraphs(command.help or "") if not verbatim), "")
    sentence, dot, _ = first.partition(". ")
    return sentence + ("." if dot else "")


def render_help(command: Any, ctx: typer.Context, width: int, colour: bool = False) -> str:
    """The whole help page of `command` as text."""
    page = _Page(width, colour)
    page.lines.append(usage_line(command, ctx, width, colour))
    if command.help:
        _text(page, command.help)
    params = [p for p in command.get_params(ctx) if not getattr(p, "hidden", False)]
    arguments = [(_argument_name(p), describe_parameter(p)) for p in params
                 if p.param_type_name == "argument"]  # fmt: skip
    options = [(option_names(p), describe_parameter(p)) for p in params
               if p.param_type_name == "option"]  # fmt: skip
    for title, rows in (("Arguments:", arguments), ("Options:", options)):
        if rows:
            page.heading(title)
            _rows(page, rows)
    if isinstance(command, TyperGroup):
        commands = [
            (name, _short_help(sub))
            for name in command.list_commands(ctx)
            if (sub := command.get_command(ctx, name)) is not None and not sub.hidden
        ]
        if commands:
            page.heading("Commands:")
            _rows(page, commands)
    if command.epilog:
        _text(page, command.epilog)
    return page.text()


# Single inheritance and no new state: an instance Typer built can take these classes.
class PixelDojoCommand(TyperCommand):
    """A Typer command with our help page and usage line."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        formatter.write(render_help(self, ctx, help_width(), _colour_wanted(ctx)))

    def format_usage(self, ctx: Any, formatter: Any) -> None:
        formatter.write(usage_line(self, ctx, help_width()) + "\n")


class PixelDojoGroup(TyperGroup):
    """The root group: adopts every command below it once Typer has built them."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        formatter.write(render_help(self, ctx, help_width(), _colour_wanted(ctx)))

    def format_usage(self, ctx: Any, formatter: Any) -> None:
        formatter.write(usage_line(self, ctx, help_width()) + "\n")

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for command in walk(self):
            adopt(command)


def walk(command: Any) -> Iterable[Any]:
    """`command` and every command below it."""
    yield command
    for sub in getattr(command, "commands", {}).values():
        yield from walk(sub)


def adopt(command: Any) -> None:
    """Give a command Typer built our help page (the classes only add methods)."""
    if type(command) is TyperCommand:
        command.__class__ = PixelDojoCommand
    elif type(command) is TyperGroup:
        command.__class__ = PixelDojoGroup


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
