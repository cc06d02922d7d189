"""An outside reviewer's attacks on `pixeldojo gallery` and the contact sheet
(issue 28): a page or grid written over a saved output, hand-edited ledger values
of the wrong type, an output a browser would run, control characters, `--open`
with a name like an option, and the wording of a few lines."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest
from typer.testing import Result

from tests.conftest import FAST, Invoke
from tests.test_gallery import run_job


def sha(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def edit_ledger(sql: str, *args: object) -> None:
    """A hand edit of the ledger, as `sqlite3 jobs.sqlite3 "update ..."` makes it."""
    from pixeldojo_cli.store.settings import ledger_path

    db = sqlite3.connect(ledger_path())
    try:
        if args:
            db.execute(sql, args)
        else:
            db.executescript(sql)
        db.commit()
    finally:
        db.close()


def refused_and_untouched(result: Result, output: str, before: str, page: Path) -> None:
    """Exit 2 on one line, the output as it was, and nothing written."""
    assert result.exit_code == 2, result.output
    assert "is a saved output of job" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sha(output) == before
    assert not page.exists()  # nothing written: neither the page nor the grid


# --- BREAK 1: never written over any saved output ----------------------------------


def test_grid_never_overwrites_the_output_of_a_job_the_filters_left_out(cli: Invoke) -> None:
    older = run_job(cli, "flux-dev", "first")
    run_job(cli, "flux-dev", "second")
    before = sha(older)
    result = cli("gallery", "--limit", "1", "-o", "p.html", "--grid", older)
    refused_and_untouched(result, older, before, Path("p.html"))


def test_grid_never_overwrites_an_output_reached_through_a_linked_folder(
    cli: Invoke, tmp_path: Path
) -> None:
    output = run_job(cli, "flux-dev", "first", "-o", "out")
    (tmp_path / "alias").symlink_to(tmp_path / "out")
    before = sha(output)
    result = cli("gallery", "-o", "q.html", "--grid", f"alias/{Path(output).name}")
    refused_and_untouched(result, output, before, Path("q.html"))


def test_grid_never_overwrites_an_output_through_a_link_at_its_name(
    cli: Invoke, tmp_path: Path
) -> None:
    output = run_job(cli, "flux-dev", "first")
    (tmp_path / "link.png").symlink_to(os.path.abspath(output))
    before = sha(output)
    result = cli("gallery", "-o", "k.html", "--grid", "link.png")
    refused_and_untouched(result, output, before, Path("k.html"))


def test_grid_never_overwrites_the_output_of_another_profile(cli: Invoke) -> None:
    other = cli("--profile", "work", "run", "flux-dev", "first", *FAST)
    assert other.exit_code == 0, other.output
    theirs = other.stdout.splitlines()[0]
    run_job(cli, "flux-dev", "mine")
    before = sha(theirs)
    result = cli("gallery", "-o", "p.html", "--grid", theirs)
    refused_and_untouched(result, theirs, before, Path("p.html"))


def test_page_never_overwrites_a_saved_html_output_of_a_job_not_shown(cli: Invoke) -> None:
    png = Path(run_job(cli, "flux-dev", "a page the server sent"))
    served = png.with_suffix(".html")
    png.rename(served)
    edit_ledger("UPDATE files SET path = ?", str(served.resolve()))
    run_job(cli, "seedream-4", "another")
    before = sha(served)
    result = cli("gallery", "--model", "seedream-4", "-o", str(served))
    refused_and_untouched(result, str(served), before, Path("nothing-else.html"))


# --- BREAK 2: a hand-edited value of the wrong type reads as unknown ---------------

WRONG_TYPES = {
    "duration infinite": "UPDATE jobs SET duration = 1e308 * 10",
    "duration text": "UPDATE jobs SET duration = 'abc'",
    "charged_credits text": "UPDATE jobs SET charged_credits = 'x'",
    "estimated_credits text": "UPDATE jobs SET estimated_credits = 'x', charged_credits = NULL",
    "files.path BLOB": "UPDATE files SET path = X'2f746d70'",
    "files.n, size, mtime_ns text": "UPDATE files SET n = 'x', size = 'y', mtime_ns = 'z'",
    "model BLOB": "UPDATE jobs SET model = X'41'",
    "output_dir BLOB": "UPDATE jobs SET output_dir = X'41'; DELETE FROM files",
    "submitted in year 9999, unsaved": "UPDATE jobs SET submitted_at ="
    " '9999-12-31T23:59:59+00:00', expires_at = NULL, completed_at = 5; DELETE FROM files",
}


@pytest.mark.parametrize("sql", WRONG_TYPES.values(), ids=WRONG_TYPES.keys())
def test_a_ledger_value_of_the_wrong_type_is_unknown_never_a_traceback(
    cli: Invoke, sql: str
) -> None:
    output = Path(run_job(cli, "flux-dev", "x", "--seed", "3"))
    job_id = output.name.rsplit("-", 1)[0]
    edit_ledger(sql)
    for args in (
        ("gallery", "-o", "p.html"),
        ("gallery", "-o", "p.html", "--group-by", "model", "--group-by", "seed"),
        ("jobs", "list", "--local"),
        ("jobs", "show", job_id),
        ("usage",),
        ("download", "--pending"),
    ):
        result = cli(*args)
        assert result.exit_code == 0, (args, result.output)
        assert "Unexpected error" not in result.output


def test_a_wrong_typed_value_reads_as_unknown_from_the_ledger(cli: Invoke) -> None:
    from pixeldojo_cli.store.ledger import Ledger

    run_job(cli, "flux-dev", "x")
    edit_ledger("UPDATE jobs SET duration = 'abc'")
    with Ledger() as ledger:
        assert ledger.durations(ledger.jobs()[0].base_url, "flux-dev") == []
    edit_ledger(
        "UPDATE jobs SET duration = 1e308 * 10, charged_credits = 'x', estimated_credits = -1,"
        " model = X'41', output_dir = X'41', status = X'41'"
    )
    edit_ledger("UPDATE files SET path = X'2f746d70'")
    with Ledger() as ledger:
        (job,) = ledger.jobs()
    assert (job.duration, job.charged_credits, job.estimated_credits) == (None, None, None)
    assert (job.model, job.output_dir, job.status, job.files) == ("", "", "unknown", ())
