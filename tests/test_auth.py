"""Keys and settings: login, status, logout, config, and the key never printed."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from pixeldojo_cli.cli.commands import auth as auth_cmd
from pixeldojo_cli.emulator import Emulator

from conftest import FAST, TEST_KEY, Invoke, make_invoker

OTHER_KEY = "other-key-zyxwvutsrq9876"


def config_file(home: Path) -> Path:
    return home / "xdg_config_home" / "pixeldojo" / "config.toml"


def read_config(home: Path) -> dict[str, object]:
    return tomllib.loads(config_file(home).read_text())


@pytest.fixture
def anon(emulator: Emulator) -> Invoke:
    """The CLI against the emulator with no key in the environment."""
    return make_invoker(emulator, key=None)


def test_login_with_token_writes_a_private_file_in_a_private_folder(
    anon: Invoke, isolated_env: Path
) -> None:
    result = anon("auth", "login", "--with-token", input=TEST_KEY + "\n")
    assert result.exit_code == 0, result.output
    path = config_file(isolated_env)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert read_config(isolated_env) == {"profiles": {"default": {"api_key": TEST_KEY}}}
    assert TEST_KEY not in result.output
    assert "****" + TEST_KEY[-4:] in result.stderr


def test_login_asks_with_hidden_input_on_a_terminal(
    anon: Invoke, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth_cmd, "stdin_is_terminal", lambda: True)
    result = anon("auth", "login", input=TEST_KEY + "\n")
    assert result.exit_code == 0, result.output
    assert TEST_KEY not in result.output  # hidden: not echoed
    assert read_config(isolated_env)["profiles"] == {"default": {"api_key": TEST_KEY}}


def test_login_without_a_terminal_or_with_token_is_exit_2(anon: Invoke, isolated_env: Path) -> None:
    result = anon("auth", "login", input=TEST_KEY)
    assert result.exit_code == 2
    assert "--with-token" in result.stderr
    assert not config_file(isolated_env).exists()


def test_login_verifies_the_key_with_one_authenticated_request(
    anon: Invoke, emulator: Emulator
) -> None:
    assert anon("auth", "login", "--with-token", input=TEST_KEY).exit_code == 0
    [check] = emulator.requests_to("GET", r"/jobs")
    assert check.authorization == f"Bearer {TEST_KEY}"
    assert not emulator.requests_to("POST", r".*")  # nothing spent


def test_a_rejected_key_exits_3_and_is_not_saved(
    make_emulator: Callable[..., Emulator], isolated_env: Path
) -> None:
    emulator = make_emulator(key=OTHER_KEY)
    result = make_invoker(emulator, key=None)("auth", "login", "--with-token", input=TEST_KEY)
    assert result.exit_code == 3
    assert "unauthorized" in result.stderr
    assert not config_file(isolated_env).exists()
    assert TEST_KEY not in result.output


def test_login_saves_under_the_chosen_profile_and_keeps_the_rest(
    anon: Invoke, isolated_env: Path
) -> None:
    assert anon("auth", "login", "--with-token", input=TEST_KEY).exit_code == 0
    assert anon("config", "set", "output_dir", "/tmp/out").exit_code == 0
    result = anon("--profile", "work", "auth", "login", "--with-token", input=OTHER_KEY)
    assert result.exit_code == 0, result.output
    assert read_config(isolated_env) == {
        "profiles": {"default": {"api_key": TEST_KEY}, "work": {"api_key": OTHER_KEY}},
        "defaults": {"output_dir": "/tmp/out"},
    }


def test_empty_or_garbled_token_is_exit_2(anon: Invoke, isolated_env: Path) -> None:
    assert anon("auth", "login", "--with-token", input="\n").exit_code == 2
    assert anon("auth", "login", "--with-token", input="two words").exit_code == 2
    assert not config_file(isolated_env).exists()


def test_status_shows_the_last_4_characters_and_never_the_key(
    anon: Invoke, isolated_env: Path
) -> None:
    anon("auth", "login", "--with-token", input=TEST_KEY)
    result = anon("auth", "status")
    assert result.exit_code == 0, result.output
    assert TEST_KEY not in result.output
    assert f"****{TEST_KEY[-4:]}" in result.stdout
    assert str(config_file(isolated_env)) in result.stdout
    assert "Accepted:    yes" in result.stdout
    as_json = anon("auth", "status", "--json")
    assert TEST_KEY not in as_json.output
    report = __import__("json").loads(as_json.stdout)
    assert report["key"] == f"****{TEST_KEY[-4:]}" and report["accepted"] is True


def test_env_beats_the_file_and_the_flag_beats_env(anon: Invoke) -> None:
    anon("auth", "login", "--with-token", input=TEST_KEY)
    env = {"PIXELDOJO_API_KEY": OTHER_KEY}
    from_env = anon("auth", "status", "--offline", env=env)
    assert f"****{OTHER_KEY[-4:]}" in from_env.stdout
    assert "PIXELDOJO_API_KEY environment variable" in from_env.stdout
    flag_key = "flag-key-000000001111"
    from_flag = anon("--api-key", flag_key, "auth", "status", "--offline", env=env)
    assert "****1111" in from_flag.stdout and "--api-key flag" in from_flag.stdout
    assert flag_key not in from_flag.output


def test_status_without_a_key_exits_3_with_the_three_ways(anon: Invoke) -> None:
    result = anon("auth", "status")
    assert result.exit_code == 3
    for way in ("auth login", "PIXELDOJO_API_KEY", "--api-key"):
        assert way in result.stderr


def test_status_with_a_rejected_key_exits_3(make_emulator: Callable[..., Emulator]) -> None:
    emulator = make_emulator(key=OTHER_KEY)
    result = make_invoker(emulator)("auth", "status", "--json")
    assert result.exit_code == 3
    report = __import__("json").loads(result.stdout)
    assert report["accepted"] is False and report["error"]["code"] == "unauthorized"


def test_logout_removes_only_that_profiles_key(anon: Invoke, isolated_env: Path) -> None:
    anon("auth", "login", "--with-token", input=TEST_KEY)
    anon("--profile", "work", "auth", "login", "--with-token", input=OTHER_KEY)
    anon("--profile", "work", "config", "set", "base_url", "http://127.0.0.1:9/api/v1")
    result = anon("auth", "logout", "--profile", "work")
    assert result.exit_code == 0, result.output
    assert read_config(isolated_env)["profiles"] == {
        "default": {"api_key": TEST_KEY},
        "work": {"base_url": "http://127.0.0.1:9/api/v1"},
    }
    assert anon("auth", "logout").exit_code == 0
    assert read_config(isolated_env) == {
        "profiles": {"work": {"base_url": "http://127.0.0.1:9/api/v1"}}
    }
    assert anon("auth", "logout", "--profile", "work").exit_code == 0  # not logged in: fine
    again = anon("auth", "logout")
    assert again.exit_code == 0 and "nothing to do" in again.stderr


def test_logout_of_the_last_key_leaves_no_empty_profiles_table(
    anon: Invoke, isolated_env: Path
) -> None:
    anon("auth", "login", "--with-token", input=TEST_KEY)
    anon("config", "set", "output_dir", "out")
    assert anon("auth", "logout").exit_code == 0
    assert read_config(isolated_env) == {"defaults": {"output_dir": "out"}}


def test_malformed_config_is_a_one_line_error_and_login_does_not_overwrite_it(
    anon: Invoke, isolated_env: Path
) -> None:
    path = config_file(isolated_env)
    path.parent.mkdir(parents=True)
    path.write_text("[profiles.default]\napi_key = oops no quotes\n")
    for args in (("auth", "status"), ("models",), ("config", "list")):
        result = anon(*args)
        assert result.exit_code == 2, args
        assert str(path) in result.stderr and "line 2" in result.stderr
        assert "Traceback" not in result.output
    assert anon("auth", "login", "--with-token", input=TEST_KEY).exit_code == 2
    assert path.read_text() == "[profiles.default]\napi_key = oops no quotes\n"


def test_a_readable_config_file_gets_a_warning_with_the_chmod(
    anon: Invoke, isolated_env: Path
) -> None:
    anon("auth", "login", "--with-token", input=TEST_KEY)
    path = config_file(isolated_env)
    path.chmod(0o644)
    result = anon("auth", "status", "--offline")
    assert f"chmod 600 {path}" in result.stderr


def test_verbose_output_never_holds_the_key(anon: Invoke) -> None:
    login = anon("-v", "auth", "login", "--with-token", input=TEST_KEY)
    run = anon("-v", "run", "flux-dev", "a fox", *FAST)
    status = anon("-v", "auth", "status")
    for result in (login, run, status):
        assert result.exit_code == 0, result.output
        assert TEST_KEY not in result.output
    assert "Authorization: Bearer ****" in run.stderr


def test_an_api_error_that_echoes_the_key_is_masked(
    make_emulator: Callable[..., Emulator],
) -> None:
    emulator = make_emulator()
    emulator.add_fault("status", status=401, message=f"bad token {TEST_KEY}", count=-1)
    result = make_invoker(emulator)("models", "--json")
    assert result.exit_code == 3
    assert f"bad token ****{TEST_KEY[-4:]}" in result.stderr
    assert f"bad token ****{TEST_KEY[-4:]}" in result.stdout  # the --json error document
    assert TEST_KEY not in result.output


def test_config_set_get_unset_and_list(anon: Invoke, isolated_env: Path) -> None:
    assert anon("config", "set", "poll_interval", "0.5").exit_code == 0
    got = anon("config", "get", "poll_interval")
    assert got.stdout == "0.5\n" and "config file" in got.stderr
    listed = __import__("json").loads(anon("config", "list", "--json").stdout)
    assert listed["settings"]["poll_interval"] == {"value": 0.5, "source": "config file"}
    assert listed["settings"]["rate_limit"] == {"value": 60.0, "source": "default"}
    assert anon("config", "unset", "poll_interval").exit_code == 0
    assert anon("config", "get", "poll_interval").stdout == "2.0\n"
    assert anon("config", "path").stdout.strip() == str(config_file(isolated_env))


@pytest.mark.parametrize(
    ("key", "value"),
    [("base_url", "ftp://x"), ("poll_interval", "0"), ("rate_limit", "nan"), ("colour", "x")],
)
def test_config_set_validates(anon: Invoke, isolated_env: Path, key: str, value: str) -> None:
    result = anon("config", "set", key, value)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert not config_file(isolated_env).exists()


def test_config_will_not_hold_the_key(anon: Invoke) -> None:
    result = anon("config", "set", "api_key", TEST_KEY)
    assert result.exit_code == 2 and "auth login" in result.stderr
    assert TEST_KEY not in result.output


def test_a_bad_value_in_the_file_is_a_clear_error(anon: Invoke, isolated_env: Path) -> None:
    path = config_file(isolated_env)
    path.parent.mkdir(parents=True)
    path.write_text('[defaults]\npoll_interval = "soon"\n')
    result = anon("run", "flux-dev", "x")
    assert result.exit_code == 2
    assert str(path) in result.stderr and "poll_interval" in result.stderr


def test_config_base_url_is_used_by_the_next_command(anon: Invoke, emulator: Emulator) -> None:
    plain = make_invoker(None, key=None)  # no PIXELDOJO_BASE_URL in the environment
    assert plain("config", "set", "base_url", emulator.base_url).exit_code == 0
    result = plain("models", "--json")
    assert result.exit_code == 0, result.output
    assert emulator.requests_to("GET", r"/models$")
