"""`pixeldojo gallery`: a contact sheet of the local ledger's jobs, one static HTML
page (and, with Pillow, one PNG). The work is the engine's (`engine/gallery.py`);
the page and the grid are file formats (`store/contact_sheet.py`, `contact_grid.py`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pixeldojo_cli.cli.commands.jobs_list import ledger_filter, local_query
from pixeldojo_cli.cli.outputs import open_first
from pixeldojo_cli.cli.state import AppState, get_state
from pixeldojo_cli.core.errors import LedgerError, UsageError
from pixeldojo_cli.core.text import plural

if TYPE_CHECKING:
    from pixeldojo_cli.engine.gallery import SheetRequest
    from pixeldojo_cli.store.ledger import LedgerJob

SHEET_NAME = "contact-sheet.html"
DEFAULT_LIMIT = 100
DEFAULT_TITLE = "pixeldojo contact sheet"
INSTALL_PILLOW = "--grid needs Pillow: pip install 'pixeldojo-cli[preview]'"

HELP = """\
Write a contact sheet of your saved outputs: one HTML page.

The page shows the jobs of the local ledger (the filters of `jobs list --local`
choose which; the newest 100 unless --limit or --all) as a grid of their
pictures and videos, each with its prompt, model, seed, inputs, credits, time
taken and job id, and links to the file and its sidecar. It needs no server
and fetches nothing: files are linked by their path relative to the page, so
keep the page beside them (by default it is contact-sheet.html in the output
folder). Its path is printed on stdout. --group-by model, or by an input such as
seed, puts the tiles under headings. --grid FILE.png also draws the sheet as one
PNG of labelled tiles (needs Pillow: the [preview] extra).
"""

EXAMPLES = """\
Examples:

  pixeldojo gallery --open

  pixeldojo gallery --since 1d --group-by model -o today.html

  pixeldojo gallery --search lighthouse --group-by seed --grid lighthouse.png

  pixeldojo gallery --model 'flux*' --all -o ~/renders/flux.html
"""

OutputOption = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        metavar="FILE",
        help=f"Write the page here (.html). Default: {SHEET_NAME} in the output folder.",
    ),
]
GroupByOption = Annotated[
    list[str] | None,
    typer.Option(
        "--group-by",
        metavar="model|KEY",
        help="Group the tiles by model or by an input (seed, aspect_ratio, ...); repeat "
        "to group by several.",
    ),
]
OpenOption = Annotated[
    bool, typer.Option("--open", help="Open the page in the browser (when there is a display).")
]
GridOption = Annotated[
    Path | None,
    typer.Option(
        "--grid", metavar="FILE.png", help="Also draw the sheet as one PNG (needs Pillow)."
    ),
]
TitleOption = Annotated[
    str, typer.Option("--title", metavar="TEXT", help="The page's title.", show_default=False)
]
LimitOption = Annotated[
    int, typer.Option("--limit", "-n", metavar="N", min=1, help="How many jobs, newest first.")
]
AllOption = Annotated[bool, ledger_filter("--all")]
ModelFilter = Annotated[str | None, ledger_filter("--model")]
StatusFilter = Annotated[str | None, ledger_filter("--status")]
SinceFilter = Annotated[str | None, ledger_filter("--since")]
UnsavedFilter = Annotated[bool, ledger_filter("--unsaved")]
SearchFilter = Annotated[str | None, ledger_filter("--search")]


def gallery(
    ctx: typer.Context,
    output: OutputOption = None,
    group_by: GroupByOption = None,
    open_page: OpenOption = False,
    grid: GridOption = None,
    title: TitleOption = DEFAULT_TITLE,
    limit: LimitOption = DEFAULT_LIMIT,
    all_jobs: AllOption = False,
    model: ModelFilter = None,
    status: StatusFilter = None,
    since: SinceFilter = None,
    unsaved: UnsavedFilter = False,
    search: SearchFilter = None,
) -> None:
    state = get_state(ctx)
    with state.guard():
        from pixeldojo_cli.engine.gallery import (
            SheetRequest,
            check_group_keys,
            find_jobs,
            refuse_overwriting_outputs,
        )

        if state.use_emulator:
            raise UsageError(
                "The embedded emulator's jobs are not recorded: there is no gallery of them."
            )
        page = _page_path(state, output)
        if grid is not None:
            _check_grid(grid)
        query = local_query(
            model=model,
            status=status,
            since=since,
            unsaved=unsaved,
            search=search,
            limit=None if all_jobs else limit,
        )
        base_url, profile = state.ledger_scope()
        try:
            jobs = find_jobs(replace(query, base_url=base_url, profile=profile))
        except LedgerError:
            state.remind = False  # it would open the same ledger, and say so again
            raise
        if not jobs:
            state.render.info(
                f"No jobs in the local ledger for {base_url} (profile {profile!r}) match: "
                "no contact sheet was written."
            )
            return
        groups = tuple(group_by or ())
        check_group_keys(jobs, groups)
        refuse_overwriting_outputs(page, *([grid] if grid is not None else []))
        request = SheetRequest(page, title, groups, by_seed=True)
        _write(state, jobs, request, grid)
        if query.limit and len(jobs) == query.limit:
            newest = "job" if query.limit == 1 else f"{query.limit} jobs"
            state.render.note(f"The newest {newest}; more with --limit N or --all.")
        if open_page:
            open_first(state, [str(page)])


def _write(
    state: AppState, jobs: list[LedgerJob], request: SheetRequest, grid: Path | None
) -> None:
    """The page (and the PNG), each path on stdout as it is written (their folders
    made if missing)."""
    from pixeldojo_cli.engine.gallery import write_grid_for, write_sheet_for
    from pixeldojo_cli.store.files import ensure_folder

    ensure_folder(request.path.parent)
    write_sheet_for(jobs, request)
    state.render.result(str(request.path))
    if grid is not None:
        ensure_folder(grid.parent)
        left_out = write_grid_for(jobs, request, grid, _load_thumbnail)
        state.render.result(str(grid))
        if left_out:
            state.render.note(
                f"The PNG leaves out {plural(left_out, 'tile')}; the page has them all."
            )


def _page_path(state: AppState, output: Path | None) -> Path:
    """Where the page goes: `-o FILE` (an .html name, not a folder), or
    contact-sheet.html in the output folder."""
    if output is None:
        return Path(str(state.settings().output_dir.value)).expanduser() / SHEET_NAME
    output = output.expanduser()
    if output.is_dir():
        raise UsageError(f"-o {output} is a folder: name the page, e.g. -o {output / SHEET_NAME}")
    if output.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"-o {output}: the contact sheet is a web page; name it FILE.html.")
    return output


def _check_grid(grid: Path) -> None:
    """`--grid` names a PNG, not a folder, and Pillow is there to draw it."""
    if grid.is_dir():
        raise UsageError(f"--grid {grid} is a folder: name the picture, e.g. FILE.png.")
    if grid.suffix.lower() != ".png":
        raise UsageError(f"--grid {grid}: the grid is a PNG; name it FILE.png.")
    try:
        import PIL  # noqa: F401 - only to say how to install it when it is missing
    except ImportError:
        raise UsageError(INSTALL_PILLOW) from None


def _load_thumbnail(path: Path, box: tuple[int, int]) -> Any:
    """A picture decoded within the preview's memory budget, about the size of `box`."""
    from pixeldojo_cli.cli.picture import load_reduced

    return load_reduced(path, lambda size: box)
