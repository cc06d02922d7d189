"""How a saved output was made, as one typed value (`Provenance`): the job,
its model and inputs (the prompt and the seed among them), its API, when it
was made and what it cost.

It is written into PNG, JPEG and WebP outputs as one JSON document
(`document`, `encode`) and read back from them (`from_document`), or, when a
file's metadata is gone (a picture edited elsewhere), from the sidecar
`<jobId>.json` beside it (`from_sidecar`). `embedded.read_provenance(path)`
tries both, in that order: what `inspect` shows and what `rerun` submits again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pixeldojo_cli.core.untrusted import tidy

# The document's marker and version: `{"pixeldojo": 1, ...}`.
FORMAT_VERSION = 1
# The most characters of one input value kept when a document must shrink to fit
# (a JPEG segment holds 64 KiB); the document then says `"truncated": true`.
SHRUNK_VALUE_CHARS = 2000


@dataclass(frozen=True)
class Provenance:
    """How one output was made. `source` is `embedded` (read from the file) or
    `sidecar` (from `<jobId>.json` beside it); `where` says which piece or file."""

    job_id: str
    model: str
    inputs: dict[str, Any] = field(hash=False)
    api: str | None = None
    created: str | None = None
    credits: float | None = None
    source: str = "embedded"
    where: str = ""
    truncated: bool = False

    @property
    def prompt(self) -> str | None:
        prompt = self.inputs.get("prompt")
        return prompt if isinstance(prompt, str) else None

    @property
    def seed(self) -> int | None:
        seed = self.inputs.get("seed")
        return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def document(made: Provenance, *, tool: str, secret: str | None) -> dict[str, Any]:
    """The JSON document written into a file, every string with the key masked
    (a server that echoes the key must not make us write it into a picture)."""
    value: dict[str, Any] = {
        "pixeldojo": FORMAT_VERSION,
        "tool": tool,
        "jobId": made.job_id,
        "model": made.model,
        "inputs": made.inputs,
        "api": made.api,
        "createdAt": made.created,
        "credits": made.credits,
    }
    cleaned: dict[str, Any] = tidy(value, secret)
    return cleaned


def encode(value: dict[str, Any], limit: int) -> bytes | None:
    """The document as compact ASCII JSON of at most `limit` bytes: the first
    of `encodings` that fits (None when even the smallest does not)."""
    return next((text for text in encodings(value) if len(text) <= limit), None)


def encodings(value: dict[str, Any]) -> Iterator[bytes]:
    """The document as compact ASCII JSON, whole, then smaller: long input
    values cut (and `"truncated": true` says so), then at worst only the job,
    model, seed, API and time kept. A writer takes the first that fits where
    it goes (sized as written there: a JPEG's XML escaping grows it)."""
    yield _dumps(value)
    given = value.get("inputs")
    inputs: dict[str, Any] = given if isinstance(given, dict) else {}
    yield _dumps({**value, "inputs": {k: _shrunk(v) for k, v in inputs.items()}, "truncated": True})
    seed = {k: v for k, v in inputs.items() if k == "seed"}
    yield _dumps({**value, "inputs": seed, "truncated": True})


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), default=str).encode()


def _shrunk(value: Any) -> Any:
    if isinstance(value, str) and len(value) > SHRUNK_VALUE_CHARS:
        return value[:SHRUNK_VALUE_CHARS] + "..."
    if isinstance(value, list | dict) and len(_dumps(value)) > SHRUNK_VALUE_CHARS:
        return "(too long to embed)"
    return value


def from_document(value: Any, *, where: str) -> Provenance | None:
    """A document read from a file (already decoded, of bounded depth) as a
    `Provenance`; None when it is not one of ours (wrong marker or types)."""
    if not isinstance(value, dict) or value.get("pixeldojo") != FORMAT_VERSION:
        return None
    job_id, model, inputs = value.get("jobId"), value.get("model"), value.get("inputs")
    if not isinstance(job_id, str) or not isinstance(model, str) or not isinstance(inputs, dict):
        return None
    return Provenance(
        job_id=job_id,
        model=model,
        inputs=finite(inputs),
        api=_text_or_none(value.get("api")),
        created=_text_or_none(value.get("createdAt")),
        credits=_number_or_none(value.get("credits")),
        source="embedded",
        where=where,
        truncated=value.get("truncated") is True,
    )


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _number_or_none(value: Any) -> float | None:
    """A number read from a file, None for anything else or one not finite."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        return None
    return number if math.isfinite(number) else None


def finite(value: Any) -> Any:
    """`value` (decoded JSON, of bounded depth) with every number that is not
    finite (NaN, Infinity, `1e999`) made None: unknown, never printed."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite(item) for item in value]
    return value


