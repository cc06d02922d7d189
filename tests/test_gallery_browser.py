"""The contact sheet in a real browser: Debian's headless Chromium loads the page
from disk, and what it shows is read back from the page itself (its DOM after
load: each picture's `data-state` and the `data-pictures` count its own script
writes, its title, its text). Skipped, saying why, only when Chromium is absent
(`.ci/run` installs it)."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import FAST, Invoke

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"
)


class Dom(HTMLParser):
    """The elements of a dumped DOM as (tag, attributes), and its text."""

    def __init__(self, data: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.title = ""
        self._tag = ""
        self.feed(data)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        self._tag = tag

    def handle_endtag(self, tag: str) -> None:
        self._tag = ""

    def handle_data(self, data: str) -> None:
        if self._tag == "title":
            self.title += data
        elif self._tag not in ("script", "style"):
            self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.elements if name == tag]

    @property
    def joined(self) -> str:
        return " ".join(" ".join(self.text).split())


def rendered(page: Path, profile: Path) -> Dom:
    """The page's DOM once Chromium has loaded it (and run what it allows)."""
    assert CHROMIUM is not None
    done = subprocess.run(
        [
            CHROMIUM,
            *("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"),
            *("--disable-background-networking", "--disable-component-update", "--disable-sync"),
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert "<body" in done.stdout, done.stderr[-2000:]
    return Dom(done.stdout)


def run_job(cli: Invoke, *args: str) -> Path:
    result = cli("run", *args, *FAST)
    assert result.exit_code == 0, result.output
    return Path(result.stdout.splitlines()[0])


def test_every_picture_loads_in_chromium_and_every_label_is_there(
    cli: Invoke, tmp_path: Path
) -> None:
    odd = "my pics #1?/été 50%"  # a space, `#`, `?`, unicode and `%` in the path
    jobs = [
        ("flux-dev", "a red lighthouse", "3", ("-p", "aspect_ratio=16:9")),
        ("seedream-4", "a blue windmill", "4", ("-p", "num_outputs=2")),
        ("z-image-turbo", "a green barn", "5", ()),
    ]
    firsts = [
        run_job(cli, model, prompt, "--seed", seed, "-o", odd, *extra)
        for model, prompt, seed, extra in jobs
    ]
    result = cli("gallery", "--group-by", "model", "-o", "sheets/contact sheet.html")
    assert result.exit_code == 0, result.output
    dom = rendered(Path(result.stdout.strip()), tmp_path / "profile")
    pictures = dom.all("img")
    assert len(pictures) == 4
    assert [p["data-state"] for p in pictures] == ["loaded"] * 4
    assert dom.all("body")[0]["data-pictures"] == "4 loaded, 0 missing"
    for (model, prompt, seed, _), first in zip(jobs, firsts, strict=True):
        job_id = first.name.rsplit("-", 1)[0]
        for label in (f"model: {model}", prompt, f"Seed {seed}", f"Job {job_id}", first.name):
            assert label in dom.joined
    assert "aspect_ratio=16:9" in dom.joined and "(2 of 2)" in dom.joined


def test_a_picture_gone_since_the_page_was_written_shows_as_missing(
    cli: Invoke, tmp_path: Path
) -> None:
    kept = run_job(cli, "flux-dev", "kept")
    gone = run_job(cli, "flux-dev", "gone")
    result = cli("gallery")
    assert result.exit_code == 0, result.output
    gone.unlink()
    dom = rendered(Path(result.stdout.strip()), tmp_path / "profile")
    states = {p["src"]: p["data-state"] for p in dom.all("img")}
    assert states == {f"./{kept.name}": "loaded", f"./{gone.name}": "missing"}
    assert dom.all("body")[0]["data-pictures"] == "1 loaded, 1 missing"


def test_markup_in_a_prompt_shows_as_text_and_never_runs(cli: Invoke, tmp_path: Path) -> None:
    prompts = [
        "<script>document.title='pwned'</script>",
        "<img src=x onerror=\"document.title='pwned'\">",
    ]
    for prompt in prompts:
        run_job(cli, "flux-dev", prompt)
    result = cli("gallery")
    assert result.exit_code == 0, result.output
    dom = rendered(Path(result.stdout.strip()), tmp_path / "profile")
    assert dom.title == "pixeldojo contact sheet"
    assert all(prompt in dom.joined for prompt in prompts)
    assert len(dom.all("img")) == 2 and all(p["data-state"] == "loaded" for p in dom.all("img"))


def test_the_pages_policy_stops_any_script_but_its_own(cli: Invoke, tmp_path: Path) -> None:
    run_job(cli, "flux-dev", "x")
    result = cli("gallery")
    page = Path(result.stdout.strip())
    tampered = page.with_name("tampered.html")
    injected = (
        "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"
    )
    tampered.write_text(page.read_text().replace("<main>", f"<main>{injected}"))
    dom = rendered(tampered, tmp_path / "profile")
    assert dom.title == "pixeldojo contact sheet"
    assert dom.all("body")[0]["data-pictures"] == "1 loaded, 1 missing"  # its own script ran
