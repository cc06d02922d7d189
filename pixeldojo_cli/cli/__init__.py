"""The `pixeldojo` command line: one module per command group, drawing via `render`."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

from pixeldojo_cli.cli.argv import hoist_global_options

INTERRUPTED = 130


def _second_interrupt(signum: int, frame: FrameType | None) -> None:
    # The user asked twice: no more cleanup, no waiting for threads.
    os._exit(INTERRUPTED)


def _first_interrupt(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGINT, _second_interrupt)
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _first_interrupt)
    from pixeldojo_cli.cli.app import app

    app(args=hoist_global_options(sys.argv[1:]), prog_name="pixeldojo")
