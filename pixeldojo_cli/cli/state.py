"""Per-invocation state: the global flags, settings, the client, the emulator,
and `guard()`, the one place where an error becomes a message and an exit code.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from pixeldojo_cli.cli.render import Renderer
from pixeldojo_cli.core.errors import ExitCode, PixelDojoError, UsageError
from pixeldojo_cli.core.text import plural

if TYPE_CHECKING:
    from pixeldojo_cli.api.client import Client
    from pixeldojo_cli.emulator import Emulator
    from pixeldojo_cli.engine import EventSink, JobFlags, Recorder, SaveOptions, WaitOptions
    from pixeldojo_cli.engine.budget import Budget
    from pixeldojo_cli.engine.uploaders import UploadSettings
    from pixeldojo_cli.store.ledger import Ledger
    from pixeldojo_cli.store.settings import Settings

# Remind about unsaved outputs that expire within this many hours.
REMINDER_HOURS = 6

EMULATOR_KEY = "emulator-key"

# The exit status of a process killed by SIGPIPE, as a shell reports it (128 + 13).
BROKEN_PIPE = 141


def emulator_requested(flag: bool) -> bool:
    from pixeldojo_cli.store.settings import emulator_from_env

    return flag or emulator_from_env()


@dataclass
class AppState:
    """What the root callback parsed; commands ask it for settings and a client."""

    api_key: str | None = None
    base_url: str | None = None
    profile: str | None = None
    verbose: bool = False
    quiet: bool = False
    no_color: bool = False
    use_emulator: bool = False
    render: Renderer = field(default_factory=Renderer)
    _settings: Settings | None = None
    _emulator: Emulator | None = None
    _clients: list[Client] = field(default_factory=list)
    _recorders: list[Recorder] = field(default_factory=list)
    _checked_permissions: bool = False
    _ledger: Ledger | None = None
    _ledger_failed: bool = False
    json_output: bool = False
    json_lines: bool = False  # --json prints JSON Lines: an error too is one line
    arguments: dict[str, Any] = field(default_factory=dict)  # the command's parameters
    remind: bool = True

    def __post_init__(self) -> None:
        # Every command masks the key in force, whether or not it builds a client
        # (`inspect` prints what a file holds, and a server may have put the key there).
        self.render.add_secret(self.api_key)
        self.render.add_secret_source(self._keys_in_force)

    def _keys_in_force(self) -> Iterator[str | None]:
        """The key of the environment, then the one the settings resolve to
        (never the settings' warnings, nor their errors: those are said where
        the settings are read)."""
        import os

        from pixeldojo_cli.store.settings import ENV_API_KEY, resolve_settings

        yield os.environ.get(ENV_API_KEY)
        settings = self._settings or resolve_settings(
            api_key=self.api_key, base_url=self.base_url, profile=self.profile
        )
        yield settings.api_key.value

    def settings(self, *, output_dir: str | None = None, lenient: bool = False) -> Settings:
        """The settings of this command. `lenient` (`config`): a bad value is kept
        with its `problem`, not raised, and these settings are not kept."""
        from pixeldojo_cli.store.settings import insecure_permissions_warning, resolve_settings

        if self._settings is not None and output_dir is None:
            return self._settings
        resolved = resolve_settings(
            api_key=self.api_key,
            base_url=self.base_url,
            profile=self.profile,
            output_dir=output_dir,
            lenient=lenient,
        )
        self.render.add_secret(resolved.api_key.value)
        if not lenient:
            self._settings = resolved
        if not self._checked_permissions:
            self._checked_permissions = True
            warning = insecure_permissions_warning(resolved.config_file)
            if warning:
                self.render.warn(warning)
        return resolved

    def use_profile(self, name: str | None) -> None:
        """A subcommand's own `--profile` wins over the global one."""
        if name is not None:
            self.profile = name
            self._settings = None

    def job_options(self, flags: JobFlags) -> tuple[WaitOptions, SaveOptions]:
        """The waiting and saving options of one command, resolved once."""
        from pixeldojo_cli.engine import resolve_options

        return resolve_options(self.settings(output_dir=flags.output_dir), flags)

    def recorder(self, notify: EventSink | None = None) -> Recorder:
        """The ledger as the engine uses it, for this API and profile."""
        from pixeldojo_cli.engine import Recorder
        from pixeldojo_cli.store.settings import ledger_path

        base_url, profile = self.ledger_scope()
        recorder = Recorder(
            self.ledger(),
            base_url,
            profile,
            notify or self.render.notice_sink(),
            ledger_file=None if self.use_emulator else ledger_path(),
        )
        self._recorders.append(recorder)
        return recorder

    def budget(self, *, ignore: bool = False, max_credits: float | None = None) -> Budget:
        """What this command may spend: the profile's budgets (none with
        --ignore-budget, nor under the embedded emulator, which charges nothing
        real) and --max-credits. `submit()` checks it before each POST."""
        from pixeldojo_cli.engine.budget import Budget

        settings = self.settings()
        if ignore or self.use_emulator:
            return Budget(max_credits=max_credits)
        return Budget(settings.budget_daily.value, settings.budget_monthly.value, max_credits)

    def upload(self, flag: str | None = None) -> UploadSettings:
        """The uploader in force for `@PATH` inputs: --upload (`flag`) >
        PIXELDOJO_UPLOAD > config > default (none; `data` under the embedded
        emulator, so `@PATH` works with no configuration)."""
        from pixeldojo_cli.core.errors import ConfigError
        from pixeldojo_cli.engine.uploaders import UploadSettings
        from pixeldojo_cli.store.settings import parse_setting

        settings = self.settings()
        way, source = settings.upload.value, settings.upload.source
        if flag is not None:
            try:
                way, source = parse_setting("upload", flag), "--upload"
            except ConfigError as exc:
                raise UsageError(exc.message.replace("upload must", "--upload must")) from None
        elif way is None and self.use_emulator:
            way, source = "data", "the embedded emulator's default"
        return UploadSettings(
            way=way,
            command=tuple(settings.upload_command.value or ()),
            timeout=float(settings.upload_timeout.value),
            ttl=float(settings.upload_ttl.value),
            source=source,
        )

    def _say_what_was_not_recorded(self) -> None:
        """At the end, every job the ledger could not take, by id."""
        later = {i for r in self._recorders for i in r.deferred}
        lost = {i for r in self._recorders for i in r.unrecorded}
        if later and any(r.unopened for r in self._recorders if r.deferred):
            self.render.warn(
                f"Not in the ledger yet (it could not be opened): {' '.join(sorted(later))}; "
                "kept in pending-records.jsonl beside it until it can be opened. Until then "
                "`pixeldojo download ID` saves their outputs."
            )
        elif later:
            self.render.warn(
                f"Recorded later (the ledger was busy or read-only): {' '.join(sorted(later))}"
            )
        if lost:
            self.render.warn(
                f"Not recorded in the ledger: {' '.join(sorted(lost))}. Keep these ids: "
                "`pixeldojo download ID` saves their outputs until they expire."
            )

    def _start_emulator(self) -> Emulator:
        if self._emulator is None:
            from pixeldojo_cli.emulator import Emulator

            self._emulator = Emulator(latency=1.5).start()
            self.render.note(
                f"Using the embedded emulator at {self._emulator.base_url} (no key, no credits)."
            )
        return self._emulator

    def client(self, *, api_key: str | None = None) -> Client:
        """A client from the resolved settings (or pointed at the embedded emulator).

        `api_key` overrides the resolved key (`auth login` checks a new one).
        """
        from pixeldojo_cli.api.client import Client
        from pixeldojo_cli.core.redact import check_api_key
        from pixeldojo_cli.store.settings import cache_dir, rate_budget_dir

        settings = self.settings()
        self.render.add_secret(api_key)
        self.render.add_secret(self.api_key)
        self.render.add_secret(settings.api_key.value)
        where = _key_source(settings.api_key.source)
        if api_key:
            where = ""  # given to this call (auth login checks a new one)
        elif self.use_emulator:
            # Never hand a real key to the emulator: only an explicit --api-key goes there.
            api_key, where = self.api_key or EMULATOR_KEY, " from --api-key"
        else:
            api_key = settings.api_key.value
        api_key = check_api_key(api_key, where)  # before any request, never echoing it
        if self.use_emulator:
            base_url = self._start_emulator().base_url
        else:
            base_url = str(settings.base_url.value)
        client = Client(
            api_key=api_key,
            base_url=base_url,
            rate_limit=float(settings.rate_limit.value),
            trace=self.render.trace if self.verbose else None,
            budget_dir=None if self.use_emulator else rate_budget_dir(),
            cache_dir=None if self.use_emulator else cache_dir(),
            # The embedded emulator runs every job in 1.5 s, video or not.
            model_types_hint_schedule=not self.use_emulator,
            allow_private_outputs=settings.allow_private_outputs.value,
            allow_private_outputs_source=settings.allow_private_outputs.source,
        )
        self._clients.append(client)
        return client

    # --- the job ledger --------------------------------------------------------

    def ledger_scope(self) -> tuple[str, str]:
        """(base URL, profile): the ledger keeps each API's and profile's jobs apart."""
        settings = self.settings()
        return str(settings.base_url.value).rstrip("/"), str(settings.profile.value)

    def ledger(self, *, recording: bool = True) -> Ledger | None:
        """The job ledger, or None under the embedded emulator (its jobs die with
        the process) or when it cannot be opened (a warning, never a failed run;
        none when not `recording`: a reminder only reads, and the command said
        already what was wrong with the ledger, or never needed it)."""
        if self.use_emulator or self._ledger_failed:
            return None
        if self._ledger is None:
            from pixeldojo_cli.store.ledger import Ledger

            try:
                self._ledger = Ledger()
            except PixelDojoError as exc:
                self._ledger_failed = True
                if recording:
                    self.render.warn(f"{exc.message} Jobs are not being recorded.")
                return None
            if self._ledger.moved_aside is not None:
                self.render.warn(
                    f"The job ledger was damaged; it was moved to {self._ledger.moved_aside} "
                    "and a new one started."
                )
        return self._ledger

    def _remind_unsaved(self) -> None:
        """One line when paid outputs are about to expire unsaved."""
        from datetime import timedelta

        from pixeldojo_cli.store.settings import ledger_path

        if self.quiet or self.json_output or self.use_emulator or not self.remind:
            return
        try:
            if not ledger_path().exists():
                return
            base_url, profile = self.ledger_scope()
            ledger = self.ledger(recording=False)
            if ledger is None:
                return
            soon = ledger.expiring_soon(
                base_url=base_url, profile=profile, within=timedelta(hours=REMINDER_HOURS)
            )
        except Exception:  # a reminder must never turn a success into a failure
            return
        if soon:
            profile_flag = "" if profile == "default" else f"--profile {profile} "
            self.render.warn(
                f"{plural(len(soon), 'job')} with outputs that expire within {REMINDER_HOURS} h "
                "and "
                f"were never downloaded. Save them with: pixeldojo {profile_flag}download --pending"
            )

    def close(self) -> None:
        self._say_what_was_not_recorded()
        self._remind_unsaved()
        for client in self._clients:
            client.close()
        self._clients.clear()
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None
        if self._emulator is not None:
            self._emulator.stop()
            self._emulator = None

    @contextmanager
    def guard(self, *, json_output: bool = False, json_lines: bool = False) -> Iterator[None]:
        """Run a command body: our errors become one message and their exit code;
        anything else is a bug, reported as such (exit 1). A reader that went
        away (`| head -1`) ends the command quietly, as SIGPIPE ends Unix tools.
        `json_lines`: the command prints JSON Lines under --json (its error is one line)."""
        self.json_output = self.json_output or json_output
        self.json_lines = self.json_lines or json_lines
        try:
            _refuse_undecodable_ids(self.arguments)
            yield
        except PixelDojoError as exc:
            self._report(exc, json_output)
            raise typer.Exit(int(exc.exit_code)) from None
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            from pixeldojo_cli.core import interrupts

            hint = interrupts.resume_hint()  # e.g. a job paid for just before
            self.render.err_console.print(
                "\nInterrupted." + (f" {hint}" if hint else ""), markup=False
            )
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        except BrokenPipeError:
            from pixeldojo_cli.cli.render import silence_broken_pipe

            silence_broken_pipe()
            self.remind = False  # nothing more to say: nobody is listening
            raise typer.Exit(BROKEN_PIPE) from None
        except Exception as exc:
            if self.verbose:
                self.render.err_console.print(traceback.format_exc(), markup=False)
            self._report(unexpected_error(exc), json_output)
            raise typer.Exit(int(ExitCode.UNEXPECTED)) from None

    def _report(self, exc: PixelDojoError, json_output: bool) -> None:
        """Print an error; the reporting itself must never fail with a traceback."""
        try:
            self.render.error(exc, json_output=json_output, one_line=self.json_lines)
        except BrokenPipeError:
            from pixeldojo_cli.cli.render import silence_broken_pipe

            silence_broken_pipe()
        except Exception:  # last resort: the bare line, made safe
            import sys

            from pixeldojo_cli.core.text import safe_text

            try:
                line = self.render.scrub(str(exc.message))
                sys.stderr.write(f"error: {safe_text(line)} ({exc.code})\n")
            except Exception:
                return


