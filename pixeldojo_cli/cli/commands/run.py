"""`pixeldojo run`: check inputs, submit, wait, download."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pixeldojo_cli.cli.completion.complete import complete_model, complete_param
from pixeldojo_cli.cli.outputs import (
    OPEN_HELP,
    ChecksumOption,
    MaxPollIntervalOption,
    PollIntervalOption,
    Presentation,
    TimeoutOption,
    result_lines,
)
from pixeldojo_cli.cli.state import (
    AppState,
    get_state,
    inputs_object,
    parse_duration,
    read_text_argument,
)
from pixeldojo_cli.core.errors import UsageError

if TYPE_CHECKING:
    from pixeldojo_cli.api.client import Client
    from pixeldojo_cli.api.results import Job, Model
    from pixeldojo_cli.engine import SaveOptions, WaitOptions

RUN_HELP = """\
Submit a job, wait for it, and download its outputs.

PROMPT fills the model's `prompt` input; `-` reads it from stdin. Other inputs
come from -p KEY=VALUE (coerced to the type the model's schema gives),
-p KEY:=JSON (a JSON literal), or --input FILE (a JSON object; `-` reads stdin;
-p wins over it). Inputs are checked against the schema before anything is
spent.

Each downloaded file's path is printed on stdout, one per line; status goes to
stderr. Files are named <jobId>-<n>.<ext>, with <jobId>.json beside them.

--batch FILE runs one job per line (a prompt, or a JSON object of inputs that
wins over -p; blank lines and lines starting with # are skipped), at the rate
limit, --concurrency at a time, polling them all together; --max-credits caps
the estimated spend (skipped lines make it exit 4). Rerunning the same command
skips lines whose job completed or is still running. With --json it prints one
JSON object per line as each ends (JSON Lines).
"""

RUN_EXAMPLES = """\
Examples:

  pixeldojo run flux-1.1-pro "A sunset" -p aspect_ratio=16:9 --seed 42

  pixeldojo run flux-dev "a red fox" -p num_outputs=2 -o out/ --json

  pixeldojo run flux-dev --batch prompts.txt --max-credits 50 -o out/
"""


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
        typer.Argument(
            metavar="PROMPT", help="The prompt (fills the `prompt` input); - reads stdin."
        ),
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
    preview: Annotated[
        bool | None,
        typer.Option(
            "--preview/--no-preview",
            show_default=False,
            help="Draw the first saved image in the terminal (or PIXELDOJO_PREVIEW=1, or "
            "`config set preview true`). Needs pixeldojo-cli[preview].",
        ),
    ] = None,
    timeout: TimeoutOption = None,
    poll_interval: PollIntervalOption = None,
    max_poll_interval: MaxPollIntervalOption = None,
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
    with state.guard(json_output=json_output):
        from pixeldojo_cli.engine import JobFlags

        _refuse_flags_that_cannot_apply(
            no_wait=no_wait,
            no_download=no_download,
            open_output=open_output,
            preview=bool(preview),
            waiting_flags={
                "--timeout": timeout,
                "--poll-interval": poll_interval,
                "--max-poll-interval": max_poll_interval,
                "--checksum/--no-checksum": checksum,
                "--no-download": no_download or None,
                "--progress": None if progress is ProgressMode.auto else progress,
            },
        )
        wait_options, save_options = state.job_options(
            JobFlags(
                output_dir=output_dir,
                poll_interval=poll_interval,
                max_poll_interval=max_poll_interval,
                timeout=parse_duration(timeout),
                checksum=checksum,
                download=not no_download,
            )
        )
        wanted = preview if preview is not None else bool(state.settings().preview.value)
        show = Presentation(json_output, progress.value, open_output, wanted and not no_download)
        _check_webhook_url(webhook_url)
        if prompt == "-":
            prompt = read_prompt_from_stdin()
        if batch_file is not None and prompt is not None:
            raise UsageError("Give a PROMPT or --batch FILE, not both.")
        if batch_file is None and (concurrency is not None or max_credits is not None):
            raise UsageError("--concurrency and --max-credits go with --batch.")
        base_inputs = read_input_file(input_file) if input_file else None
        client = state.client()
        if not client.api_key and not dry_run:
            from pixeldojo_cli.core.errors import MissingAPIKeyError

            raise MissingAPIKeyError("No API key is set.")
        model, schema = _model_and_schema(state, client, model_id)
        if batch_file is not None:
            from pixeldojo_cli.cli.commands.batch import BatchRequest, run_batch
            from pixeldojo_cli.engine.batch import DEFAULT_CONCURRENCY, BatchOptions

            request = BatchRequest(
                batch_file=batch_file,
                assignments=tuple(params or ()),
                base_inputs=base_inputs,
                seed=seed,
                options=BatchOptions(
                    concurrency=concurrency or DEFAULT_CONCURRENCY,
                    max_credits=max_credits,
                    wait=not no_wait,
                    webhook_url=webhook_url,
                ),
                dry_run=dry_run,
            )
            run_batch(state, client, model, schema, request, (wait_options, save_options), show)
            return
        from pixeldojo_cli.inputs.schema import build_inputs, estimate_cost, validate_inputs

        inputs = build_inputs(
            schema, prompt=prompt, assignments=params or [], base=base_inputs, seed=seed
        )
        validate_inputs(schema, inputs)
        estimate = estimate_cost(model, schema, inputs)
        if dry_run:
            _print_dry_run(state, model.id, inputs, webhook_url, estimate, json_output)
            return
        job = _submit(state, client, model.id, inputs, estimate, save_options, webhook_url)
        if no_wait:
            _print_submitted(state, job, show)
            return
        _follow_and_save(state, client, job, model.id, inputs, (wait_options, save_options), show)


def _refuse_flags_that_cannot_apply(
    *,
    no_wait: bool,
    no_download: bool,
    open_output: bool,
    preview: bool,
    waiting_flags: dict[str, object],
) -> None:
    """No flag is silently dropped: one that cannot apply is a usage error."""
    if no_wait:
        given = [name for name, value in waiting_flags.items() if value is not None]
        given += ["--open"] if open_output else []
        given += ["--preview"] if preview else []
        if given:
            raise UsageError(
                f"{', '.join(given)} cannot apply with --no-wait: nothing is waited for "
                "or downloaded.",
                hint="Wait and download later with: pixeldojo jobs wait JOB_ID",
            )
    if no_download and (open_output or preview):
        flag = "--open" if open_output else "--preview"
        raise UsageError(f"{flag} shows a downloaded file; it cannot go with --no-download.")


def read_prompt_from_stdin() -> str:
    """`-` as PROMPT: the prompt from standard input (never a silent wait at a terminal)."""
    import sys

    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError(
            "PROMPT is - but standard input is a terminal.",
            hint='Pipe the prompt in: echo "a red fox" | pixeldojo run MODEL -',
        )
    text = sys.stdin.read().strip()
    if not text:
        raise UsageError("PROMPT is - but standard input was empty.")
    return text


def _model_and_schema(
    state: AppState, client: Client, model_id: str
) -> tuple[Model, dict[str, Any]]:
    model, schema = client.model_with_schema(model_id)
    if not state.use_emulator:
        from pixeldojo_cli.api.model_cache import save_schema
        from pixeldojo_cli.store.settings import cache_dir

        save_schema(cache_dir(), str(client.base_url), model.id, schema)
    return model, schema


def _print_dry_run(
    state: AppState,
    model_id: str,
    inputs: dict[str, Any],
    webhook_url: str | None,
    estimate: float | None,
    json_output: bool,
) -> None:
    body = {**inputs, **({"webhook_url": webhook_url} if webhook_url else {})}
    if json_output:
        document = {"model": model_id, "body": body, "estimatedCredits": estimate}
        state.render.json({**document, "submitted": False})
        return
    state.render.json(body)
    state.render.info(f"Estimated cost: {credits_text(estimate)}. Nothing was submitted.")


def _submit(
    state: AppState,
    client: Client,
    model_id: str,
    inputs: dict[str, Any],
    estimate: float | None,
    save_options: SaveOptions,
    webhook_url: str | None,
) -> Job:
    """Check the output folder, submit, record, and say what it cost."""
    from pixeldojo_cli.engine import submit
    from pixeldojo_cli.store.downloads import ensure_writable_folder

    folder = save_options.folder_for(None)
    if save_options.download:
        ensure_writable_folder(folder)  # an output path that cannot be a folder costs nothing yet
    job = submit(
        client,
        model_id,
        inputs,
        folder=folder,
        recorder=state.recorder(),
        webhook_url=webhook_url,
        estimate=estimate,
    )
    state.render.info(
        f"Submitted {job.id} ({model_id}): {credits_text(job.credit_cost or estimate)}, "
        f"{credits_text(job.credits_remaining, unit=False)} remaining."
    )
    return job


def _print_submitted(state: AppState, job: Job, show: Presentation) -> None:
    """--no-wait: the job id, or the job entity under --json."""
    from pixeldojo_cli.cli.documents import job_document

    if show.json_output:
        state.render.json(job_document(job, saved=state.recorder().saved_state(job.id)))
    else:
        state.render.result(job.id)


def _follow_and_save(
    state: AppState,
    client: Client,
    job: Job,
    model_id: str,
    inputs: dict[str, Any],
    options: tuple[WaitOptions, SaveOptions],
    show: Presentation,
) -> None:
    """Follow one submitted job to its end and save its outputs."""
    from pixeldojo_cli.cli.documents import result_document
    from pixeldojo_cli.engine import wait_and_save

    wait_options, save_options = options
    with state.render.job_display(state.render.progress_mode(show.progress)) as notify:
        [result] = wait_and_save(
            client,
            [job],
            wait_options,
            save_options,
            recorder=state.recorder(notify),
            notify=notify,
            model=model_id,
            inputs=inputs,
        )
    if result.error is not None:
        raise result.error
    if show.json_output:
        state.render.json(result_document(result))
    else:
        for line in result_lines(result):
            state.render.result(line)
    show.finish(state, [str(f.path) for f in result.files])


def credits_text(value: float | None, *, unit: bool = True) -> str:
    """`1 credit`, `2.5 credits`, `? credits` (or the bare number without `unit`)."""
    number = "?" if value is None else f"{value:g}"
    if not unit:
        return number
    return f"{number} credit" if value == 1 else f"{number} credits"
