"""The ledger as the workflow uses it: through one door, thread-safe, never fatal."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pixeldojo_cli.api.results import Job
from pixeldojo_cli.core.errors import PixelDojoError
from pixeldojo_cli.engine.events import EventSink, Notice, ignore
from pixeldojo_cli.engine.submission import Submission

if TYPE_CHECKING:
    from pixeldojo_cli.inputs.local_files import LocalFile
    from pixeldojo_cli.store.files import DownloadedFile
    from pixeldojo_cli.store.ledger import JobGroup, Ledger, LedgerJob, LedgerRecord


class Recorder:
    """The ledger as the workflow uses it: thread-safe, and never fatal.

    A ledger that is locked, read-only or damaged must never cost the user a
    paid job's outputs. A write the ledger cannot take within its bounded wait
    is kept in the side file beside it (`pending-records.jsonl`) and written
    the next time any command opens the ledger; after that first wait, later
    writes of this command go straight to the side file (one wait, not one per
    write). A record that can be neither written nor kept is a warning that
    names the job, and the work goes on. Without a ledger (the embedded
    emulator) every call is a no-op.
    """

    def __init__(
        self,
        ledger: Ledger | None,
        base_url: str,
        profile: str,
        notify: EventSink = ignore,
        *,
        ledger_file: Path | None = None,
    ) -> None:
        self.ledger = ledger
        self.base_url = base_url.rstrip("/")
        self.profile = profile
        self.notify = notify
        # The ledger's file: its side file takes records when the ledger could not be opened.
        self._ledger_file = ledger.path if ledger is not None else ledger_file
        self.lock = threading.RLock()  # one ledger connection, many threads
        self._deferring = False
        self.deferred: list[str] = []  # job ids recorded later, from the side file
        self.unrecorded: list[str] = []  # job ids whose record could be neither written nor kept

    @property
    def records(self) -> bool:
        """Whether jobs are recorded at all (not under the embedded emulator)."""
        return self._ledger_file is not None

    def _note(self, ids: list[str], job_id: str, message: str) -> None:
        first = not ids
        if job_id not in ids:
            ids.append(job_id)
        if first:
            self.notify(Notice(message, level="warning"))

    def _record(self, job_id: str, build: Callable[[], LedgerRecord]) -> None:
        from pixeldojo_cli.store.ledger import defer

        if self._ledger_file is None:
            return
        try:
            record = build()
            with self.lock:
                if self.ledger is not None and not self._deferring:
                    if self.ledger.apply_or_defer(record):
                        return
                    self._deferring = True
                else:
                    defer(record, self._ledger_file)
        except Exception as exc:  # neither written nor kept: say so, and go on
            reason = exc.message if isinstance(exc, PixelDojoError) else str(exc)
            self._note(
                self.unrecorded,
                job_id,
                f"The job ledger could not be written ({reason}); job {job_id} is not "
                "recorded, so `download --pending` will not know it.",
            )
            return
        self._note(self.deferred, job_id, self._kept_message(job_id))

    @property
    def unopened(self) -> bool:
        """Whether jobs are recorded but the ledger could not be opened at all
        (refused, or its folder): records then wait in the side file."""
        return self.ledger is None and self._ledger_file is not None

    def _kept_message(self, job_id: str) -> str:
        from pixeldojo_cli.store.ledger import PENDING_RECORDS

        if self.unopened:
            return (
                f"The job ledger could not be opened (see above); job {job_id} is kept in "
                f"{PENDING_RECORDS} beside it and recorded once the ledger can be opened."
            )
        return (
            f"The job ledger is busy or read-only; job {job_id} is kept in {PENDING_RECORDS} "
            "beside it and recorded the next time a command opens it."
        )

    def get(self, job_id: str) -> LedgerJob | None:
        """What the ledger knows of a job on this API, or None."""
        if self.ledger is None:
            return None
        try:
            with self.lock:
                return self.ledger.get(self.base_url, job_id)
        except Exception:  # a ledger that cannot be read knows nothing
            return None

    def find(self, job_id: str) -> LedgerJob | None:
        """What the ledger knows of a job: on this API and profile, else on this
        API, else the newest of that id on another API (`rerun` says so)."""
        from pixeldojo_cli.store.ledger import JobQuery

        if self.ledger is None:
            return None
        try:
            with self.lock:
                found = self.ledger.find(JobQuery(job_id=job_id, limit=50))
        except Exception:  # a ledger that cannot be read knows nothing
            return None
        ranked = sorted(
            found, key=lambda j: (j.base_url != self.base_url, j.profile != self.profile)
        )
        return ranked[0] if ranked else None

    def submitted(self, job: Job, submission: Submission) -> None:
        """A job was submitted: recorded before any waiting starts, with the
        credits balance the submit answer reported (`pixeldojo credits`)."""
        self._record_submission(job, submission)
        if job.credits_remaining is not None:
            self._balance(job)

    def _balance(self, job: Job) -> None:
        """The balance a submit answer carried (only a finite number is kept)."""
        from pixeldojo_cli.store.ledger import balance_record

        record = balance_record(self.base_url, self.profile, job.credits_remaining, job.id)
        if record is not None:
            self._record(job.id, lambda: record)

    def _record_submission(self, job: Job, submission: Submission) -> None:
        from pixeldojo_cli.store.ledger import submission_record

        self._record(
            job.id,
            lambda: submission_record(
                job,
                base_url=self.base_url,
                profile=self.profile,
                model=submission.model,
                inputs=submission.kept_inputs(),
                file_inputs=submission.file_documents(),
                estimated_credits=submission.estimate,
                output_dir=submission.folder,
                input_hash=submission.input_hash,
            ),
        )

    def grouped(self, job_id: str, group_id: str, kind: str, varied: dict[str, Any]) -> None:
        """The job is one of a sweep or a comparison (`group_id`), and `varied` is
        what was varied for it: what a contact sheet groups by."""
        from pixeldojo_cli.store.ledger import group_record

        self._record(job_id, lambda: group_record(self.base_url, job_id, group_id, kind, varied))

    def groups_of(self, job_ids: list[str]) -> dict[str, list[JobGroup]]:
        """The sweeps and comparisons these jobs belong to ({} when unknown)."""
        if self.ledger is None:
            return {}
        try:
            with self.lock:
                return self.ledger.groups_of(self.base_url, job_ids)
        except Exception:  # a ledger that cannot be read knows nothing
            return {}

    def upload_url(self, uploader: str, sha256: str, ttl: float) -> str | None:
        """The URL this uploader gave for this file within `ttl` seconds, if the
        ledger remembers one (None: upload it)."""
        if self.ledger is None or ttl <= 0:
            return None
        try:
            with self.lock:
                return self.ledger.upload_url(uploader, sha256, ttl)
        except Exception:  # a cache that cannot be read: upload again
            return None

    def uploaded(self, uploader: str, file: LocalFile, url: str) -> None:
        """Remember an upload's URL, for reruns and batches (never fatal)."""
        from pixeldojo_cli.store.ledger import upload_record

        if self.ledger is None:
            return
        try:
            with self.lock:
                self.ledger.apply(upload_record(uploader, file.sha256, url, file.size, file.mime))
        except Exception:  # not remembered: the next run uploads it again
            return

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
        # (not `submitted`: a job looked up is no submit answer, its balance no news)
        self._record_submission(job, Submission(job.model or "unknown", {}, folder))

    def seen(self, job: Job) -> None:
        """Keep the ledger's idea of a job it knows up to date."""
        from pixeldojo_cli.store.ledger import status_record

        self._record(job.id, lambda: status_record(self.base_url, job))

    def file_saved(self, job_id: str, n: int, file: DownloadedFile) -> None:
        """Output `n` of a job is on disk: recorded at once, not after the last file."""
        from pixeldojo_cli.store.ledger import LedgerFile, files_record

        entry = LedgerFile(
            n,
            str(file.path.resolve()),
            file.size,
            file.sha256,
            file.url,
            mtime_ns=file.mtime_ns,
        )
        self._record(job_id, lambda: files_record(self.base_url, job_id, [entry]))

    def lost(self, job_id: str) -> None:
        """The job's outputs expired before they were saved."""
        from pixeldojo_cli.store.ledger import lost_record

        self._record(job_id, lambda: lost_record(self.base_url, job_id))

    def refused(self, job_id: str, refused: bool = True) -> None:
        """Whether the last try at saving the job's outputs was refused (they can
        never be fetched as things stand): the pending sweep skips it while it is."""
        from pixeldojo_cli.store.ledger import refused_record

        self._record(job_id, lambda: refused_record(self.base_url, job_id, refused))

    def skipped_as_refused(self) -> list[LedgerJob]:
        """Jobs of this API and profile the sweep skips, their outputs refused
        before, that have not expired yet. Empty when unknown."""
        if self.ledger is None:
            return []
        try:
            with self.lock:
                return self.ledger.refused(base_url=self.base_url, profile=self.profile)
        except Exception:  # a note, never a failure
            return []

    def durations(self, model: str) -> list[float]:
        """How long this model's recent jobs on this API took (most recent first):
        the history the poll schedule learns from. Empty when unknown."""
        if self.ledger is None:
            return []
        try:
            with self.lock:
                return self.ledger.durations(self.base_url, model)
        except Exception:  # no history is a fine answer
            return []

    def unsaved(self) -> list[LedgerJob]:
        """Jobs of this API and profile whose outputs were never saved, oldest first."""
        if self.ledger is None:
            return []
        with self.lock:
            return self.ledger.unsaved(base_url=self.base_url, profile=self.profile)

    def kept_unsaved(self) -> list[str]:
        """Ids of unsaved jobs kept in the side file while the ledger could not
        be opened (`unopened`): not in `unsaved`. [] otherwise."""
        from pixeldojo_cli.store.ledger import kept_unsaved

        if not self.unopened or self._ledger_file is None:
            return []
        return kept_unsaved(self._ledger_file, self.base_url, self.profile)
