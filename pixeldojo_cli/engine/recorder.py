"""The ledger as the workflow uses it: through one door, thread-safe, never fatal."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pixeldojo_cli.engine.events import EventSink, Notice, ignore
from pixeldojo_cli.errors import (
    PixelDojoError,
)
from pixeldojo_cli.results import Job

if TYPE_CHECKING:
    from pixeldojo_cli.downloads import DownloadedFile
    from pixeldojo_cli.ledger import Ledger, LedgerJob


class Recorder:
    """The ledger as the workflow uses it: thread-safe, and never fatal.

    A ledger that is locked, read-only or damaged must never cost the user a
    paid job's outputs, so every write here turns a ledger fault into one
    warning (`Notice`) and the work goes on. Without a ledger (the embedded
    emulator, or none could be opened) every call is a no-op.
    """

    def __init__(
        self,
        ledger: Ledger | None,
        base_url: str,
        profile: str,
        notify: EventSink = ignore,
    ) -> None:
        self.ledger = ledger
        self.base_url = base_url.rstrip("/")
        self.profile = profile
        self.notify = notify
        self._lock = threading.RLock()
        self.unrecorded: list[str] = []  # job ids whose record could not be written
        self._warned = False

    def _fault(self, job_id: str, exc: Exception) -> None:
        if job_id not in self.unrecorded:
            self.unrecorded.append(job_id)
        if not self._warned:
            self._warned = True
            reason = exc.message if isinstance(exc, PixelDojoError) else str(exc)
            self.notify(
                Notice(
                    f"The job ledger could not be written ({reason}); carrying on without it. "
                    "Not recorded: " + job_id,
                    level="warning",
                )
            )

    def _safely(self, job_id: str, write: Callable[[Ledger], None]) -> None:
        if self.ledger is None:
            return
        try:
            with self._lock:
                write(self.ledger)
        except Exception as exc:  # any ledger fault: warn and go on
            self._fault(job_id, exc)

    def get(self, job_id: str) -> LedgerJob | None:
        """What the ledger knows of a job on this API, or None."""
        if self.ledger is None:
            return None
        try:
            with self._lock:
                return self.ledger.get(self.base_url, job_id)
        except Exception:  # a ledger that cannot be read knows nothing
            return None

    def submitted(
        self,
        job: Job,
        *,
        model: str,
        inputs: dict[str, Any],
        estimate: float | None,
        folder: Path,
        input_hash: str | None = None,
    ) -> None:
        """A job was submitted: recorded before any waiting starts."""
        self._safely(
            job.id,
            lambda ledger: ledger.record_submission(
                job,
                base_url=self.base_url,
                profile=self.profile,
                model=model,
                inputs=inputs,
                estimated_credits=estimate,
                output_dir=folder.resolve(),
                input_hash=input_hash,
            ),
        )

    def knows(self, job_id: str) -> bool:
        """Whether the ledger has this job."""
        return self.get(job_id) is not None

    def is_saved(self, job_id: str) -> bool:
        """Whether every output of this job is on disk, as far as the ledger knows."""
        return self.saved_state(job_id) is True

    def saved_state(self, job_id: str) -> bool | None:
        """`is_saved`, or None when the ledger does not know the job at all."""
        local = self.get(job_id)
        return None if local is None else local.downloaded

    def adopt(self, job: Job, folder: Path) -> None:
        """Record a job the API confirmed that this machine did not submit (a
        webhook's), or update the one it knows: `download --pending` then saves
        it even if this process stops first."""
        if self.get(job.id) is not None:
            self.seen(job)
            return
        self.submitted(job, model=job.model or "unknown", inputs={}, estimate=None, folder=folder)

    def seen(self, job: Job) -> None:
        """Keep the ledger's idea of a job it knows up to date."""
        self._safely(job.id, lambda ledger: ledger.update_job(self.base_url, job))

    def file_saved(self, job_id: str, n: int, file: DownloadedFile) -> None:
        """Output `n` of a job is on disk: recorded at once, not after the last file."""
        from pixeldojo_cli.ledger import LedgerFile

        entry = LedgerFile(
            n,
            str(file.path.resolve()),
            file.size,
            file.sha256,
            file.url,
            mtime_ns=file.mtime_ns,
        )
        self._safely(job_id, lambda ledger: ledger.record_files(self.base_url, job_id, [entry]))

    def lost(self, job_id: str) -> None:
        """The job's outputs expired before they were saved."""
        self._safely(job_id, lambda ledger: ledger.mark_lost(self.base_url, job_id))

    def durations(self, model: str) -> list[float]:
        """How long this model's recent jobs on this API took (most recent first):
        the history the poll schedule learns from. Empty when unknown."""
        if self.ledger is None:
            return []
        try:
            with self._lock:
                return self.ledger.durations(self.base_url, model)
        except Exception:  # no history is a fine answer
            return []

    def unsaved(self) -> list[LedgerJob]:
        """Jobs of this API and profile whose outputs were never saved, oldest first."""
        if self.ledger is None:
            return []
        with self._lock:
            return self.ledger.unsaved(base_url=self.base_url, profile=self.profile)
