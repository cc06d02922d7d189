"""`pixeldojo rerun JOB_ID|FILE`: a past job's model and inputs, submitted again
through the same flow as `run` (schema check, cost, budgets, progress, download)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pixeldojo_cli.cli.commands.run_flags import (
    DryRunOption,
    FollowFlags,
    IgnoreBudgetOption,
    JsonOption,
    MaxCreditsOption,
    NoDownloadOption,
    NoWaitOption,
    OpenOption,
    OutputDirOption,
    ParamOption,
    PreviewOption,
    ProgressMode,
    ProgressOption,
    UploadOption,
    WebhookUrlOption,
    check_webhook_url,
    refuse_flags_that_cannot_apply,
    upload_settings,
)
from pixeldojo_cli.cli.completion.complete import complete_model
from pixeldojo_cli.cli.outputs import (
    ChecksumOption,
    MaxPollIntervalOption,
    PollIntervalOption,
    Presentation,
    TimeoutOption,
    whole_command,
)
from pixeldojo_cli.cli.state import AppState, get_state
from pixeldojo_cli.core.errors import UsageError

if TYPE_CHECKING:
    from pixeldojo_cli.api.client import Client
    from pixeldojo_cli.api.results import Model
    from pixeldojo_cli.engine import SaveOptions, Submission, WaitOptions
    from pixeldojo_cli.engine.reruns import Recorded
    from pixeldojo_cli.engine.uploaders import UploadSettings

HELP = """\
Run a past job again: the same model and inputs, seed included, submitted
through the same checks as `run` (schema, cost, budgets, --dry-run, progress,
download).

JOB_ID|FILE: a path that exists is a FILE, a saved output; its metadata (or
the <jobId>.json sidecar beside it) says how it was made. Anything else is a
job id, which the job ledger must know: the API does not publish a job's
inputs (exit 6 when the ledger does not know it).

-p KEY=VALUE (or KEY:=JSON) changes an input; --model M tries another model
(inputs it does not take are left out, one line says which); --seed N or
--new-seed (a random one) changes the seed, which is otherwise kept so the
picture comes out the same. A file input sent from a local file is that
file again (@PATH: uploaded again unless its upload is still fresh), if it
is still there and unchanged (else exit 2, nothing spent); an earlier job's
output is @job:ID/N again. Which file that was, the job ledger says: for a
picture from elsewhere, give it with -p KEY=@PATH. A job made on another
API than the one in force is run on the one in force, with a warning.
"""

EXAMPLES = """\
Examples:

  pixeldojo rerun job_abc123

  pixeldojo rerun out/job_abc123-1.png --new-seed

  pixeldojo rerun job_abc123 -p aspect_ratio=16:9 --model flux-2-pro --dry-run

  pixeldojo rerun photo.webp --seed 7 -o variants/ --json
