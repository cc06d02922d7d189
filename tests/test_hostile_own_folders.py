"""Our folders and every opening of the ledger, against what is planted there
(issue 24, class 4, second round).

Every `sqlite3.connect` to the ledger goes through the guard, TAB's included:
a hard link, a FIFO or a link at the ledger's names is never written, waited
on or read through. A folder of ours below a top folder that is a link is
replaced; a top folder that is a link is followed only when the link and the
folder it points to are the user's and nobody else may write in that folder.
Folders are made and tightened through descriptors, so a link swapped in at
the name in between is never chmod-ed through.

The machine may run the tests as root: owner checks compare with
`os.geteuid()`, and "another user" is uid 65534 (given with chown, which only
root may do: those cases are skipped for anyone else, saying why).
"""

from __future__ import annotations

import os
import shlex
import sqlite3
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import pixeldojo_cli
from pixeldojo_cli.core.errors import LedgerError
from pixeldojo_cli.core.ownfiles import private_folder
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.store.ledger import ledger as ledger_module
from pixeldojo_cli.store.ledger import recent_job_ids
from pixeldojo_cli.store.settings import cache_dir, config_dir, data_dir, ledger_path

from conftest import PYTHON, Invoke, run_subprocess_env

pytestmark = pytest.mark.skipif(os.name != "posix", reason="links and modes as POSIX has them")

OTHER_UID = 65534  # "nobody": another user than the one running the tests
ROOT_ONLY = pytest.mark.skipif(
    os.geteuid() != 0, reason="only root can give a file to another user (chown)"
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def a_folder(path: Path, folder_mode: int = 0o755) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(folder_mode)
    return path


def plant_link(name: Path, target: Path) -> None:
    name.parent.mkdir(parents=True, exist_ok=True)
    name.symlink_to(target)


def tab(line: str, env: dict[str, str], timeout: float = 15) -> list[str]:
    """What bash is offered for the last word of `line`, as a separate process."""
    words = shlex.split(line) + [""] * line.endswith(" ")
    done = subprocess.run(
        [PYTHON, "-m", "pixeldojo_cli"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={
            **env,
            "COMP_WORDS": line,
            "COMP_CWORD": str(len(words) - 1),
            "_PIXELDOJO_COMPLETE": "complete_bash",
        },
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return done.stdout.split()


def submit(cli: Invoke, prompt: str = "a fox") -> str:
    result = cli("run", "flux-dev", prompt, "--no-wait")
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


# --- every ledger opening goes through the guard ---------------------------------------


def test_every_sqlite_connect_in_the_package_is_the_guards() -> None:
    package = Path(pixeldojo_cli.__file__).parent
    callers = sorted(
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if "sqlite3.connect(" in p.read_text(encoding="utf-8")
    )
    assert callers == ["store/ledger/guard.py"]


def test_tab_after_jobs_show_leaves_a_hard_link_at_the_ledgers_shm_untouched(
    emulator: Emulator, cli: Invoke, tmp_path: Path
) -> None:
    submit(cli)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"KEEP ME\n" * 10)
    os.link(victim, f"{ledger_path()}-shm")
    tab("pixeldojo jobs show ", run_subprocess_env(emulator))
    assert victim.read_bytes() == b"KEEP ME\n" * 10


def test_tab_after_jobs_show_with_a_fifo_at_the_ledger_answers_at_once(
    emulator: Emulator,
) -> None:
    data_dir().mkdir(parents=True)
    os.mkfifo(ledger_path())
    assert tab("pixeldojo jobs show ", run_subprocess_env(emulator), timeout=15) == []


def test_tab_after_jobs_show_never_reads_a_database_a_link_at_the_ledger_points_to(
    emulator: Emulator, tmp_path: Path
) -> None:
    victim = a_folder(tmp_path / "victim")
    db = sqlite3.connect(victim / "app.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE jobs (id, model, status, base_url, profile, submitted_at)")
    db.execute(
        "INSERT INTO jobs VALUES ('job_someone_elses', 'm', 's', ?, 'default', '2030')",
        (emulator.base_url.rstrip("/"),),
    )
    db.commit()
    db.close()
    plant_link(ledger_path(), victim / "app.db")
    assert tab("pixeldojo jobs show ", run_subprocess_env(emulator)) == []
    assert sorted(p.name for p in victim.iterdir()) == ["app.db"]  # no -wal, no -shm
    kwargs: dict[str, Any] = {"base_url": emulator.base_url, "profile": "default"}
    assert recent_job_ids(**kwargs) == []


def test_a_dangling_link_swapped_in_after_the_check_is_refused_and_makes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = a_folder(tmp_path / "victim")
    path = tmp_path / "data" / "jobs.sqlite3"
    ledger_module.Ledger(path).close()
    checked: Callable[..., int | None] = ledger_module.claim_ledger

    def check_then_swap(name: Path, **options: Any) -> int | None:
        fd = checked(name, **options)
        os.rename(name, f"{name}.real")
        name.symlink_to(victim / "made-by-sqlite")
        return fd

    monkeypatch.setattr(ledger_module, "claim_ledger", check_then_swap)
    with pytest.raises(LedgerError, match="changed while it was opened"):
        ledger_module.Ledger(path)
    assert list(victim.iterdir()) == []


# --- links at our folders --------------------------------------------------------------


def test_a_link_at_the_rate_budget_folder_is_replaced_and_its_target_untouched(
    cli: Invoke, tmp_path: Path
) -> None:
    victim = a_folder(tmp_path / "victim")
    budget = cache_dir() / "ratelimit"
    plant_link(budget, victim)
    assert cli("models").exit_code == 0
    assert list(victim.iterdir()) == [] and mode(victim) == 0o755
    assert stat.S_ISDIR(budget.lstat().st_mode) and mode(budget) == 0o700
    assert [mode(p) for p in budget.iterdir()] == [0o600]  # the budget went on, in it


def test_a_top_folder_linked_to_a_folder_of_the_users_is_followed_and_made_0700(
    cli: Invoke, tmp_path: Path
) -> None:
    dotfiles = a_folder(tmp_path / "dotfiles" / "pixeldojo", 0o755)
    plant_link(config_dir(), dotfiles)
    result = cli("config", "set", "poll_interval", "5")
    assert result.exit_code == 0, result.output
    assert (dotfiles / "config.toml").is_file() and config_dir().is_symlink()
    assert mode(dotfiles) == 0o700 and dotfiles.stat().st_uid == os.geteuid()


def give_away(path: Path) -> None:
    os.chown(path, OTHER_UID, OTHER_UID, follow_symlinks=False)


REFUSED = {
    "a folder others may write in": (0o775, None, "a folder others may write in"),
    "a world-writable folder": (0o777, None, "a folder others may write in"),
    "another user's folder": (0o755, "folder", "a folder of another user"),
    "another user's link": (0o755, "link", "a symbolic link of another user"),
}


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(name, marks=ROOT_ONLY) if owner else name
        for name, (_, owner, _) in REFUSED.items()
    ],
)
def test_a_top_folder_link_that_is_not_all_the_users_is_refused_in_one_line(
    cli: Invoke, tmp_path: Path, case: str
) -> None:
    folder_mode, given_away, reason = REFUSED[case]
    victim = a_folder(tmp_path / "victim", folder_mode)
    plant_link(config_dir(), victim)
    if given_away == "folder":
        give_away(victim)
    elif given_away == "link":
        give_away(config_dir())
    result = cli("config", "set", "poll_interval", "5")
    assert result.exit_code == 2, result.output
    error = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(error) == 1 and reason in error[0] and str(config_dir()) in error[0]
    assert list(victim.iterdir()) == [] and mode(victim) == folder_mode


