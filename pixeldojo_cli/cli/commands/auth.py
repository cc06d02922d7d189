"""`pixeldojo auth`: save, check and remove the API key of a profile."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pixeldojo_cli.cli.help import PixelDojoCommand, PixelDojoGroup
from pixeldojo_cli.cli.state import AppState, get_state

if TYPE_CHECKING:
    from pixeldojo_cli.core.errors import PixelDojoError
    from pixeldojo_cli.store.settings import Setting

app = typer.Typer(
    help="Save, check and remove your PixelDojo API key.", no_args_is_help=True, cls=PixelDojoGroup
)

ProfileOption = Annotated[
    str | None,
    typer.Option(
        "--profile",
        metavar="NAME",
        help="Profile to use (default: --profile before the command, PIXELDOJO_PROFILE, "
        "or `default`).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


def stdin_is_terminal() -> bool:
    """Whether the key can be asked for interactively (tests replace this)."""
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _read_key(with_token: bool) -> str:
    from pixeldojo_cli.core.errors import UsageError
    from pixeldojo_cli.core.redact import check_api_key

    if with_token:
        key = check_api_key(sys.stdin.read(), " read from standard input")
    elif stdin_is_terminal():
        typed = str(typer.prompt("Paste your PixelDojo API key", hide_input=True))
        key = check_api_key(typed, " you typed")
    else:
        raise UsageError(
            "No terminal to ask for the key on.",
            hint='Pipe the key in instead: echo "$PIXELDOJO_API_KEY" | pixeldojo auth login '
            "--with-token",
        )
    if not key:
        raise UsageError("The key is empty.", hint="Get one from your PixelDojo API settings.")
    return key


def _key_source(setting: Setting) -> str:
    """Where the key came from, in words: the flag, a variable, or the file's path."""
    source = str(setting.source)
    if source == "flag":
        return "the --api-key flag"
    if source.startswith("env:"):
        return f"the {source[4:]} environment variable"
    if source.startswith("config:"):
        return source[len("config:") :]
    return "the built-in default"


def _verify(state: AppState, api_key: str | None = None) -> None:
    """A cheap authenticated request: `GET /jobs?limit=1`. Raises on a rejected key."""
    state.client(api_key=api_key).list_jobs(limit=1)


@app.command(
    "login",
    epilog=(
        "Examples:\n\n"
        "  pixeldojo auth login\n\n"
        '  echo "$PIXELDOJO_API_KEY" | pixeldojo auth login --with-token\n\n'
        "  pixeldojo --profile work auth login"
    ),
    cls=PixelDojoCommand,
)
def login(
    ctx: typer.Context,
    with_token: Annotated[
        bool, typer.Option("--with-token", help="Read the key from standard input (for scripts).")
    ] = False,
    no_verify: Annotated[
        bool,
        typer.Option("--no-verify", help="Save without checking the key against the API first."),
    ] = False,
    profile: ProfileOption = None,
) -> None:
    """Save an API key in the config file, after checking that the API accepts it.

    The key is asked for with hidden input, or read from standard input with
    --with-token. A key the API rejects is not saved (exit 3).
    """
    from pixeldojo_cli.core.errors import UsageError
    from pixeldojo_cli.core.redact import mask_key
    from pixeldojo_cli.store.settings import config_table, load_config, update_config

    state = get_state(ctx)
    state.use_profile(profile)
    with state.guard():
        if state.use_emulator:
            raise UsageError(
                "The emulator needs no key, so there is nothing to log in to.",
                hint="Drop --emulator (and PIXELDOJO_EMULATOR) to save a key for the real API.",
            )
        settings = state.settings()
        config = load_config(settings.config_file)  # a malformed file stops us here
        key = _read_key(with_token)
        state.render.add_secret(key)
        if not no_verify:
            _verify(state, key)
        name = str(settings.profile.value)
        config_table(config, "profiles", name, path=settings.config_file)  # fail before asking

        def save_key(current: dict[str, Any]) -> bool:
            table = config_table(current, "profiles", name, path=settings.config_file)
            table["api_key"] = key
            if settings.base_url.source == "flag":  # an explicit --base-url belongs with it
                table["base_url"] = str(settings.base_url.value)
            return True

        update_config(save_key, settings.config_file)
        checked = "" if no_verify else ", accepted by the API"
        state.render.info(
            f"Saved key {mask_key(key)} for profile {name!r}{checked}, in {settings.config_file}."
        )
        if settings.api_key.source.startswith("env:"):
            state.render.warn(
                "PIXELDOJO_API_KEY is set in this environment and still wins over the saved key."
            )


