"""Settings and where they come from: flag > environment > config file > default.

One function, `resolve_settings()`, decides every setting and remembers its
source (so `auth status` can say where the key came from). The config file is
TOML in `$XDG_CONFIG_HOME/pixeldojo` when that is set (on every OS), else in
`platformdirs.user_config_dir("pixeldojo")`; read with tomllib and
written atomically with tomli-w, mode 0600 in a 0700 folder.
"""

from __future__ import annotations

import errno
import functools
import math
import os
import stat
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixeldojo_cli.api.base_url import canonical_base_url
from pixeldojo_cli.api.defaults import DEFAULT_BASE_URL as DEFAULT_BASE_URL
from pixeldojo_cli.core import durations
from pixeldojo_cli.core.errors import ConfigError
from pixeldojo_cli.core.ownfiles import open_private, read_at_most, tighten
from pixeldojo_cli.core.ownfolders import check_folder, private_folder
from pixeldojo_cli.core.redact import clean_api_key
from pixeldojo_cli.core.untrusted import open_regular
from pixeldojo_cli.store.folders import APP_NAME as APP_NAME
from pixeldojo_cli.store.folders import ENV_SHARED_BUDGET as ENV_SHARED_BUDGET
from pixeldojo_cli.store.folders import cache_dir as cache_dir
from pixeldojo_cli.store.folders import config_dir as config_dir
from pixeldojo_cli.store.folders import config_path as config_path
from pixeldojo_cli.store.folders import data_dir as data_dir
from pixeldojo_cli.store.folders import ledger_path as ledger_path
from pixeldojo_cli.store.folders import rate_budget_dir as rate_budget_dir
from pixeldojo_cli.store.folders import state_dir as state_dir

DEFAULT_PROFILE = "default"
DEFAULT_RATE_LIMIT = 60.0
DEFAULT_POLL_INTERVAL = 2.0
DEFAULT_MAX_POLL_INTERVAL = 30.0
# How long a job whose status the client does not know (not pending, processing,
# completed, failed or a known synonym) is waited for before giving up on it.
DEFAULT_UNKNOWN_STATUS_TIMEOUT = 600.0

ENV_API_KEY = "PIXELDOJO_API_KEY"
ENV_BASE_URL = "PIXELDOJO_BASE_URL"
# The name PixelDojo's own skill uses; PIXELDOJO_BASE_URL wins when both are set.
ENV_API_BASE = "PIXELDOJO_API_BASE"
ENV_PROFILE = "PIXELDOJO_PROFILE"
ENV_OUTPUT_DIR = "PIXELDOJO_OUTPUT_DIR"
ENV_EMULATOR = "PIXELDOJO_EMULATOR"
ENV_CHECKSUM = "PIXELDOJO_CHECKSUM"
ENV_UNKNOWN_STATUS_TIMEOUT = "PIXELDOJO_UNKNOWN_STATUS_TIMEOUT"
ENV_PREVIEW = "PIXELDOJO_PREVIEW"
ENV_ALLOW_PRIVATE_OUTPUTS = "PIXELDOJO_ALLOW_PRIVATE_OUTPUTS"
ENV_BUDGET_DAILY = "PIXELDOJO_BUDGET_DAILY"
ENV_BUDGET_MONTHLY = "PIXELDOJO_BUDGET_MONTHLY"
ENV_UPLOAD = "PIXELDOJO_UPLOAD"
ENV_AUTO_SEED = "PIXELDOJO_AUTO_SEED"
ENV_EMBED_METADATA = "PIXELDOJO_EMBED_METADATA"
_TRUTHY = frozenset({"1", "true", "yes", "on"})
_FALSY = frozenset({"0", "false", "no", "off"})


def emulator_from_env(env: Mapping[str, str] | None = None) -> bool:
    """Whether PIXELDOJO_EMULATOR asks for the embedded emulator."""
    env = os.environ if env is None else env
    return env.get(ENV_EMULATOR, "").strip().lower() in _TRUTHY


# The most requests a minute `rate_limit` takes (16,000 a second): more is no limit.
MAX_RATE_LIMIT = 1_000_000

