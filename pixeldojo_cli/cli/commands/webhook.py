"""`pixeldojo webhook`: receive the API's job webhooks (`listen`) and resend one (`replay`)."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from pixeldojo_cli.cli.completion.complete import complete_job
from pixeldojo_cli.cli.help import PixelDojoCommand, PixelDojoGroup
from pixeldojo_cli.cli.render import printable
from pixeldojo_cli.cli.state import AppState, get_state
from pixeldojo_cli.core import interrupts
from pixeldojo_cli.core.durations import parse_duration
from pixeldojo_cli.core.errors import OutputRefusedError, PixelDojoError, UsageError
from pixeldojo_cli.core.text import plural

if TYPE_CHECKING:
    from pixeldojo_cli.api.client import Client
    from pixeldojo_cli.api.results import Job
    from pixeldojo_cli.engine import Recorder, SaveOptions
    from pixeldojo_cli.engine.webhooks import Delivery, LedgerBook, WebhookListener
    from pixeldojo_cli.store.files import DownloadedFile

app = typer.Typer(
    help="Webhooks: receive them and save each job's outputs, or resend one.",
    no_args_is_help=True,
    cls=PixelDojoGroup,
)

# Delivery states that mean the webhook did not arrive (any other state counts as sent).
UNDELIVERED = frozenset({"failed", "failure", "error", "errored", "skipped", "undelivered"})


@app.command(
    "replay",
    epilog="Examples:\n\n  pixeldojo webhook replay job_123\n\n"
    "  pixeldojo webhook replay job_123 --json",
    cls=PixelDojoCommand,
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
    from pixeldojo_cli.core.errors import ValidationError, WebhookDeliveryError

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


LISTEN_HELP = """\
Receive the API's job webhooks and save each job's outputs as it finishes.

Give the URL it prints at start (http://HOST:PORT/PATH; PATH is /webhook/ and
a random token unless --path sets it) as --webhook-url (`run --no-wait
--webhook-url ...`) and leave this running. The API publishes no webhook
signature, so a
notification is only a hint: the listener takes nothing from it but the job
id, answers 202 at once, then looks the job up through the API and saves
what the API says, exactly once per job, even when a notification comes
twice. It never follows a URL from a notification.

Each saved job prints one line on stdout: its id, then its files' paths,
tab-separated (with --json, one JSON object per job and outcome). --exec
CMD runs CMD (split like a shell would, never through one) for each saved
job, with PIXELDOJO_JOB_ID, PIXELDOJO_FILES (one path per line) and
PIXELDOJO_FILE (the first) in its environment; its output goes to stderr.

Only POST on PATH is accepted (others: 404, 405); a body that is not JSON
(400, 415), too large (413) or without a job id (400) is refused; past
--concurrency jobs at work and 100 waiting, 503. Each request must arrive
whole within 10 s; when connections run out, the one idle longest is cut.
--path is "/" and visible ASCII (percent-encode the rest). Ctrl-C or SIGTERM
stops it: it stops accepting, lets the downloads and --exec commands under
way finish for --grace, then stops them (no temporary file is left), names
the jobs it did not save (those it looked up stay in the ledger for
`pixeldojo download --pending`) and exits 0; further signals cut the grace
short.
"""

LISTEN_EXAMPLES = """\
Examples:

  pixeldojo webhook listen --port 8787 -o renders/

  pixeldojo webhook listen --path /k3y --json --exec "./publish.sh"

  pixeldojo run flux-dev fox --no-wait --webhook-url http://127.0.0.1:8787/k3y
