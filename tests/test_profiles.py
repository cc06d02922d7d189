"""Keys and profiles: `auth token` for other tools, `auth list`, `auth switch`."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from pixeldojo_cli.cli.render import Renderer
from pixeldojo_cli.emulator import Emulator

from conftest import TEST_KEY, Invoke, make_invoker

WORK_KEY = "work-key-zyxwvutsrq9876"


@pytest.fixture
def anon(emulator: Emulator) -> Invoke:
    """The CLI against the emulator with no key in the environment."""
    return make_invoker(emulator, key=None)


@pytest.fixture
def two_profiles(anon: Invoke) -> Invoke:
    for profile, key in (("default", TEST_KEY), ("work", WORK_KEY)):
        saved = anon("--profile", profile, "auth", "login", "--with-token", input=key)
        assert saved.exit_code == 0, saved.output
    return anon


def test_auth_token_prints_the_active_key_alone_on_stdout(two_profiles: Invoke) -> None:
    result = two_profiles("auth", "token")
    assert (result.exit_code, result.stdout, result.stderr) == (0, TEST_KEY + "\n", "")
    assert two_profiles("auth", "token", "--profile", "work").stdout == WORK_KEY + "\n"
    from_env = two_profiles("auth", "token", env={"PIXELDOJO_API_KEY": "env-key-0123456789"})
    assert from_env.stdout == "env-key-0123456789\n"


def test_auth_token_on_a_terminal_warns_on_stderr_first(
    two_profiles: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Renderer, "stdout_is_terminal", lambda self: True)
    result = two_profiles("auth", "token")
    assert result.stdout == TEST_KEY + "\n"
    assert "warning: this prints your API key in full" in result.stderr


def test_auth_token_without_a_key_is_exit_3(anon: Invoke) -> None:
    result = anon("auth", "token")
    assert (result.exit_code, result.stdout) == (3, "")


def test_auth_list_shows_every_profile_masked_and_the_active_one(two_profiles: Invoke) -> None:
    table = two_profiles("auth", "list")
    assert table.exit_code == 0, table.output
    rows = [line.split("\t") for line in table.stdout.splitlines()]
    assert rows == [
        ["*", "default", "****" + TEST_KEY[-4:], ""],
        ["", "work", "****" + WORK_KEY[-4:], ""],
    ]
    assert TEST_KEY not in table.output and WORK_KEY not in table.output
    assert "Active: 'default' (the default)" in table.stderr
    as_json = json.loads(two_profiles("--profile", "work", "auth", "list", "--json").stdout)
    assert [(p["profile"], p["active"]) for p in as_json] == [("work", True), ("default", False)]
    assert as_json[0]["key"] == "****" + WORK_KEY[-4:]


def test_auth_switch_sets_the_default_profile_below_flag_and_environment(
    two_profiles: Invoke, isolated_env: Path
) -> None:
    switched = two_profiles("auth", "switch", "work")
    assert switched.exit_code == 0, switched.output
    config = tomllib.loads((isolated_env / "xdg_config_home/pixeldojo/config.toml").read_text())
    assert config["defaults"] == {"profile": "work"}
    assert two_profiles("auth", "token").stdout == WORK_KEY + "\n"
    assert "set with `pixeldojo auth switch`" in two_profiles("auth", "list").stderr
    by_env = two_profiles("auth", "token", env={"PIXELDOJO_PROFILE": "default"})
    assert by_env.stdout == TEST_KEY + "\n"  # environment beats the file
    assert two_profiles("--profile", "default", "auth", "token").stdout == TEST_KEY + "\n"
    assert two_profiles("auth", "switch", "default").exit_code == 0
    assert two_profiles("auth", "token").stdout == TEST_KEY + "\n"
    config = tomllib.loads((isolated_env / "xdg_config_home/pixeldojo/config.toml").read_text())
    assert "defaults" not in config


def test_auth_switch_to_an_unknown_profile_is_exit_2_with_the_way_to_create_it(
    two_profiles: Invoke,
) -> None:
    result = two_profiles("auth", "switch", "staging")
    assert result.exit_code == 2
    assert "profiles: default, work" in result.stderr
    assert "pixeldojo --profile staging auth login" in result.stderr
