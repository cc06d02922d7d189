"""`pixeldojo config`: the non-secret settings in the config file."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from pixeldojo_cli.cli.help import PixelDojoCommand, PixelDojoGroup
from pixeldojo_cli.cli.state import AppState, get_state

if TYPE_CHECKING:
    from pixeldojo_cli.store.settings import Setting

app = typer.Typer(
    help="Read and change the non-secret settings (output_dir, base_url, poll intervals, "
    "rate_limit, checksum, preview, unknown_status_timeout, allow_private_outputs, "
    "budget_daily, budget_monthly, upload, upload_command, upload_ttl, upload_timeout). "
    "Keys are managed with `pixeldojo auth`.",
    no_args_is_help=True,
    cls=PixelDojoGroup,
)

KeyArgument = Annotated[
    str,
    typer.Argument(
        metavar="KEY",
        help="output_dir, base_url, poll_interval, max_poll_interval, rate_limit, checksum, "
        "preview, unknown_status_timeout, allow_private_outputs, budget_daily, "
        "budget_monthly, upload, upload_command, upload_ttl or upload_timeout.",
    ),
]

# Budget keys name a profile that must exist: a budget saved under a mistyped
# profile would never hold the one meant.
_BUDGET_KEYS = frozenset({"budget_daily", "budget_monthly"})


def _check_key(key: str) -> None:
    from pixeldojo_cli.core.errors import ConfigError
    from pixeldojo_cli.store.settings import CONFIG_KEYS

    if key == "api_key":
        raise ConfigError(
            "The API key is not a config setting.",
            hint="Use `pixeldojo auth login` to save it, `pixeldojo auth status` to see it.",
        )
    if key not in CONFIG_KEYS:
        from difflib import get_close_matches

        close = get_close_matches(key, list(CONFIG_KEYS), n=1)
        guess = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"Unknown setting {key!r}.{guess}",
            hint=f"Settings: {', '.join(sorted(CONFIG_KEYS))}.",
        )


def _table_path(state: AppState, key: str) -> tuple[str, ...]:
    """base_url and the budgets belong to a profile (each may talk to its own API
    and spend its own credits); the rest are defaults."""
    from pixeldojo_cli.store.settings import PROFILE_KEYS

    if key in PROFILE_KEYS:
        return ("profiles", str(state.settings(lenient=True).profile.value))
    return ("defaults",)


def _drop_bad_elsewhere(
    config: dict[str, Any], key: str, where: tuple[str, ...], profile: str
) -> list[str]:
    """Remove a bad value of `key` (one every command refuses) from the other
    table this profile reads it from ([defaults] or [profiles.NAME]): `config
    set`/`unset` of a key is how the error says to fix it. Returns the tables."""
    from pixeldojo_cli.store.settings import config_value_problem

    dropped = []
    for other in (("defaults",), ("profiles", profile)):
        node: Any = config
        for name in other:
            node = node.get(name) if isinstance(node, dict) else None
        if other == where or not isinstance(node, dict) or node.get(key) in (None, ""):
            continue
        if config_value_problem(key, node[key]) is not None:
            del node[key]
            dropped.append("[" + ".".join(other) + "]")
    return dropped


def _settings_of(state: AppState, key: str) -> Setting:
    """`key`'s setting in effect; a bad value is its error, with the way out."""
    from pixeldojo_cli.core.errors import ConfigError

    settings = state.settings(lenient=True)
    setting: Setting = getattr(settings, key)
    if setting.problem is not None:
        fix = ""
        if setting.source.startswith("config:"):
            named = state.profile is not None and settings.profile.source == "flag"
            me = f"pixeldojo --profile {settings.profile.value}" if named else "pixeldojo"
            fix = f" Fix it with `{me} config set {key} VALUE` or `{me} config unset {key}`."
        raise ConfigError(setting.problem + fix, hint="")
    return setting


def _check_profile_exists(config: dict[str, Any], where: tuple[str, ...], file: Any) -> None:
    """A budget goes only to a profile that exists: `default`, or one with a
    [profiles.NAME] table (a key or a setting saved)."""
    from pixeldojo_cli.core.errors import ConfigError
    from pixeldojo_cli.store.settings import DEFAULT_PROFILE

    name = where[-1]
    profiles = config.get("profiles")
    known = sorted(set(profiles) - {DEFAULT_PROFILE}) if isinstance(profiles, dict) else []
    if name == DEFAULT_PROFILE or name in known:
        return
    raise ConfigError(
        f"Profile {name!r} does not exist in {file} (known: "
        f"{', '.join([DEFAULT_PROFILE, *known])}); a budget for it would never hold. "
        f"Create it first with `pixeldojo --profile {name} auth login`.",
        hint="",
    )


def _describe_source(setting: Setting) -> str:
    source = str(setting.source)
    if source.startswith("config:"):
        return "config file"
    if source.startswith("env:"):
        return source[4:]
    return source