def _refuse_undecodable_ids(arguments: dict[str, Any]) -> None:
    """A model or job id argument that is not text (bytes that are not UTF-8) names
    nothing and cannot go into a URL: a usage error for every command, before
    any request (see `argv.ID_ARGUMENTS`)."""
    from pixeldojo_cli.cli.argv import undecodable_id

    found = undecodable_id(arguments)
    if found is not None:
        metavar, value = found
        kind = "model" if metavar.startswith("MODEL") else "job"
        raise UsageError(
            f"{metavar} {value[:60]!r} is not valid text (bytes that are not UTF-8?): "
            f"no {kind} has such an id. Nothing was sent."
        )


def unexpected_error(exc: Exception) -> PixelDojoError:
    """An exception none of our code raised on purpose: a bug, said as one (exit 1)."""
    bug = PixelDojoError(
        f"Unexpected error: {type(exc).__name__}: {exc}",
        hint="This is a bug in pixeldojo-cli: please report it (rerun with -v for more).",
    )
    bug.code = "unexpected"
    return bug


def _key_source(source: str) -> str:
    """Where a key came from, for a message about it (never the key itself)."""
    if source == "flag":
        return " from --api-key"
    if source.startswith("env:"):
        return f" in ${source[len('env:') :]}"
    if source.startswith("config:"):
        return f" in {source[len('config:') :]}"
    return ""