# --- the sidecar, when the file's own metadata is gone ------------------------------


def from_sidecar(path: Path, saved_sha256: str | None = None) -> Provenance | None:
    """The provenance of the output at `path` from the sidecar beside it: the
    sidecar named by the file name's job part (`<stem>-<n>.<ext>` ->
    `<stem>.json`), believed only when its `jobId` is that name's job and it
    lists this file, by name or by hash (`saved_sha256`, the file's own, or
    computed here when the name does not match)."""
    from pixeldojo_cli.store.files import read_sidecar

    stem = stem_of(path.name)
    if stem is None:
        return None
    sidecar = path.parent / f"{stem}.json"
    meta = read_sidecar(sidecar)
    if meta is None:
        return None
    job_id, model, inputs = meta.get("jobId"), meta.get("model"), meta.get("inputs")
    if not isinstance(job_id, str) or not isinstance(model, str) or not isinstance(inputs, dict):
        return None
    if not names_job(stem, job_id):
        return None
    if not _lists(meta.get("files"), path, saved_sha256):
        return None
    raw = meta.get("job")
    job: dict[str, Any] = raw if isinstance(raw, dict) else {}
    base_url = meta.get("baseUrl")
    return Provenance(
        job_id=job_id,
        model=model,
        inputs=finite(inputs),
        api=base_url if isinstance(base_url, str) else None,
        created=_text_or_none(job.get("createdAt")),
        credits=_number_or_none(job.get("creditCost")),
        source="sidecar",
        where=sidecar.name,
    )


def sidecar_job(path: Path) -> str | None:
    """The `jobId` of the sidecar beside the output at `path` (`<stem>.json`)
    when that sidecar lists the file by name, whatever job it names; None
    when there is none, or it does not list the file."""
    from pixeldojo_cli.store.files import read_sidecar

    stem = stem_of(path.name)
    meta = read_sidecar(path.parent / f"{stem}.json") if stem is not None else None
    if meta is None or not isinstance(meta.get("files"), list):
        return None
    listed = any(isinstance(f, dict) and f.get("path") == path.name for f in meta["files"])
    job_id = meta.get("jobId")
    return str(job_id) if listed else None


def names_job(stem: str, job_id: str) -> bool:
    """Whether `stem` (a file name's job part) is the name this client gives
    job `job_id`'s files: `plain_stem(job_id)`, or that and the short hash
    added when another job had the name (`files.job_stem`)."""
    from pixeldojo_cli.store.files import plain_stem

    own = plain_stem(job_id)
    if stem == own:
        return True
    head, _, tail = stem.rpartition("-")
    return head == own and len(tail) == 8 and all(c in "0123456789abcdef" for c in tail)


def stem_of(name: str) -> str | None:
    """`job_1-2.png` -> `job_1`; None for a name that is not `<stem>-<n>.<ext>`."""
    base = name.rsplit(".", 1)[0] if "." in name else name
    stem, _, number = base.rpartition("-")
    return stem if stem and number.isdigit() else None


def _lists(files: Any, path: Path, saved_sha256: str | None) -> bool:
    """Whether the sidecar's `files` names this file, or holds its hash (only
    hashed when its size is one listed: a big stranger is never read whole)."""
    entries = [f for f in files if isinstance(f, dict)] if isinstance(files, list) else []
    if any(entry.get("path") == path.name for entry in entries):
        return True
    try:
        size = path.stat().st_size
    except OSError:
        return False
    hashes = {
        entry.get(digest)
        for entry in entries
        for digest, length in (("sha256", "size"), ("servedSha256", "servedSize"))
        if entry.get(length) == size
    }
    if not hashes - {None}:
        return False
    if saved_sha256 is None:
        from pixeldojo_cli.store.files import file_sha256

        try:
            saved_sha256 = file_sha256(path)
        except OSError:
            return False
    return saved_sha256 in hashes
