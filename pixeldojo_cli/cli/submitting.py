"""One job, from a checked `Submission` to its files on disk: the flow `run`
and `rerun` share (the command groups may not import each other). Look the
model up, show a --dry-run, submit within the budget, print what it cost,
then follow the job and save its outputs, or print its id (--no-wait).
The work itself is the engine's (`prepare`, `submit`, `wait_and_save`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pixeldojo_cli.cli.outputs import Presentation, result_lines
from pixeldojo_cli.cli.state import AppState

if TYPE_CHECKING:
    from pixeldojo_cli.api.client import Client
    from pixeldojo_cli.api.results import Job, Model
    from pixeldojo_cli.engine import SaveOptions, Submission, WaitOptions
    from pixeldojo_cli.engine.budget import Budget


def model_and_schema(
    state: AppState, client: Client, model_id: str
) -> tuple[Model, dict[str, Any]]:
    """The model and its input schema (exit 6, with a did-you-mean, for a model
    the API does not know); the schema is kept for TAB completion."""
    model, schema = client.model_with_schema(model_id)
    if not state.use_emulator:
        from pixeldojo_cli.api.model_cache import ModelCache
        from pixeldojo_cli.store.settings import cache_dir

        ModelCache(cache_dir(), str(client.base_url)).save_schema(model.id, schema)
    return model, schema


def run_one(
    state: AppState,
    client: Client,
    submission: Submission,
    budget: Budget,
    *,
    dry_run: bool,
    wait: bool,
    options: tuple[WaitOptions, SaveOptions],
    show: Presentation,
) -> None:
    """The one job: shown (--dry-run), or submitted and then followed to its
    files (or only its id printed, --no-wait)."""
    if dry_run:
        print_dry_run(state, submission, show.json_output, budget)
        return
    job = submit_one(state, client, submission, budget, download=options[1].download)
    if not wait:
        print_submitted(state, job, show, submission)
        return
    follow_and_save(state, client, job, submission, options, show)


def print_dry_run(
    state: AppState, submission: Submission, json_output: bool, budget: Budget
) -> None:
    """--dry-run: the request body, the files it would upload, the estimated cost
    and what it would count against each budget; nothing is submitted."""
    from pixeldojo_cli.cli.budget_view import budget_document, budget_lines

    webhook_url = submission.webhook_url
    body = {**submission.inputs, **({"webhook_url": webhook_url} if webhook_url else {})}
    files = submission.files.planned() if submission.files is not None else []
    if json_output:
        document = {
            "model": submission.model,
            "body": body,
            "estimatedCredits": submission.estimate,
            **({"files": files} if files else {}),
        }
        budgets = budget_document(state, submission, budget)
        state.render.json({**document, **budgets, "submitted": False})
        return
    state.render.json(body)
    for line in planned_file_lines(files):
        state.render.info(line)
    state.render.info(
        f"{seed_text(submission.inputs)}Estimated cost: {credits_text(submission.estimate)}. "
        "Nothing was submitted."
    )
    for line in budget_lines(state, submission, budget):
        state.render.info(line)


def submit_one(
    state: AppState, client: Client, submission: Submission, budget: Budget, *, download: bool
) -> Job:
    """Check the output folder, submit (within the budget), record, and say what it cost."""
    from pixeldojo_cli.engine import submit
    from pixeldojo_cli.store.files import ensure_writable_folder

    if download:  # an output path that cannot be a folder costs nothing yet
        ensure_writable_folder(submission.folder)
    recorder, notify = state.recorder(), state.render.notice_sink()
    job = submit(client, submission, recorder=recorder, notify=notify, budget=budget)
    state.render.info(
        f"Submitted {job.id} ({submission.model}): {seed_text(submission.inputs, lower=True)}"
        f"{credits_text(submission.estimate if job.credit_cost is None else job.credit_cost)}, "
        f"{credits_text(job.credits_remaining, unit=False)} remaining."
    )
    return job


def print_submitted(
    state: AppState, job: Job, show: Presentation, submission: Submission | None = None
) -> None:
    """--no-wait: the job id, or the job entity under --json."""
    from pixeldojo_cli.cli.documents import job_document

    if show.json_output:
        document = job_document(job, saved=state.recorder().saved_state(job.id))
        state.render.json(with_seed(document, submission))
    else:
        state.render.result(job.id)


def follow_and_save(
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
        state.render.json(with_seed(result_document(result), submission))
    else:
        for line in result_lines(result):
            state.render.result(line)
    show.finish(state, [str(f.path) for f in result.files])


def with_seed(document: dict[str, Any], submission: Submission | None) -> dict[str, Any]:
    """`run --json`'s job entity with `seed`: the seed sent (auto_seed's pick
    or the user's), when one was and the API's own object names none."""
    seed = submission.inputs.get("seed") if submission is not None else None
    if isinstance(seed, int) and not isinstance(seed, bool) and "seed" not in document:
        document["seed"] = seed
    return document


def planned_file_lines(files: list[dict[str, Any]]) -> list[str]:
    """--dry-run: one line per `@` file it would upload (nothing is uploaded)."""
    from pixeldojo_cli.core.text import safe_text

    lines = []
    for entry in files:
        where = entry["input"] + ("" if entry["index"] is None else f"[{entry['index']}]")
        if "path" in entry:
            lines.append(
                f"Would upload {safe_text(entry['path'])} for {where}: {entry['size']:,} bytes, "
                f"{entry['type']}, SHA-256 {entry['sha256']}."
            )
        else:
            lines.append(f"Would use the output of job {safe_text(entry['job'])} for {where}.")
    return lines


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
