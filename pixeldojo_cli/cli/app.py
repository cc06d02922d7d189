"""The root `pixeldojo` command: global options, and the command groups."""

from __future__ import annotations

from typing import Annotated

import typer

from pixeldojo_cli.cli.commands import api as api_cmd
from pixeldojo_cli.cli.commands import auth as auth_cmd
from pixeldojo_cli.cli.commands import compare as compare_cmd
from pixeldojo_cli.cli.commands import config as config_cmd
from pixeldojo_cli.cli.commands import download as download_cmd
from pixeldojo_cli.cli.commands import emulator as emulator_cmd
from pixeldojo_cli.cli.commands import gallery as gallery_cmd
from pixeldojo_cli.cli.commands import inspect as inspect_cmd
from pixeldojo_cli.cli.commands import jobs as jobs_cmd
from pixeldojo_cli.cli.commands import mcp as mcp_cmd
from pixeldojo_cli.cli.commands import models as models_cmd
from pixeldojo_cli.cli.commands import rerun as rerun_cmd
from pixeldojo_cli.cli.commands import run as run_cmd
from pixeldojo_cli.cli.commands import skill as skill_cmd
from pixeldojo_cli.cli.commands import usage as usage_cmd
from pixeldojo_cli.cli.commands import webhook as webhook_cmd
from pixeldojo_cli.cli.help import (
    PixelDojoCommand,
    PixelDojoGroup,
    help_for,
    help_width,
)
from pixeldojo_cli.cli.render import Renderer
from pixeldojo_cli.cli.state import AppState, emulator_requested
from pixeldojo_cli.core.version import __version__

EXIT_CODES_HELP = """\
Global options (-v, -q, --no-color, --emulator, --api-key, --base-url,
--profile) may also be given after the command.

Exit codes:

0    success
1    unexpected error (a bug: please report it)
2    usage or input error
3    authentication: no key, or the key was rejected
4    insufficient credits (or --max-credits left batch lines out)
5    the job failed
6    not found (model or job)
7    expired (job or its outputs)
8    rate limited, still after the retries
9    --timeout reached while waiting
10   network failure or server error
130  interrupted (Ctrl-C); 143 after SIGTERM, handled the same way
141  stdout went away (a pipe reader such as `head` closed it)
"""

app = typer.Typer(
    name="pixeldojo",
    help=(
        "Generate images and videos with PixelDojo's API from your terminal, "
        "scripts and CI.\n\n"
        "Try it without a key:\n\n"
        '  pixeldojo --emulator run flux-dev "a lighthouse at dusk"'
    ),
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    # Our own help pages (names never cut, text never read as markup) and Click's
    # plain usage errors: a short usage line and the hint to --help, on stderr.
    cls=PixelDojoGroup,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["--help", "-h"]},
)
app.add_typer(models_cmd.app, name="models", cls=PixelDojoGroup)
app.command(
    "run",
    cls=PixelDojoCommand,
    help=run_cmd.RUN_HELP,
    epilog=run_cmd.RUN_EXAMPLES,
)(run_cmd.run)
app.command(
    "compare",
    cls=PixelDojoCommand,
    help=compare_cmd.HELP,
    epilog=compare_cmd.EXAMPLES,
    no_args_is_help=True,
)(compare_cmd.compare)
app.add_typer(jobs_cmd.app, name="jobs", cls=PixelDojoGroup)
app.command("download", cls=PixelDojoCommand, help=download_cmd.HELP, epilog=download_cmd.EXAMPLES)(
    download_cmd.download
)
app.command("gallery", cls=PixelDojoCommand, help=gallery_cmd.HELP, epilog=gallery_cmd.EXAMPLES)(
    gallery_cmd.gallery
)
app.command(
    "inspect",
    cls=PixelDojoCommand,
    help=inspect_cmd.HELP,
    epilog=inspect_cmd.EXAMPLES,
    no_args_is_help=True,
)(inspect_cmd.inspect)
app.command(
    "rerun",
    cls=PixelDojoCommand,
    help=rerun_cmd.HELP,
    epilog=rerun_cmd.EXAMPLES,
    no_args_is_help=True,
)(rerun_cmd.rerun)
app.add_typer(webhook_cmd.app, name="webhook", cls=PixelDojoGroup)
app.command(
    "usage", cls=PixelDojoCommand, help=usage_cmd.USAGE_HELP, epilog=usage_cmd.USAGE_EXAMPLES
)(usage_cmd.usage)
app.command(
    "credits", cls=PixelDojoCommand, help=usage_cmd.CREDITS_HELP, epilog=usage_cmd.CREDITS_EXAMPLES
)(usage_cmd.credits)
app.add_typer(auth_cmd.app, name="auth", cls=PixelDojoGroup)
app.add_typer(config_cmd.app, name="config", cls=PixelDojoGroup)
app.add_typer(emulator_cmd.app, name="emulator", cls=PixelDojoGroup)
app.command(
    "api", cls=PixelDojoCommand, help=api_cmd.HELP, epilog=api_cmd.EXAMPLES, no_args_is_help=True
)(api_cmd.api)
app.command("skill", cls=PixelDojoCommand, help=skill_cmd.HELP, epilog=skill_cmd.EXAMPLES)(
    skill_cmd.skill
)
app.command("mcp", cls=PixelDojoCommand, help=mcp_cmd.HELP, epilog=mcp_cmd.EXAMPLES)(mcp_cmd.mcp)


