"""The contact sheet: one self-contained static HTML page of saved outputs.

A file format, and a pure one: tiles in (`Tile`, grouped in `Group`s), HTML
bytes out (`render_sheet`), written atomically (`write_sheet`). The page
needs no server and fetches nothing: its style is inline, its one small script
is inline (it marks a picture that cannot be shown; a Content-Security-Policy
allows that script alone, and pictures and videos only from the page's own
place), and every file is linked by a relative path computed here
(`relative_href`) and percent-encoded. Every text that comes from a prompt,
a server or a file name is escaped (`html.escape`, quotes too) after its
control characters are made visible (`core.text.safe_text`).
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from urllib.parse import quote

from pixeldojo_cli.core.text import safe_text

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".avif", ".bmp"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".webm", ".mov", ".m4v", ".ogv"})
# Outputs of another kind are linked only when a browser opening them runs nothing:
# a server-chosen .html, .svg or extensionless file (sniffed) could run its script.
INERT_EXTENSIONS = frozenset(
    {".json", ".txt", ".zip", ".glb", ".mp3", ".wav", ".ogg", ".oga", ".flac", ".m4a", ".aac"}
)

# What every href and src on the page must look like: a relative path we built,
# each byte outside the unreserved set percent-encoded (so never a scheme).
_RELATIVE_HREF = re.compile(r"(?:\./|(?:\.\./)+)[A-Za-z0-9._~%-]+(?:/[A-Za-z0-9._~%-]+)*")


@dataclass(frozen=True)
class Media:
    """One saved file as a tile shows it: where it is (for the PNG grid), its
    link from the page (None: not reachable by a relative path), its kind."""

    path: Path
    href: str | None
    kind: str  # "image", "video" or "other"
    present: bool

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def inert(self) -> bool:
        """A browser opening it shows or plays it, and runs nothing in it."""
        return self.kind != "other" or self.path.suffix.lower() in INERT_EXTENSIONS

    @property
    def linked(self) -> bool:
        """The page links it: on disk, reachable by a relative path, and inert."""
        return self.present and self.href is not None and self.inert


@dataclass(frozen=True)
class Tile:
    """One output of one job (or a job with no output on disk, and why)."""

    job_id: str
    model: str
    status: str
    prompt: str | None = None
    seed: str | None = None
    inputs: tuple[tuple[str, str], ...] = ()  # the other inputs, as text
    credits: str | None = None
    seconds: str | None = None
    media: Media | None = None
    output: tuple[int, int] | None = None  # (n, of) when the job has several
    sidecar_href: str | None = None
    note: str | None = None  # why there is no picture, when there is none


@dataclass(frozen=True)
class Group:
    """Tiles under one heading ("" for a sheet that is not grouped)."""

    label: str
    tiles: tuple[Tile, ...]


def media_kind(path: PurePath) -> str:
    """`image`, `video` or `other`, by the file's extension."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    return "video" if suffix in VIDEO_EXTENSIONS else "other"


def relative_href(target: Path, page_folder: Path) -> str | None:
    """The link from a page in `page_folder` to `target`: a relative path,
    each part percent-encoded (spaces, `#`, `?`, unicode: all of it). None when
    there is none (another drive, on Windows)."""
    try:
        relative = os.path.relpath(os.path.abspath(target), os.path.abspath(page_folder))
    except ValueError:
        return None
    parts = [part for part in Path(relative).parts if part not in ("", ".")]
    if not parts:
        return None
    href = "/".join(quote(os.fsencode(part), safe="") for part in parts)
    return href if href.startswith("../") else f"./{href}"


def checked_href(href: str) -> str:
    """`href` if it is a relative path as `relative_href` builds them; else ValueError."""
    if not _RELATIVE_HREF.fullmatch(href):
        raise ValueError(f"not a relative path of ours: {href!r}")
    return href


def text(value: object, limit: int | None = None) -> str:
    """Any value as escaped HTML text on one line: control characters, line breaks
    and tabs shown as escapes (`\\n`, `\\u001b`) as on a terminal, cut at `limit`."""
    flat = safe_text(str(value))
    if limit is not None and len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return html.escape(flat, quote=True)


