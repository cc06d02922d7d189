"""The `pixeldojo` command line: one module per command group, drawing via `render`."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

from pixeldojo_cli import interrupts
from pixeldojo_cli.cli.argv import hoist_global_options

INTERRUPTED = interrupts.INTERRUPTED_EXIT


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
    _install_signal_handlers()
    if "_PIXELDOJO_COMPLETE" in os.environ:  # a TAB: answered without Typer when we can
        from pixeldojo_cli.cli.fastcomplete import fast_complete

        answer = fast_complete()
        if answer is not None:
            text, code = answer
            if text is not None:
                sys.stdout.write(text + "\n")
            sys.stdout.flush()
            sys.exit(code)
    args = hoist_global_options(sys.argv[1:])
    if args == ["--version"]:  # the most scripted call of all: answered without Typer
        from pixeldojo_cli import __version__

        sys.stdout.write(f"pixeldojo {__version__}\n")
        return
    try:
        _run(args)
    except SystemExit as exc:
        sys.exit(_exit_code_after(exc.code))
    except KeyboardInterrupt:  # interrupted before a command could take it
        interrupts.remove_parts()
        sys.exit(interrupts.exit_code())


def _run(args: list[str]) -> None:
    from pixeldojo_cli.cli.app import app

    if "--json" not in args:
        app(args=args, prog_name="pixeldojo")
        return
    # Under --json, a bad flag is reported as JSON on stdout too, like every other error.
    import typer

    try:
        code = app(args=args, prog_name="pixeldojo", standalone_mode=False)
    except typer.TyperException as exc:
        sys.exit(_json_usage_error(exc))
    except typer.Abort:
        sys.exit(interrupts.exit_code())
    sys.exit(code if isinstance(code, int) else 0)


def _json_usage_error(exc: Exception) -> int:
    """Print a command-line usage error for people (stderr) and scripts (stdout)."""
    from pixeldojo_cli.cli.render import dump_json

    format_message = getattr(exc, "format_message", None)
    message = format_message() if callable(format_message) else str(exc)
    exit_code = getattr(exc, "exit_code", 2)
    sys.stderr.write(f"error: {message} (usage_error)\nTry 'pixeldojo --help'.\n")
    document = {"error": {"code": "usage_error", "message": message, "exit_code": exit_code}}
    sys.stdout.write(dump_json(document) + "\n")
    return int(exit_code)
