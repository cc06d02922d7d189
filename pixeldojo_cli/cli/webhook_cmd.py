"""`pixeldojo webhook replay`: ask the API to resend a job's terminal webhook."""

from __future__ import annotations

from typing import Annotated

import typer

from pixeldojo_cli.cli.complete import complete_job
from pixeldojo_cli.cli.state import get_state

app = typer.Typer(help="Webhooks: resend a finished job's webhook.", no_args_is_help=True)


@app.command(
    "replay",
    epilog="Examples:\n\n  pixeldojo webhook replay job_123\n\n"
    "  pixeldojo webhook replay job_123 --json",
)
def replay(
    ctx: typer.Context,
    job_id: Annotated[
        str,
        typer.Argument(metavar="JOB_ID", help="A finished job's id.", autocompletion=complete_job),
    ],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the API's answer as JSON.")
    ] = False,
) -> None:
    """Ask the API to send the job's terminal webhook again
    (`POST /jobs/{id}/webhook`), and print what it answered."""
    state = get_state(ctx)
    from pixeldojo_cli.errors import ValidationError

    with state.guard(json_output=json_output):
        try:
            answer = state.client().replay_webhook(job_id)
        except ValidationError as exc:
            exc.hint = (
                "Only a finished job that was submitted with --webhook-url has a webhook to "
                f"replay; see it with `pixeldojo jobs show {job_id}`."
            )
            raise
        if json_output:
            state.render.json(answer)
            return
        webhook = answer.get("webhook") if isinstance(answer.get("webhook"), dict) else {}
        delivery = answer.get("delivery") if isinstance(answer.get("delivery"), dict) else {}
        url = (webhook or {}).get("url") or (delivery or {}).get("url") or "its webhook URL"
        status = (delivery or {}).get("status") or (webhook or {}).get("status") or "requested"
        state.render.result(f"Webhook for {job_id} replayed to {url}: {status}.")
