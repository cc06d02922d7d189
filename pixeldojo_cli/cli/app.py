"""The root `pixeldojo` command: global options, and the command groups."""

from __future__ import annotations

from typing import Annotated

import typer

from pixeldojo_cli import __version__
from pixeldojo_cli.cli import (
    api_cmd,
    auth_cmd,
    config_cmd,
    download_cmd,
    emulator_cmd,
    jobs_cmd,
    models_cmd,
    run_cmd,
    webhook_cmd,
)
from pixeldojo_cli.cli.render import Renderer
from pixeldojo_cli.cli.state import AppState, emulator_requested

EXIT_CODES_HELP = """\
Exit codes: 0 success · 1 unexpected error (a bug) · 2 usage or input error ·
3 authentication · 4 insufficient credits · 5 job failed · 6 not found ·
7 expired · 8 rate limited · 9 --timeout reached · 10 network or server error ·
130 interrupted · 143 terminated (SIGTERM).

Global options (-v, -q, --no-color, --emulator, --api-key, --base-url,
--profile) may also be given after the command.
"""

app = typer.Typer(
    name="pixeldojo",
    help=(
        "Generate images and videos with PixelDojo's API from your terminal, "
        "scripts and CI.\n\n"
        'Try it without a key: pixeldojo --emulator run flux-dev "a lighthouse at dusk"'
    ),
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(models_cmd.app, name="models")
app.command(
    "run",
    help=run_cmd.RUN_HELP,
    epilog=run_cmd.RUN_EXAMPLES,
    no_args_is_help=True,
)(run_cmd.run)
app.add_typer(jobs_cmd.app, name="jobs")
app.command("download", help=download_cmd.HELP, epilog=download_cmd.EXAMPLES)(download_cmd.download)
app.add_typer(webhook_cmd.app, name="webhook")
app.add_typer(auth_cmd.app, name="auth")
app.add_typer(config_cmd.app, name="config")
app.add_typer(emulator_cmd.app, name="emulator")
app.command("api", help=api_cmd.HELP, epilog=api_cmd.EXAMPLES, no_args_is_help=True)(api_cmd.api)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pixeldojo {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Trace HTTP requests on stderr (the key is masked)."),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print results and errors only.")
    ] = False,
    no_color: Annotated[
        bool, typer.Option("--no-color", help="No colours (NO_COLOR works too).")
    ] = False,
    emulator: Annotated[
        bool,
        typer.Option(
            "--emulator",
            help="Run against the embedded emulator: no key, no network, no credits "
            "(or PIXELDOJO_EMULATOR=1).",
        ),
    ] = False,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            help="API key (beats PIXELDOJO_API_KEY and the config file).",
            show_default=False,
        ),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url", help="API base URL (or PIXELDOJO_BASE_URL).", show_default=False
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile", help="Config profile to use (or PIXELDOJO_PROFILE).", show_default=False
        ),
    ] = None,
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
