"""The `pixeldojo` command line: one module per command group, drawing via `render`."""

from __future__ import annotations

import sys

from pixeldojo_cli.cli.argv import hoist_global_options


def main() -> None:
    """Console-script entry point."""
    from pixeldojo_cli.cli.app import app

    app(args=hoist_global_options(sys.argv[1:]), prog_name="pixeldojo")
