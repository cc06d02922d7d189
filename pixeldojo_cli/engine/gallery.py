"""The contact sheet of jobs: from the ledger's jobs to tiles, grouped, written.

`sheet_for_jobs` is what a workflow that just ran jobs calls (compare, sweeps):
the jobs by id, through the `Recorder` (a job it does not know is read from its
sidecar beside the page, so a sheet is made under the embedded emulator too).
`pixeldojo gallery` finds its jobs with `find_jobs` (the filters of
`jobs list --local`) and writes them with `write_sheet_for`, and the PNG grid
with `write_grid_for`. The page and the grid are file formats: `store/`.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pixeldojo_cli.core.errors import LedgerError, UsageError
from pixeldojo_cli.core.suggest import close_matches, did_you_mean
from pixeldojo_cli.store.contact_sheet import Group, Media, Tile, media_kind, relative_href

if TYPE_CHECKING:
    from pixeldojo_cli.engine.recorder import Recorder
    from pixeldojo_cli.store.ledger import JobQuery, Ledger, LedgerJob

# What a sheet may be grouped by besides an input's name.
MODEL_KEY = "model"
NOT_SET = "(not set)"
T = TypeVar("T")


@dataclass(frozen=True)
class SheetRequest:
    """Where the page goes, its title, and what its tiles are grouped by: "model"
    and/or input names ("seed", "aspect_ratio"), in that order; () for no groups."""

    path: Path
    title: str
    group_by: tuple[str, ...] = ()
    # Within a group, tiles by seed (numbers as numbers), then oldest first, as a
    # sweep ran them; else in the order the jobs are given.
    by_seed: bool = False


def find_jobs(query: JobQuery) -> list[LedgerJob]:
    """The ledger's jobs that `query` selects, newest first ([] when there is no
    ledger yet). `LedgerError` when it cannot be read, or was damaged (it is then
    moved aside, as every command does, and there is nothing to show)."""
    return _read_ledger(lambda ledger: ledger.find(query), [])


def _read_ledger(read: Callable[[Ledger], T], empty: T) -> T:
    """What `read` finds in the ledger; `empty` when there is none yet."""
    from pixeldojo_cli.core.ownfiles import ForeignFile
    from pixeldojo_cli.store.ledger import Ledger, ledger_path

    path = ledger_path()
    if os.path.lexists(path.parent) and not path.parent.is_dir():
        raise LedgerError(
            f"{path.parent} is a file, not a folder: the job ledger that belongs in it "
            "cannot be read. Move that file away.",
            hint="",
        )
    if not path.exists() and not path.is_symlink():
        return empty
    try:
        with Ledger() as ledger:
            if ledger.moved_aside is not None:
                raise LedgerError(
                    f"The job ledger {path} was damaged: it was moved to {ledger.moved_aside} "
                    "and a new one started, so there are no jobs to show.",
                    hint="",
                )
            return read(ledger)
    except LedgerError as exc:
        if isinstance(exc.__cause__, ForeignFile):  # its message says what to do
            raise LedgerError(exc.message, hint="") from exc
        raise


def sheet_for_jobs(recorder: Recorder, job_ids: Sequence[str], request: SheetRequest) -> Path:
    """Write the contact sheet of these jobs (in this order) to `request.path`;
    its path. A job the ledger does not know is read from its sidecar in the
    page's folder; one neither knows gets a tile that says so."""
    folder = request.path.parent
    jobs: list[LedgerJob | str] = []
    for job_id in job_ids:
        job = recorder.get(job_id) or job_from_sidecar(folder, job_id, recorder.base_url)
        jobs.append(job if job is not None else job_id)
    return write_sheet_for(jobs, request)


def write_sheet_for(jobs: Sequence[LedgerJob | str], request: SheetRequest) -> Path:
    """Write the contact sheet of `jobs` (a bare id: a job nothing is known of)."""
    from pixeldojo_cli.store.contact_sheet import write_sheet

    groups = groups_for(jobs, request)
    write_sheet(request.path, request.title, groups, summary=summary(groups, datetime.now()))
    return request.path


def write_grid_for(
    jobs: Sequence[LedgerJob | str],
    request: SheetRequest,
    grid_path: Path,
    load: Callable[[Path, tuple[int, int]], Any],
) -> int:
    """Write the same sheet as one PNG of labelled tiles to `grid_path` (needs
    Pillow); `load(path, box)` decodes a picture within `box` (or raises).
    How many tiles were left out of it (past `contact_grid.MAX_TILES`)."""
    from pixeldojo_cli.store.contact_grid import write_grid

    return write_grid(grid_path, request.title, groups_for(jobs, request), load)


# --- the tiles -------------------------------------------------------------------