# --- the page --------------------------------------------------------------------

# Marks a picture that cannot be shown (its file gone since the page was written)
# and says on <body> how many loaded: a browser test reads it back from the page.
# Pictures load lazily (as they near the window), so each is marked as it loads
# or fails (listening on `document`: a picture's events reach it when captured).
SCRIPT = (
    "(function(){var ok=0,gone=0;"
    'function count(){document.body.dataset.pictures=ok+" loaded, "+gone+" missing"}'
    'function seen(e){var p=e.target;if(p.tagName!=="IMG"||p.dataset.state)return;'
    'if(e.type==="load"&&p.naturalWidth>0){p.dataset.state="loaded";ok++}'
    'else{p.dataset.state="missing";gone++;p.parentNode.classList.add("gone")}count()}'
    'document.addEventListener("load",seen,true);document.addEventListener("error",seen,true);'
    'document.addEventListener("DOMContentLoaded",count)})()'
)
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
POLICY = (
    "default-src 'none'; img-src 'self' file:; media-src 'self' file:; "
    f"style-src 'unsafe-inline'; script-src 'sha256-{_SCRIPT_HASH}'; "
    "base-uri 'none'; form-action 'none'"
)

STYLE = """
:root{color-scheme:light dark;--bg:#f4f4f1;--card:#fff;--ink:#1c1c1e;--muted:#6b6b70;
--line:#deded8;--accent:#2f55d4;--well:#e9e9e4}
@media (prefers-color-scheme:dark){:root{--bg:#141416;--card:#1f1f23;--ink:#ececec;
--muted:#a2a2aa;--line:#33333a;--accent:#93a8ff;--well:#29292e}}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
background:var(--bg);color:var(--ink)}
header{padding:18px 20px 6px}
h1{font-size:1.35rem;margin:0 0 4px;overflow-wrap:anywhere}
.summary{color:var(--muted);margin:0}
main{padding:4px 20px 32px}
h2{font-size:1.05rem;margin:22px 0 10px;padding-bottom:4px;border-bottom:1px solid var(--line);
overflow-wrap:anywhere}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:16px;
list-style:none;margin:0;padding:0}
.tile{background:var(--card);border:1px solid var(--line);border-radius:10px;overflow:hidden;
display:flex;flex-direction:column;min-width:0}
.media{position:relative;display:flex;align-items:center;justify-content:center;aspect-ratio:1;
background:var(--well);color:var(--muted);text-align:center;overflow:hidden}
.media img,.media video{position:absolute;inset:0;width:100%;height:100%;object-fit:contain}
.media.gone img{display:none}
.media.gone::after{content:"This file could not be shown.";padding:12px}
.nomedia{padding:14px;overflow-wrap:anywhere}
.body{padding:10px 12px 12px;display:flex;flex-direction:column;gap:6px;min-width:0}
.prompt{margin:0;overflow-wrap:anywhere;display:-webkit-box;-webkit-box-orient:vertical;
-webkit-line-clamp:4;overflow:hidden}
.prompt:hover,.prompt:focus{-webkit-line-clamp:unset}
.prompt.none{color:var(--muted);font-style:italic}
dl{display:grid;grid-template-columns:auto minmax(0,1fr);gap:1px 10px;margin:0;font-size:12.5px}
dt{color:var(--muted)}
dd{margin:0;overflow-wrap:anywhere}
code{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.links{display:flex;flex-wrap:wrap;gap:4px 14px;margin:0;font-size:12.5px}
.links a{overflow-wrap:anywhere}
a{color:var(--accent)}
.note{margin:0;font-size:12.5px;color:#b3261e}
@media (prefers-color-scheme:dark){.note{color:#ff8a80}}
@media (max-width:560px){
header{padding:14px 12px 4px}main{padding:4px 12px 24px}
.grid{grid-template-columns:1fr;gap:12px}
.tile{flex-direction:row}
.media{flex:0 0 40%;align-self:flex-start}
.body{flex:1;padding:8px 10px}
}
""".strip()


