"""The `pixeldojo` command line: one module per command group, drawing via `render`."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

from pixeldojo_cli.cli.argv import hoist_global_options, json_lines_command
from pixeldojo_cli.core import interrupts


def _skip_httpx_command_line() -> None:
    """`import httpx` also imports httpx's own command line (click, rich.syntax,
    pygments: about 60 ms) whenever click can be imported, as it can once the
    `[mcp]` extra is installed. We never run it: marking it absent (a None in
    `sys.modules` makes its import fail) makes httpx take its documented
    fallback, so every command starts as fast with the extra as without."""
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


_skip_httpx_command_line()

INTERRUPTED = interrupts.INTERRUPTED_EXIT
# A reader that went away (`pixeldojo models | head -1`): exit as a process killed by
# SIGPIPE is reported by a shell (128 + 13), with nothing printed.
BROKEN_PIPE = 141


def _second_interrupt(signum: int, frame: FrameType | None) -> None:
    # The user asked twice (or Ctrl-C then SIGTERM): no more waiting for threads.
    # Still no partial file left behind, and still the command that resumes.
    interrupts.note_signal(signum)
    interrupts.remove_parts()
    hint = interrupts.resume_hint()
    if hint:
        # os.write, not sys.stderr: the main thread may be inside a write to it.
        os.write(2, f"\nInterrupted. {hint}\n".encode(errors="replace"))
    os._exit(interrupts.exit_code())


def _first_interrupt(signum: int, frame: FrameType | None) -> None:
    interrupts.note_signal(signum)
    signal.signal(signal.SIGINT, _second_interrupt)
    signal.signal(signal.SIGTERM, _second_interrupt)
    if signum == signal.SIGTERM:
        raise interrupts.Terminated
    raise KeyboardInterrupt


def _install_signal_handlers() -> None:
    """Ctrl-C and SIGTERM (CI cancelling a step, `timeout`, a container stop) end a
    command the same way: the work in flight stops, the resume hint is printed,
    exit 130 or 143. Handlers someone else installed are left alone."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _first_interrupt)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _first_interrupt)


def _exit_code_after(code: str | int | None) -> str | int | None:
    """An interrupted command exits 130 (SIGINT) or 143 (SIGTERM), whichever layer
    turned the interruption into an exit (click's own abort exits 1)."""
    if interrupts.received_signal() is not None and code in (1, INTERRUPTED):
        return interrupts.exit_code()
    return code


def main() -> None:
    """Console-script entry point."""
    stdout_was = _file_identity(1)
    try:
        _main()
    except BrokenPipeError:
        _quiet_exit()
    except SystemExit as exc:
        if exc.code == 1 and _pipe_broke(stdout_was):  # a broken pipe is no bug
            _quiet_exit()
        sys.exit(_exit_code_after(exc.code))
    except KeyboardInterrupt:  # interrupted before a command could take it
        interrupts.remove_parts()
        sys.exit(interrupts.exit_code())


def _file_identity(fd: int) -> tuple[int, int] | None:
    try:
        info = os.fstat(fd)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _pipe_broke(stdout_was: tuple[int, int] | None) -> bool:
    """Whether Typer or Rich met a broken pipe and exited 1 for it: Typer then wraps
    stdout in its PacifyFlushWrapper, Rich points stdout at the null device."""
    if type(sys.stdout).__name__ == "PacifyFlushWrapper":
        return True
    now = _file_identity(1)
    return now != stdout_was and now is not None and now == _file_identity_of(os.devnull)


def _file_identity_of(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _quiet_exit() -> None:
    """Stop writing (even the interpreter's last flush) and exit as SIGPIPE would."""
    from pixeldojo_cli.cli.render import silence_broken_pipe

    silence_broken_pipe()
    sys.exit(BROKEN_PIPE)


def _main() -> None:
    _install_signal_handlers()
    _tolerate_ascii_stdout()
    if "_PIXELDOJO_COMPLETE" not in os.environ:
        _command()
        return
    # A TAB: answered without Typer when we can, and within its deadline either way.
    from pixeldojo_cli.cli.completion.fast import fast_complete, tab_deadline

    with tab_deadline():
        answer = fast_complete()
        if answer is not None:
            text, code = answer
            if text is not None:
                sys.stdout.write(text + "\n")
            sys.stdout.flush()
            sys.exit(code)
        if os.environ["_PIXELDOJO_COMPLETE"] == "complete_bash":
            sys.exit(_typer_bash_complete())
        _command()


def _command() -> None:
    """The command line as given, through Typer (which answers a zsh or fish TAB
    the fast path left to it)."""
    args = hoist_global_options(sys.argv[1:])
    if args == ["--version"]:  # the most scripted call of all: answered without Typer
        from pixeldojo_cli.core.version import __version__

        sys.stdout.write(f"pixeldojo {__version__}\n")
        return
    from pixeldojo_cli.cli.app import app

    if "--json" not in args:
        app(args=args, prog_name="pixeldojo")
        return
    # Under --json, a bad flag is reported as JSON on stdout too, like every other error.
    import typer

    try:
        code = app(args=args, prog_name="pixeldojo", standalone_mode=False)
    except typer.TyperException as exc:
        sys.exit(_json_usage_error(exc, one_line=json_lines_command(args)))
    except typer.Abort:
        sys.exit(interrupts.exit_code())
    sys.exit(code if isinstance(code, int) else 0)


def _tolerate_ascii_stdout() -> None:
    """On a stdout that cannot encode every character (an ASCII or Latin-1
    locale), escape what it cannot show, as Python already does on stderr,
    instead of failing with UnicodeEncodeError after the work is done."""
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if not encoding.startswith("utf") and callable(reconfigure):
        reconfigure(errors="backslashreplace")


def _typer_bash_complete() -> int:
    """Typer answers a bash TAB the fast path left to it, with the words bash split
    at `=` and `:` glued back together, and its answers trimmed to match."""
    import contextlib
    import io

    from pixeldojo_cli.cli.app import app
    from pixeldojo_cli.cli.completion.fast import bash_words_for_typer, trim_for_bash

    kept = bash_words_for_typer(os.environ)
    answer = io.StringIO()
    code: int | str | None = 0
    with contextlib.redirect_stdout(answer):
        try:
            app(args=[], prog_name="pixeldojo")
        except SystemExit as done:
            code = done.code
    sys.stdout.write(trim_for_bash(answer.getvalue().rstrip("\n"), kept) + "\n")
    return code if isinstance(code, int) else 0


def _json_usage_error(exc: Exception, *, one_line: bool = False) -> int:
    """Print a command-line usage error for people (stderr) and scripts (stdout:
    `one_line` for a command that prints JSON Lines)."""
    import json

    from pixeldojo_cli.core.text import dump_json, safe_text

    format_message = getattr(exc, "format_message", None)
    message = format_message() if callable(format_message) else str(exc)
    exit_code = getattr(exc, "exit_code", 2)
    ctx = getattr(exc, "ctx", None)
    command = getattr(ctx, "command_path", None) or "pixeldojo"
    sys.stderr.write(f"error: {safe_text(message)} (usage_error)\nTry '{command} --help'.\n")
    document = {"error": {"code": "usage_error", "message": message, "exit_code": exit_code}}
    sys.stdout.write((json.dumps(document) if one_line else dump_json(document)) + "\n")
    return int(exit_code)
