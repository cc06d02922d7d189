"""How to wait and how to save: frozen options, resolved once from flags and
`Settings` by `resolve_options()`, the only home of "flag > environment >
config > default" for waiting and saving. The poll schedules themselves are
`pixeldojo_cli.engine.schedule`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pixeldojo_cli.core.durations import LIMITS, duration_message
from pixeldojo_cli.core.errors import UsageError
from pixeldojo_cli.store.settings import (  # re-exported: the engine's name for it
    DEFAULT_UNKNOWN_STATUS_TIMEOUT as DEFAULT_UNKNOWN_STATUS_TIMEOUT,
)

if TYPE_CHECKING:
    from pixeldojo_cli.store.ledger import LedgerJob
    from pixeldojo_cli.store.settings import Settings


# One `GET /jobs?limit=N` answers for many running jobs at once.
LIST_LIMIT = 100


# --- options ------------------------------------------------------------------


@dataclass(frozen=True)
class WaitOptions:
    """How to wait: the poll schedule and the one deadline.

    `poll_interval`/`max_poll_interval` are set when a flag or the config asked
    for the fixed doubling schedule; None means the schedule learned from each
    model's durations here (`schedule.choose_schedule`).
    """

    poll_interval: float | None = None
    max_poll_interval: float | None = None
    timeout: float | None = None
    unknown_status_timeout: float = DEFAULT_UNKNOWN_STATUS_TIMEOUT


@dataclass(frozen=True)
class SaveOptions:
    """Where and how to save outputs.

    `folder` is the folder asked for on the command line (`-o`); without it a job
    the ledger knows goes to the folder it was submitted for, and any other job
    to `default_folder` (PIXELDOJO_OUTPUT_DIR, the config, or the current one).
    """

    default_folder: Path = Path(".")
    folder: Path | None = None
    checksum: bool = False
    force: bool = False
    download: bool = True
    embed_metadata: bool = True  # the job written into saved PNG, JPEG and WebP files

    def folder_for(self, local: LedgerJob | None) -> Path:
        """The folder one job's outputs go to."""
        if self.folder is not None:
            return self.folder
        if local is not None and local.output_dir:  # (empty: damaged, hand-edited)
            return Path(local.output_dir)
        return self.default_folder


@dataclass(frozen=True)
class JobFlags:
    """The raw values of the waiting and saving flags one command was given
    (None: not given)."""

    output_dir: str | None = None
    poll_interval: float | None = None
    max_poll_interval: float | None = None
    timeout: float | None = None
    checksum: bool | None = None
    force: bool = False
    download: bool = True


def _from_config(setting: Any) -> float | None:
    """A poll setting's value when it came from the environment or the config."""
    return None if setting.source == "default" else float(setting.value)


def resolve_options(settings: Settings, flags: JobFlags) -> tuple[WaitOptions, SaveOptions]:
    """Flags over `settings` (which already hold environment > config > default):
    the one place that rule is applied to waiting and saving."""
    for value, option in (
        (flags.poll_interval, "--poll-interval"),
        (flags.max_poll_interval, "--max-poll-interval"),
    ):
        if value is not None and not LIMITS[option].allows(value):  # a library caller's value
            raise UsageError(duration_message(option, f"{value:g}"))
    poll = flags.poll_interval or _from_config(settings.poll_interval)
    longest = flags.max_poll_interval or _from_config(settings.max_poll_interval)
    wait = WaitOptions(
        poll_interval=poll,
        max_poll_interval=longest,
        timeout=flags.timeout,
        unknown_status_timeout=float(settings.unknown_status_timeout.value),
    )
    default_folder = Path(str(settings.output_dir.value)).expanduser()
    save = SaveOptions(
        default_folder=default_folder,
        folder=Path(flags.output_dir).expanduser() if flags.output_dir else None,
        checksum=bool(settings.checksum.value) if flags.checksum is None else flags.checksum,
        force=flags.force,
        download=flags.download,
        embed_metadata=bool(settings.embed_metadata.value),
    )
    return wait, save