def render_sheet(title: str, groups: Sequence[Group], *, summary: str = "") -> bytes:
    """The whole page for `groups`, as UTF-8 bytes."""
    sections = "\n".join(_section(group) for group in groups if group.tiles)
    if not sections:
        sections = '<p class="summary">Nothing to show.</p>'
    page = (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{html.escape(POLICY)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="generator" content="pixeldojo-cli">\n'
        f"<title>{text(title)}</title>\n<style>\n{STYLE}\n</style>\n"
        f"<script>{SCRIPT}</script>\n</head>\n<body>\n"
        f'<header><h1>{text(title)}</h1><p class="summary">{text(summary)}</p></header>\n'
        f"<main>\n{sections}\n</main>\n</body>\n</html>\n"
    )
    return page.encode("utf-8")


def _section(group: Group) -> str:
    tiles = "\n".join(_tile(tile) for tile in group.tiles)
    heading = f"<h2>{text(group.label)}</h2>\n" if group.label else ""
    return f'<section>\n{heading}<ul class="grid">\n{tiles}\n</ul>\n</section>'


def _tile(tile: Tile) -> str:
    prompt = (
        f'<p class="prompt" tabindex="0">{text(tile.prompt, 4000)}</p>'
        if tile.prompt
        else '<p class="prompt none">(no prompt)</p>'
    )
    note = f'<p class="note">{text(tile.note)}</p>' if tile.note else ""
    return (
        f'<li class="tile" data-job="{text(tile.job_id)}">{_media(tile)}'
        f'<div class="body">{prompt}{_facts(tile)}{_links(tile)}{note}</div></li>'
    )


def _media(tile: Tile) -> str:
    media = tile.media
    if media is None or media.href is None or not media.linked:
        why = text(_why_not_linked(media))
        return f'<div class="media"><span class="nomedia">{why}</span></div>'
    href = html.escape(checked_href(media.href))
    if media.kind == "image":
        alt = text(f"{tile.model}: {tile.prompt or tile.job_id}", 300)
        return (
            f'<a class="media" href="{href}"><img src="{href}" alt="{alt}" loading="lazy" '
            'decoding="async"></a>'
        )
    if media.kind == "video":
        return (
            f'<div class="media"><video src="{href}" preload="metadata" controls muted '
            "playsinline></video></div>"
        )
    return f'<a class="media" href="{href}"><span class="nomedia">{text(media.name)}</span></a>'


def _why_not_linked(media: Media | None) -> str:
    if media is None:
        return "No file"
    if not media.present:
        return f"{media.name}: not on disk"
    if not media.inert:
        return f"{media.name}: not linked (opening a file of this kind could run a script in it)"
    return f"{media.name}: not reachable from this page"


def _facts(tile: Tile) -> str:
    job = f"<code>{text(tile.job_id)}</code>"
    if tile.output is not None:
        job += f" ({tile.output[0]} of {tile.output[1]})"
    rows = [("Model", text(tile.model)), ("Seed", text(tile.seed or "-"))]
    if tile.inputs:
        rows.append(("Inputs", " · ".join(text(f"{k}={v}", 200) for k, v in tile.inputs)))
    rows += [("Credits", text(tile.credits or "-")), ("Time", text(tile.seconds or "-"))]
    if tile.status != "completed":
        rows.append(("Status", text(tile.status)))
    rows.append(("Job", job))
    cells = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in rows)
    return f"<dl>{cells}</dl>"


def _links(tile: Tile) -> str:
    links = []
    media = tile.media
    if media is not None and media.href is not None and media.linked:
        links.append(f'<a href="{html.escape(checked_href(media.href))}">{text(media.name)}</a>')
    if tile.sidecar_href is not None:
        links.append(f'<a href="{html.escape(checked_href(tile.sidecar_href))}">sidecar</a>')
    return f'<p class="links">{"".join(links)}</p>' if links else ""


def write_sheet(path: Path, title: str, groups: Sequence[Group], *, summary: str = "") -> None:
    """Write the page to `path` atomically (`WriteError` when it cannot be written)."""
    from pixeldojo_cli.store.files import write_bytes_atomic

    write_bytes_atomic(path, render_sheet(title, groups, summary=summary))