def get_state(ctx: typer.Context) -> AppState:
    state = ctx.find_root().obj
    if not isinstance(state, AppState):  # a command invoked without the root callback
        state = AppState()
        ctx.find_root().obj = state
    state.arguments = ctx.params  # the command's own, checked by `guard`
    return state


class DurationFlagError(typer.BadParameter):
    """A bad value for a duration flag Typer converts itself (`--poll-interval`,
    `emulator serve --ttl`): one line, as a bad `--timeout` says it (README,
    "Durations"), not Click's usage block. (Under --json, `cli._json_usage_error`
    reports it.)"""

    def format_message(self) -> str:
        return self.message

    def show(self, file: Any = None) -> None:
        """Click's hook for printing a usage error: ours, through the renderer."""
        state = self.ctx.find_root().obj if self.ctx is not None else None
        render = state.render if isinstance(state, AppState) else Renderer()
        render.error(UsageError(self.message))


def duration_parser(name: str) -> Callable[[Any], float]:
    """A Typer `parser=` for a duration flag whose value is seconds, a float
    (`--poll-interval 2s`); the limits are `durations.LIMITS[name]`."""
    from pixeldojo_cli.core.durations import DurationError, seconds

    def parse(value: Any) -> float:
        if isinstance(value, int | float):  # the default, already seconds
            return float(value)
        try:
            return seconds(str(value), name)
        except DurationError as exc:
            raise DurationFlagError(exc.message) from None

    return parse


def read_text_argument(path: str, option: str) -> str:
    """The text of a FILE argument, `-` meaning standard input; a usage error
    (never a traceback) when it cannot be read."""
    import sys

    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{option} {path!r} is not UTF-8 text.") from exc
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = getattr(exc, "strerror", None) or exc
        raise UsageError(f"Cannot read {option} {path[:200]!r}: {reason}.") from exc


def inputs_object(text: str, where: str) -> dict[str, Any]:
    """`schema.inputs_object`, imported only when a command reads inputs."""
    from pixeldojo_cli.inputs.schema import inputs_object as parse

    return parse(text, where)
