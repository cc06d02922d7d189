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

from pixeldojo_cli.store.contact_sheet import Group, Media, Tile, render_sheet
from tests.conftest import FAST, Invoke
from tests.test_gallery import Page, gallery, run_job


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


# --- the page: what it links, how it shows text ------------------------------------


@pytest.mark.parametrize("name", ["served.html", "served.svg", "served.xhtml", "served"])
def test_an_output_a_browser_would_run_is_shown_by_name_never_linked(
    cli: Invoke, name: str
) -> None:
    png = Path(run_job(cli, "flux-dev", "x"))
    served = png.with_name(name)
    served.write_bytes(b"<script>document.title='PWN'</script>")
    png.unlink()
    edit_ledger("UPDATE files SET path = ?", str(served.resolve()))
    _, page = gallery(cli, "-o", "p.html")
    assert not any(name in link for link in page.links())
    assert f"{name}: not linked" in page.joined


def test_an_inert_output_of_another_kind_is_still_linked(tmp_path: Path) -> None:
    media = Media(tmp_path / "model.glb", "./model.glb", "other", True)
    page = Page(render_sheet("t", [Group("", (Tile("job_1", "m", "completed", media=media),))]))
    assert "./model.glb" in page.links()


def test_control_characters_in_a_prompt_show_as_escapes_on_the_page() -> None:
    prompt = "line one\nline two\ttab\u2028sep\x1cfs\x1b[31m"
    page = Page(render_sheet("a\nb", [Group("", (Tile("job_1", "m", "completed", prompt),))]))
    assert "line one\\nline two\\ttab\\u2028sep\\u001cfs\\u001b[31m" in page.joined
    assert "a\\nb" in page.joined  # the title too


def test_pictures_load_lazily_as_they_near_the_window(cli: Invoke) -> None:
    run_job(cli, "flux-dev", "x")
    _, page = gallery(cli, "-o", "p.html")
    (picture,) = page.all("img")
    assert picture["loading"] == "lazy" and picture["decoding"] == "async"


def test_open_hands_the_opener_an_absolute_path_never_a_dash_name(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import typer

    opened: list[str] = []
    monkeypatch.setattr(typer, "launch", lambda path, **kw: opened.append(path) or 0)
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.setenv("DISPLAY", ":0")
    run_job(cli, "flux-dev", "x")
    result = cli("gallery", "-o", "./-x.html", "--open")
    assert result.exit_code == 0, result.output
    assert opened == [str(tmp_path / "-x.html")]


# --- wording and order -------------------------------------------------------------


def test_a_fifo_at_an_outputs_name_is_not_said_to_be_gone(cli: Invoke) -> None:
    output = Path(run_job(cli, "flux-dev", "x"))
    output.unlink()
    os.mkfifo(output)
    _, page = gallery(cli, "-o", "p.html")
    assert f"{output.name} in {output.parent.resolve()} is not a regular file" in page.joined
    assert "is gone" not in page.joined


def test_the_newest_one_job_is_said_in_the_singular(cli: Invoke) -> None:
    run_job(cli, "flux-dev", "x")
    result = cli("gallery", "-o", "p.html", "--limit", "1")
    assert result.exit_code == 0, result.output
    assert "The newest job; more with --limit N or --all." in result.stderr


def test_tiles_within_a_group_are_in_seed_order(cli: Invoke) -> None:
    for seed in ("3", "1", "10", "2"):
        run_job(cli, "flux-dev", "x", "--seed", seed)
    _, page = gallery(cli, "-o", "p.html", "--group-by", "model")
    seeds = [page.text[n + 1] for n, text in enumerate(page.text) if text == "Seed"]
    assert seeds == ["1", "2", "3", "10"]  # not newest first: 2, 10, 1, 3


def test_a_data_folder_that_is_a_file_is_one_line_and_exit_10(cli: Invoke) -> None:
    from pixeldojo_cli.store.settings import ledger_path

    ledger_path().parent.write_bytes(b"")
    result = cli("gallery", "-o", "p.html")
    assert result.exit_code == 10, result.output
    assert "is a file, not a folder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not Path("p.html").exists()
