"""`pixeldojo compare MODEL[,MODEL...] PROMPT`: one prompt across several models,
as one batch (the engine's `sweeps` on the batch engine)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from pixeldojo_cli.cli.commands.run_flags import (
    IgnoreBudgetOption,
    InputFileOption,
    MatrixOption,
    NoDownloadOption,
    OpenOption,
    OutputDirOption,
    ParamOption,
    ProgressMode,
    ProgressOption,
    PromptArgument,
    YesOption,
    parse_credits,
    read_input_file,
    read_prompt_from_stdin,
    upload_settings,
)
from pixeldojo_cli.cli.completion.complete import complete_model
from pixeldojo_cli.cli.outputs import (
    MaxPollIntervalOption,
    PollIntervalOption,
    Presentation,
    TimeoutOption,
    whole_command,
)
from pixeldojo_cli.cli.state import get_state
from pixeldojo_cli.core.durations import parse_duration
from pixeldojo_cli.core.errors import UsageError

if TYPE_CHECKING:
    from pixeldojo_cli.api.client import Client
    from pixeldojo_cli.api.results import Model

HELP = """\
Run one prompt on several models, side by side, as one batch.

MODELS is a comma-separated list of model ids. Each model gets the same
inputs (PROMPT, -p, --input), --seeds N runs seeds 1..N on each (the same
seeds on every model, so a rerun is the same comparison), and --matrix sweeps
an input as on `run`. An input a model does not take is left out for that
model (one line says so); a model that needs an input not given is skipped
(one line says why). Everything is checked before anything is spent.
In an input that takes a URL, @PATH sends a local file and @job:ID/N an
earlier job's output, as on `run` (the `upload` setting says how).

The jobs run as a batch: at the rate limit, --concurrency at a time, within
--max-credits; rerunning the same command skips jobs already done. More than
500 jobs need --yes. Each saved file's path is printed on stdout; with --json,
one JSON object per job as it ends (model, varied, seed, credits, seconds,
files, outcome) and a last {"summary": ...} object.
"""

EXAMPLES = """\
Examples:

  pixeldojo compare flux-dev,seedream-4,qwen-image-plus "a lighthouse at dusk"

  pixeldojo compare flux-dev,flux-2-pro "a red fox" --seeds 4 -o foxes/

  pixeldojo compare flux-dev,z-image-turbo "a {red|green} fox" --dry-run
"""

ModelsArgument = Annotated[
    str,
    typer.Argument(
        metavar="MODELS",
        help="Model ids, comma-separated, e.g. flux-dev,seedream-4.",
        autocompletion=complete_model,
    ),
]
SeedsOption = Annotated[
    int | None,
    typer.Option(
        "--seeds",
        metavar="N",
        min=1,
        show_default=False,
        help="N jobs per model, with seeds 1..N (the same on every model).",
    ),
]
# `run`'s flags of these names speak of --batch and of one request: said for compare.
DryRunOption = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Print every job (one JSON line each) and the estimated total; submit nothing.",
    ),
]
MaxCreditsOption = Annotated[
    float | None,
    typer.Option(
        "--max-credits",
        metavar="CREDITS",
        parser=parse_credits,
        help="The most the comparison may spend (estimated): jobs past it are skipped, exit 4.",
    ),
]
ConcurrencyOption = Annotated[
    int | None,
    typer.Option(
        "--concurrency",
        metavar="N",
        min=1,
        max=100,
        show_default=False,
        help="Jobs in flight at once (default 50).",
    ),
]
JsonLinesOption = Annotated[
    bool,
    typer.Option("--json", help="One JSON object per job as it ends, then a summary object."),
]


def compare(
    ctx: typer.Context,
    models: ModelsArgument,
    prompt: PromptArgument = None,
    params: ParamOption = None,
    input_file: InputFileOption = None,
    seeds: SeedsOption = None,
    matrix: MatrixOption = None,
    output_dir: OutputDirOption = None,
    json_output: JsonLinesOption = False,
    open_output: OpenOption = False,
    dry_run: DryRunOption = False,
    max_credits: MaxCreditsOption = None,
    ignore_budget: IgnoreBudgetOption = False,
    concurrency: ConcurrencyOption = None,
    yes: YesOption = False,
    no_download: NoDownloadOption = False,
    timeout: TimeoutOption = None,
    poll_interval: PollIntervalOption = None,
    max_poll_interval: MaxPollIntervalOption = None,
    progress: ProgressOption = ProgressMode.auto,
) -> None:
    state = get_state(ctx)
    with state.guard(json_output=json_output, json_lines=True):
        from pixeldojo_cli.cli.commands.sweeping import run_sweep
        from pixeldojo_cli.engine import JobFlags
        from pixeldojo_cli.engine.batch import DEFAULT_CONCURRENCY, BatchOptions
        from pixeldojo_cli.engine.sweeps import SweepAsk, read_ask

        model_ids = model_list(models)
        flags = JobFlags(
            output_dir=output_dir,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            timeout=parse_duration(timeout),
            download=not no_download,
        )
        options = state.job_options(flags)
        show = Presentation(json_output, progress.value, open_output=open_output)
        ask = SweepAsk(
            prompt=read_prompt_from_stdin() if prompt == "-" else prompt,
            assignments=tuple(params or ()),
            base_inputs=read_input_file(input_file) if input_file else None,
            matrix=tuple(matrix or ()),
            seeds=seeds,
            confirmed=yes,
            kind="compare",
            upload=upload_settings(state, None),
            auto_seed=bool(state.settings().auto_seed.value),
        )
        read_ask(ask)  # a malformed PROMPT or --matrix: before any request
        with whole_command(options[0].timeout):
            client = state.client()
            if not client.api_key and not dry_run:
                from pixeldojo_cli.core.errors import MissingAPIKeyError

                raise MissingAPIKeyError("No API key is set.")
            found = models_with_schemas(client, model_ids)
            batch_options = BatchOptions(
                concurrency=concurrency or DEFAULT_CONCURRENCY,
                max_credits=max_credits,
                budget=state.budget(ignore=ignore_budget, max_credits=max_credits),
                listed_costs={model.id: model.cost.default for model, _ in found},
            )
            run_sweep(state, client, found, ask, batch_options, options, show, dry_run=dry_run)


def model_list(text: str) -> list[str]:
    """MODELS: ids separated by commas (spaces around them ignored, a repeat
    counted once); a usage error for an empty one."""
    ids = [part.strip() for part in text.split(",")]
    if not text.strip() or any(not model_id for model_id in ids):
        raise UsageError(
            f"MODELS must be model ids separated by commas, got {text[:60]!r}.",
            hint="For example: pixeldojo compare flux-dev,seedream-4 PROMPT",
        )
    return list(dict.fromkeys(ids))


def models_with_schemas(client: Client, model_ids: list[str]) -> list[tuple[Model, dict[str, Any]]]:
    """Each model and its schema; every id not found named in one error (exit 6),
    each with its did-you-mean, not only the first."""
    from pixeldojo_cli.core.errors import NotFoundError

    found, missing = [], []
    for model_id in model_ids:
        try:
            found.append(client.model_with_schema(model_id))
        except NotFoundError as exc:
            missing.append(exc)
    if len(missing) == 1:
        raise missing[0]
    if missing:
        raise NotFoundError(
            " ".join(exc.message.strip() for exc in missing) + " Nothing was submitted.",
            status=missing[0].status,
        )
    return found
