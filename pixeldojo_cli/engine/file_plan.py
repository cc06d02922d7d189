"""A job's `@` values as one value: each slot with its checked local file (or
the job output it names), what `--dry-run` lists, and, once `submit` has sent
them, what was sent (`SentFile`), which the ledger and the sidecar keep."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pixeldojo_cli.engine.uploaders import UploadSettings
from pixeldojo_cli.inputs.file_refs import JobRef, RefSlot, with_urls
from pixeldojo_cli.inputs.local_files import LocalFile


@dataclass(frozen=True)
class SentFile:
    """One `@` value as sent: where it sits, where it came from (a local path, or
    a job's output `ID/N`), its SHA-256, size and type when a file was read,
    and the URL sent (a `data:` URI is kept as `data:TYPE;sha256,HEX`)."""

    input: str
    index: int | None
    url: str
    path: str | None = None
    job: str | None = None
    sha256: str | None = None
    size: int | None = None
    mime: str | None = None

    def document(self) -> dict[str, Any]:
        """The JSON shape the ledger, the sidecar and `jobs show` use."""
        url = self.url
        if url.startswith("data:"):
            url = f"data:{self.mime};sha256,{self.sha256}"
        return {
            "input": self.input,
            "index": self.index,
            "path": self.path,
            "job": self.job,
            "sha256": self.sha256,
            "size": self.size,
            "type": self.mime,
            "url": url,
        }


class FileInputs:
    """The `@` values of one job, checked: each slot with its local file (None for
    a job's output, resolved when sent). `sent` and `sent_inputs` are filled in
    by `submit` once the files are uploaded."""

    def __init__(self, slots: list[tuple[RefSlot, LocalFile | None]], upload: UploadSettings):
        self.slots = tuple(slots)
        self.upload = upload
        self.sent: tuple[SentFile, ...] = ()
        self.sent_inputs: dict[str, Any] | None = None

    def planned(self) -> list[dict[str, Any]]:
        """What `--dry-run` lists: each file it would upload (path, size, type,
        SHA-256), and each job output it would use."""
        listed: list[dict[str, Any]] = []
        for slot, local in self.slots:
            entry: dict[str, Any] = {"input": slot.input, "index": slot.index}
            if local is not None:
                entry.update(path=str(local.path), size=local.size, type=local.mime,
                             sha256=local.sha256)  # fmt: skip
            elif isinstance(slot.ref, JobRef):
                entry["job"] = slot.ref.text.removeprefix("job:")
            listed.append(entry)
        return listed

    def kept_inputs(self) -> dict[str, Any] | None:
        """The request as sent, a `data:` URI kept as its short stand-in (None: not sent)."""
        if self.sent_inputs is None:
            return None
        return with_urls(
            self.sent_inputs, {(s.input, s.index): s.document()["url"] for s in self.sent}
        )

    def documents(self) -> list[dict[str, Any]]:
        return [sent.document() for sent in self.sent]
