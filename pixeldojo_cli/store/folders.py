"""Where pixeldojo keeps its files: the config, data (the ledger), cache and
state folders, `$XDG_..._HOME/pixeldojo` when set (on every OS), else the
platform's. Re-exported by `store.settings`, where they always were."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

APP_NAME = "pixeldojo"
ENV_SHARED_BUDGET = "PIXELDOJO_SHARED_RATE_BUDGET"
_OFF = frozenset({"0", "false", "no", "off"})


# Where each folder goes when its XDG variable is set to a relative path (ignored, as
# the XDG spec says) on a system whose platformdirs may still read it.
_XDG_DEFAULTS = {
    "XDG_CONFIG_HOME": ".config",
    "XDG_DATA_HOME": ".local/share",
    "XDG_CACHE_HOME": ".cache",
    "XDG_STATE_HOME": ".local/state",
}


def _user_dir(variable: str, platform_dir: Callable[..., str]) -> Path:
    """`$XDG_..._HOME/pixeldojo` when that variable is an absolute path, on every OS
    (macOS and Windows included, as git and gh do); else the platform's folder."""
    value = os.environ.get(variable, "")
    if value and os.path.isabs(value):
        return Path(value) / APP_NAME
    if value and sys.platform not in ("win32", "darwin"):
        return Path.home() / _XDG_DEFAULTS[variable] / APP_NAME
    return Path(platform_dir(APP_NAME, appauthor=False))


def config_dir() -> Path:
    from platformdirs import user_config_dir

    return _user_dir("XDG_CONFIG_HOME", user_config_dir)


def config_path() -> Path:
    return config_dir() / "config.toml"


def data_dir() -> Path:
    from platformdirs import user_data_dir

    return _user_dir("XDG_DATA_HOME", user_data_dir)


def ledger_path() -> Path:
    """`jobs.sqlite3` in the user's data folder (here, so that asking where it is
    does not import sqlite3)."""
    return data_dir() / "jobs.sqlite3"


def cache_dir() -> Path:
    from platformdirs import user_cache_dir

    return _user_dir("XDG_CACHE_HOME", user_cache_dir)


def state_dir() -> Path:
    """The user's state folder (`$XDG_STATE_HOME/pixeldojo` when set). Nothing is kept
    there yet: the ledger is data, the rate budget cache."""
    from platformdirs import user_state_dir

    return _user_dir("XDG_STATE_HOME", user_state_dir)


def rate_budget_dir(env: Mapping[str, str] | None = None) -> Path | None:
    """Where `pixeldojo` processes share one rate budget per API and key (a folder
    in the user cache); None when PIXELDOJO_SHARED_RATE_BUDGET=0 turns sharing off."""
    env = os.environ if env is None else env
    if env.get(ENV_SHARED_BUDGET, "").strip().lower() in _OFF:
        return None
    return cache_dir() / "ratelimit"
