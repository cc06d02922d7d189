"""Names and paths other tools use: PIXELDOJO_API_BASE as an alias of
PIXELDOJO_BASE_URL, and XDG_*_HOME honoured on every OS when set."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import platformdirs
import pytest
from test_completion import complete

from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.store import settings

from conftest import FAST, pixeldojo, run_subprocess_env

CLOSED = "http://127.0.0.1:9/api/v1"  # nothing listens on the discard port


def alias_env(emulator: Emulator, **extra: str) -> dict[str, str]:
    """The environment of a script that names the API with PIXELDOJO_API_BASE only."""
    env = run_subprocess_env(emulator, **extra)
    env["PIXELDOJO_API_BASE"] = env.pop("PIXELDOJO_BASE_URL")
    return env


def test_api_base_alias_sets_the_base_url(emulator: Emulator) -> None:
    done = pixeldojo("models", "--json", env=alias_env(emulator))
    assert done.returncode == 0, done.stderr
    assert emulator.requests_to("GET", r"/models$")
    shown = pixeldojo("config", "get", "base_url", env=alias_env(emulator))
    assert shown.stdout.strip() == emulator.base_url
    assert "PIXELDOJO_API_BASE" in shown.stderr


def test_base_url_wins_over_api_base(emulator: Emulator) -> None:
    env = run_subprocess_env(emulator, PIXELDOJO_API_BASE=CLOSED)
    done = pixeldojo("models", "--json", env=env)
    assert done.returncode == 0, done.stderr
    shown = pixeldojo("config", "get", "base_url", env=env)
    assert shown.stdout.strip() == emulator.base_url
    assert "PIXELDOJO_BASE_URL" in shown.stderr


def test_api_base_alias_reaches_tab_completion(emulator: Emulator) -> None:
    offered = complete("pixeldojo run fl", alias_env(emulator))
    assert "flux-dev" in offered


def test_xdg_config_home_holds_the_config_file(tmp_path: Path) -> None:
    home = tmp_path / "elsewhere-config"
    env = run_subprocess_env(XDG_CONFIG_HOME=str(home))
    where = pixeldojo("config", "path", env=env)
    assert where.stdout.strip() == str(home / "pixeldojo" / "config.toml")
    assert pixeldojo("config", "set", "poll_interval", "3", env=env).returncode == 0
    assert "poll_interval = 3" in (home / "pixeldojo" / "config.toml").read_text()


def test_xdg_data_and_cache_homes_hold_the_ledger_and_cache(
    emulator: Emulator, tmp_path: Path
) -> None:
    data, cache = tmp_path / "d", tmp_path / "c"
    env = run_subprocess_env(emulator, XDG_DATA_HOME=str(data), XDG_CACHE_HOME=str(cache))
    done = pixeldojo("run", "flux-dev", "a test", *FAST, "-o", str(tmp_path / "out"), env=env)
    assert done.returncode == 0, done.stderr
    assert (data / "pixeldojo" / "jobs.sqlite3").is_file()
    assert pixeldojo("models", env=env).returncode == 0
    assert list((cache / "pixeldojo").glob("models-*.json"))
    assert (cache / "pixeldojo" / "ratelimit").is_dir()


def test_a_relative_xdg_path_is_ignored(tmp_path: Path, isolated_env: Path) -> None:
    env = run_subprocess_env(XDG_CONFIG_HOME="relative/config")
    where = pixeldojo("config", "path", env=env, cwd=tmp_path)
    if sys.platform in ("win32", "darwin"):
        pytest.skip("the platform folder is tested in-process below")
    assert where.stdout.strip() == str(isolated_env / ".config" / "pixeldojo" / "config.toml")


FOLDERS: dict[str, Callable[[], Path]] = {
    "XDG_CONFIG_HOME": settings.config_dir,
    "XDG_DATA_HOME": settings.data_dir,
    "XDG_CACHE_HOME": settings.cache_dir,
    "XDG_STATE_HOME": settings.state_dir,
}
PLATFORM = {  # what platformdirs answers there, whatever the XDG variables say
    "darwin": "/Users/u/Library/Application Support/{}",
    "win32": "C:/Users/u/AppData/Local/{}",
}


def pretend_to_be(system: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process as if on `system`: sys.platform, and platformdirs' answers there."""
    monkeypatch.setattr(sys, "platform", system)
    for name in ("user_config_dir", "user_data_dir", "user_cache_dir", "user_state_dir"):
        monkeypatch.setattr(
            platformdirs, name, lambda app, appauthor=None: PLATFORM[system].format(app)
        )


@pytest.mark.parametrize("system", sorted(PLATFORM))
@pytest.mark.parametrize("variable", sorted(FOLDERS))
def test_xdg_homes_are_honoured_on_macos_and_windows(
    system: str, variable: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pretend_to_be(system, monkeypatch)
    folder = FOLDERS[variable]
    monkeypatch.setenv(variable, str(tmp_path / "xdg"))
    assert folder() == tmp_path / "xdg" / "pixeldojo"
    monkeypatch.setenv(variable, "relative")  # not absolute: ignored (XDG spec)
    assert folder() == Path(PLATFORM[system].format("pixeldojo"))
    monkeypatch.delenv(variable)
    assert folder() == Path(PLATFORM[system].format("pixeldojo"))


def test_ledger_config_and_budget_follow_the_xdg_homes_on_macos(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pretend_to_be("darwin", monkeypatch)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert settings.config_path() == tmp_path / "cfg" / "pixeldojo" / "config.toml"
    assert settings.ledger_path() == tmp_path / "data" / "pixeldojo" / "jobs.sqlite3"
    assert settings.rate_budget_dir({}) == tmp_path / "cache" / "pixeldojo" / "ratelimit"


def test_the_alias_names_its_source_in_resolved_settings() -> None:
    both = {"PIXELDOJO_API_BASE": "http://a.test/v1", "PIXELDOJO_BASE_URL": "http://b.test/v1"}
    assert settings.resolve_settings(env=both, config={}).base_url.value == "http://b.test/v1"
    alone = settings.resolve_settings(env={"PIXELDOJO_API_BASE": "http://a.test/v1"}, config={})
    assert (alone.base_url.value, alone.base_url.source) == (
        "http://a.test/v1",
        "env:PIXELDOJO_API_BASE",
    )
    flag = settings.resolve_settings(base_url="http://f.test/v1", env=both, config={})
    assert flag.base_url.source == "flag"
