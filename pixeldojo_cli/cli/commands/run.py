"""`pixeldojo run`: check inputs, submit, wait, download."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from pixeldojo_cli.cli.commands.run_flags import (
    BatchFileOption,
    ConcurrencyOption,
    DryRunOption,
    FollowFlags,
    InputFileOption,
    JsonOption,
    MaxCreditsOption,
    ModelArgument,
    NoAutoSeedOption,
    NoDownloadOption,
    NoWaitOption,
    OpenOption,
    OutputDirOption,
    ParamOption,
    PreviewOption,
    ProgressMode,
    ProgressOption,
    PromptArgument,
    RunRequest,
    SeedOption,
    WebhookUrlOption,
    check_webhook_url,
    read_input_file,
    read_prompt_from_stdin,
    refuse_flags_that_cannot_apply,
)
from pixeldojo_cli.cli.outputs import (
    ChecksumOption,
    MaxPollIntervalOption,
    PollIntervalOption,
    Presentation,
    TimeoutOption,
    result_lines,
    whole_command,
)
from pixeldojo_cli.cli.state import AppState, get_state

if TYPE_CHECKING:
    from pixeldojo_cli.api.client import Client
    from pixeldojo_cli.api.results import Job, Model
    from pixeldojo_cli.cli.commands.batch import BatchRequest
    from pixeldojo_cli.engine import SaveOptions, Submission, WaitOptions

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


def run(
    ctx: typer.Context,
    model_id: ModelArgument,
    prompt: PromptArgument = None,
    params: ParamOption = None,
    input_file: InputFileOption = None,
    seed: SeedOption = None,
    no_auto_seed: NoAutoSeedOption = False,
    webhook_url: WebhookUrlOption = None,
    output_dir: OutputDirOption = None,
    dry_run: DryRunOption = False,
    no_wait: NoWaitOption = False,
    no_download: NoDownloadOption = False,
    checksum: ChecksumOption = None,
    json_output: JsonOption = False,
    open_output: OpenOption = False,
    preview: PreviewOption = None,
    timeout: TimeoutOption = None,
    poll_interval: PollIntervalOption = None,
    max_poll_interval: MaxPollIntervalOption = None,
    progress: ProgressOption = ProgressMode.auto,
    batch_file: BatchFileOption = None,
    concurrency: ConcurrencyOption = None,
    max_credits: MaxCreditsOption = None,
) -> None:
    state = get_state(ctx)
    with state.guard(json_output=json_output):
        follow = FollowFlags(
            timeout=timeout,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            checksum=checksum,
            download=not no_download,
            progress=progress,
            open_output=open_output,
            preview=preview,
        )
        refuse_flags_that_cannot_apply(follow, no_wait=no_wait)
        options = state.job_options(follow.job_flags(output_dir))
        show = follow.presentation(state, json_output)
        check_webhook_url(webhook_url)
        request = RunRequest(
            model_id=model_id,
            prompt=read_prompt_from_stdin() if prompt == "-" else prompt,
            assignments=tuple(params or ()),
            input_file=input_file,
            seed=seed,
            webhook_url=webhook_url,
            dry_run=dry_run,
            wait=not no_wait,
            batch_file=batch_file,
            concurrency=concurrency,
            max_credits=max_credits,
            auto_seed=not no_auto_seed and bool(state.settings().auto_seed.value),
        )
        request.check()
        with whole_command(options[0].timeout):
            _execute(state, request, options, show)


def _execute(
    state: AppState,
    request: RunRequest,
    options: tuple[WaitOptions, SaveOptions],
    show: Presentation,
) -> None:
    """Read the inputs, look the model up, then run the batch or the one job."""
    base_inputs = read_input_file(request.input_file) if request.input_file else None
    client = state.client()
    if not client.api_key and not request.dry_run:
        from pixeldojo_cli.core.errors import MissingAPIKeyError

        raise MissingAPIKeyError("No API key is set.")
    model, schema = _model_and_schema(state, client, request.model_id)
    if request.batch_file is not None:
        from pixeldojo_cli.cli.commands.batch import run_batch

        batch = _batch_request(request, request.batch_file, base_inputs)
        run_batch(state, client, model, schema, batch, options, show)
        return
    submission = _submission(model, schema, request, base_inputs, options[1])
    if request.dry_run:
        _print_dry_run(state, submission, show.json_output)
        return
    job = _submit(state, client, submission, download=options[1].download)
    if not request.wait:
        _print_submitted(state, job, show)
        return
    _follow_and_save(state, client, job, submission, options, show)


def _batch_request(
    request: RunRequest, batch_file: str, base_inputs: dict[str, Any] | None
) -> BatchRequest:
    from pixeldojo_cli.cli.commands.batch import BatchRequest
    from pixeldojo_cli.engine.batch import DEFAULT_CONCURRENCY, BatchOptions

    return BatchRequest(
        batch_file=batch_file,
        assignments=request.assignments,
        base_inputs=base_inputs,
        seed=request.seed,
        auto_seed=request.auto_seed,
        options=BatchOptions(
            concurrency=request.concurrency or DEFAULT_CONCURRENCY,
            max_credits=request.max_credits,
            wait=request.wait,
            webhook_url=request.webhook_url,
        ),
        dry_run=request.dry_run,
    )


def _submission(
    model: Model,
    schema: dict[str, Any],
    request: RunRequest,
    base_inputs: dict[str, Any] | None,
    save_options: SaveOptions,
) -> Submission:
    """The one job's inputs, checked against the schema and priced (the engine's)."""
    from pixeldojo_cli.engine.preparing import JobAsk, prepare

    ask = JobAsk(
        prompt=request.prompt,
        assignments=request.assignments,
        base_inputs=base_inputs,
        seed=request.seed,
        webhook_url=request.webhook_url,
        auto_seed=request.auto_seed,
    )
    return prepare(model, schema, ask, save_options.folder_for(None))


def _model_and_schema(
    state: AppState, client: Client, model_id: str
) -> tuple[Model, dict[str, Any]]:
    model, schema = client.model_with_schema(model_id)
    if not state.use_emulator:
        from pixeldojo_cli.api.model_cache import ModelCache
        from pixeldojo_cli.store.settings import cache_dir

        ModelCache(cache_dir(), str(client.base_url)).save_schema(model.id, schema)
    return model, schema


def _print_dry_run(state: AppState, submission: Submission, json_output: bool) -> None:
    webhook_url = submission.webhook_url
    body = {**submission.inputs, **({"webhook_url": webhook_url} if webhook_url else {})}
    if json_output:
        document = {
            "model": submission.model,
            "body": body,
            "estimatedCredits": submission.estimate,
        }
        state.render.json({**document, "submitted": False})
        return
    state.render.json(body)
    state.render.info(
        f"{seed_text(submission.inputs)}Estimated cost: {credits_text(submission.estimate)}. "
        "Nothing was submitted."
    )


def _submit(state: AppState, client: Client, submission: Submission, *, download: bool) -> Job:
    """Check the output folder, submit, record, and say what it cost."""
    from pixeldojo_cli.engine import submit
    from pixeldojo_cli.store.files import ensure_writable_folder

    if download:  # an output path that cannot be a folder costs nothing yet
        ensure_writable_folder(submission.folder)
    job = submit(client, submission, recorder=state.recorder(), notify=state.render.notice_sink())
    state.render.info(
        f"Submitted {job.id} ({submission.model}): {seed_text(submission.inputs, lower=True)}"
        f"{credits_text(job.credit_cost or submission.estimate)}, "
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
    submission: Submission,
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
            submission=submission,
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


def seed_text(inputs: dict[str, Any], *, lower: bool = False) -> str:
    """`Seed 12345. ` (or `seed 12345, `) when the job has an integer seed, else ``."""
    seed = inputs.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        return ""
    return f"seed {seed}, " if lower else f"Seed {seed}. "
