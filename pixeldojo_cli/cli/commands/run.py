"""`pixeldojo run`: check inputs, submit, wait, download."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from pixeldojo_cli.cli.commands.run_flags import (
    BatchFileOption,
    ConcurrencyOption,
    DryRunOption,
    FollowFlags,
    IgnoreBudgetOption,
    InputFileOption,
    JsonOption,
    MatrixOption,
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
    UploadOption,
    WebhookUrlOption,
    YesOption,
    check_webhook_url,
    read_input_file,
    read_prompt_from_stdin,
    refuse_flags_that_cannot_apply,
    upload_settings,
)
from pixeldojo_cli.cli.outputs import (
    ChecksumOption,
    MaxPollIntervalOption,
    PollIntervalOption,
    Presentation,
    TimeoutOption,
    whole_command,
)
from pixeldojo_cli.cli.state import AppState, get_state
from pixeldojo_cli.cli.submitting import model_and_schema, run_one

if TYPE_CHECKING:
    from pixeldojo_cli.api.client import Client
    from pixeldojo_cli.api.results import Model
    from pixeldojo_cli.cli.commands.batch import BatchRequest
    from pixeldojo_cli.engine import SaveOptions, Submission, WaitOptions
    from pixeldojo_cli.engine.batch import BatchOptions
    from pixeldojo_cli.engine.budget import Budget

RUN_HELP = """\
Submit a job, wait for it, and download its outputs.

PROMPT fills the model's `prompt` input; `-` reads it from stdin. Other inputs
come from -p KEY=VALUE (coerced to the type the model's schema gives),
-p KEY:=JSON (a JSON literal), or --input FILE (a JSON object; `-` reads stdin;
-p wins over it). Inputs are checked against the schema before anything is
spent. In an input that takes a URL, @PATH sends a local file (uploaded the
way `upload` says: data or command) and @job:ID/N an earlier job's output N;
@@ is a literal @.

Each downloaded file's path is printed on stdout, one per line; status goes to
stderr. Files are named <jobId>-<n>.<ext>, with <jobId>.json beside them.

Before each job is submitted, its estimated cost is checked against
budget_daily / budget_monthly (the profile's credits per calendar day and
month, local time; see `pixeldojo config`) and --max-credits: past one, the job
is refused (exit 4). --ignore-budget skips the budgets for this command.
--dry-run shows what was spent against each budget.

--batch FILE runs one job per line (a prompt, or a JSON object of inputs that
wins over -p; blank lines and lines starting with # are skipped), at the rate
limit, --concurrency at a time, polling them all together; --max-credits caps
the estimated spend (skipped lines make it exit 4). Rerunning the same command
skips lines whose job completed or is still running. With --json it prints one
JSON object per line as each ends (JSON Lines).

Sweeps: PROMPT alternatives "a {red|green} fox" ({{ and }} are literal braces)
and --matrix KEY=V1,V2 (seed=1..8 is a range; \\, is a literal comma) make one
job per combination, checked before anything is spent and run as a batch (so
--concurrency, --max-credits, --json and resuming apply). --dry-run prints every
job; more than 500 jobs need --yes.
"""

RUN_EXAMPLES = """\
Examples:

  pixeldojo run flux-1.1-pro "A sunset" -p aspect_ratio=16:9 --seed 42

  pixeldojo run flux-dev "a red fox" -p num_outputs=2 -o out/ --json

  pixeldojo run flux-dev --batch prompts.txt --max-credits 50 -o out/

  pixeldojo run flux-dev "a {red|green} fox" --matrix seed=1..4 -o foxes/

  pixeldojo run flux-kontext-pro "at night" -p image_url=@photo.png
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
    matrix: MatrixOption = None,
    yes: YesOption = False,
    ignore_budget: IgnoreBudgetOption = False,
    upload: UploadOption = None,
) -> None:
    state = get_state(ctx)
    many = batch_file is not None or bool(matrix) or "{" in (prompt or "")  # JSON Lines
    with state.guard(json_output=json_output, json_lines=many):
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
            matrix=tuple(matrix or ()),
            yes=yes,
            ignore_budget=ignore_budget,
            upload=upload_settings(state, upload),
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
    model, schema = model_and_schema(state, client, request.model_id)
    budget = state.budget(ignore=request.ignore_budget, max_credits=request.max_credits)
    if request.batch_file is not None:
        from pixeldojo_cli.cli.commands.batch import run_batch

        batch = _batch_request(
            request, request.batch_file, base_inputs, _batch_options(request, budget, model)
        )
        run_batch(state, client, model, schema, batch, options, show)
        return
    if request.is_sweep():
        batch_options = _batch_options(request, budget, model)
        _run_sweep(
            state, client, (model, schema), request, (base_inputs, batch_options), options, show
        )
        return
    submission = _submission(model, schema, request, base_inputs, options[1])
    run_one(
        state,
        client,
        submission,
        budget,
        dry_run=request.dry_run,
        wait=request.wait,
        options=options,
        show=show,
    )


def _run_sweep(
    state: AppState,
    client: Client,
    model: tuple[Model, dict[str, Any]],
    request: RunRequest,
    asked: tuple[dict[str, Any] | None, BatchOptions],
    options: tuple[WaitOptions, SaveOptions],
    show: Presentation,
) -> None:
    """--matrix and PROMPT alternatives: every combination, through the batch."""
    from pixeldojo_cli.cli.commands.sweeping import run_sweep
    from pixeldojo_cli.engine.sweeps import SweepAsk

    base_inputs, batch_options = asked
    ask = SweepAsk(
        prompt=request.prompt,
        assignments=request.assignments,
        base_inputs=base_inputs,
        seed=request.seed,
        matrix=request.matrix,
        confirmed=request.yes,
        upload=request.upload,
        auto_seed=request.auto_seed,
        webhook_url=request.webhook_url is not None,
    )
    run_sweep(state, client, [model], ask, batch_options, options, show, dry_run=request.dry_run)


def _batch_options(request: RunRequest, budget: Budget, model: Model) -> BatchOptions:
    from pixeldojo_cli.engine.batch import DEFAULT_CONCURRENCY, BatchOptions

    return BatchOptions(
        concurrency=request.concurrency or DEFAULT_CONCURRENCY,
        max_credits=request.max_credits,
        wait=request.wait,
        webhook_url=request.webhook_url,
        budget=budget,
        listed_costs={model.id: model.cost.default},
    )


def _batch_request(
    request: RunRequest,
    batch_file: str,
    base_inputs: dict[str, Any] | None,
    batch_options: BatchOptions,
) -> BatchRequest:
    from pixeldojo_cli.cli.commands.batch import BatchRequest

    return BatchRequest(
        batch_file=batch_file,
        assignments=request.assignments,
        base_inputs=base_inputs,
        seed=request.seed,
        upload=request.upload,
        auto_seed=request.auto_seed,
        options=batch_options,
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
        prompt=request.plain_prompt(),
        assignments=request.assignments,
        base_inputs=base_inputs,
        seed=request.seed,
        webhook_url=request.webhook_url,
        upload=request.upload,
        auto_seed=request.auto_seed,
    )
    return prepare(model, schema, ask, save_options.folder_for(None))