@app.command(
    "help",
    cls=PixelDojoCommand,
    epilog="Examples:\n\n  pixeldojo help run\n\n  pixeldojo help jobs wait",
)
def help_command(
    ctx: typer.Context,
    command: Annotated[
        list[str] | None,
        typer.Argument(metavar="COMMAND", help="A command, and a subcommand of it."),
    ] = None,
) -> None:
    """Show the help of a command.

    `pixeldojo help run` prints what `pixeldojo run --help` prints; without a
    command, the list of commands.
    """
    from pixeldojo_cli.core.errors import UsageError

    root = ctx.find_root().command
    try:
        typer.echo(help_for(command or [], root, help_width()), nl=False)
    except LookupError as exc:
        state = ctx.find_root().obj
        error = UsageError(
            f"No such command: {' '.join(command or [])!r}.",
            hint="See the commands with: pixeldojo --help",
        )
        if isinstance(state, AppState):
            state.render.error(error)
        raise typer.Exit(int(error.exit_code)) from exc


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pixeldojo {__version__}")
        raise typer.Exit()


# The global options, valid before or after the command (see `argv.hoist_global_options`).
VersionFlag = Annotated[
    bool,
    typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit."),
]
VerboseFlag = Annotated[
    bool, typer.Option("--verbose", "-v", help="Trace HTTP requests on stderr (the key is masked).")
]
QuietFlag = Annotated[bool, typer.Option("--quiet", "-q", help="Print results and errors only.")]
NoColorFlag = Annotated[bool, typer.Option("--no-color", help="No colours (NO_COLOR works too).")]
EmulatorFlag = Annotated[
    bool,
    typer.Option(
        "--emulator",
        help="Run against the embedded emulator: no key, no network, no credits "
        "(or PIXELDOJO_EMULATOR=1).",
    ),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        metavar="KEY",
        help="API key (beats PIXELDOJO_API_KEY and the config file).",
        show_default=False,
    ),
]
BaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--base-url",
        metavar="URL",
        help="API base URL (or PIXELDOJO_BASE_URL, or its alias PIXELDOJO_API_BASE).",
        show_default=False,
    ),
]
ProfileOption = Annotated[
    str | None,
    typer.Option(
        "--profile",
        metavar="NAME",
        help="Config profile to use (or PIXELDOJO_PROFILE, or `auth switch`).",
        show_default=False,
    ),
]


@app.callback()
def root(
    ctx: typer.Context,
    version: VersionFlag = False,
    verbose: VerboseFlag = False,
    quiet: QuietFlag = False,
    no_color: NoColorFlag = False,
    emulator: EmulatorFlag = False,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
    profile: ProfileOption = None,
) -> None:
    """Generate images and videos with PixelDojo's API."""
    state = AppState(
        api_key=api_key,
        base_url=base_url,
        profile=profile,
        verbose=verbose,
        quiet=quiet,
        no_color=no_color,
        use_emulator=emulator_requested(emulator),
        render=Renderer(quiet=quiet, no_color=no_color, verbose=verbose),
    )
    ctx.obj = state
    ctx.call_on_close(state.close)
