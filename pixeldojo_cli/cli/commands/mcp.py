"""`pixeldojo mcp`: an MCP server on stdio for AI assistants, over the engine.

The MCP SDK (the `[mcp]` extra) is imported here, inside the command, and by
`cli/mcp_server` which only this command imports: no other command pays for it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated

import typer

from pixeldojo_cli.cli.commands.run_flags import IgnoreBudgetOption, parse_credits
from pixeldojo_cli.cli.outputs import ChecksumOption
from pixeldojo_cli.cli.state import AppState, get_state
from pixeldojo_cli.core.errors import UsageError

if TYPE_CHECKING:
    from pixeldojo_cli.engine.budget import Budget

INSTALL_HINT = "pip install 'pixeldojo-cli[mcp]'"

HELP = f"""\
Serve PixelDojo to an AI assistant: an MCP server on stdio.

The assistant lists models, reads a model's inputs, prices a request without
spending (estimate_cost), and generates: inputs are checked before anything is
spent, and every output is saved to the output folder and recorded in the local
ledger before its link expires; the answer gives the files' absolute paths, the
<jobId>.json sidecar, the job id and the credits charged. Also job_status,
wait_for_job, download_job and search_history (the ledger). Errors come back as
tool errors with the CLI's error codes and messages. In an input that takes a
URL, the assistant may write @PATH (any file this server can read, uploaded as
`upload` says) or @job:ID/N, as on `run`.

--max-credits caps what one session may spend: a job whose estimate would pass
it is refused before it is submitted. Jobs still running when the assistant
goes away stay in the ledger: `pixeldojo download --pending` saves them.
The profile, key, output folder and rate budget are the same as every
command's; stdout carries only the protocol (status goes to stderr). Needs the
mcp extra: {INSTALL_HINT}.
"""

EXAMPLES = """\
Examples:

  pixeldojo mcp -o ~/Pictures/pixeldojo --max-credits 50

  pixeldojo --emulator mcp

  # In the assistant's MCP config (Claude Desktop: claude_desktop_config.json):
  {"mcpServers": {"pixeldojo": {"command": "pixeldojo",
    "args": ["mcp", "-o", "/home/me/Pictures/pixeldojo", "--max-credits", "50"]}}}
"""

MaxCreditsOption = Annotated[
    float | None,
    typer.Option(
        "--max-credits",
        metavar="CREDITS",
        parser=parse_credits,  # run's rule: a finite number, 0 or more
        help="The most this server session may spend (estimated before each job).",
    ),
]
OutputDirOption = Annotated[
    str | None,
    typer.Option(
        "--output-dir",
        "-o",
        metavar="DIR",
        help="Where outputs go (or PIXELDOJO_OUTPUT_DIR; default: the current folder).",
    ),
]
WaitTimeoutOption = Annotated[
    str | None,
    typer.Option(
        "--timeout",
        metavar="DURATION",
        help="The longest one tool call waits for a job (e.g. 10m; a call's "
        "timeout_seconds wins). The job keeps running: wait_for_job picks it up.",
    ),
]


def require_sdk() -> None:
    """The `[mcp]` extra, or one line saying how to install it (exit 2)."""
    try:
        import mcp.server.mcpserver  # noqa: F401
    except ImportError:
        raise UsageError(f"`pixeldojo mcp` needs the MCP SDK: {INSTALL_HINT}", hint="") from None


def mcp(
    ctx: typer.Context,
    max_credits: MaxCreditsOption = None,
    ignore_budget: IgnoreBudgetOption = False,
    output_dir: OutputDirOption = None,
    timeout: WaitTimeoutOption = None,
    checksum: ChecksumOption = None,
) -> None:
    state = get_state(ctx)
    with state.guard():
        require_sdk()
        budget = state.budget(ignore=ignore_budget)  # --max-credits is the session's
        _serve(state, (max_credits, budget), output_dir, timeout, checksum)


def _serve(
    state: AppState,
    spend: tuple[float | None, Budget],
    output_dir: str | None,
    timeout: str | None,
    checksum: bool | None,
) -> None:
    import threading

    from pixeldojo_cli.cli.mcp_server import serve
    from pixeldojo_cli.cli.mcp_tools import SpendCap, Tools
    from pixeldojo_cli.core.durations import parse_duration
    from pixeldojo_cli.engine import JobFlags

    wait, save = state.job_options(
        JobFlags(output_dir=output_dir, timeout=parse_duration(timeout), checksum=checksum)
    )
    # Absolute from the start: an assistant starts the server in a folder of its choosing.
    folder = save.folder.resolve() if save.folder is not None else None
    save = dataclasses.replace(save, folder=folder, default_folder=save.default_folder.resolve())
    max_credits, budget = spend
    tools = Tools(state, (wait, save), (SpendCap(max_credits), budget), threading.Event())
    cap = f", at most {max_credits:g} credits" if max_credits is not None else ""
    state.render.info(
        f"MCP server on stdio: outputs go to {save.folder_for(None)}{cap}. "
        "Stop it by closing its input."
    )
    serve(tools)