def _status(state: AppState, verify: bool) -> tuple[dict[str, Any], PixelDojoError | None]:
    from pixeldojo_cli.core.errors import MissingAPIKeyError, PixelDojoError
    from pixeldojo_cli.core.redact import mask_key

    settings = state.settings()
    key = settings.api_key.value
    report: dict[str, Any] = {
        "profile": settings.profile.value,
        "key": mask_key(key) if key else None,
        "keySource": _key_source(settings.api_key) if key else None,
        "baseUrl": settings.base_url.value,
        "configFile": str(settings.config_file),
        "accepted": None,
    }
    if state.use_emulator:
        report["baseUrl"] = "(embedded emulator)"
    if not key:
        return report, MissingAPIKeyError(f"No API key for profile {settings.profile.value!r}.")
    if verify:
        try:
            _verify(state)
        except PixelDojoError as exc:
            if exc.exit_code == 3:
                report["accepted"] = False
            return report, exc
        report["accepted"] = True
    return report, None


@app.command(
    "status",
    epilog="Examples:\n\n  pixeldojo auth status\n\n  pixeldojo auth status --json --offline",
    cls=PixelDojoCommand,
)
def status(
    ctx: typer.Context,
    json_output: JsonOption = False,
    offline: Annotated[
        bool, typer.Option("--offline", help="Do not ask the API whether it accepts the key.")
    ] = False,
    profile: ProfileOption = None,
) -> None:
    """Show the key in use (masked), where it came from, and whether the API accepts it.

    Exit 3 when there is no key or the API rejects it.
    """
    state = get_state(ctx)
    state.use_profile(profile)
    with state.guard(json_output=json_output):
        report, problem = _status(state, verify=not offline)
        render = state.render
        if json_output:
            render.json({**report, **(problem.to_json() if problem else {})})
        else:
            accepted = {True: "yes", False: "no (rejected)", None: "not checked"}
            rows = [
                ("Profile", str(report["profile"])),
                ("Key", report["key"] or "(none)"),
                ("Key from", report["keySource"] or "-"),
                ("Base URL", str(report["baseUrl"])),
                ("Config file", report["configFile"]),
                ("Accepted", accepted[report["accepted"]]),
            ]
            for label, value in rows:
                render.result(f"{label + ':':13}{value}")
        if problem is not None:
            render.error(problem)  # the one line and its hint, on stderr
            raise typer.Exit(int(problem.exit_code))


@app.command(
    "logout",
    epilog="Examples:\n\n  pixeldojo auth logout\n\n  pixeldojo auth logout --profile work",
    cls=PixelDojoCommand,
)
def logout(ctx: typer.Context, profile: ProfileOption = None) -> None:
    """Remove a profile's saved key; other profiles and settings stay as they were.

    The file is rewritten, so comments in it are not kept. A key in PIXELDOJO_API_KEY is not
    touched (you are warned that it still applies).
    """
    from pixeldojo_cli.store.settings import (
        ENV_API_KEY,
        config_table,
        prune_empty_tables,
        update_config,
    )

    state = get_state(ctx)
    state.use_profile(profile)
    with state.guard():
        settings = state.settings()
        name = str(settings.profile.value)

        def remove_key(config: dict[str, Any]) -> bool:
            table = config_table(config, "profiles", name, path=settings.config_file)
            found = table.pop("api_key", None) is not None
            prune_empty_tables(config)
            return found

        if update_config(remove_key, settings.config_file):
            state.render.info(f"Removed the key of profile {name!r} from {settings.config_file}.")
        else:
            state.render.info(f"No key is saved for profile {name!r}; nothing to do.")
        if settings.api_key.source == f"env:{ENV_API_KEY}":
            state.render.warn(f"{ENV_API_KEY} is still set in this environment and will be used.")


@app.command(
    "token",
    epilog=(
        "Examples:\n\n"
        '  curl -H "Authorization: Bearer $(pixeldojo auth token)" \\\n'
        "      https://pixeldojo.ai/api/v1/models\n\n"
        "  pixeldojo --profile work auth token | pbcopy"
    ),
    cls=PixelDojoCommand,
)
def token(ctx: typer.Context, profile: ProfileOption = None) -> None:
    """Print the API key in use on stdout, for other tools (as `gh auth token` does).

    The key of the active profile, by the usual rule: --api-key,
    PIXELDOJO_API_KEY, then the config file. When stdout is a terminal, a
    warning goes to stderr first: the key is now on your screen. Exit 3 when
    there is no key.
    """
    from pixeldojo_cli.core.errors import MissingAPIKeyError, UsageError

    state = get_state(ctx)
    state.use_profile(profile)
    with state.guard():
        if state.use_emulator:
            raise UsageError("The emulator needs no key, so there is none to print.")
        settings = state.settings()
        key = settings.api_key.value
        if not key:
            raise MissingAPIKeyError(f"No API key for profile {settings.profile.value!r}.")
        if state.render.stdout_is_terminal():
            state.render.warn(
                "this prints your API key in full; anyone who sees this screen or its "
                "scrollback can use it."
            )
        state.render.key_result(str(key))


