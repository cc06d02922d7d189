"""Settings: flag > environment > config file > default, decided by one function."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pixeldojo_cli.errors import ConfigError
from pixeldojo_cli.settings import (
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

    from pixeldojo_cli.settings import config_table, update_config

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
