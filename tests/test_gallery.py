"""The contact sheet: `pixeldojo gallery` against the emulator, the page parsed as
HTML (`html.parser`), and the engine door compare and sweeps write theirs through
(`sheet_for_jobs`). The page in a real browser: test_gallery_browser.py."""

from __future__ import annotations

import os
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pixeldojo_cli.engine.gallery import SheetRequest, sheet_for_jobs
from pixeldojo_cli.engine.recorder import Recorder
from pixeldojo_cli.store.contact_sheet import (
    SCRIPT,
    Group,
    Media,
    Tile,
    checked_href,
    relative_href,
    render_sheet,
)
from tests.conftest import FAST, Invoke

HOSTILE = "<script>alert(\"x\")</script> & 'quotes' <img src=x onerror=alert(1)>"


class Page(HTMLParser):
    """A page's elements as (tag, attributes), its scripts' text, and its text."""

    def __init__(self, data: bytes | str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.text: list[str] = []
        self._in_script = False
        self.feed(data.decode() if isinstance(data, bytes) else data)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if tag == "script":
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data
        else:
            self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.elements if name == tag]

    def links(self) -> list[str]:
        return [str(a[k]) for _, a in self.elements for k in ("href", "src") if a.get(k)]

    @property
    def joined(self) -> str:
        return " ".join(" ".join(self.text).split())


def run_job(cli: Invoke, model: str, prompt: str, *args: str) -> str:
    """Run one job to completion; the path of its first file."""
    result = cli("run", model, prompt, *args, *FAST)
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()[0]


def gallery(cli: Invoke, *args: str) -> tuple[Path, Page]:
    result = cli("gallery", *args)
    assert result.exit_code == 0, result.output
    page = Path(result.stdout.strip())
    return page, Page(page.read_bytes())


# --- the page, as a file format -------------------------------------------------------


def test_a_prompt_or_model_holding_script_shows_as_text_and_runs_nothing(
    tmp_path: Path,
) -> None:
    picture = tmp_path / f"{HOSTILE[:20]}.png".replace("/", "_")
    picture.write_bytes(b"x")
    tile = Tile(
        job_id=f"job_{HOSTILE}",
        model=HOSTILE,
        status=HOSTILE,
        prompt=HOSTILE,
        seed=HOSTILE,
        inputs=((HOSTILE, HOSTILE),),
        credits=HOSTILE,
        seconds=HOSTILE,
        media=Media(picture, relative_href(picture, tmp_path), "image", True),
        note=HOSTILE,
    )
    page = Page(render_sheet(HOSTILE, [Group(HOSTILE, (tile,))], summary=HOSTILE))
    assert page.scripts == [SCRIPT]  # ours alone
    assert [tag for tag, _ in page.elements].count("img") == 1
    assert not any(k.startswith("on") for _, attrs in page.elements for k in attrs)
    assert page.joined.count('<script>alert("x")</script>') >= 9  # every field, as text


def test_files_are_linked_by_relative_percent_encoded_paths(tmp_path: Path) -> None:
    page_folder = tmp_path / "sheets"
    page_folder.mkdir()
    odd = tmp_path / "my pics #2?" / "été 1%.png"
    assert relative_href(odd, page_folder) == "../my%20pics%20%232%3F/%C3%A9t%C3%A9%201%25.png"
    assert relative_href(page_folder / "a b.png", page_folder) == "./a%20b.png"
    assert relative_href(page_folder / "javascript:alert(1)", page_folder) == (
        "./javascript%3Aalert%281%29"
    )


@pytest.mark.parametrize(
    "href",
    [
        "javascript:alert(1)",
        "http://example.com/x.png",
        "/etc/passwd",
        "//host/x",
        "a.png",
        "./a b",
    ],
)
def test_only_relative_paths_of_ours_are_ever_linked(href: str) -> None:
    with pytest.raises(ValueError):
        checked_href(href)


