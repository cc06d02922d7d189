"""Files of ours are never written through a link (issue 24, class 4).

A link (or a hard link, a FIFO) planted at the name of one of our files (the
rate-budget file, `pending-records.jsonl`, the ledger and its companions, the
config and its lock, the model cache, an output or its sidecar) is replaced or
refused, and the file it points to is left as it was. Everything the CLI makes
in its config, data and cache folders is a 0600 file in a 0700 folder whatever
the umask; outputs keep the umask's ordinary mode.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from pixeldojo_cli.api.origin import origin_of
from pixeldojo_cli.api.ratelimit import budget_file_name
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.store.ledger import sidefile
from pixeldojo_cli.store.settings import cache_dir, config_dir, data_dir, ledger_path

from conftest import FAST, PYTHON, TEST_KEY, Invoke, run_subprocess_env

pytestmark = pytest.mark.skipif(os.name != "posix", reason="links and modes as POSIX has them")

VICTIM_TEXT = "the user's own file: never to be written through a link\n"


def victim(tmp_path: Path, text: str = VICTIM_TEXT) -> Path:
    path = tmp_path / "victim.txt"
    path.write_text(text)
    return path


def plant_link(name: Path, target: Path) -> None:
    name.parent.mkdir(parents=True, exist_ok=True)
    name.unlink(missing_ok=True)
    name.symlink_to(target)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def is_regular(path: Path) -> bool:
    return stat.S_ISREG(path.lstat().st_mode)


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1


def run_job(cli: Invoke, *args: str) -> str:
    result = cli("run", "flux-dev", "a fox", "--json", *FAST, *args)
    assert result.exit_code == 0, result.output
    return str(json.loads(result.stdout)["jobId"])


# --- links at our names ------------------------------------------------------------


def test_a_link_at_the_budget_file_is_replaced_and_its_target_kept(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    target = victim(tmp_path)
    budget = cache_dir() / "ratelimit" / budget_file_name(origin_of(emulator.base_url), TEST_KEY)
    plant_link(budget, target)
    result = cli("models")
    assert result.exit_code == 0, result.output
    assert target.read_text() == VICTIM_TEXT
    assert is_regular(budget) and mode(budget) == 0o600
    assert json.loads(budget.read_bytes())["v"] == 1  # the budget went on, in a file of its own


def test_a_link_at_the_side_file_is_replaced_and_its_target_not_truncated(
    cli: Invoke, tmp_path: Path
) -> None:
    run_job(cli)  # a ledger exists
    target = victim(tmp_path)
    side = sidefile.pending_records_path(ledger_path())
    plant_link(side, target)
    result = cli("download", "--pending")
    assert result.exit_code == 0, result.output
    assert target.read_text() == VICTIM_TEXT
    assert not side.is_symlink()


def test_a_record_kept_for_later_replaces_a_link_at_the_side_file(tmp_path: Path) -> None:
    target = victim(tmp_path)
    ledger = tmp_path / "data" / "jobs.sqlite3"
    side = sidefile.pending_records_path(ledger)
    plant_link(side, target)
    sidefile.defer({"op": "lost", "at": "2025-01-01T00:00:00+00:00"}, ledger)
    assert target.read_text() == VICTIM_TEXT
    assert is_regular(side) and mode(side) == 0o600
    assert [r["op"] for r in sidefile.parse_records(side.read_bytes())] == ["lost"]


@pytest.mark.parametrize("kind", ["dangling", "empty file"])
def test_a_link_at_the_ledger_is_refused_in_one_line_and_the_run_goes_on(
    cli: Invoke, tmp_path: Path, kind: str
) -> None:
    target = tmp_path / "victim.db"
    if kind == "empty file":
        target.write_bytes(b"")
    plant_link(ledger_path(), target)
    result = cli("run", "flux-dev", "a fox", *FAST)
    assert result.exit_code == 0, result.output
    assert (target.read_bytes() == b"") if kind == "empty file" else not target.exists()
    refusal = [line for line in result.stderr.splitlines() if "is a symbolic link" in line]
    assert len(refusal) == 1 and str(ledger_path()) in refusal[0] and "rm " in refusal[0]
    assert ledger_path().is_symlink()  # refused, not replaced: it may be the user's own link


def test_a_hard_link_at_the_ledger_is_refused(cli: Invoke, tmp_path: Path) -> None:
    target = tmp_path / "victim.db"
    target.write_bytes(b"")
    ledger_path().parent.mkdir(parents=True, exist_ok=True)
    os.link(target, ledger_path())
    result = cli("run", "flux-dev", "a fox", *FAST)
    assert result.exit_code == 0, result.output
    assert target.read_bytes() == b""
    assert "has other names (hard links)" in result.stderr


@pytest.mark.parametrize("suffix", ["-wal", "-journal"])
def test_a_link_at_a_ledger_companion_is_removed_and_its_target_kept(
    cli: Invoke, tmp_path: Path, suffix: str
) -> None:
    run_job(cli)
    target = tmp_path / "victim.bin"
    target.write_bytes(b"")
    companion = Path(f"{ledger_path()}{suffix}")
    plant_link(companion, target)
    run_job(cli)
    assert target.read_bytes() == b""
    assert not companion.is_symlink()
    listed = cli("jobs", "list", "--json")
    assert len(json.loads(listed.stdout)) == 2  # both jobs recorded


def test_a_link_at_the_config_lock_is_replaced_and_nothing_made_through_it(
    cli: Invoke, tmp_path: Path
) -> None:
    target = tmp_path / "made-through-the-link"
    lock = config_dir() / ".config.lock"
    plant_link(lock, target)
    result = cli("config", "set", "poll_interval", "5")
    assert result.exit_code == 0, result.output
    assert not target.exists()
    assert is_regular(lock) and mode(lock) == 0o600


def test_a_link_at_the_config_file_is_replaced_on_write_and_its_target_kept(
    cli: Invoke, tmp_path: Path
) -> None:
    target = victim(tmp_path, '[defaults]\npoll_interval = "3"\n')
    config = config_dir() / "config.toml"
    plant_link(config, target)
    result = cli("config", "set", "poll_interval", "5")
    assert result.exit_code == 0, result.output
    assert target.read_text() == '[defaults]\npoll_interval = "3"\n'
    assert is_regular(config) and mode(config) == 0o600


def test_a_fifo_for_a_config_file_is_refused_in_one_line_not_waited_on(tmp_path: Path) -> None:
    folder = tmp_path / "home" / "xdg_config_home" / "pixeldojo"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "config.toml")
    env = run_subprocess_env(XDG_CONFIG_HOME=str(folder.parent))
    done = subprocess.run(
        [PYTHON, "-m", "pixeldojo_cli", "config", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    assert "config.toml" in done.stderr and one_line(done.stderr.split("Hint")[0])


def test_a_link_in_the_model_cache_is_not_read_and_is_replaced(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    from pixeldojo_cli.api.model_cache import ModelCache

    planted = [{"id": "planted-model", "name": "x", "type": "image"}]
    target = victim(tmp_path, json.dumps(planted))
    cache = ModelCache(cache_dir(), emulator.base_url)
    plant_link(cache.path("models"), target)
    assert "planted-model" not in cache.model_ids()
    assert cli("models").exit_code == 0
    assert target.read_text() == json.dumps(planted)
    assert is_regular(cache.path("models")) and mode(cache.path("models")) == 0o600


def test_links_at_an_output_and_its_sidecar_are_replaced_and_their_targets_kept(
    cli: Invoke, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    job_id = run_job(cli, "-o", str(out))
    picture, sidecar = victim(tmp_path), tmp_path / "victim.json"
    claim = json.dumps({"jobId": "job_someone_else"})  # read through the link: another name
    sidecar.write_text(claim)
    plant_link(out / f"{job_id}-1.png", picture)
    plant_link(out / f"{job_id}.json", sidecar)
    result = cli("download", job_id, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert picture.read_text() == VICTIM_TEXT
    assert sidecar.read_text() == claim
    assert is_regular(out / f"{job_id}-1.png") and is_regular(out / f"{job_id}.json")
    assert sorted(p.name for p in out.iterdir()) == [f"{job_id}-1.png", f"{job_id}.json"]


# --- modes whatever the umask --------------------------------------------------------


def run_with_umask(umask: int, env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [PYTHON, "-m", "pixeldojo_cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        umask=umask,
    )
    assert done.returncode == 0, done.stderr


def everything_under(folder: Path) -> list[Path]:
    return [folder, *folder.rglob("*")]


@pytest.mark.parametrize("umask", [0o000, 0o077, 0o022])
def test_everything_in_our_folders_is_0600_in_0700_whatever_the_umask(
    emulator: Emulator, tmp_path: Path, umask: int
) -> None:
    fresh = tmp_path / "fresh"  # not there yet: every folder on the way is ours
    env = run_subprocess_env(
        emulator,
        XDG_CONFIG_HOME=str(fresh / "config"),
        XDG_DATA_HOME=str(fresh / "data" / "deep"),
        XDG_CACHE_HOME=str(fresh / "cache"),
    )
    out = tmp_path / "out"
    run_with_umask(umask, env, "config", "set", "poll_interval", "5")
    run_with_umask(umask, env, "run", "flux-dev", "a fox", "-o", str(out), *FAST)
    run_with_umask(umask, env, "models")
    ours = [p for p in everything_under(fresh)]
    assert any(p.name == "jobs.sqlite3" for p in ours)
    assert any(p.name.startswith("models-") for p in ours)
    assert any(p.parent.name == "ratelimit" for p in ours)
    wrong = [(str(p), oct(mode(p))) for p in ours if mode(p) != (0o700 if p.is_dir() else 0o600)]
    assert wrong == []
    outputs = list(out.iterdir())
    assert outputs and all(mode(p) == 0o666 & ~umask for p in outputs)


def test_an_older_looser_ledger_and_its_folder_are_tightened(cli: Invoke) -> None:
    run_job(cli)
    ledger = ledger_path()
    for path in (ledger, *ledger.parent.glob("jobs.sqlite3-*")):
        path.chmod(0o644)
    ledger.parent.chmod(0o777)
    assert cli("jobs", "list").exit_code == 0
    assert mode(ledger) == 0o600 and mode(data_dir()) == 0o700
    assert all(mode(p) == 0o600 for p in ledger.parent.glob("jobs.sqlite3-*"))