# Non-secret keys `config set` accepts, with their parsers (see `parse_setting`).
CONFIG_KEYS: dict[str, str] = {
    "output_dir": "path",
    "base_url": "url",
    "poll_interval": "duration",
    "max_poll_interval": "duration",
    "rate_limit": "per_minute",
    "checksum": "bool",
    "unknown_status_timeout": "duration",
    "preview": "bool",
    # Unset (None): output URLs may reach private addresses only when the API is on one.
    "allow_private_outputs": "bool",
    # Credits a profile may spend per calendar day / month (local time); unset: no budget.
    "budget_daily": "credits",
    "budget_monthly": "credits",
    # `@PATH` inputs: how a local file reaches the API (`data` or `command`; unset: refused).
    "upload": "upload_way",
    "upload_command": "command",
    "upload_ttl": "duration",
    "upload_timeout": "duration",
    # A random seed for a model that takes one when none is given; the job, model,
    # inputs and seed written into saved PNG, JPEG and WebP outputs.
    "auto_seed": "bool",
    "embed_metadata": "bool",
}
UPLOAD_WAYS = ("command", "data")
DEFAULT_UPLOAD_TTL = 3600.0
DEFAULT_UPLOAD_TIMEOUT = 120.0

# The settings that belong to a profile (`[profiles.NAME]`), not to [defaults].
PROFILE_KEYS = frozenset({"base_url", "budget_daily", "budget_monthly"})


def load_config(path: Path | None = None) -> dict[str, Any]:
    """The config file as a dict; `{}` when it does not exist.

    A malformed or unreadable file is a `ConfigError` naming the file (and the
    line, for TOML errors), never a traceback.
    """
    path = path or config_path()
    try:
        if path == config_path():  # our folder: a link there only under the dotfiles rule
            check_folder(path.parent)
        data = _read_config_bytes(path)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"Cannot read the config file {path}: {exc.strerror or exc}.") from exc
    try:
        parsed = tomllib.loads(data.decode("utf-8"))
    except RecursionError:  # tomllib recurses once per level of nesting
        raise ConfigError(
            f"The config file {path} nests values too deeply to be read.",
            hint=f"Fix or remove it (`rm {path}`), then try again.",
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"The config file {path} is not valid TOML: {exc}.",
            hint=f"Fix or remove it (`rm {path}`), then try again.",
        ) from exc
    return parsed


# No config file of ours comes near this: past it, it is not a config file.
MAX_CONFIG_BYTES = 1024 * 1024


def _read_config_bytes(path: Path) -> bytes:
    """The config file's bytes. A link to a regular file is followed (dotfiles
    are often linked), but a FIFO or a device (`/dev/zero`) is refused before
    reading, never waited on or read without end."""
    fd = open_regular(path, os.O_RDONLY)
    try:
        data = read_at_most(fd, MAX_CONFIG_BYTES)
    finally:
        os.close(fd)
    if data is None:
        raise OSError(errno.EFBIG, f"it is bigger than {MAX_CONFIG_BYTES // 1024} KiB")
    return data


def insecure_permissions_warning(path: Path | None = None) -> str | None:
    """A warning when the config file can be read by group or others (POSIX)."""
    path = path or config_path()
    if os.name != "posix":
        return None
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return f"{path} is readable by other users; fix it with: chmod 600 {path}"
    return None


# tomli-w writes data, not comments: say so at the top of the file we write.
CONFIG_HEADER = """\
# pixeldojo settings. `pixeldojo config set/unset` and `pixeldojo auth` rewrite
# this whole file: comments and formatting added here are not kept.
"""


