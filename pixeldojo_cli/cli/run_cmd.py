"""`pixeldojo run`: check inputs, submit, wait, download."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pixeldojo_cli.cli.complete import complete_model, complete_param
from pixeldojo_cli.cli.outputs import (
    OPEN_HELP,
    ChecksumOption,
    finished_outputs,
    open_first,
    wait_for_job,
)
from pixeldojo_cli.cli.state import (
    AppState,
    get_state,
    inputs_object,
    parse_duration,
    positive,
    read_text_argument,
)
from pixeldojo_cli.errors import UsageError

if TYPE_CHECKING:
    from pixeldojo_cli.results import Job

RUN_HELP = """\
Submit a job, wait for it, and download its outputs.

PROMPT fills the model's `prompt` input. Other inputs come from -p KEY=VALUE
(coerced to the type the model's schema gives), -p KEY:=JSON (a JSON literal),
or --input FILE (a JSON object; `-` reads stdin; -p wins over it). Inputs are
checked against the schema before anything is spent.

Each downloaded file's path is printed on stdout, one per line; status goes to
stderr. Files are named <jobId>-<n>.<ext>, with <jobId>.json beside them.

--batch FILE runs one job per line (a prompt, or a JSON object of inputs that
wins over -p), at the rate limit, --concurrency at a time, polling them all
together; --max-credits caps the estimated spend. Rerunning the same command
skips lines whose job completed or is still running.
"""

RUN_EXAMPLES = """\
Examples:

  pixeldojo run flux-1.1-pro "A sunset" -p aspect_ratio=16:9 --seed 42

  pixeldojo run flux-dev "a red fox" -p num_outputs=2 -o out/ --json

  pixeldojo run flux-dev --batch prompts.txt --max-credits 50 -o out/
"""


# Jobs in flight at once in a batch: enough to keep 60 requests/min busy with
# jobs of a minute, and within one `GET /jobs?limit=100` poll.
BATCH_CONCURRENCY = 50


class ProgressMode(StrEnum):
    auto = "auto"
    rich = "rich"
    plain = "plain"
    none = "none"


def read_input_file(path: str) -> dict[str, Any]:
    """`--input FILE` (or `-`): a JSON object of inputs."""
    return inputs_object(read_text_argument(path, "--input"), f"--input {path}")


def _check_webhook_url(url: str | None) -> None:
    if url is not None and not url.startswith(("http://", "https://")):
        raise UsageError(f"--webhook-url must be an http(s) URL, got {url[:60]!r}.")


def _credits(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


def run(
    ctx: typer.Context,
    model_id: Annotated[
        str,
        typer.Argument(
            metavar="MODEL",
            help="Model id, e.g. flux-dev (see `pixeldojo models`).",
            autocompletion=complete_model,
        ),
    ],
    prompt: Annotated[
        str | None,
        typer.Argument(metavar="PROMPT", help="The prompt (fills the `prompt` input)."),
    ] = None,
    params: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            metavar="KEY=VALUE",
            help="An input; KEY:=JSON for a JSON literal. Repeatable.",
            autocompletion=complete_param,
        ),
    ] = None,
    input_file: Annotated[
        str | None,
        typer.Option("--input", "-i", metavar="FILE", help="JSON object of inputs; - reads stdin."),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Shortcut for -p seed=N.")] = None,
    webhook_url: Annotated[
        str | None,
        typer.Option("--webhook-url", metavar="URL", help="The API POSTs the finished job here."),
    ] = None,
    output_dir: Annotated[
        str | None,
        typer.Option(
            "--output-dir",
            "-o",
            metavar="DIR",
            help="Where outputs go (or PIXELDOJO_OUTPUT_DIR; default: current folder).",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print the request and its estimated cost; submit nothing."),
    ] = False,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Print the job id and return at once.")
    ] = False,
    no_download: Annotated[
        bool, typer.Option("--no-download", help="Print output URLs instead of downloading.")
    ] = False,
    checksum: ChecksumOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help='Print one JSON object: the job plus "files".')
    ] = False,
    open_output: Annotated[bool, typer.Option("--open", help=OPEN_HELP)] = False,
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout", metavar="DURATION", help="Stop waiting after e.g. 90s, 10m, 1h (exit 9)."
        ),
    ] = None,
    poll_interval: Annotated[
        float | None,
        typer.Option(
            "--poll-interval",
            metavar="SECONDS",
            help="First poll delay in seconds (default 2; doubles each poll).",
        ),
    ] = None,
    max_poll_interval: Annotated[
        float | None,
        typer.Option(
            "--max-poll-interval",
            metavar="SECONDS",
            help="Longest poll delay in seconds (default 30).",
        ),
    ] = None,
    progress: Annotated[
        ProgressMode,
        typer.Option("--progress", help="Progress display on stderr.", case_sensitive=False),
    ] = ProgressMode.auto,
    batch_file: Annotated[
        str | None,
        typer.Option(
            "--batch",
            metavar="FILE",
            help="Many jobs: JSON Lines of inputs or one prompt per line (- for stdin). "
            "Rerunning skips lines already done.",
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            metavar="N",
            min=1,
            max=100,
            show_default=False,
            help="With --batch: jobs in flight at once (default 50: enough to keep the rate "
            "limit busy, few enough for one list poll to see them all).",
        ),
    ] = None,
    max_credits: Annotated[
        float | None,
        typer.Option(
            "--max-credits",
            metavar="CREDITS",
            min=0,
            help="With --batch: stop submitting before the estimated spend passes this.",
        ),
    ] = None,
) -> None:
    state = get_state(ctx)
    state.checksum = checksum
    with state.guard(json_output=json_output):
        from pixeldojo_cli.errors import MissingAPIKeyError
        from pixeldojo_cli.schema import build_inputs, estimate_cost, validate_inputs

        wait_timeout = parse_duration(timeout)
        settings = state.settings(output_dir=output_dir)
        first_poll = positive(poll_interval, "--poll-interval") or float(
            settings.poll_interval.value
        )
        max_poll = positive(max_poll_interval, "--max-poll-interval") or float(
            settings.max_poll_interval.value
        )
        _check_webhook_url(webhook_url)
        base_inputs = read_input_file(input_file) if input_file else None
        client = state.client()
        if not client.api_key and not dry_run:
            raise MissingAPIKeyError("No API key is set.")

        model, schema = client.model_with_schema(model_id)
        if not state.use_emulator:
            from pixeldojo_cli.completion import save_schema

            save_schema(str(client.base_url), model.id, schema)
        if batch_file is not None:
            if prompt is not None:
                raise UsageError("Give a PROMPT or --batch FILE, not both.")
            from pixeldojo_cli.cli.batch import run_batch

            run_batch(
                state,
                client,
                model,
                schema,
                batch_file=batch_file,
                defaults=build_inputs(
                    schema, assignments=params or [], base=base_inputs, seed=seed
                ),
                folder=state.output_dir(output_dir),
                concurrency=concurrency or BATCH_CONCURRENCY,
                max_credits=max_credits,
                poll_interval=first_poll,
                max_poll_interval=max_poll,
                timeout=wait_timeout,
                download=not no_download,
                wait=not no_wait,
                dry_run=dry_run,
                json_output=json_output,
                webhook_url=webhook_url,
            )
            return
        if concurrency is not None or max_credits is not None:
            raise UsageError("--concurrency and --max-credits go with --batch.")
        inputs = build_inputs(
            schema, prompt=prompt, assignments=params or [], base=base_inputs, seed=seed
        )
        validate_inputs(schema, inputs)
        estimate = estimate_cost(model, schema, inputs)

        if dry_run:
            body = {**inputs, **({"webhook_url": webhook_url} if webhook_url else {})}
            if json_output:
                state.render.json(
                    {
                        "model": model.id,
                        "body": body,
                        "estimatedCredits": estimate,
                        "submitted": False,
                    }
                )
            else:
                state.render.json(body)
                state.render.info(
                    f"Estimated cost: {_credits(estimate)} credit(s). Nothing was submitted."
                )
            return

        job = client.run(model.id, inputs, webhook_url=webhook_url)
        folder = state.output_dir(output_dir)
        _record_submission(state, job, model.id, inputs, estimate, folder)
        state.render.info(
            f"Submitted {job.id} ({model.id}): {_credits(job.credit_cost or estimate)} credit(s), "
            f"{_credits(job.credits_remaining)} remaining."
        )
        if no_wait:
            if json_output:
                state.render.json(job.raw)
            else:
                state.render.result(job.id)
            return
        job = wait_for_job(
            state,
            client,
            job,
            poll_interval=first_poll,
            max_poll_interval=max_poll,
            timeout=wait_timeout,
            progress_mode=progress.value,
        )
        paths = finished_outputs(
            state,
            client,
            job,
            folder=folder,
            model=model.id,
            inputs=inputs,
            download=not no_download,
        )
        if json_output:
            state.render.json({**job.raw, "files": paths if not no_download else []})
        else:
            for path in paths:
                state.render.result(path)
        if open_output and not no_download:
            open_first(state, paths)


def _record_submission(
    state: AppState,
    job: Job,
    model: str,
    inputs: dict[str, Any],
    estimate: float | None,
    folder: Path,
) -> None:
    """Into the ledger before any waiting, so `download --pending` can save it later."""
    ledger = state.ledger()
    if ledger is None:
        return
    base_url, profile = state.ledger_scope()
    try:
        ledger.record_submission(
            job,
            base_url=base_url,
            profile=profile,
            model=model,
            inputs=inputs,
            estimated_credits=estimate,
            output_dir=folder,
        )
    except Exception as exc:  # recording must never cost the user the job itself
        state.render.warn(f"Could not record job {job.id} in the ledger: {exc}")