def test_a_page_fetches_nothing_from_the_network(tmp_path: Path) -> None:
    picture = tmp_path / "a.png"
    picture.write_bytes(b"x")
    media = Media(picture, relative_href(picture, tmp_path), "image", True)
    page = Page(render_sheet("t", [Group("", (Tile("job_1", "m", "completed", media=media),))]))
    assert page.links() and all(link.startswith("./") for link in page.links())
    policy = next(a for a in page.all("meta") if a.get("http-equiv"))["content"] or ""
    assert "default-src 'none'" in policy and "http" not in policy
    assert not page.all("link") and not any(a.get("src") for a in page.all("script"))


def test_a_video_is_a_video_element_that_reads_only_its_metadata(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    media = Media(clip, relative_href(clip, tmp_path), "video", True)
    page = Page(render_sheet("t", [Group("", (Tile("job_1", "m", "completed", media=media),))]))
    (video,) = page.all("video")
    assert video["src"] == "./clip.mp4" and video["preload"] == "metadata"
    assert not page.all("img")


# --- pixeldojo gallery ----------------------------------------------------------------


def test_gallery_writes_a_tile_per_saved_picture_with_its_labels(
    cli: Invoke, tmp_path: Path
) -> None:
    first = run_job(cli, "flux-dev", "a red lighthouse", "--seed", "11", "-p", "aspect_ratio=16:9")
    run_job(cli, "seedream-4", "a blue lighthouse", "--seed", "12")
    page_path, page = gallery(cli, "-o", "sheet.html")
    assert page_path == Path("sheet.html")
    tiles = page.all("li")
    assert len(tiles) == 2 and len(page.all("img")) == 2
    first_id = Path(first).name.rsplit("-", 1)[0]
    for label in (
        "a red lighthouse",
        "flux-dev",
        "11",
        "aspect_ratio=16:9",
        first_id,
        "seedream-4",
    ):
        assert label in page.joined
    assert "Credits" in page.joined and "Time" in page.joined
    assert f"./{Path(first).name}" in page.links()
    assert f"./{first_id}.json" in page.links()  # the sidecar
    for link in page.links():
        assert (page_path.parent / link).is_file()


def test_gallery_writes_contact_sheet_html_in_the_output_folder_by_default(
    cli: Invoke, tmp_path: Path
) -> None:
    run_job(cli, "flux-dev", "x", "-o", "renders")
    result = cli("gallery", env={"PIXELDOJO_OUTPUT_DIR": "renders"})
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(Path("renders") / "contact-sheet.html")
    assert (
        "./" + next(Path("renders").glob("job_*.png")).name
        in Page(Path("renders/contact-sheet.html").read_bytes()).links()
    )


def test_gallery_takes_the_filters_of_jobs_list_local(cli: Invoke) -> None:
    run_job(cli, "flux-dev", "a lighthouse", "--seed", "1")
    run_job(cli, "flux-dev", "a windmill", "--seed", "2")
    run_job(cli, "seedream-4", "a lighthouse", "--seed", "3")
    _, page = gallery(cli, "--search", "lighthouse", "--model", "flux*", "--since", "1h")
    assert len(page.all("li")) == 1 and "a lighthouse" in page.joined
    _, newest = gallery(cli, "--limit", "2", "-o", "two.html")
    assert len(newest.all("li")) == 2


def test_gallery_groups_by_model_and_by_seed_in_number_order(cli: Invoke) -> None:
    for seed in ("10", "9"):
        run_job(cli, "flux-dev", "x", "--seed", seed)
    run_job(cli, "seedream-4", "x", "--seed", "9")
    _, by_model = gallery(cli, "--group-by", "model")
    assert [h for h in by_model.text if h.startswith("model:")] == [
        "model: flux-dev",
        "model: seedream-4",
    ]
    _, by_seed = gallery(cli, "--group-by", "seed", "-o", "seed.html")
    assert [h for h in by_seed.text if h.startswith("seed:")] == ["seed: 9", "seed: 10"]


def test_gallery_group_by_a_key_no_job_has_is_exit_2_with_did_you_mean(cli: Invoke) -> None:
    run_job(cli, "flux-dev", "x", "--seed", "1")
    result = cli("gallery", "--group-by", "sed")
    assert result.exit_code == 2
    assert "Did you mean 'seed'?" in result.stderr
    assert not Path("contact-sheet.html").exists()


def test_a_filter_matching_nothing_is_a_sentence_exit_0_and_no_file(cli: Invoke) -> None:
    run_job(cli, "flux-dev", "x")
    result = cli("gallery", "--model", "no-such-model", "-o", "new/sheet.html")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "match" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not Path("new").exists()


def test_a_ledger_that_cannot_be_read_is_one_line_and_exit_10(
    cli: Invoke, isolated_env: Path, tmp_path: Path
) -> None:
    from pixeldojo_cli.store.settings import ledger_path

    ledger_path().parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "elsewhere.sqlite3").write_bytes(b"")
    ledger_path().symlink_to(tmp_path / "elsewhere.sqlite3")
    result = cli("gallery")
    assert result.exit_code == 10, result.output
    assert result.stderr.startswith("error: The job ledger ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not Path("contact-sheet.html").exists()


def test_a_damaged_ledger_is_one_line_and_exit_10_not_an_empty_sheet(cli: Invoke) -> None:
    from pixeldojo_cli.store.settings import ledger_path

    ledger_path().parent.mkdir(parents=True, exist_ok=True)
    ledger_path().write_bytes(b"not a database " * 100)
    result = cli("gallery")
    assert result.exit_code == 10, result.output
    assert "was damaged: it was moved to" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not Path("contact-sheet.html").exists()


def test_a_job_whose_file_is_gone_has_a_tile_that_says_so(cli: Invoke) -> None:
    gone = Path(run_job(cli, "flux-dev", "a vanished picture"))
    run_job(cli, "flux-dev", "x", "-p", "num_outputs=2")
    gone.unlink()
    _, page = gallery(cli)
    assert len(page.all("img")) == 2  # the other job's two pictures
    assert f"{gone.name} is gone from" in page.joined
    assert f"./{gone.name}" not in page.links()
    assert "(1 of 2)" in page.joined and "(2 of 2)" in page.joined


def test_a_job_with_only_some_outputs_saved_says_which_of_how_many(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from pixeldojo_cli.engine.gallery import tiles_for
    from pixeldojo_cli.store.ledger import LedgerFile, LedgerJob

    saved = tmp_path / "job_a-2.png"
    saved.write_bytes(b"x")
    job = LedgerJob(
        *("http://api", "job_a", "default", "flux-dev", {"prompt": "p"}, 1.0, 1.0),
        *(datetime.now(UTC), "completed", None, ["http://f/1.png", "http://f/2.png"]),
        *(str(tmp_path), False),
        files=(LedgerFile(2, str(saved), 1, None, "http://f/2.png"),),
    )
    (tile,) = tiles_for(job, tmp_path)
    assert tile.output == (2, 2) and tile.media is not None and tile.media.present


def test_a_failed_job_has_a_tile_that_says_it_failed(cli: Invoke) -> None:
    assert cli("run", "flux-dev", "x #fail", *FAST).exit_code == 5
    _, page = gallery(cli)
    assert "The job failed on the server" in page.joined and not page.all("img")


def test_the_page_is_named_html_and_not_a_folder_else_exit_2(cli: Invoke) -> None:
    run_job(cli, "flux-dev", "x")
    precious = Path("notes.txt")
    precious.write_text("keep")
    assert cli("gallery", "-o", "notes.txt").exit_code == 2
    assert precious.read_text() == "keep"
    Path("folder.html").mkdir()
    assert cli("gallery", "-o", "folder.html").exit_code == 2


def test_open_opens_the_page(cli: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer

    opened: list[str] = []
    monkeypatch.setattr(typer, "launch", lambda path, **kw: opened.append(path) or 0)
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.setenv("DISPLAY", ":0")
    run_job(cli, "flux-dev", "x")
    result = cli("gallery", "--open")
    assert result.exit_code == 0, result.output
    assert opened == [os.path.abspath(result.stdout.strip())]  # absolute: never read as an option


def test_the_embedded_emulator_has_no_gallery(cli: Invoke) -> None:
    result = cli("--emulator", "gallery")
    assert result.exit_code == 2 and "not recorded" in result.stderr


# --- the PNG grid ----------------------------------------------------------------------


def test_grid_draws_the_sheet_as_one_png_of_labelled_tiles(cli: Invoke) -> None:
    from PIL import Image

    from pixeldojo_cli.store import contact_grid as grid

    run_job(cli, "flux-dev", "x", "-p", "num_outputs=3")
    result = cli("gallery", "--grid", "sheet.png")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["contact-sheet.html", "sheet.png"]
    with Image.open("sheet.png") as picture:
        assert picture.format == "PNG"
        assert picture.width == 3 * (grid.THUMB + 3 * grid.PAD) + grid.PAD
        # a tile's picture area is not the empty well: a thumbnail was drawn
        x, y = 2 * grid.PAD + grid.THUMB // 2, grid.HEADING + 2 * grid.PAD + grid.THUMB // 2
        assert picture.convert("RGB").getpixel((x, y)) not in (grid.WELL, grid.CARD)


def test_grid_without_pillow_says_what_to_install_and_exits_2(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_job(cli, "flux-dev", "x")
    monkeypatch.setitem(sys.modules, "PIL", None)
    result = cli("gallery", "--grid", "sheet.png")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: --grid needs Pillow: pip install 'pixeldojo-cli[preview]' (usage_error)"
    ]
    assert not Path("sheet.png").exists() and not Path("contact-sheet.html").exists()


def test_grid_never_writes_over_a_saved_output(cli: Invoke) -> None:
    picture = Path(run_job(cli, "flux-dev", "x"))
    before = picture.read_bytes()
    result = cli("gallery", "--grid", str(picture))
    assert result.exit_code == 2 and "is a saved output of job" in result.stderr
    assert picture.read_bytes() == before and not Path("contact-sheet.html").exists()


def test_grid_tile_of_a_file_that_is_not_a_picture_says_so(cli: Invoke) -> None:
    Path(run_job(cli, "flux-dev", "x")).write_bytes(b"not a png")
    result = cli("gallery", "--grid", "sheet.png")
    assert result.exit_code == 0, result.output
    assert Path("sheet.png").stat().st_size > 0


# --- the door for compare and sweeps ---------------------------------------------------


def test_sheet_for_jobs_writes_these_jobs_in_this_order(cli: Invoke, emulator: object) -> None:
    from pixeldojo_cli.store.ledger import Ledger

    ids = [Path(run_job(cli, "flux-dev", f"p{n}")).name.rsplit("-", 1)[0] for n in range(3)]
    base_url = emulator.base_url  # type: ignore[attr-defined]
    with Ledger() as ledger:
        recorder = Recorder(ledger, base_url, "default")
        request = SheetRequest(Path("compare") / "contact-sheet.html", "compare", ("model",))
        Path("compare").mkdir()
        path = sheet_for_jobs(recorder, [ids[2], ids[0], "job_unknown"], request)
    page = Page(path.read_bytes())
    assert [a["data-job"] for a in page.all("li")] == [ids[2], ids[0], "job_unknown"]
    assert all(link.startswith("../") for link in page.links())
    assert "Not in the job ledger" in page.joined


def test_sheet_for_jobs_reads_a_job_the_ledger_lacks_from_its_sidecar(
    cli: Invoke, emulator: object
) -> None:
    first = Path(run_job(cli, "flux-dev", "from the sidecar", "--seed", "5"))
    job_id = first.name.rsplit("-", 1)[0]
    recorder = Recorder(None, emulator.base_url, "default")  # type: ignore[attr-defined]
    path = sheet_for_jobs(recorder, [job_id], SheetRequest(Path("sheet.html"), "t"))
    page = Page(path.read_bytes())
    assert f"./{first.name}" in page.links() and "from the sidecar" in page.joined
    assert "5" in page.joined and os.path.isfile(path)