def save_config(config: Mapping[str, Any], path: Path | None = None) -> Path:
    """Write the config atomically: temp file in the same folder, fsync, rename.

    The whole file is rewritten, under a header comment that says so."""
    import tempfile

    import tomli_w

    path = path or config_path()
    folder = path.parent
    try:
        private_folder(folder)
        # mkstemp: O_EXCL|O_NOFOLLOW, 0600; the rename replaces a link at the name.
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".config.", suffix=".toml.part")
    except OSError as exc:
        raise ConfigError(f"Cannot write in {folder}: {exc.strerror or exc}.") from exc
    try:
        tighten(fd)
        with os.fdopen(fd, "wb") as handle:
            handle.write((CONFIG_HEADER + "\n" + tomli_w.dumps(dict(config))).encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ConfigError(f"Cannot write the config file {path}: {exc.strerror or exc}.") from exc
    return path


@contextmanager
def _config_lock(folder: Path) -> Iterator[None]:
    """Serialise read-modify-write of the config file between processes (POSIX;
    elsewhere the atomic rename alone still keeps the file whole)."""
    try:
        private_folder(folder)
        # A link planted at the lock's name is replaced, never opened through.
        fd = open_private(folder / ".config.lock", os.O_RDWR | os.O_CREAT, replace=True)
        handle = os.fdopen(fd, "r+b")
    except OSError as exc:
        raise ConfigError(f"Cannot write in {folder}: {exc.strerror or exc}.") from exc
    try:
        try:
            import fcntl
        except ImportError:  # Windows
            yield
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()


def update_config(change: Callable[[dict[str, Any]], bool], path: Path | None = None) -> bool:
    """Load, change and save the config file as one step that no other
    `pixeldojo` process can interleave with (two logins never lose a key).

    `change` edits the dict in place and says whether it changed anything;
    the file is rewritten only then. Returns that answer.
    """
    path = path or config_path()
    with _config_lock(path.parent):
        config = load_config(path)
        changed = change(config)
        if changed:
            save_config(config, path)
        return changed


def config_table(config: dict[str, Any], *keys: str, path: Path | None = None) -> dict[str, Any]:
    """The table at `keys` (`profiles`, `work`), created when missing."""
    node = config
    for key in keys:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{path or config_path()}: {key!r} should be a table, not a value.")
        node = child
    return node


def prune_empty_tables(config: dict[str, Any]) -> None:
    """Drop tables left empty by a removal (`[profiles.work]` with nothing in it)."""
    for key in list(config):
        value = config[key]
        if isinstance(value, dict):
            prune_empty_tables(value)
            if not value:
                del config[key]


@dataclass(frozen=True)
class Setting:
    """A resolved value and where it came from: `flag`, `env:NAME`, `config:PATH`, `default`."""

    value: Any
    source: str
    # Why the value is no good (a `lenient` resolve keeps it instead of raising).
    problem: str | None = None


def _table(config: Mapping[str, Any], *keys: str) -> Mapping[str, Any]:
    node: Any = config
    for key in keys:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def pick(
    flag: Any,
    env: Mapping[str, str],
    env_name: str | None,
    config_sources: list[tuple[Mapping[str, Any], str]],
    key: str,
    default: Any,
) -> Setting:
    """The precedence rule itself: flag > environment > config tables > default."""
    if flag is not None and flag != "":
        return Setting(flag, "flag")
    if env_name and env.get(env_name):
        return Setting(env[env_name], f"env:{env_name}")
    for table, where in config_sources:
        if table.get(key) not in (None, ""):
            return Setting(table[key], where)
    return Setting(default, "default")


@dataclass(frozen=True)
class Settings:
    profile: Setting
    api_key: Setting
    base_url: Setting
    output_dir: Setting
    rate_limit: Setting
    poll_interval: Setting
    max_poll_interval: Setting
    checksum: Setting
    unknown_status_timeout: Setting
    preview: Setting
    allow_private_outputs: Setting
    config_file: Path
    budget_daily: Setting = Setting(None, "default")
    budget_monthly: Setting = Setting(None, "default")
    upload: Setting = Setting(None, "default")
    upload_command: Setting = Setting(None, "default")
    upload_ttl: Setting = Setting(DEFAULT_UPLOAD_TTL, "default")
    upload_timeout: Setting = Setting(DEFAULT_UPLOAD_TIMEOUT, "default")
    auto_seed: Setting = Setting(True, "default")
    embed_metadata: Setting = Setting(True, "default")


def resolve_settings(
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    profile: str | None = None,
    output_dir: str | None = None,
    env: Mapping[str, str] | None = None,
    config: Mapping[str, Any] | None = None,
    path: Path | None = None,
    lenient: bool = False,
) -> Settings:
    """Every setting, resolved once by the same rule. Flags are the arguments.
    `lenient` (`config` itself): a bad value is kept with its `problem` instead
    of raising, so that `config set/unset` can replace it."""
    env = os.environ if env is None else env
    path = path or config_path()
    config = load_config(path) if config is None else config
    _refuse_top_level_settings(config, path)
    where = f"config:{path}"
    defaults = _table(config, "defaults")
    # The default profile is set with `auth switch` ([defaults] profile).
    chosen_profile = pick(
        profile, env, ENV_PROFILE, [(defaults, where)], "profile", DEFAULT_PROFILE
    )
    profile_table = _table(config, "profiles", str(chosen_profile.value))
    both = [(profile_table, where), (defaults, where)]
    key = _text(
        pick(api_key, env, ENV_API_KEY, [(profile_table, where)], "api_key", None), "api_key"
    )

    # (a variable of only spaces or a newline is unset, as an empty one is)
    typed_env = {k: v for k, v in env.items() if k.startswith("PIXELDOJO_") and v.strip()}
    checked = functools.partial(_check, lenient=lenient, profile=str(chosen_profile.value))

    def typed(name: str, env_name: str | None, default: Any) -> Setting:
        """A number or switch: environment (if it has a name) > profile > defaults."""
        return checked(_typed, pick(None, typed_env, env_name, both, name, default), name)

    return Settings(
        profile=chosen_profile,
        # Whitespace around a key (a pasted key, a file's last newline) is never part of it.
        api_key=Setting(clean_api_key(key.value), key.source),
        base_url=checked(
            _url,
            pick(base_url, env, _base_url_env(env), both, "base_url", DEFAULT_BASE_URL),
            "base_url",
        ),
        output_dir=checked(
            _text,
            pick(output_dir, env, ENV_OUTPUT_DIR, [(defaults, where)], "output_dir", "."),
            "output_dir",
        ),
        rate_limit=typed("rate_limit", None, DEFAULT_RATE_LIMIT),
        poll_interval=typed("poll_interval", None, DEFAULT_POLL_INTERVAL),
        max_poll_interval=typed("max_poll_interval", None, DEFAULT_MAX_POLL_INTERVAL),
        checksum=typed("checksum", ENV_CHECKSUM, False),
        unknown_status_timeout=typed(
            "unknown_status_timeout", ENV_UNKNOWN_STATUS_TIMEOUT, DEFAULT_UNKNOWN_STATUS_TIMEOUT
        ),
        preview=typed("preview", ENV_PREVIEW, False),
        allow_private_outputs=typed("allow_private_outputs", ENV_ALLOW_PRIVATE_OUTPUTS, None),
        config_file=path,
        budget_daily=typed("budget_daily", ENV_BUDGET_DAILY, None),
        budget_monthly=typed("budget_monthly", ENV_BUDGET_MONTHLY, None),
        upload=typed("upload", ENV_UPLOAD, None),
        upload_command=checked(
            _command, pick(None, env, None, both, "upload_command", None), "upload_command"
        ),
        upload_ttl=typed("upload_ttl", None, DEFAULT_UPLOAD_TTL),
        upload_timeout=typed("upload_timeout", None, DEFAULT_UPLOAD_TIMEOUT),
        auto_seed=typed("auto_seed", ENV_AUTO_SEED, True),
        embed_metadata=typed("embed_metadata", ENV_EMBED_METADATA, True),
    )


def _refuse_top_level_settings(config: Mapping[str, Any], path: Path) -> None:
    """A setting above every table (`upload = "data"` on the first lines) is read
    by nothing: a config error naming it, never silently ignored."""
    for key in (k for k in config if k in CONFIG_KEYS or k in ("profile", "api_key")):
        table = "[profiles.default]" if key == "api_key" else "[defaults]"
        raise ConfigError(
            f"In {path}: {key} is at the top of the file, outside any table, where it is not read.",
            hint=f"Move the line below a {table} line (in TOML, the lines after it belong to it).",
        )


def _check(
    check: Callable[[Setting, str], Setting],
    setting: Setting,
    name: str,
    *,
    lenient: bool,
    profile: str,
) -> Setting:
    """`check(setting, name)`: a bad value raises, as one line that says how to
    fix it when it is in the config file; `lenient` keeps it with its `problem`."""
    try:
        return check(setting, name)
    except ConfigError as exc:
        if lenient:
            return Setting(setting.value, setting.source, problem=exc.message)
        if not setting.source.startswith("config:"):
            raise
        named = "" if profile == DEFAULT_PROFILE else f"--profile {profile} "
        fix = f"Fix it with `pixeldojo {named}config set {name} VALUE`."
        raise ConfigError(f"{exc.message} {fix}", hint="") from None


def _base_url_env(env: Mapping[str, str]) -> str:
    """The variable the base URL is read from: PIXELDOJO_BASE_URL, or its alias
    PIXELDOJO_API_BASE when only that one is set."""
    return ENV_API_BASE if env.get(ENV_API_BASE) and not env.get(ENV_BASE_URL) else ENV_BASE_URL


def _command(setting: Setting, _: str = "upload_command") -> Setting:
    """`upload_command`: a TOML array of strings (the words as they are), or one
    string split as a POSIX shell splits words (no shell runs it); as a list."""
    value = setting.value
    if value is None:
        return setting
    file = setting.source.removeprefix("config:")
    if isinstance(value, list) and value and all(isinstance(word, str) for word in value):
        return Setting(list(value), setting.source)
    if isinstance(value, str):
        try:
            return Setting(command_words(value), setting.source)
        except ConfigError as exc:
            raise ConfigError(f"In {file}: {exc.message}") from None
    raise ConfigError(
        f"In {file}: upload_command must be a list of strings or one string of words.",
        hint='Write it as upload_command = ["my-upload", "{path}"] in ' + file + ".",
    )


def command_words(raw: str) -> list[str]:
    """`raw` split into words as a POSIX shell splits them (quotes kept together)."""
    import shlex

    try:
        words = shlex.split(raw)
    except ValueError as exc:  # an unclosed quote
        raise ConfigError(f"upload_command cannot be split into words: {exc}.") from None
    if not words:
        raise ConfigError("upload_command is empty: it needs at least the program to run.")
    return words


_TOML_TYPES = {bool: "true or false", int: "a number", float: "a number", list: "a list"}


def _text(setting: Setting, key: str) -> Setting:
    """A setting that must be text: a number, list or table in the config file is a
    clear error naming the file (and never showing the value: it may be a key)."""
    if setting.value is None or isinstance(setting.value, str):
        return setting
    kind = _TOML_TYPES.get(
        type(setting.value), "a table" if isinstance(setting.value, dict) else "not text"
    )
    file = setting.source.removeprefix("config:")
    raise ConfigError(
        f"In {file}: {key} must be text in quotes, but it is {kind}.",
        hint=f'Write it as {key} = "..." in {file}.',
    )


def _url(setting: Setting, key: str) -> Setting:
    """The base URL: text, in its one spelling (`api.base_url`): the ledger, the
    budgets and the rate budget know an API by it."""
    setting = _text(setting, key)
    if not isinstance(setting.value, str):
        return setting
    return Setting(canonical_base_url(setting.value), setting.source)


def _typed(setting: Setting, key: str) -> Setting:
    """A value from the config file or the environment is checked as `config set`
    would have checked it."""
    source = setting.source
    if not source.startswith(("env:", "config:")):
        return setting
    try:
        return Setting(parse_setting(key, str(setting.value)), source)
    except ConfigError as exc:
        if source.startswith("env:"):
            raise ConfigError(f"In ${source[len('env:') :]}: {exc.message}") from None
        raise ConfigError(f"In {source[len('config:') :]}: {exc.message}", hint="") from None


def config_value_problem(key: str, value: Any) -> str | None:
    """Why `value`, written for `key` in the config file, is no good (as every
    command would say), or None when it is fine."""
    setting = Setting(value, "config:the config file")
    checks: dict[str, Callable[[Setting, str], Setting]] = {
        "base_url": _url,
        "output_dir": _text,
        "upload_command": _command,
    }
    check = checks.get(key, _typed)
    try:
        check(setting, key)
    except ConfigError as exc:
        return exc.message
    return None


def parse_setting(key: str, raw: str) -> Any:
    """Validate a `config set KEY VALUE` value; returns the typed value."""
    kind = CONFIG_KEYS.get(key)
    if kind is None:
        raise ConfigError(
            f"Unknown setting {key!r}. Known: {', '.join(sorted(CONFIG_KEYS))}.",
            hint="API keys are set with `pixeldojo auth login`.",
        )
    if kind == "url":
        if not raw.lower().startswith(("http://", "https://")):
            raise ConfigError(f"{key} must be an http(s) URL, got {raw!r}.")
        return canonical_base_url(raw)
    if kind == "upload_way":
        if raw.strip().lower() not in UPLOAD_WAYS:
            raise ConfigError(f"{key} must be command or data, got {raw[:60]!r}.")
        return raw.strip().lower()
    if kind == "command":
        command_words(raw)
        return raw
    if kind == "bool":
        word = raw.strip().lower()
        if word not in _TRUTHY | _FALSY:
            raise ConfigError(
                f"{key} must be true or false (also yes/no, on/off, 1/0), got {raw[:60]!r}."
            )
        return word in _TRUTHY
    if kind == "duration":  # what each accepts: `durations.LIMITS`
        try:
            return durations.seconds(raw, key)
        except durations.DurationError as exc:
            raise ConfigError(exc.message) from None
    if kind == "per_minute":
        number = durations.ascii_number(raw)
        # Under one a minute cannot be meant (`1e-300`): the limiter counts whole requests;
        # nor over `MAX_RATE_LIMIT` (`1e308`): no API allows that many.
        if number is None or not 1 <= number <= MAX_RATE_LIMIT:
            raise ConfigError(
                f"{key} must be a number of requests per minute, at least 1 and at most "
                f"{MAX_RATE_LIMIT:,}; got {raw[:60]!r}."
            )
        return number
    if kind == "credits":
        return _credits(key, raw)
    return raw


def _credits(key: str, raw: str) -> float:
    """A budget: a finite number of credits, 0 or more (0: nothing may be spent)."""
    number = durations.ascii_number(raw)
    if number is None or not math.isfinite(number) or number < 0:
        raise ConfigError(f"{key} must be a number of credits, 0 or more; got {raw[:60]!r}.")
    return number