def test_a_data_folder_link_to_a_folder_others_may_write_in_gets_nothing_from_run(
    cli: Invoke, tmp_path: Path
) -> None:
    victim = a_folder(tmp_path / "victim", 0o777)
    plant_link(data_dir(), victim)
    job_id = submit(cli)
    assert list(victim.iterdir()) == [] and mode(victim) == 0o777
    assert job_id.startswith("job_")


# --- folders made and tightened through a descriptor -----------------------------------


def test_a_folder_swapped_for_a_link_right_after_it_is_made_is_refused_not_chmod_ed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = a_folder(tmp_path / "victim", 0o755)
    made = tmp_path / "parent" / "pixeldojo"
    made.parent.mkdir()
    real_mkdir = os.mkdir

    def mkdir_then_swap(path: Any, *args: Any, **kwargs: Any) -> None:
        real_mkdir(path, *args, **kwargs)
        if Path(path) == made:  # the attacker wins the race
            os.rename(made, made.with_name("moved"))
            made.symlink_to(victim)

    monkeypatch.setattr(os, "mkdir", mkdir_then_swap)
    with pytest.raises(OSError):
        private_folder(made)
    assert mode(victim) == 0o755


def test_an_older_folder_swapped_for_a_link_before_it_is_tightened_is_not_chmod_ed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = a_folder(tmp_path / "victim", 0o777)
    ours = a_folder(tmp_path / "pixeldojo", 0o755)  # older and looser: to be tightened
    real_lstat = os.lstat
    looks = []

    def lstat_then_swap(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        info = real_lstat(path, *args, **kwargs)
        if Path(path) == ours and not ours.is_symlink():
            looks.append(path)
            if len(looks) == 2:  # after the last look by name, before the chmod
                os.rename(ours, ours.with_name("moved"))
                ours.symlink_to(victim)
        return info

    monkeypatch.setattr(os, "lstat", lstat_then_swap)
    with pytest.raises(OSError):
        private_folder(ours)
    assert mode(victim) == 0o777


# --- saying what happened when the ledger is refused ------------------------------------


def test_with_the_ledger_refused_run_and_the_sweep_say_where_the_job_is_kept(
    cli: Invoke, tmp_path: Path
) -> None:
    plant_link(ledger_path(), tmp_path / "victim.db")
    run = cli("run", "flux-dev", "a fox", "--no-wait")
    assert run.exit_code == 0, run.output
    job_id = run.stdout.strip()
    assert "busy or read-only" not in run.stderr
    assert "could not be opened" in run.stderr and "pending-records.jsonl" in run.stderr
    sweep = cli("download", "--pending")
    assert "Nothing pending" not in sweep.stderr
    assert job_id in sweep.stderr and "pixeldojo download" in sweep.stderr


def test_a_config_folder_link_that_is_not_all_the_users_is_not_read_either(
    cli: Invoke, tmp_path: Path
) -> None:
    planted = a_folder(tmp_path / "planted", 0o777)
    (planted / "config.toml").write_text('[defaults]\nbase_url = "http://127.0.0.9:1/api"\n')
    plant_link(config_dir(), planted)
    result = cli("config", "get", "base_url")
    assert result.exit_code == 2, result.output
    assert "a folder others may write in" in result.stderr and "127.0.0.9" not in result.stdout
