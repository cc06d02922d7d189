"""`pixeldojo emulator serve`: the embedded emulator as a standalone server."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Annotated

import typer

from pixeldojo_cli.cli.help import PixelDojoCommand, PixelDojoGroup
from pixeldojo_cli.cli.state import AppState, duration_parser, get_state
from pixeldojo_cli.core import interrupts

if TYPE_CHECKING:
    from pixeldojo_cli.emulator import Emulator

app = typer.Typer(
    help="Run the embedded PixelDojo emulator for your own scripts and CI.",
    no_args_is_help=True,
    cls=PixelDojoGroup,
)

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


HostOption = Annotated[str, typer.Option(metavar="ADDRESS", help="Address to listen on.")]
PortOption = Annotated[
    int, typer.Option(metavar="PORT", help="API port (0: any free port).", min=0, max=65535)
]
FilesPortOption = Annotated[
    int,
    typer.Option(metavar="PORT", help="Output-file port (0: any free port).", min=0, max=65535),
]
KeyOption = Annotated[
    str | None,
    typer.Option(metavar="KEY", help="Accept only this API key (default: any non-empty key)."),
]
LatencyOption = Annotated[
    float | None,
    typer.Option(
        metavar="DURATION",
        parser=duration_parser("--latency"),
        help="Time from submit to completion, the same for every job "
        "(default: each model's own spread, ~1-3 s for fast image models to ~30-120 s "
        "for video).",
        show_default=False,
    ),
]
TimeScaleOption = Annotated[
    float,
    typer.Option(
        help="Multiply every model's durations by this (0.01: a 60 s job takes 0.6 s); "
        "ignored with --latency.",
        min=0,
    ),
]
CreditsOption = Annotated[
    float, typer.Option(metavar="CREDITS", help="Starting credit balance.", min=0)
]
RateLimitOption = Annotated[
    int, typer.Option(metavar="N", help="Requests per minute per key (0: off).", min=0)
]
TtlOption = Annotated[
    float,
    typer.Option(
        metavar="DURATION",
        parser=duration_parser("--ttl"),
        help="How long outputs live after completion.",
        show_default="1d",
    ),
]
FailureRateOption = Annotated[
    float,
    typer.Option(metavar="SHARE", help="Share of jobs that fail (0..1).", min=0, max=1),
]


@app.command(
    "serve",
    epilog=(
        "Examples:\n\n"
        "  pixeldojo emulator serve --port 8765\n\n"
        "  export PIXELDOJO_BASE_URL=http://127.0.0.1:8765/api/v1 PIXELDOJO_API_KEY=test\n"
        '  pixeldojo run flux-dev "a test"\n\n'
        "  pixeldojo emulator serve --key secret-test-key   # anything else gets 401\n\n"
        "  pixeldojo emulator serve --time-scale 0.1   # every job 10x faster\n\n"
        "  pixeldojo emulator serve --latency 2   # every job takes exactly 2 s"
    ),
    cls=PixelDojoCommand,
)
def serve(
    ctx: typer.Context,
    host: HostOption = "127.0.0.1",
    port: PortOption = 0,
    files_port: FilesPortOption = 0,
    key: KeyOption = None,
    latency: LatencyOption = None,
    time_scale: TimeScaleOption = 1.0,
    credits: CreditsOption = 1000.0,
    rate_limit: RateLimitOption = 60,
    ttl: TtlOption = 86400.0,
    failure_rate: FailureRateOption = 0.0,
) -> None:
    """Serve the emulated API until Ctrl-C, and print the base URL to use.

    Prints `PIXELDOJO_BASE_URL=...` on stdout so a pipeline can `export` it.
    Any non-empty key works unless --key is given; a prompt containing `#fail`
    makes the job fail. Jobs take as long as the model's usually do (scale it
    with --time-scale, or fix it with --latency). SIGTERM stops it cleanly too.
    """
    from pixeldojo_cli.emulator import Emulator

    state = get_state(ctx)
    with state.guard():
        if host not in _LOOPBACK:
            state.render.warn(f"Listening on {host}: the emulator is meant for loopback only.")
        emulator = Emulator(
            host=host,
            port=port,
            files_port=files_port,
            key=key,
            latency=latency,
            time_scale=time_scale,
            credits=credits,
            rate_limit=rate_limit,
            ttl=ttl,
            failure_rate=failure_rate,
        )
        emulator.start()
        _announce(state, emulator, key)
        _serve_until_stopped(state, emulator)


def _announce(state: AppState, emulator: Emulator, key: str | None) -> None:
    """The base URL on stdout (for `export`), and what works, on stderr."""
    from pixeldojo_cli.emulator import FAIL_MARKER

    state.render.result(f"PIXELDOJO_BASE_URL={emulator.base_url}")
    state.render.info(f"PixelDojo emulator: API {emulator.base_url}, files {emulator.files_url}.")
    state.render.info(
        f"{'Any non-empty key works' if key is None else 'Only the --key given works'}; "
        f"a prompt containing {FAIL_MARKER!r} makes the job fail. Ctrl-C stops it."
    )


def _serve_until_stopped(state: AppState, emulator: Emulator) -> None:
    """Wait for Ctrl-C (or SIGTERM), then stop the emulator."""
    # A CI step stops it with `kill`: treat SIGTERM like Ctrl-C and shut down cleanly.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        interrupts.wait_for_interrupt()
    except KeyboardInterrupt:
        state.render.info("Emulator stopped.")
    finally:
        emulator.stop()
