"""`pixeldojo webhook replay`: ask the API to resend a job's terminal webhook."""

from __future__ import annotations

from typing import Annotated

import typer

from pixeldojo_cli.cli.complete import complete_job
from pixeldojo_cli.cli.render import printable
from pixeldojo_cli.cli.state import get_state

app = typer.Typer(help="Webhooks: resend a finished job's webhook.", no_args_is_help=True)

# Delivery states that mean the webhook did not arrive (any other state counts as sent).
UNDELIVERED = frozenset({"failed", "failure", "error", "errored", "skipped", "undelivered"})


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
    (`POST /jobs/{id}/webhook`), and print what it answered.

    Exit 10 when the API says the delivery failed (the URL did not answer, or
    not with 2xx); the reason is on stderr, and in the JSON under --json.
    """
    state = get_state(ctx)
    from pixeldojo_cli.errors import ValidationError, WebhookDeliveryError

    with state.guard(json_output=json_output):
        try:
            answer = state.client().replay_webhook(job_id)
        except ValidationError as exc:
            exc.hint = (
                "Only a finished job that was submitted with --webhook-url has a webhook to "
                f"replay; see it with `pixeldojo jobs show {job_id}`."
            )
            raise
        webhook = answer.get("webhook") if isinstance(answer.get("webhook"), dict) else {}
        delivery = answer.get("delivery") if isinstance(answer.get("delivery"), dict) else {}
        url = (webhook or {}).get("url") or (delivery or {}).get("url") or "its webhook URL"
        status = (delivery or {}).get("status") or (webhook or {}).get("status") or "requested"
        problem = None
        if str(status).lower() in UNDELIVERED:
            reason = (delivery or {}).get("reason")
            problem = WebhookDeliveryError(
                f"The API could not deliver the webhook of {job_id} to {url}: {status}"
                + (f" ({reason})." if reason else ".")
            )
        if json_output:
            state.render.json({**answer, **(problem.to_json() if problem else {})})
        elif problem is None:
            state.render.result(printable(f"Webhook for {job_id} replayed to {url}: {status}."))
        if problem is not None:
            state.render.error(problem)
            raise typer.Exit(int(problem.exit_code))