"""

DEFAULT_PORT = 8787


# After --grace, an --exec command still running gets SIGTERM, and SIGKILL this
# many seconds later (within the listener's own wait for its workers).
EXEC_TERM_WAIT = 1.0


class _Signals:
    """SIGTERM and Ctrl-C for the rest of the process: the first stops the
    listener (a KeyboardInterrupt in the main thread); those that come while it
    stops cut its grace short; once it has stopped they are ignored, so that a
    stop exits 0 however many signals came (our own handlers would be undone
    while Python exits, the default one would kill it)."""

    def __init__(self, listener: WebhookListener) -> None:
        self.listener = listener
        self.stopping = False

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        if not self.stopping:
            self.stopping = True
            raise KeyboardInterrupt
        self.listener.hurry()

    def stopped(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)


def _exec_argv(command: str | None) -> list[str] | None:
    """`--exec CMD` as an argument list, checked before anything is listened to."""
    import shutil

    if command is None:
        return None
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"--exec {command[:60]!r}: {exc}.") from exc
    if not argv:
        raise UsageError("--exec needs a command.")
    if shutil.which(argv[0]) is None:
        raise UsageError(f"--exec: {argv[0][:60]!r} is not an executable command.")
    return argv


def _save_job(
    client: Client, options: SaveOptions, recorder: Recorder, cancel: threading.Event
) -> Callable[[Job], list[DownloadedFile]]:
    """The listener's save step: the engine's `save` (intact files kept, each file
    recorded as it lands, `<jobId>.json` written). It runs in worker threads:
    the `Recorder` is thread-safe, and nothing here draws a live display.
    `cancel` (set by the listener once a stop's grace is over) stops it and
    removes its temporary files."""
    from pixeldojo_cli.engine import save

    def save_one(job: Job) -> list[DownloadedFile]:
        return save(client, job, options, recorder=recorder, notify=recorder.notify, cancel=cancel)

    return save_one


class _Report:
    """Prints each job's outcome (one line, or JSON Lines), then runs --exec."""

    def __init__(
        self,
        state: AppState,
        json_output: bool,
        exec_argv: list[str] | None,
        cancel: threading.Event,
    ) -> None:
        self.state = state
        self.json_output = json_output
        self.exec_argv = exec_argv
        self.cancel = cancel  # set past a stop's grace: --exec commands are ended
        self._lock = threading.Lock()

    def __call__(self, outcome: Delivery) -> None:
        with self._lock:
            self._print(outcome)
        if outcome.outcome == "saved" and self.exec_argv:
            self._exec(outcome)

    def _print(self, outcome: Delivery) -> None:
        render, job_id = self.state.render, outcome.job_id
        if self.json_output:
            from pixeldojo_cli.cli.documents import delivery_document
            from pixeldojo_cli.core.text import json_line

            render.result(json_line(delivery_document(outcome)))
        if outcome.outcome == "saved":
            if not self.json_output:
                render.row([job_id, *outcome.paths])
        elif outcome.outcome == "skipped":
            render.info(f"{job_id}: already saved (the ledger says so); not downloaded again.")
        elif outcome.outcome == "failed":
            render.warn(f"{job_id}: the job {outcome.status}; nothing to save.")
        elif outcome.outcome == "unfinished":
            render.warn(
                f"{job_id}: still {outcome.status} after the notification; "
                "`pixeldojo download --pending` saves it once it finishes."
            )
        elif outcome.error is not None and outcome.error.code == "not_found":
            render.warn(f"{job_id}: the API knows no such job (a forged or stray notification).")
        elif outcome.error is not None:
            error = outcome.error
            render.warn(render.scrub(f"{job_id}: {error.message} ({error.code})"))
            if isinstance(error, OutputRefusedError):  # trying again cannot help
                render.info(render.scrub(error.hint))
            else:
                render.info(f"Save it later with: pixeldojo download {job_id}")

    def _exec(self, outcome: Delivery) -> None:
        assert self.exec_argv is not None
        render, job_id = self.state.render, outcome.job_id
        if self.cancel.is_set():
            render.warn(f"{job_id}: --exec not run: the listener is stopping.")
            return
        env = {
            **os.environ,
            "PIXELDOJO_JOB_ID": job_id,
            "PIXELDOJO_FILES": "\n".join(outcome.paths),
            "PIXELDOJO_FILE": outcome.paths[0] if outcome.paths else "",
        }
        try:
            # Its own process group: a terminal's Ctrl-C reaches only us (it gets
            # --grace), and a stop can end whatever it started too.
            child = subprocess.Popen(
                self.exec_argv, env=env, stdin=subprocess.DEVNULL, stdout=_stderr_fd(),
                process_group=0,
            )  # fmt: skip
        except OSError as exc:
            render.warn(f"{job_id}: --exec could not run: {exc}")
            return
        code = self._wait(child)
        if code is None:
            render.warn(f"{job_id}: --exec was still running after --grace; stopped it.")
        elif code != 0:
            render.warn(f"{job_id}: --exec exited {code}.")

    def _wait(self, child: subprocess.Popen[bytes]) -> int | None:
        """The command's exit code; None if it was ended because the listener stopped."""
        while not self.cancel.is_set():
            try:
                return child.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                continue
        if child.poll() is not None:
            return child.returncode
        _end_process_group(child)
        return None

    def handed_back(self, job_ids: list[str], in_ledger: set[str]) -> None:
        render = self.state.render
        if self.json_output:
            from pixeldojo_cli.core.text import json_line

            for job_id in job_ids:
                document = {
                    "jobId": job_id,
                    "outcome": "handed_back",
                    "files": [],
                    "inLedger": job_id in in_ledger,
                }
                render.result(json_line(document, ensure_ascii=True))
        if job_ids:
            render.warn(
                f"Stopped with {plural(len(job_ids), 'job')} not saved: {' '.join(job_ids)}. "
                f"Save them with: pixeldojo download {' '.join(job_ids)}"
                + (" (or `pixeldojo download --pending`)." if in_ledger else ".")
            )


def _end_process_group(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the command and what it started, SIGKILL a moment later."""
    import contextlib

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=EXEC_TERM_WAIT)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)  # whatever of the group is left
    child.wait()


def _stderr_fd() -> int:
    """--exec's output goes to our stderr: stdout is for the listener's own lines."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):
        return 2


def _serve(
    state: AppState, listener: WebhookListener, grace: float, signals: _Signals, execs: bool
) -> list[str]:
    """Listen until Ctrl-C or SIGTERM (or until the server thread fails), then
    stop; the ids of the jobs left unsaved. No temporary file of a download cut
    short is left behind."""
    try:
        signals.install()
        listener.start()
        state.render.err_console.print(
            f"Listening on {listener.url} (use it as --webhook-url). Ctrl-C stops.", markup=False
        )
        interrupts.wait_for_interrupt(until=lambda: not listener.serving)
        signals.stopping = True  # the server thread failed: stop as for a signal
    except KeyboardInterrupt:
        under_way = "downloads and --exec commands" if execs else "downloads"
        state.render.info(
            f"Stopping: no new notifications; the {under_way} under way have "
            f"{grace:g} s (--grace) to finish, then are stopped."
        )
    try:
        return listener.stop(grace)
    finally:
        # A save that outlived even the cancel's wait: its download may not remove
        # its .part itself before the process ends.
        interrupts.remove_parts()


HostOption = Annotated[
    str, typer.Option(help="Address to listen on (keep loopback behind a proxy or tunnel).")
]
PortOption = Annotated[
    int, typer.Option(help="Port to listen on (0: any free port).", min=0, max=65535)
]
PathOption = Annotated[
    str | None,
    typer.Option(
        help="The one URL path accepted (default: /webhook/ and a random token, new at "
        "each start; set your own to keep one URL across restarts).",
        show_default=False,
    ),
]
OutputDirOption = Annotated[
    str | None,
    typer.Option(
        "--output-dir",
        "-o",
        metavar="DIR",
        help="Where outputs go (default: the folder the job was submitted with, "
        "else the output folder setting).",
    ),
]
ExecOption = Annotated[
    str | None,
    typer.Option(
        "--exec", metavar="CMD", help="Run CMD for each saved job (see the variables above)."
    ),
]
JsonLinesOption = Annotated[
    bool, typer.Option("--json", help="One JSON object per job on stdout (JSON Lines).")
]
ConcurrencyOption = Annotated[
    int, typer.Option(help="Jobs looked up and saved at once.", min=1, max=32)
]
GraceOption = Annotated[
    str,
    typer.Option(
        metavar="DURATION", help="On stop, how long downloads under way may take to finish."
    ),
]


@app.command("listen", help=LISTEN_HELP, epilog=LISTEN_EXAMPLES, cls=PixelDojoCommand)
def listen(
    ctx: typer.Context,
    host: HostOption = "127.0.0.1",
    port: PortOption = DEFAULT_PORT,
    path: PathOption = None,
    output_dir: OutputDirOption = None,
    exec_command: ExecOption = None,
    json_output: JsonLinesOption = False,
    concurrency: ConcurrencyOption = 2,
    grace: GraceOption = "30s",
) -> None:
    state = get_state(ctx)
    state.remind = False  # a long-running server: no reminder at exit
    with state.guard(json_output=json_output):
        if path is not None:
            from pixeldojo_cli.engine.webhook_http import check_path

            try:
                check_path(path)
            except ValueError as exc:
                raise UsageError(f"--path {path[:60]!r}: {exc}.") from None
        exec_argv = _exec_argv(exec_command)
        grace_seconds = parse_duration(grace, option="--grace") or 0.0
        cancel = threading.Event()
        report = _Report(state, json_output, exec_argv, cancel)
        listener, book = _listener(state, output_dir, report, host, port, path, concurrency, cancel)
        # SIGTERM (systemd, `docker stop`, `kill`) stops it as Ctrl-C does; set before
        # the URL is printed, so whoever reads that line may already send it. Neither
        # stops the downloads under way at once (as in `run`): they have --grace.
        signals = _Signals(listener)
        left = _serve(state, listener, grace_seconds, signals, exec_argv is not None)
        in_ledger = {job_id for job_id in left if book is not None and book.knows(job_id)}
        report.handed_back(left, in_ledger)
        signals.stopped()
        _check_served(listener)
        state.render.info("Stopped.")


def _check_served(listener: WebhookListener) -> None:
    """One line and exit 1 when the server thread failed (a bug) instead of being stopped."""
    failure = listener.failure
    if failure is not None:
        bug = PixelDojoError(
            f"The listener stopped answering: {type(failure).__name__}: {failure}",
            hint="This is a bug in pixeldojo-cli: please report it (rerun with -v for more).",
        )
        bug.code = "unexpected"
        raise bug


def _listener(
    state: AppState,
    output_dir: str | None,
    report: _Report,
    host: str,
    port: int,
    path: str | None,
    concurrency: int,
    cancel: threading.Event,
) -> tuple[WebhookListener, LedgerBook | None]:
    """The listener, bound but not started, and the ledger book it keeps (None
    without a ledger)."""
    from pixeldojo_cli.engine import JobFlags
    from pixeldojo_cli.engine.webhooks import LedgerBook, WebhookListener

    client = state.client()
    _, save_options = state.job_options(JobFlags(output_dir=output_dir))
    recorder = state.recorder()
    book = None
    if recorder.ledger is not None:
        book = LedgerBook(recorder, save_options.folder_for(None).resolve())
    try:
        listener = WebhookListener(
            client,
            _save_job(client, save_options, recorder, cancel),
            host=host,
            port=port,
            path=path,
            workers=concurrency,
            book=book,
            on_outcome=report,
            cancel=cancel,
        )
    except OSError as exc:
        raise UsageError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.") from exc
    return listener, book
