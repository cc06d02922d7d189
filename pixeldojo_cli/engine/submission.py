"""One paid request, as one value: what is sent to the API and what the ledger
keeps about it, from `submit` through the batch to the `Recorder`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pixeldojo_cli.engine.file_plan import FileInputs


@dataclass(frozen=True)
class Submission:
    """What one job is asked to do, and where its outputs go.

    `model` and `inputs` (and `webhook_url`) are the request; `folder` is where
    the outputs are saved; `estimate` is the credits it was expected to cost;
    `input_hash` identifies a `--batch` line so that a rerun finds it again;
    `listed_cost` is the model's listed price, what a budget counts when there
    is no estimate;
    `files` are its `@` values (local files, earlier jobs' outputs), checked,
    which `submit` uploads and puts in `inputs` as URLs right before the POST.
    Which API and profile a job belongs to is the `Recorder`'s: one recorder
    writes every record of a command to the same place.
    """

    model: str
    inputs: dict[str, Any] = field(hash=False)
    folder: Path
    estimate: float | None = None
    input_hash: str | None = None
    webhook_url: str | None = None
    listed_cost: float | None = None
    files: FileInputs | None = field(default=None, hash=False, compare=False)

    def kept_inputs(self) -> dict[str, Any]:
        """The inputs as the ledger and the sidecar keep them: as sent once sent
        (a `data:` URI as its short stand-in), else as asked."""
        kept = self.files.kept_inputs() if self.files is not None else None
        return self.inputs if kept is None else kept

    def file_documents(self) -> list[dict[str, Any]]:
        """Each file input as sent: source, SHA-256, URL (empty before sending)."""
        return self.files.documents() if self.files is not None else []