def groups_for(jobs: Sequence[LedgerJob | str], request: SheetRequest) -> list[Group]:
    """The tiles of `jobs`, in groups by `request.group_by` (sorted by their values,
    numbers as numbers), or one group without a heading."""
    folder = request.path.parent
    if not request.group_by:
        return [Group("", tuple(t for job in jobs for t in tiles_for(job, folder)))]
    grouped: dict[tuple[str, ...], list[LedgerJob | str]] = {}
    for job in jobs:
        key = tuple(group_value(job, name) for name in request.group_by)
        grouped.setdefault(key, []).append(job)
    return [
        Group(
            " · ".join(f"{n}: {v}" for n, v in zip(request.group_by, key, strict=True)),
            tuple(t for job in _in_order(members, request) for t in tiles_for(job, folder)),
        )
        for key, members in sorted(grouped.items(), key=lambda item: _natural(item[0]))
    ]


def _in_order(jobs: list[LedgerJob | str], request: SheetRequest) -> list[LedgerJob | str]:
    """A group's jobs by seed, then oldest first (`request.by_seed`), else as given."""
    from pixeldojo_cli.store.ledger.values import EPOCH

    if not request.by_seed:
        return jobs

    def order(job: LedgerJob | str) -> tuple[tuple[tuple[int, float, str], ...], datetime]:
        when = EPOCH if isinstance(job, str) else job.submitted_at
        return _natural((group_value(job, "seed"),)), when

    return sorted(jobs, key=order)


def group_value(job: LedgerJob | str, name: str) -> str:
    """The value of `model` or of an input, as a group heading shows it."""
    if isinstance(job, str):
        return NOT_SET
    if name == MODEL_KEY:
        return job.model
    return value_text(job.inputs[name]) if name in job.inputs else NOT_SET


def _natural(values: tuple[str, ...]) -> tuple[tuple[int, float, str], ...]:
    def one(value: str) -> tuple[int, float, str]:
        try:
            return (0, float(value), value)
        except ValueError:
            return (1 if value != NOT_SET else 2, 0.0, value.casefold())

    return tuple(one(value) for value in values)


def check_group_keys(jobs: Iterable[LedgerJob], group_by: Sequence[str]) -> None:
    """`UsageError` (with a did-you-mean) for a group key none of `jobs` has."""
    jobs = list(jobs)
    known = {MODEL_KEY} | {name for job in jobs for name in job.inputs}
    for name in group_by:
        if name not in known and jobs:
            suggestion = did_you_mean(close_matches(name, sorted(known)))
            listed = sorted(known)
            more = f", ... ({len(listed) - 12} more)" if len(listed) > 12 else ""
            raise UsageError(
                f"--group-by {name}: none of these jobs has an input of that name."
                + (f" {suggestion}" if suggestion else ""),
                hint=f"Group by {MODEL_KEY} or by an input: {', '.join(listed[:12])}{more}.",
            )


def refuse_overwriting_outputs(*targets: Path) -> None:
    """`UsageError` when the page or the grid would be written over a file the
    ledger records as a saved output: of any job, API or profile, by its own path,
    through a linked folder, or as a link to it."""
    none: list[tuple[Path, str | None]] = []
    found = _read_ledger(lambda ledger: [(t, _output_at(ledger, t)) for t in targets], none)
    for target, job_id in found:
        if job_id is not None:
            raise UsageError(f"{target} is a saved output of job {job_id}: name another file.")


def _output_at(ledger: Ledger, target: Path) -> str | None:
    """The job whose recorded output `target` is (the same real path, or the same
    file), if any."""
    real = _real_path(target)
    names = sorted({target.name, os.path.basename(real)} - {""})
    for job_id, path in ledger.outputs_named(names):
        if _real_path(Path(path)) == real or _same_file(target, path):
            return job_id
    return None


def _real_path(path: Path) -> str:
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):  # (a NUL in a hand-edited path)
        return ""


def _same_file(one: Path, other: str) -> bool:
    try:
        return os.path.samefile(one, other)
    except (OSError, ValueError):  # either is missing: nothing there to overwrite
        return False


