"""The layout of a help page, as plain text: prose reflowed at word boundaries,
names beside (or, when narrow, above) their descriptions, and verbatim lines.

A paragraph that starts with `\\b`, and every paragraph after a heading such as
`Examples:`, is kept line by line; a command line wider than the page is
continued with ` \\` at a space outside quotes, so it still pastes into a shell.
Words are never broken, so a name or a variable is always whole.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Iterator

NARROW = 60  # below this, descriptions go under the names instead of beside them
NAME_COLUMN = 28  # the longest name column beside descriptions
BOLD, CYAN, RESET = "\x1b[1m", "\x1b[36m", "\x1b[0m"
# A word of a shell line: spaces inside quotes do not end it (an unclosed quote runs on).
SHELL_WORD = re.compile(r"""(?:[^ '"]+|'[^']*'|"[^"]*"|['"].*)+""")


def wrap_words(text: str, width: int, first: str = "", rest: str = "") -> list[str]:
    """`text` in lines of at most `width` (a longer word alone on its line, whole)."""
    return textwrap.wrap(text, width, initial_indent=first, subsequent_indent=rest,
                         break_long_words=False, break_on_hyphens=False)  # fmt: skip


def paragraphs(text: str) -> Iterator[tuple[bool, str]]:
    """(verbatim?, paragraph) for help text: reflowed prose, or lines kept as written."""
    verbatim_after = False
    for block in inspect.cleandoc(text).partition("\f")[0].split("\n\n"):
        if block.startswith("\b"):
            yield True, block.lstrip("\b\n")
        elif block.strip() and verbatim_after:
            yield True, block
        elif block.strip():
            joined = " ".join(line.strip() for line in block.splitlines())
            yield False, joined
            verbatim_after = joined.endswith(":")


def fold_command(line: str, width: int, indent: int) -> list[str]:
    """A verbatim line at `indent`; if too wide, continued with ` \\` at spaces
    outside quotes (a shell reads it back as the same command)."""
    pad = " " * indent
    if indent + len(line) <= width or " " not in line.strip():
        return [pad + line]
    first, *words = SHELL_WORD.findall(line)
    lines, current = [], pad + first
    for word in words:
        if len(current) + 1 + len(word) + 2 > width and current.strip():
            lines.append(current + " \\")
            current = pad + "    " + word
        else:
            current += " " + word
    return [*lines, current]


class Page:
    """The lines of one help page `width` wide; headings bold and names cyan when `colour`."""

    def __init__(self, width: int, colour: bool) -> None:
        self.width = width
        self.colour = colour
        self.lines: list[str] = []

    def style(self, text: str, code: str) -> str:
        """`text` in the colour or weight `code`, when this page has colour."""
        return f"{code}{text}{RESET}" if self.colour and text else text

    def blank(self) -> None:
        if self.lines and self.lines[-1] != "":
            self.lines.append("")

    def heading(self, title: str) -> None:
        self.blank()
        self.lines.append(self.style(title, BOLD))

    def wrap(self, text: str, indent: int, first_indent: int | None = None) -> None:
        """`text` reflowed at `indent` (its first line at `first_indent`)."""
        first = " " * (indent if first_indent is None else first_indent)
        wrapped = wrap_words(text, max(self.width, indent + 10), first, " " * indent)
        self.lines.extend(wrapped or [first.rstrip()])

    def text(self, text: str) -> None:
        """Help text: prose reflowed, headings bold, verbatim lines kept (commands folded)."""
        after_heading = False
        for verbatim, paragraph in paragraphs(text):
            heading = not verbatim and paragraph.endswith(":") and len(paragraph) <= 40
            if heading:
                self.heading(paragraph)
            elif not (verbatim and after_heading):
                self.blank()
            if verbatim:
                for line in (line.strip() for line in paragraph.splitlines()):
                    if "pixeldojo" in line or line.startswith("$"):
                        self.lines.extend(fold_command(line, self.width, 2))
                    else:
                        self.wrap(line, indent=7, first_indent=2)
            elif not heading:
                self.wrap(paragraph, indent=2)
            after_heading = heading

    def rows(self, title: str, rows: list[tuple[str, str]]) -> None:
        """Under `title`, names on the left, descriptions wrapped beside them (or
        beneath, when narrow); nothing at all for no rows."""
        if not rows:
            return
        self.heading(title)
        stacked = self.width < NARROW
        column = min(max(len(name) for name, _ in rows), NAME_COLUMN)
        for name, description in rows:
            styled = "  " + self.style(name, CYAN)
            if not description or stacked or len(name) > column:
                self.lines.append(styled)
                if description:
                    self.wrap(description, indent=6 if stacked else column + 4)
                continue
            first, *rest = wrap_words(description, max(self.width - column - 4, 10))
            self.lines.append(styled + " " * (column - len(name) + 2) + first)
            self.lines.extend(" " * (column + 4) + line for line in rest)

    def render(self) -> str:
        """The page as text, ending with one newline."""
        return "\n".join(self.lines).rstrip("\n") + "\n"