"""

TargetArgument = Annotated[
    str,
    typer.Argument(
        metavar="JOB_ID|FILE",
        help="A job id the job ledger knows, or a saved output (its metadata or sidecar).",
        show_default=False,
    ),
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        metavar="MODEL",
        help="Run it on another model (inputs it does not take are left out).",
        autocompletion=complete_model,
    ),
]
SeedOption = Annotated[
    int | None, typer.Option("--seed", help="This seed instead of the recorded one.")
]
NewSeedOption = Annotated[
    bool, typer.Option("--new-seed", help="A new random seed (default: the recorded one).")
]


@dataclass(frozen=True)
class RerunRequest:
    """What `rerun` is asked: the job or file, and what to change."""

    target: str
    model_id: str | None = None
    assignments: tuple[str, ...] = ()
    seed: int | None = None
    new_seed: bool = False
    webhook_url: str | None = None
    dry_run: bool = False
    wait: bool = True
    max_credits: float | None = None
    ignore_budget: bool = False
    upload: UploadSettings | None = None
    auto_seed: bool = True

    def replaced(self) -> frozenset[str]:
        """The inputs given again (`-p`, `--seed`): the recorded values are dropped."""
        from pixeldojo_cli.inputs.schema import parse_assignment

        names = {parse_assignment(text)[0] for text in self.assignments}
        return frozenset(names | ({"seed"} if self.seed is not None else set()))


def rerun(
    ctx: typer.Context,
    target: TargetArgument,
    model_id: ModelOption = None,
    params: ParamOption = None,
    seed: SeedOption = None,
    new_seed: NewSeedOption = False,
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
    max_credits: MaxCreditsOption = None,
    ignore_budget: IgnoreBudgetOption = False,
    upload: UploadOption = None,
) -> None:
    state = get_state(ctx)
    with state.guard(json_output=json_output):
        if seed is not None and new_seed:
            raise UsageError("Give --seed N or --new-seed, not both.")
        follow = FollowFlags(timeout, poll_interval, max_poll_interval, checksum,
                             not no_download, progress, open_output, preview)  # fmt: skip
        refuse_flags_that_cannot_apply(follow, no_wait=no_wait)
        options = state.job_options(follow.job_flags(output_dir))
        show = follow.presentation(state, json_output)
        check_webhook_url(webhook_url)
        request = RerunRequest(
            target=target,
            model_id=model_id,
            assignments=tuple(params or ()),
            seed=seed,
            new_seed=new_seed,
            webhook_url=webhook_url,
            dry_run=dry_run,
            wait=not no_wait,
            max_credits=max_credits,
            ignore_budget=ignore_budget,
            upload=upload_settings(state, upload),
            auto_seed=new_seed or bool(state.settings().auto_seed.value),
        )
        with whole_command(options[0].timeout):
            _rerun(state, request, options, show)


def _rerun(
    state: AppState,
    request: RerunRequest,
    options: tuple[WaitOptions, SaveOptions],
    show: Presentation,
) -> None:
    """Find the job again, look its model up, rebuild its inputs, then run it as `run` does."""
    from pixeldojo_cli.cli.submitting import run_one
    from pixeldojo_cli.engine.reruns import file_or_job_id, other_api, recorded_file, recorded_job

    # replaced(): a malformed -p is a usage error before anything is read
    if "seed" in request.replaced() and request.new_seed:
        raise UsageError("Give -p seed=N or --new-seed, not both.")
    found = file_or_job_id(request.target)
    recorder = state.recorder()
    if isinstance(found, Path):
        recorded = recorded_file(found, recorder)
    else:
        recorded = recorded_job(found, recorder)
    client = state.client()
    if not client.api_key and not request.dry_run:
        from pixeldojo_cli.core.errors import MissingAPIKeyError

        raise MissingAPIKeyError("No API key is set.")
    for warning in (recorded.warning, other_api(recorded, str(client.base_url))):
        if warning:
            state.render.warn(warning)
    model, schema = _model(state, client, recorded, request.model_id)
    other = f" on {model.id}" if model.id != recorded.model else ""
    state.render.info(f"Running {recorded.described()} again{other}.")
    submission = _submission(state, recorded, (model, schema), request, options[1])
    budget = state.budget(ignore=request.ignore_budget, max_credits=request.max_credits)
    run_one(state, client, submission, budget, dry_run=request.dry_run, wait=request.wait,
            options=options, show=show)  # fmt: skip


def _model(
    state: AppState, client: Client, recorded: Recorded, model_id: str | None
) -> tuple[Model, dict[str, Any]]:
    """--model, else the recorded model: exit 6 (with a did-you-mean) for one the
    API no longer has, before anything is spent."""
    from pixeldojo_cli.cli.submitting import model_and_schema
    from pixeldojo_cli.core.errors import NotFoundError
    from pixeldojo_cli.engine.reruns import shown

    try:
        return model_and_schema(state, client, model_id or recorded.model)
    except NotFoundError as exc:
        if model_id is None:
            exc.hint = (
                f"Job {shown(recorded.job_id)} was made with {shown(recorded.model)}, which the "
                "API does not have (any more): run it on another with --model MODEL."
            )
        raise


def _submission(
    state: AppState,
    recorded: Recorded,
    model: tuple[Model, dict[str, Any]],
    request: RerunRequest,
    save_options: SaveOptions,
) -> Submission:
    """The recorded inputs, changed as asked, through the engine's `prepare`:
    checked against the schema and priced; restored local files checked unchanged."""
    from pixeldojo_cli.engine.preparing import JobAsk, prepare
    from pixeldojo_cli.engine.reruns import check_unchanged, rerun_inputs
    from pixeldojo_cli.inputs.seeds import seed_range

    found, schema = model
    if request.new_seed and seed_range(schema) is None:
        state.render.info(f"{found.id} takes no seed: --new-seed changes nothing.")
    base, expected = rerun_inputs(
        recorded,
        found.id,
        schema,
        replaced=request.replaced(),
        new_seed=request.new_seed,
        notify=state.render.info,
    )
    ask = JobAsk(
        assignments=request.assignments,
        base_inputs=base,
        seed=request.seed,
        webhook_url=request.webhook_url,
        upload=request.upload,
        auto_seed=request.auto_seed,
        prompt_argument=False,
    )
    submission = prepare(found, schema, ask, save_options.folder_for(None))
    check_unchanged(recorded, expected, submission)
    return submission
