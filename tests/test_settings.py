"""Settings: flag > environment > config file > default, decided by one function."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pixeldojo_cli.core.errors import ConfigError
from pixeldojo_cli.store.settings import (
    DEFAULT_BASE_URL,
    config_path,
    load_config,
    resolve_settings,
    save_config,
)

FILE = Path("/cfg/config.toml")
CONFIG = {
    "defaults": {"output_dir": "/from/file", "base_url": "http://defaults.example/api/v1"},
    "profiles": {
        "default": {"api_key": "file-key-default", "base_url": "http://file.example/api/v1"},
        "work": {"api_key": "file-key-work"},
    },
}

# (flags, environment, expected (api_key, base_url, output_dir, profile) sources)
PRECEDENCE: list[tuple[dict[str, str], dict[str, str], tuple[Any, ...]]] = [
    ({}, {}, ("file-key-default", "http://file.example/api/v1", "/from/file", "default")),
    (
        {},
        {
            "PIXELDOJO_API_KEY": "env-key",
            "PIXELDOJO_BASE_URL": "http://env.example",
            "PIXELDOJO_OUTPUT_DIR": "/from/env",
        },
        ("env-key", "http://env.example", "/from/env", "default"),
    ),
    (
        {"api_key": "flag-key", "base_url": "http://flag.example", "output_dir": "/from/flag"},
        {
            "PIXELDOJO_API_KEY": "env-key",
            "PIXELDOJO_BASE_URL": "http://env.example",
            "PIXELDOJO_OUTPUT_DIR": "/from/env",
        },
        ("flag-key", "http://flag.example", "/from/flag", "default"),
    ),
    # a profile without its own base_url falls back to [defaults]
    (
        {},
        {"PIXELDOJO_PROFILE": "work"},
        ("file-key-work", "http://defaults.example/api/v1", "/from/file", "work"),
    ),
    (
        {"profile": "work"},
        {"PIXELDOJO_PROFILE": "nope"},
        ("file-key-work", "http://defaults.example/api/v1", "/from/file", "work"),
    ),
    # a profile the file does not have: no key, built-in base URL
    ({"profile": "ghost"}, {}, (None, "http://defaults.example/api/v1", "/from/file", "ghost")),
    # an empty environment variable does not count
    (
        {},
        {"PIXELDOJO_API_KEY": ""},
        ("file-key-default", "http://file.example/api/v1", "/from/file", "default"),
    ),
]


@pytest.mark.parametrize(("flags", "env", "expected"), PRECEDENCE)
def test_precedence_flag_then_env_then_file_then_default(
    flags: dict[str, str], env: dict[str, str], expected: tuple[Any, ...]
) -> None:
    s = resolve_settings(**flags, env=env, config=CONFIG, path=FILE)
    assert (s.api_key.value, s.base_url.value, s.output_dir.value, s.profile.value) == expected


def test_sources_are_named() -> None:
    s = resolve_settings(env={"PIXELDOJO_BASE_URL": "http://e"}, config=CONFIG, path=FILE)
    assert s.api_key.source == f"config:{FILE}"
    assert s.base_url.source == "env:PIXELDOJO_BASE_URL"
    assert resolve_settings(api_key="k", env={}, config={}, path=FILE).api_key.source == "flag"


def test_defaults_with_no_file_at_all() -> None:
    s = resolve_settings(env={}, config={}, path=FILE)
    assert (s.api_key.value, s.base_url.value, s.output_dir.value, s.profile.value) == (
        None,
        DEFAULT_BASE_URL,
        ".",
        "default",
    )
    assert s.base_url.source == "default"


def test_config_file_is_private_and_round_trips(isolated_env: Path) -> None:
    path = save_config({"profiles": {"default": {"api_key": "k" * 20}}})
    assert path == config_path()
    assert path.is_relative_to(isolated_env)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert load_config() == {"profiles": {"default": {"api_key": "k" * 20}}}


def test_malformed_file_is_one_clear_error_naming_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text('[defaults]\noutput_dir = "x"\nthis is not toml\n')
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert str(bad) in caught.value.message
    assert "line 3" in caught.value.message


def test_concurrent_config_updates_lose_nothing(isolated_env: Path) -> None:
    import threading
    import time

    from pixeldojo_cli.store.settings import config_table, update_config

    def add(name: str) -> None:
        def change(config: dict[str, Any]) -> bool:
            time.sleep(0.01)  # widen the read-modify-write window
            config_table(config, "profiles", name)["api_key"] = f"key-{name}"
            return True

        update_config(change)

    threads = [threading.Thread(target=add, args=(f"p{n}",)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(load_config()["profiles"]) == sorted(f"p{n}" for n in range(12))


# --- how long a job with a status nobody knows is waited for ----------------------------


@pytest.mark.parametrize(
    "env, config, expected",
    [
        ({}, {}, 600.0),  # the documented default: 10 minutes
        ({"PIXELDOJO_UNKNOWN_STATUS_TIMEOUT": "90"}, {}, 90.0),
        ({"PIXELDOJO_UNKNOWN_STATUS_TIMEOUT": "10m"}, {}, 600.0),
        ({}, {"defaults": {"unknown_status_timeout": "1h30m"}}, 5400.0),
        ({}, {"defaults": {"unknown_status_timeout": 45}}, 45.0),
        (
            {"PIXELDOJO_UNKNOWN_STATUS_TIMEOUT": "2m"},
            {"defaults": {"unknown_status_timeout": "1h"}},
            120.0,
        ),
    ],
)
def test_the_unknown_status_timeout_setting(
    env: dict[str, str], config: dict[str, Any], expected: float
) -> None:
    settings = resolve_settings(env=env, config=config, path=FILE)
    assert settings.unknown_status_timeout.value == expected


@pytest.mark.parametrize("raw", ["0", "-5", "soon", "10x", "", "31d", "nan", "inf", "1e400"])
def test_a_bad_unknown_status_timeout_is_one_clear_error(raw: str) -> None:
    from pixeldojo_cli.store.settings import parse_setting

    with pytest.raises(ConfigError, match="unknown_status_timeout must be a duration"):
        parse_setting("unknown_status_timeout", raw)
    if raw:  # (an empty variable counts as unset)
        with pytest.raises(ConfigError, match=r"\$PIXELDOJO_UNKNOWN_STATUS_TIMEOUT"):
            resolve_settings(env={"PIXELDOJO_UNKNOWN_STATUS_TIMEOUT": raw}, config={}, path=FILE)
    with pytest.raises(ConfigError, match="unknown_status_timeout must be") as info:
        resolve_settings(
            env={}, config={"defaults": {"unknown_status_timeout": raw or "x"}}, path=FILE
        )
    # (the fix is part of the one line: issue 27 review #15)
    assert info.value.exit_code == 2 and "config set unknown_status_timeout" in info.value.message


def test_the_engine_waits_for_an_unknown_status_as_long_as_the_setting_says() -> None:
    from pixeldojo_cli.engine import JobFlags, resolve_options

    settings = resolve_settings(
        env={"PIXELDOJO_UNKNOWN_STATUS_TIMEOUT": "3m"}, config={}, path=FILE
    )
    wait, _ = resolve_options(settings, JobFlags())
    assert wait.unknown_status_timeout == 180.0


def test_config_set_checks_the_unknown_status_timeout(isolated_env: Path) -> None:
    from conftest import make_invoker

    cli = make_invoker(None, key=None)
    assert cli("config", "set", "unknown_status_timeout", "forever").exit_code == 2
    assert cli("config", "set", "unknown_status_timeout", "15m").exit_code == 0
    got = cli("config", "get", "unknown_status_timeout")
    assert got.exit_code == 0 and float(got.stdout) == 900.0