def value_text(value: Any) -> str:
    """An input value as typed: strings bare, the rest as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def tiles_for(job: LedgerJob | str, folder: Path) -> list[Tile]:
    """One tile per saved output of `job` (linked from a page in `folder`), or one
    tile that says why there is none."""
    if isinstance(job, str):
        return [Tile(job, "-", "unknown", note="Not in the job ledger, and no sidecar here.")]
    base = _job_tile(job, folder)
    if not job.files:
        return [_replace(base, note=_why_no_file(job))]
    outputs = max(len(job.files), len(job.output_urls))
    tiles = []
    for file in job.files:
        path = Path(os.path.abspath(file.path))
        present = _is_file(path)
        media = Media(path, relative_href(path, folder), media_kind(path), present)
        note = None if present else _why_absent(path)
        output = (file.n, outputs) if outputs > 1 else None
        tiles.append(_replace(base, media=media, output=output, note=note))
    return tiles


def _job_tile(job: LedgerJob, folder: Path) -> Tile:
    from pixeldojo_cli.store.files import sidecar_path

    prompt = job.inputs.get("prompt")
    seed = job.inputs.get("seed")
    others = tuple(
        (name, value_text(value))
        for name, value in job.inputs.items()
        if name not in ("prompt", "seed")
    )
    where = Path(job.files[0].path).parent if job.files else Path(job.output_dir or folder)
    sidecar = sidecar_path(Path(os.path.abspath(where)), job.id, job.base_url)
    return Tile(
        job_id=job.id,
        model=job.model,
        status=job.status,
        prompt=value_text(prompt) if prompt is not None else None,
        seed=value_text(seed) if seed is not None else None,
        inputs=others,
        credits=_credits(job),
        seconds=duration_text(job.duration),
        sidecar_href=relative_href(sidecar, folder) if _is_file(sidecar) else None,
    )


def _why_absent(path: Path) -> str:
    try:
        os.stat(path)
    except (OSError, ValueError):
        return f"{path.name} is gone from {path.parent}."
    return f"{path.name} in {path.parent} is not a regular file: not shown."


def _replace(tile: Tile, **changes: Any) -> Tile:
    from dataclasses import replace

    return replace(tile, **changes)


def _is_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def _credits(job: LedgerJob) -> str | None:
    if job.charged_credits is not None:
        return f"{job.charged_credits:g}"
    if job.estimated_credits is not None:
        return f"~{job.estimated_credits:g} (estimate)"
    return None


def duration_text(seconds: float | None) -> str | None:
    """`8.4 s`, `2 min 05 s`, `1 h 02 min`: how long a job took."""
    if seconds is None or seconds != seconds or seconds < 0:
        return None
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def _why_no_file(job: LedgerJob) -> str:
    if job.failed:
        return f"The job {_ended(job.status)} on the server: no output."
    if job.lost:
        return "Its outputs expired before they were saved."
    if job.refused:
        return f"Its outputs were refused when saving; pixeldojo download {job.id} tries again."
    if job.status not in ("completed", "succeeded"):
        return f"Not finished when last seen ({job.status}): pixeldojo jobs wait {job.id}"
    return f"Not saved yet: pixeldojo download {job.id}"


def _ended(status: str) -> str:
    return "failed" if status == "failed" else f"ended ({status})"


def summary(groups: Sequence[Group], now: datetime) -> str:
    """`12 pictures from 9 jobs · 1 file missing · written 2025-01-31 09:30`."""
    tiles = [tile for group in groups for tile in group.tiles]
    shown = sum(1 for t in tiles if t.media is not None and t.media.present)
    missing = sum(1 for t in tiles if t.media is not None and not t.media.present)
    jobs = len({t.job_id for t in tiles})
    parts = [f"{shown} {'file' if shown == 1 else 'files'} from {jobs} {_jobs(jobs)}"]
    if missing:
        parts.append(f"{missing} {'file' if missing == 1 else 'files'} missing")
    parts.append(f"written {now:%Y-%m-%d %H:%M}")
    return " · ".join(parts)


def _jobs(count: int) -> str:
    return "job" if count == 1 else "jobs"


def job_from_sidecar(folder: Path, job_id: str, base_url: str) -> LedgerJob | None:
    """What a job's sidecar in `folder` says of it, as a ledger job; None without one."""
    from pixeldojo_cli.store.files import recorded_files, sidecar_document
    from pixeldojo_cli.store.ledger import LedgerFile, LedgerJob
    from pixeldojo_cli.store.ledger.values import EPOCH

    meta = sidecar_document(folder, job_id, base_url)
    if meta is None:
        return None
    raw: dict[str, Any] = meta["job"] if isinstance(meta.get("job"), dict) else {}
    inputs = meta.get("inputs")
    cost = raw.get("creditCost")
    files = recorded_files(folder, job_id, base_url)
    return LedgerJob(
        base_url=base_url,
        id=job_id,
        profile="",
        model=str(meta.get("model") or raw.get("model") or "-"),
        inputs=inputs if isinstance(inputs, dict) else {},
        estimated_credits=None,
        charged_credits=float(cost) if isinstance(cost, int | float) else None,
        submitted_at=EPOCH,
        status=str(raw.get("status") or "completed"),
        expires_at=None,
        output_urls=[],
        output_dir=str(folder),
        lost=False,
        files=tuple(LedgerFile(n, str(f.path), f.size, f.sha256, f.url) for n, f in files.items()),
    )
