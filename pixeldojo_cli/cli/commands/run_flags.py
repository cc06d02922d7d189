"""The arguments and flags of `pixeldojo run`, and what they ask as frozen
values: `FollowFlags` (how to wait, save and show) and `RunRequest` (what to
submit). Reading PROMPT or --input from stdin or a file happens here too;
nothing here talks to the API."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pixeldojo_cli.cli.completion.complete import complete_model, complete_param
from pixeldojo_cli.cli.outputs import OPEN_HELP, Presentation
from pixeldojo_cli.cli.state import (
    AppState,
    DurationFlagError,
    inputs_object,
    read_text_argument,
)
from pixeldojo_cli.core.durations import ascii_number, parse_duration
from pixeldojo_cli.core.errors import UsageError

if TYPE_CHECKING:
    from pixeldojo_cli.engine import JobFlags
    from pixeldojo_cli.engine.uploaders import UploadSettings


class ProgressMode(StrEnum):
    auto = "auto"
    rich = "rich"
    plain = "plain"
    none = "none"


# --- the arguments and flags of `run` ------------------------------------------------

ModelArgument = Annotated[
    str,
    typer.Argument(
        metavar="MODEL",
        help="Model id, e.g. flux-dev (see `pixeldojo models`).",
        autocompletion=complete_model,
    ),
]
PromptArgument = Annotated[
    str | None,
    typer.Argument(metavar="PROMPT", help="The prompt (fills the `prompt` input); - reads stdin."),
]
ParamOption = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        "-p",
        metavar="KEY=VALUE",
        help="An input; KEY:=JSON for a JSON literal. Repeatable.",
        autocompletion=complete_param,
    ),
]
InputFileOption = Annotated[
    str | None,
    typer.Option("--input", "-i", metavar="FILE", help="JSON object of inputs; - reads stdin."),
]
SeedOption = Annotated[int | None, typer.Option("--seed", help="Shortcut for -p seed=N.")]
NoAutoSeedOption = Annotated[
    bool,
    typer.Option(
        "--no-auto-seed",
        help="Leave the seed to the API when none is given (default: a random one, "
        "printed and recorded; setting auto_seed).",
    ),
]
WebhookUrlOption = Annotated[
    str | None,
    typer.Option("--webhook-url", metavar="URL", help="The API POSTs the finished job here."),
]
OutputDirOption = Annotated[
    str | None,
    typer.Option(
        "--output-dir",
        "-o",
        metavar="DIR",
        help="Where outputs go (or PIXELDOJO_OUTPUT_DIR; default: current folder).",
    ),
]
DryRunOption = Annotated[
    bool,
    typer.Option("--dry-run", help="Print the request and its estimated cost; submit nothing."),
]
NoWaitOption = Annotated[
    bool, typer.Option("--no-wait", help="Print the job id and return at once.")
]
NoDownloadOption = Annotated[
    bool, typer.Option("--no-download", help="Print output URLs instead of downloading.")
]
JsonOption = Annotated[
    bool, typer.Option("--json", help='Print one JSON object: the job plus "files".')
]
OpenOption = Annotated[bool, typer.Option("--open", help=OPEN_HELP)]
PreviewOption = Annotated[
    bool | None,
    typer.Option(
        "--preview/--no-preview",
        show_default=False,
        help="Draw the first saved image in the terminal (or PIXELDOJO_PREVIEW=1, or "
        "`config set preview true`). Needs pixeldojo-cli[preview].",
    ),
]
ProgressOption = Annotated[
    ProgressMode,
    typer.Option("--progress", help="Progress display on stderr.", case_sensitive=False),
]
BatchFileOption = Annotated[
    str | None,
    typer.Option(
        "--batch",
        metavar="FILE",
        help="Many jobs: JSON Lines of inputs or one prompt per line (- for stdin). "
        "Rerunning skips lines already done.",
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
        help="With --batch or a sweep: jobs in flight at once (default 50: enough to keep the rate "
        "limit busy, few enough for one list poll to see them all).",
    ),
]


def parse_credits(value: Any) -> float:
    """--max-credits: a finite number of credits, 0 or more; one line otherwise."""
    number = float(value) if isinstance(value, int | float) else ascii_number(str(value))
    if number is None or not math.isfinite(number) or number < 0:
        raise DurationFlagError(
            f"--max-credits must be a number of credits, 0 or more; got {str(value)[:60]!r}."
        )
    return number


UploadOption = Annotated[
    str | None,
    typer.Option(
        "--upload",
        metavar="WAY",
        help="How @PATH files reach the API: data (inline data: URI) or command "
        "(upload_command); or PIXELDOJO_UPLOAD, or `config set upload`.",
    ),
]
MaxCreditsOption = Annotated[
    float | None,
    typer.Option(
        "--max-credits",
        metavar="CREDITS",
        parser=parse_credits,
        help="The most this command may spend (estimated): a job past it is refused, "
        "exit 4; with --batch or a sweep, jobs past it are skipped.",
    ),
]
IgnoreBudgetOption = Annotated[
    bool,
    typer.Option(
        "--ignore-budget",
        help="Submit without checking budget_daily / budget_monthly (--max-credits still holds).",
    ),
]
MatrixOption = Annotated[
    list[str] | None,
    typer.Option(
        "--matrix",
        "-m",
        metavar="KEY=V1,V2",
        help="Sweep an input over values (seed=1..8 is a range; \\, a literal comma): "
        "one job per combination. Repeatable: the values multiply.",
        autocompletion=complete_param,
    ),
]
YesOption = Annotated[
    bool,
    typer.Option("--yes", "-y", help="Run a sweep of more than 500 jobs."),
]


# --- what the flags ask, as frozen values ----------------------------------------------


@dataclass(frozen=True)
class FollowFlags:
    """The flags that only apply when `run` follows its job to the end: how to
    wait, whether and how to save, and how to show what was saved."""

    timeout: str | None = None
    poll_interval: float | None = None
    max_poll_interval: float | None = None
    checksum: bool | None = None
    download: bool = True
    progress: ProgressMode = ProgressMode.auto
    open_output: bool = False
    preview: bool | None = None

    def given(self) -> list[str]:
        """The flags given, by name: none of them can apply with --no-wait."""
        values: dict[str, object] = {
            "--timeout": self.timeout,
            "--poll-interval": self.poll_interval,
            "--max-poll-interval": self.max_poll_interval,
            "--checksum/--no-checksum": self.checksum,
            "--no-download": None if self.download else True,
            "--progress": None if self.progress is ProgressMode.auto else self.progress,
            "--open": self.open_output or None,
            "--preview": self.preview or None,
        }
        return [name for name, value in values.items() if value is not None]

    def job_flags(self, output_dir: str | None) -> JobFlags:
        """The waiting and saving flags, for `AppState.job_options`."""
        from pixeldojo_cli.engine import JobFlags

        return JobFlags(
            output_dir=output_dir,
            poll_interval=self.poll_interval,
            max_poll_interval=self.max_poll_interval,
            timeout=parse_duration(self.timeout),
            checksum=self.checksum,
            download=self.download,
        )

    def presentation(self, state: AppState, json_output: bool) -> Presentation:
        """How the result is shown (--preview falls back to the setting)."""
        wanted = self.preview if self.preview is not None else bool(state.settings().preview.value)
        return Presentation(
            json_output, self.progress.value, self.open_output, wanted and self.download
        )


@dataclass(frozen=True)
class RunRequest:
    """What `run` is asked to submit: the model, the inputs (PROMPT, -p,
    --input, --seed), and one job or a batch of them."""

    model_id: str
    prompt: str | None = None
    assignments: tuple[str, ...] = ()
    input_file: str | None = None
    seed: int | None = None
    webhook_url: str | None = None
    dry_run: bool = False
    wait: bool = True
    auto_seed: bool = True
    batch_file: str | None = None
    concurrency: int | None = None
    max_credits: float | None = None
    matrix: tuple[str, ...] = ()
    yes: bool = False
    ignore_budget: bool = False
    upload: UploadSettings | None = None

    def check(self) -> None:
        """Refuse what cannot go together, before anything is read or spent."""
        from pixeldojo_cli.inputs.schema import refuse_given_twice

        given = {"prompt": self.prompt is not None, "seed": self.seed is not None}
        refuse_given_twice(self.assignments, **given, webhook_url=self.webhook_url is not None)
        if self.batch_file is not None and self.prompt is not None:
            raise UsageError("Give a PROMPT or --batch FILE, not both.")
        if self.batch_file is not None and self.matrix:
            raise UsageError("--matrix sweeps one request; it cannot go with --batch FILE.")
        many = self.batch_file is not None or self.is_sweep()
        if not many and self.concurrency is not None:
            raise UsageError("--concurrency goes with --batch or a sweep.")
        if self.yes and not self.is_sweep():
            raise UsageError("--yes goes with a sweep (--matrix, or a PROMPT with {a|b}).")

    def is_sweep(self) -> bool:
        """Whether this asks for many jobs: --matrix, or PROMPT alternatives
        (a malformed PROMPT is a usage error here, before anything is spent)."""
        from pixeldojo_cli.inputs.sweeps import parse_prompt

        if self.matrix:
            return True
        return self.prompt is not None and bool(parse_prompt(self.prompt).groups)

    def plain_prompt(self) -> str | None:
        """PROMPT for one job: `{{` and `}}` read as the braces they stand for."""
        from pixeldojo_cli.inputs.sweeps import parse_prompt

        return None if self.prompt is None else parse_prompt(self.prompt).render(())


def upload_settings(state: AppState, flag: str | None) -> UploadSettings:
    """The uploader in force (`AppState.upload`): --upload over the settings."""
    return state.upload(flag)


def read_input_file(path: str) -> dict[str, Any]:
    """`--input FILE` (or `-`): a JSON object of inputs."""
    return inputs_object(read_text_argument(path, "--input"), f"--input {path}")


def check_webhook_url(url: str | None) -> None:
    """--webhook-url is an http(s) URL, or not given."""
    if url is not None and not url.startswith(("http://", "https://")):
        raise UsageError(f"--webhook-url must be an http(s) URL, got {url[:60]!r}.")


def refuse_flags_that_cannot_apply(follow: FollowFlags, *, no_wait: bool) -> None:
    """No flag is silently dropped: one that cannot apply is a usage error."""
    given = follow.given() if no_wait else []
    if given:
        raise UsageError(
            f"{', '.join(given)} cannot apply with --no-wait: nothing is waited for or downloaded.",
            hint="Wait and download later with: pixeldojo jobs wait JOB_ID",
        )
    if not follow.download and (follow.open_output or follow.preview):
        flag = "--open" if follow.open_output else "--preview"
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
