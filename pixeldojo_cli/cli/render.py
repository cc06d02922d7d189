"""Everything the CLI writes: results on stdout, people's lines on stderr.

stdout carries results only (file paths, JSON, tables); stderr carries
status, progress, hints and errors. Rich is used for terminals; pipes get
plain text with no escape codes. The pieces live beside this module: the JSON
shapes in `documents`, table layout in `tables`, the progress display in
`progress` (imported, with Rich's progress machinery, only when one is drawn).

Text from the server is untrusted: everything drawn for people passes through
`safe_text`, which makes control and invisible format characters visible as
escapes, so no model name, job id or error message can move the cursor, set
the window title, write the clipboard (OSC 52), reorder text (bidi) or break
a line. `dump_json` escapes the same characters, so `--json` stays exact JSON.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TextIO

from pixeldojo_cli.cli.tables import Column, draw_table
from pixeldojo_cli.cli.terminal import clamp_size, rich_environ
from pixeldojo_cli.core.text import dump_json, safe_lines, safe_text

if TYPE_CHECKING:
    from collections import Counter

    from rich.console import Console

    from pixeldojo_cli.core.errors import PixelDojoError
    from pixeldojo_cli.engine import Event, EventSink


def silence_broken_pipe() -> None:
    """The reader of our output has gone (`| head -1`): point stdout and stderr at
    the null device, so that nothing more, not even the interpreter's final
    flush, fails. The caller then exits quietly, as Unix tools do on SIGPIPE."""
    for stream in (sys.stdout, sys.stderr):
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, stream.fileno())
            finally:
                os.close(devnull)
        except (OSError, ValueError, AttributeError):  # not a real file: nothing to do
            continue


@functools.cache
def _safe_console_class() -> Callable[..., Console]:
    """Rich's Console, with every string it is asked to print passed through a filter."""
    from rich.console import Console, ConsoleDimensions

    class SafeConsole(Console):
        def __init__(self, tidy: Callable[[str], str], **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._tidy = tidy

        def print(self, *objects: Any, **kwargs: Any) -> None:
            tidied = [self._tidy(o) if isinstance(o, str) else o for o in objects]
            super().print(*tidied, **kwargs)

        @property
        def size(self) -> ConsoleDimensions:
            # Rich asks the terminal whenever it measures; a pty may answer 65535 columns.
            measured = super().size
            return ConsoleDimensions(*clamp_size(measured.width, measured.height))

        @size.setter
        def size(self, new_size: tuple[int, int]) -> None:
            self._width, self._height = new_size

        def on_broken_pipe(self) -> None:
            # Rich would exit 1 here; the command's guard ends quietly instead.
            self.quiet = True
            raise BrokenPipeError

    return SafeConsole


def printable(text: str) -> str:
    """`text` with control characters (escape codes included) shown as `?`:
    for text that reaches a terminal without Rich, which strips them itself."""
    return "".join(
        ch if ch.isprintable() or ch in "\t" else ("?" if ch != "\n" else " ") for ch in text
    )


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def color_wanted(no_color_flag: bool, stream: TextIO) -> bool:
    """Colour only for a terminal, and never with --no-color, NO_COLOR or TERM=dumb.
    FORCE_COLOR turns it on even for a pipe."""
    if no_color_flag or os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    if os.environ.get("TERM") == "dumb":
        return False
    return _is_tty(stream)


class Renderer:
    """The one place that writes to the user. `quiet` silences info lines."""

    def __init__(
        self, *, quiet: bool = False, no_color: bool = False, verbose: bool = False
    ) -> None:
        self.quiet = quiet
        self.no_color = no_color
        self.verbose = verbose
        self._stderr_console: Console | None = None
        self._stdout_console: Console | None = None
        self._secrets: set[str] = set()
        self._secret_sources: list[Callable[[], Iterable[object]]] = []
        self._said_rich_needs_a_terminal = False

    def add_secret(self, secret: object) -> None:
        """Never print `secret` whole: errors and traces show it masked."""
        if isinstance(secret, str) and secret:
            self._secrets.add(secret)

    def add_secret_source(self, source: Callable[[], Iterable[object]]) -> None:
        """Secrets known later (the configured key): `source` is asked once,
        before the first line is masked; a source that fails adds nothing."""
        self._secret_sources.append(source)

    def _known_secrets(self) -> set[str]:
        while self._secret_sources:
            source = self._secret_sources.pop(0)
            try:
                for secret in source():
                    self.add_secret(secret)
            except Exception:  # (a broken config file: its error is said where it is read)
                continue
        return self._secrets

    def scrub(self, text: str) -> str:
        """`text` with every known secret masked (last 4 characters at most), in
        any of the forms it may take in a message (escaped, URL-encoded...)."""
        from pixeldojo_cli.core.redact import redact

        text = str(text)
        for secret in self._known_secrets():
            text = redact(text, secret)
        return text

    def for_people(self, text: str) -> str:
        """One line for stderr: secrets masked, nothing a terminal would act on."""
        return safe_text(self.scrub(text))

    def _tidy_lines(self, text: str) -> str:
        # Whatever reaches a console directly: secrets masked, line breaks kept.
        return safe_lines(self.scrub(text))

    # --- streams -------------------------------------------------------------

    @property
    def stdout(self) -> TextIO:
        return sys.stdout

    @property
    def stderr(self) -> TextIO:
        return sys.stderr

    def stderr_is_terminal(self) -> bool:
        return _is_tty(self.stderr) and os.environ.get("TERM") != "dumb"

    def stdout_is_terminal(self) -> bool:
        return _is_tty(self.stdout)

    def stderr_is_utf8(self) -> bool:
        """Whether stderr can show characters beyond ASCII (spinners, `·`)."""
        encoding = (getattr(self.stderr, "encoding", None) or "").lower().replace("-", "")
        return encoding.startswith("utf")

    def _console(self, stream: TextIO) -> Console:
        color = color_wanted(self.no_color, stream)
        return _safe_console_class()(
            self._tidy_lines,
            file=stream,
            no_color=not color,
            color_system="auto" if color else None,
            highlight=False,
            markup=False,  # no Rich markup from server text, whoever prints it
            emoji=False,
            soft_wrap=True,
            force_terminal=True if color and not _is_tty(stream) else None,
            _environ=rich_environ(),  # Rich parses COLUMNS and LINES itself: only clamped ones
        )

    @property
    def err_console(self) -> Console:
        if self._stderr_console is None or self._stderr_console.file is not self.stderr:
            self._stderr_console = self._console(self.stderr)
        return self._stderr_console

    @property
    def out_console(self) -> Console:
        if self._stdout_console is None or self._stdout_console.file is not self.stdout:
            self._stdout_console = self._console(self.stdout)
        return self._stdout_console

    # --- results (stdout) ----------------------------------------------------

    def row(self, cells: Sequence[str]) -> None:
        """One tab-separated line of results on stdout, each cell made safe."""
        self._write_stdout("\t".join(self._cell(cell) for cell in cells))

    def result(self, line: str) -> None:
        """One line of result (a path, a URL, an id) on stdout, made safe: a control
        character from the server shows as an escape and cannot break the line."""
        self._write_stdout(self.for_people(line))

    def key_result(self, key: str) -> None:
        """The one line that prints the key on purpose (`auth token`): made
        safe, not masked (every other line masks it)."""
        self._write_stdout(safe_text(key))

    def _write_stdout(self, text: str) -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def json(self, value: Any) -> None:
        """One JSON document on stdout (`dump_json`: exact, and escaped for terminals),
        with any known secret masked in it."""
        self._write_stdout(self.scrub(dump_json(value)))

    def table(
        self,
        columns: Sequence[str | Column],
        rows: Sequence[Sequence[str]],
        *,
        title: str | None = None,
        empty: str | None = None,
    ) -> None:
        """A table on stdout: Rich for a terminal, tab-separated lines for a pipe.

        On a terminal, ids stay whole (see `Column`), and an empty table is the
        sentence `empty` instead; a pipe gets nothing for no rows. Every cell is
        made safe (`safe_text`) before it is shown.
        """
        specs = [c if isinstance(c, Column) else Column(c) for c in columns]
        cells = [[self._cell(cell) for cell in row] for row in rows]
        if not self.stdout_is_terminal():
            for row in cells:
                self._write_stdout("\t".join(row))
            return
        if not rows and empty is not None:
            self.result(empty)
            return
        draw_table(self.out_console, specs, cells, title)

    def _cell(self, cell: object) -> str:
        """A table cell: one line, no tabs (they separate TSV columns), nothing unsafe."""
        return self.for_people(str(cell).replace("\t", " ").replace("\n", " "))

    # --- people (stderr) -----------------------------------------------------

    def info(self, message: str) -> None:
        """A status line for people; silenced by --quiet."""
        if not self.quiet:
            self.err_console.print(self.for_people(message), markup=False)

    def note(self, message: str, style: str = "dim") -> None:
        if not self.quiet:
            self.err_console.print(self.for_people(message), style=style, markup=False)

    def warn(self, message: str) -> None:
        self.err_console.print(f"warning: {self.for_people(message)}", style="yellow", markup=False)

    def trace(self, line: str) -> None:
        self.err_console.print(self.for_people(line), style="dim", markup=False)

    def line_error(self, label: str, exc: PixelDojoError) -> None:
        """One item's error among many (a batch line): shown even with --quiet."""
        code = f" ({exc.code})" if exc.code else ""
        self.err_console.print(
            f"{label}: {self.scrub(exc.message)}{code}", style="red", markup=False
        )
        if exc.hint:
            self.err_console.print(f"  {self.scrub(exc.hint)}", markup=False)

    def error(
        self, exc: PixelDojoError, *, json_output: bool = False, one_line: bool = False
    ) -> None:
        """The error on stderr (one sentence, then what to do next); under --json, on
        stdout too (`one_line`: as one line, among JSON Lines)."""
        line, hint = self.error_text(exc)
        self.err_console.print(line, style="bold red", markup=False)
        if hint:
            self.err_console.print(hint, markup=False)
        if json_output and one_line:
            import json

            self._write_stdout(self.scrub(json.dumps(self.error_document(exc))))
        elif json_output:
            self.json(self.error_document(exc))

    def error_text(self, exc: PixelDojoError) -> tuple[str, str]:
        """The error's line (`error: MESSAGE (code)`) and its hint (or ""), made safe."""
        code = f" ({exc.code})" if exc.code else ""
        line = self.for_people(f"error: {self.scrub(exc.message)}{code}")
        return line, self.for_people(exc.hint) if exc.hint else ""

    def error_document(self, exc: PixelDojoError) -> dict[str, Any]:
        """The `{"error": {...}}` document of `--json`, with secrets masked in the message."""
        document = exc.to_json()
        document["error"]["message"] = self.scrub(exc.message)
        return document

    # --- progress ------------------------------------------------------------

    def progress_mode(self, requested: str = "auto") -> str:
        """`rich` for a terminal, `plain` lines otherwise, `none` with --quiet.

        `--progress rich` without a terminal on stderr would draw nothing but a
        blank line: plain lines instead, and a note saying so (once)."""
        if self.quiet or requested == "none":
            return "none"
        if requested == "rich" and not self.stderr_is_terminal():
            if not self._said_rich_needs_a_terminal:
                self._said_rich_needs_a_terminal = True
                self.note("--progress rich needs a terminal on stderr: showing plain lines.")
            return "plain"
        if requested in ("rich", "plain"):
            return requested
        if os.environ.get("CI"):  # CI logs keep every frame of a live display: lines read better
            return "plain"
        return "rich" if self.stderr_is_terminal() else "plain"

    def batch_progress(
        self, counts: Callable[[], Counter[str]], total: int, mode: str
    ) -> AbstractContextManager[Callable[[], None]]:
        """One bar for a whole batch, with a count per state; a no-op off a terminal
        (plain mode prints a line per finished job instead)."""
        from pixeldojo_cli.cli import progress

        return progress.batch_progress(self, counts, total, mode)

    def notice_sink(self) -> EventSink:
        """An event sink that shows notices only (no live display)."""
        return lambda event: self.show_notice(event)

    def show_notice(self, event: Event) -> None:
        from pixeldojo_cli.engine import Notice

        if isinstance(event, Notice):
            if event.level == "warning":
                self.warn(event.message)
            else:
                self.info(event.message)

    def job_display(self, mode: str) -> AbstractContextManager[EventSink]:
        """The engine's events drawn: a live line per job (with its download bars)
        on a terminal, one plain line per status change otherwise."""
        from pixeldojo_cli.cli import progress

        return progress.job_display(self, mode)