def _shown(value: Any) -> str:
    """A value as the config file spells it: booleans as true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):  # upload_command's words
        import shlex

        return shlex.join(str(word) for word in value)
    return "" if value is None else str(value)


def _listed(setting: Setting) -> dict[str, Any]:
    """A setting in `config list --json`; `problem` only for a bad value."""
    listed = {"value": setting.value, "source": _describe_source(setting)}
    if setting.problem is not None:
        listed["problem"] = setting.problem
    return listed


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


@app.command(
    "path", epilog='Example:\n\n  $EDITOR "$(pixeldojo config path)"', cls=PixelDojoCommand
)
def path(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Print where the config file lives (it may not exist yet).

    `$XDG_CONFIG_HOME/pixeldojo/config.toml` when XDG_CONFIG_HOME is set, on
    every OS; otherwise the platform's config folder (~/.config/pixeldojo on
    Linux).
    """
    from pixeldojo_cli.store.settings import config_path

    state = get_state(ctx)
    with state.guard(json_output=json_output):
        where = config_path()
        if json_output:
            state.render.json({"path": str(where), "exists": where.exists()})
        else:
            state.render.result(str(where))


@app.command("get", epilog="Example:\n\n  pixeldojo config get output_dir", cls=PixelDojoCommand)
def get(ctx: typer.Context, key: KeyArgument, json_output: JsonOption = False) -> None:
    """Print a setting's value in effect (flag > environment > config file > default).

    The value goes to stdout; where it came from goes to stderr.
    """
    state = get_state(ctx)
    with state.guard(json_output=json_output):
        _check_key(key)
        setting = _settings_of(state, key)
        if json_output:
            state.render.json(
                {"key": key, "value": setting.value, "source": _describe_source(setting)}
            )
            return
        state.render.result(_shown(setting.value))
        state.render.note(f"from: {_describe_source(setting)}")


@app.command(
    "set",
    epilog=(
        "Examples:\n\n  pixeldojo config set output_dir ~/Pictures/pixeldojo\n\n"
        "  pixeldojo --profile staging config set base_url https://staging.example/api/v1"
    ),
    cls=PixelDojoCommand,
    # `config set rate_limit -1` is a value to check (and refuse, saying the range), not
    # an unknown option: `set` has none but --help.
    context_settings={"ignore_unknown_options": True},
)
def set_(ctx: typer.Context, key: KeyArgument, value: Annotated[str, typer.Argument()]) -> None:
    """Save a setting in the config file, after checking its value.

    base_url, budget_daily and budget_monthly are saved for the current profile
    (a budget only for one that exists); the others under [defaults].
    The whole file is rewritten (atomically, private: 0600), so comments in it
    are not kept; a header at its top says so.
    """
    from pixeldojo_cli.store.settings import config_table, parse_setting, update_config

    state = get_state(ctx)
    with state.guard():
        _check_key(key)
        typed = parse_setting(key, value)
        settings = state.settings(lenient=True)
        file, profile = settings.config_file, str(settings.profile.value)
        where = _table_path(state, key)
        dropped: list[str] = []

        def set_value(config: dict[str, Any]) -> bool:
            if key in _BUDGET_KEYS:
                _check_profile_exists(config, where, file)
            config_table(config, *where, path=file)[key] = typed
            dropped.extend(_drop_bad_elsewhere(config, key, where, profile))
            return True

        update_config(set_value, file)
        shown = _shown(typed) if isinstance(typed, bool) else repr(typed)  # `true`, as in TOML
        also = f" (its bad value in {', '.join(dropped)} removed)" if dropped else ""
        state.render.info(f"{key} = {shown} saved in {file}{also}.")


@app.command(
    "unset", epilog="Example:\n\n  pixeldojo config unset output_dir", cls=PixelDojoCommand
)
def unset(ctx: typer.Context, key: KeyArgument) -> None:
    """Remove a setting from the config file (its default applies again).

    Other settings stay as they are; the file is rewritten, so comments in it
    are not kept.
    """
    from pixeldojo_cli.store.settings import config_table, prune_empty_tables, update_config

    state = get_state(ctx)
    with state.guard():
        _check_key(key)
        settings = state.settings(lenient=True)
        file, profile = settings.config_file, str(settings.profile.value)
        where = _table_path(state, key)

        def remove_value(config: dict[str, Any]) -> bool:
            found = config_table(config, *where, path=file).pop(key, None) is not None
            found = bool(_drop_bad_elsewhere(config, key, where, profile)) or found
            prune_empty_tables(config)
            return found

        if update_config(remove_value, file):
            state.render.info(f"{key} removed from {file}.")
        else:
            state.render.info(f"{key} is not set in {file}; nothing to do.")


@app.command(
    "list",
    epilog="Examples:\n\n  pixeldojo config list\n\n  pixeldojo config list --json",
    cls=PixelDojoCommand,
)
def list_(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Every setting in effect, and where its value comes from.

    Sources: a flag, an environment variable, the config file, or the default.
    """
    from pixeldojo_cli.store.settings import CONFIG_KEYS

    state = get_state(ctx)
    with state.guard(json_output=json_output):
        settings = state.settings(lenient=True)
        values = {key: getattr(settings, key) for key in CONFIG_KEYS}
        if json_output:
            state.render.json(
                {
                    "profile": settings.profile.value,
                    "configFile": str(settings.config_file),
                    "settings": {key: _listed(s) for key, s in values.items()},
                }
            )
            return
        rows = [
            [key, _shown(s.value), _describe_source(s) + (" (bad)" if s.problem else "")]
            for key, s in values.items()
        ]
        state.render.table(["KEY", "VALUE", "SOURCE"], rows)
        for s in values.values():
            if s.problem is not None:
                state.render.warn(s.problem)
        state.render.note(f"Profile {settings.profile.value!r}; file {settings.config_file}")