def _profiles(state: AppState) -> list[dict[str, Any]]:
    """Every profile in the config file (and the active one), masked, active first."""
    from pixeldojo_cli.core.redact import mask_key
    from pixeldojo_cli.store.settings import load_config

    settings = state.settings()
    active = str(settings.profile.value)
    saved = load_config(settings.config_file).get("profiles")
    tables = saved if isinstance(saved, dict) else {}
    names = sorted({*(str(n) for n in tables), active}, key=lambda n: (n != active, n))
    report = []
    for name in names:
        found = tables.get(name)
        table: dict[str, Any] = found if isinstance(found, dict) else {}
        key = table.get("api_key") if isinstance(table.get("api_key"), str) else None
        report.append(
            {
                "profile": name,
                "active": name == active,
                "key": mask_key(key) if key else None,
                "baseUrl": table.get("base_url"),
            }
        )
    return report


@app.command(
    "list",
    epilog="Examples:\n\n  pixeldojo auth list\n\n  pixeldojo auth list --json",
    cls=PixelDojoCommand,
)
def list_profiles(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Every profile in the config file, its key (masked) and which one is active.

    The active profile is --profile, else PIXELDOJO_PROFILE, else the one set with
    `pixeldojo auth switch`, else `default`. A key given by --api-key or
    PIXELDOJO_API_KEY wins over the saved one; the list says so.
    """
    from pixeldojo_cli.cli.tables import Column

    state = get_state(ctx)
    with state.guard(json_output=json_output):
        report = _profiles(state)
        settings = state.settings()
        if json_output:
            state.render.json(report)
            return
        rows = [
            [
                "*" if p["active"] else "",
                p["profile"],
                p["key"] or "(none)",
                p["baseUrl"] or "",
            ]
            for p in report
        ]
        columns = [
            Column("ACTIVE"),
            Column("PROFILE", key=True),
            Column("KEY"),
            Column("BASE URL", drop=1, wrap=True),
        ]
        state.render.table(columns, rows)
        source = str(settings.api_key.source)
        if settings.api_key.value and not source.startswith("config:"):
            state.render.note(f"The key in use comes from {_key_source(settings.api_key)}.")
        state.render.note(f"Active: {settings.profile.value!r} ({_profile_source(settings)}).")


def _profile_source(settings: Any) -> str:
    source = str(settings.profile.source)
    if source == "flag":
        return "the --profile flag"
    if source.startswith("env:"):
        return f"the {source[4:]} environment variable"
    if source.startswith("config:"):
        return "set with `pixeldojo auth switch`"
    return "the default"


@app.command(
    "switch",
    epilog="Examples:\n\n  pixeldojo auth switch work\n\n  pixeldojo auth switch default",
    cls=PixelDojoCommand,
)
def switch(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="PROFILE", help="The profile to make active.")],
) -> None:
    """Make a profile the active one for every command from now on.

    Saved in the config file ([defaults] profile). --profile and
    PIXELDOJO_PROFILE still win over it for one command or one shell;
    `auth switch default` goes back to the default profile.
    """
    from pixeldojo_cli.core.errors import ConfigError
    from pixeldojo_cli.store.settings import (
        DEFAULT_PROFILE,
        ENV_PROFILE,
        config_table,
        prune_empty_tables,
        update_config,
    )

    state = get_state(ctx)
    with state.guard():
        known = [p["profile"] for p in _profiles(state) if p["key"] or p["baseUrl"]]
        if name != DEFAULT_PROFILE and name not in known:
            listing = ", ".join(sorted({DEFAULT_PROFILE, *known}))
            raise ConfigError(
                f"No profile {name!r} in the config file (profiles: {listing}).",
                hint=f"Save a key for it first: pixeldojo --profile {name} auth login",
            )
        file = state.settings().config_file

        def set_profile(config: dict[str, Any]) -> bool:
            defaults = config_table(config, "defaults", path=file)
            if name == DEFAULT_PROFILE:
                found = defaults.pop("profile", None) is not None
                prune_empty_tables(config)
                return found
            defaults["profile"] = name
            return True

        update_config(set_profile, file)
        state.render.info(f"Profile {name!r} is now active (saved in {file}).")
        if os.environ.get(ENV_PROFILE):
            state.render.warn(f"{ENV_PROFILE} is set in this environment and still wins.")
