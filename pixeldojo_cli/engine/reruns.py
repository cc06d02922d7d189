"""`rerun`: a past job's model and inputs, found again (the ledger's record, or
a saved output's own metadata) and turned into the base inputs of a new
`JobAsk`, so that it goes through the same `prepare` and `submit` as `run`.

What is found is untrusted when it comes from a file (another program, a
hostile server, a picture someone sent): its claims are checked (a model id
that can be one), `@` in its URL inputs is sent as the literal text it is,
and which local file or earlier job a file input came from is believed only
from the job ledger. A file that names a job the ledger knows on the API in
force is a pointer to that job: the ledger's record (model and inputs) is run
again, with a warning when the file says otherwise; any other file restores
no local file (a job on another API is another job). A `data:TYPE;sha256,HEX`
stand-in (what the ledger and the sidecar keep instead of a file sent inline)
is never sent: it becomes the local file's `@PATH` again (that file still
there and unchanged), or a usage error, before anything is spent.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pixeldojo_cli.core.errors import NotFoundError, UsageError
from pixeldojo_cli.core.text import safe_text

if TYPE_CHECKING:
    from pixeldojo_cli.engine.recorder import Recorder
    from pixeldojo_cli.engine.submission import Submission
    from pixeldojo_cli.store.ledger import LedgerJob
    from pixeldojo_cli.store.provenance import Provenance

# What a job id looks like, when the argument names no existing file.
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}")
# What a model id read from a file must look like to be asked for.
_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}")
# The extensions of saved outputs and sidecars: such a name is a file, never a job id.
_FILE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".gif", ".mp4", ".webm", ".mov", ".json"}
)
# The short stand-in kept for a file sent inline as a `data:` URI.
_STAND_IN = re.compile(r"data:[^,]{0,200};sha256,[0-9a-fA-F]{64}")
_SHOWN = 80  # characters of a name read from a file shown in a message


def shown(text: str, limit: int = _SHOWN) -> str:
    """Text read from a file or the ledger, safe for a message: one line, cut."""
    return safe_text(text if len(text) <= limit else text[:limit] + "...")


@dataclass(frozen=True)
class Recorded:
    """A past job as found again: its model and inputs (as sent, file inputs
    as the ledger keeps them), its API (None: not said), the file inputs'
    sources (`LedgerJob.input_files`, from the ledger only), and where it was
    read (`ledger`, `embedded` or `sidecar`; `where` says which file)."""

    job_id: str
    model: str
    inputs: dict[str, Any] = field(hash=False)
    api: str | None = None
    input_files: tuple[dict[str, Any], ...] = field(default=(), hash=False)
    source: str = "ledger"
    where: str = ""
    # A file named a job the ledger knows: the ledger's record is what is run.
    pointer: bool = False
    # The file's metadata says otherwise than the ledger (one warning line).
    warning: str | None = field(default=None, hash=False)

    def described(self) -> str:
        """`job X (model M, from the job ledger)`, for the line said before submitting."""
        origin = {
            "ledger": "the job ledger",
            "embedded": f"the metadata in {self.where}",
            "sidecar": f"the sidecar {self.where}",
        }.get(self.source, self.where)
        if self.pointer:
            origin += ", as the job ledger records it"
        return f"job {shown(self.job_id)} ({shown(self.model)}, from {shown(origin, 240)})"


# --- what the argument names ----------------------------------------------------------


def file_or_job_id(text: str) -> Path | str:
    """JOB_ID|FILE: an existing path (anything there: a folder or a FIFO is refused
    when read) is a FILE; else a name with a path separator or a saved output's
    extension is a FILE that is missing (usage error); else a job id."""
    path = Path(text)
    if text and os.path.lexists(text):
        return path
    looks_like_file = "/" in text or os.sep in text or path.suffix.lower() in _FILE_SUFFIXES
    if looks_like_file:
        raise UsageError(
            f"There is no file '{shown(text, 200)}'.",
            hint="Give a saved output's path, or a job id (see `pixeldojo jobs list`).",
        )
    if not _JOB_ID.fullmatch(text):
        raise UsageError(
            f"'{shown(text, 200)}' is neither an existing file nor a job id.",
            hint="Give a saved output's path, or a job id such as job_abc123 "
            "(see `pixeldojo jobs list`).",
        )
    return text


def recorded_job(job_id: str, recorder: Recorder) -> Recorded:
    """The ledger's record of `job_id` (this API first, else another's); exit 6
    when the ledger does not know it: the API does not publish a job's inputs."""
    known = recorder.find(job_id)
    if known is None:
        raise NotFoundError(
            f"The job ledger does not know job {shown(job_id)}, and the API does not "
            "publish a job's model and inputs: it cannot be run again from its id.",
            hint="Run it again from a saved output instead: pixeldojo rerun FILE "
            "(the file's metadata, or its sidecar, says how it was made).",
        )
    return _from_ledger(known)


def _from_ledger(known: LedgerJob) -> Recorded:
    if known.inputs_damaged:
        raise UsageError(
            f"The job ledger's record of job {shown(known.id)} is damaged (its inputs are "
            "not a JSON object); nothing was submitted.",
            hint="Run it again from a saved output (pixeldojo rerun FILE), or with pixeldojo run.",
        )
    return Recorded(
        job_id=known.id,
        model=known.model,
        inputs=dict(known.inputs),
        api=known.base_url,
        input_files=known.input_files,
        source="ledger",
    )


def recorded_file(path: Path, recorder: Recorder) -> Recorded:
    """How the saved output at `path` was made: its embedded metadata, else its
    sidecar (`read_provenance`). Exit 2 when it cannot be read, exit 6 when it
    says nothing (not an output of this tool); its claims are checked."""
    from pixeldojo_cli.inputs.local_files import why_not_readable
    from pixeldojo_cli.store.embedded import read_embedded
    from pixeldojo_cli.store.provenance import from_sidecar

    name = shown(str(path), 200)
    try:
        embedded = read_embedded(path)
        made = embedded.provenance or from_sidecar(path)
    except OSError as exc:
        raise UsageError(f"{name} {why_not_readable(path, exc)}.") from None
    if made is None:
        raise NotFoundError(
            f"{name} holds no pixeldojo metadata, and no sidecar beside it names it: it is "
            "not an output of this tool, so there is nothing to run again.",
            hint=_why_none(path, name, embedded.problems),
        )
    _check_claims(made, name)
    where = path.name if made.source == "embedded" else made.where
    known = _known_here(made, recorder)
    if known is not None:
        return _pointer(made, known, where)
    if made.truncated:
        return _whole(made, path, name)
    # Not the ledger's job on this API: no local file is restored from it.
    return Recorded(made.job_id, made.model, dict(made.inputs), made.api, (),
                    made.source, where)  # fmt: skip


def _known_here(made: Provenance, recorder: Recorder) -> LedgerJob | None:
    """The ledger's job the file names, only on the API in force (and the
    file's own API, when it says one): a job of that id elsewhere is another job."""
    known = recorder.find(made.job_id)
    if known is None or known.base_url != recorder.base_url:
        return None
    if made.api is not None and made.api.rstrip("/") != known.base_url:
        return None
    return known


def _pointer(made: Provenance, known: LedgerJob, where: str) -> Recorded:
    """The ledger's record of the job a file names, said to come from that file;
    a warning when the file's model or inputs are not the ledger's."""
    recorded = _from_ledger(known)
    differs = made.model != known.model or (
        not made.truncated and dict(made.inputs) != dict(known.inputs)
    )
    warning = None
    if differs:
        warning = (
            f"The metadata of {shown(where, 200)} does not match the job ledger's record of "
            f"job {shown(known.id)}: the ledger's record ({shown(known.model)}) is run again."
        )
    return Recorded(known.id, known.model, recorded.inputs, known.base_url,
                    known.input_files, made.source, where, True, warning)  # fmt: skip


def _why_none(path: Path, name: str, problems: tuple[str, ...] = ()) -> str:
    if problems:  # ours, but refused (nested too deep, a model that is not text...)
        return shown("Ignored: " + "; ".join(problems) + ".", 400)
    if path.suffix.lower() == ".json":
        return "A sidecar is not an output: give one of the files it lists, or its job id."
    return f"See what it holds with: pixeldojo inspect {name}"


def _check_claims(made: Provenance, name: str) -> None:
    """A document that says it is ours, but names no model or job that can be one."""
    if not _MODEL_ID.fullmatch(made.model) or not made.job_id or len(made.job_id) > 200:
        raise UsageError(
            f"The metadata of {name} names no usable model or job (model "
            f"'{shown(made.model, 60)}'); nothing was submitted.",
            hint=f"See what it holds with: pixeldojo inspect {name}",
        )


def _whole(made: Provenance, path: Path, name: str) -> Recorded:
    """Metadata cut to fit the file (the ledger does not know its job): the whole
    inputs from the sidecar beside it, else a usage error (a cut prompt is another job)."""
    from pixeldojo_cli.store.provenance import from_sidecar

    beside = from_sidecar(path)
    if beside is not None and beside.job_id == made.job_id:
        _check_claims(beside, name)
        return Recorded(beside.job_id, beside.model, dict(beside.inputs), beside.api, (),
                        "sidecar", beside.where)  # fmt: skip
    raise UsageError(
        f"The metadata of {name} was cut to fit the file (long inputs were shortened), and "
        f"neither the job ledger nor a sidecar beside it has job {shown(made.job_id)}'s "
        "whole inputs; nothing was submitted.",
        hint="Give the long inputs again with -p KEY=VALUE, after `pixeldojo inspect` "
        "shows which they are, or run it with `pixeldojo run`.",
    )


def other_api(recorded: Recorded, current: str) -> str | None:
    """The warning when the job was made on another API than the one in force
    (it is run on the one in force: that is the API the key is for)."""
    if recorded.api is None or recorded.api.rstrip("/") == current.rstrip("/"):
        return None
    return (
        f"Job {shown(recorded.job_id)} was made on {shown(recorded.api, 200)}; it is run "
        f"again on {shown(current, 200)}, the API in force."
    )


# --- the inputs to submit again ---------------------------------------------------------

# Where a restored local file sits -> (its path, the SHA-256 it had when sent).
Expected = dict[tuple[str, int | None], tuple[str, str | None]]


def rerun_inputs(
    recorded: Recorded,
    model_id: str,
    schema: dict[str, Any],
    *,
    replaced: frozenset[str],
    new_seed: bool,
    notify: Callable[[str], None],
) -> tuple[dict[str, Any], Expected]:
    """The recorded inputs as the base of a new `JobAsk` for `model_id`: without
    those `-p` (or `--seed`) give again (`replaced`), the seed with `new_seed`,
    and those the model does not take (one `notify` line); file inputs made
    `@PATH` / `@job:ID/N` again. Also the SHA-256 each restored local file had,
    for `check_unchanged` once `prepare` has read them."""
    from pixeldojo_cli.engine.preparing import leave_out
    from pixeldojo_cli.inputs.schema import RESERVED_FIELDS
    from pixeldojo_cli.inputs.seeds import SEED

    dropped = replaced | RESERVED_FIELDS | ({SEED} if new_seed else set())
    inputs = {k: v for k, v in recorded.inputs.items() if k not in dropped}
    left_out = leave_out(model_id, schema, list(inputs), lambda line: notify(shown(line, 400)))
    inputs = {k: v for k, v in inputs.items() if k not in left_out}
    inputs, expected = _restore_files(recorded, schema, inputs)
    _refuse_stand_ins(recorded, inputs)
    return inputs, expected


def _restore_files(
    recorded: Recorded, schema: dict[str, Any], inputs: dict[str, Any]
) -> tuple[dict[str, Any], Expected]:
    """Each URL input's values: a file input the ledger knows as its source again,
    any other `@` as the literal text it is (`@@`)."""
    from pixeldojo_cli.inputs.file_refs import url_inputs

    sources = {
        (entry.get("input"), entry.get("index")): entry
        for entry in recorded.input_files
        if isinstance(entry, Mapping)
    }
    expected: Expected = {}
    out = dict(inputs)
    for name in url_inputs(schema).keys() & inputs.keys():
        value = inputs[name]
        if isinstance(value, list):
            out[name] = [
                _restored(recorded, (name, i), item, sources, expected)
                for i, item in enumerate(value)
            ]
        else:
            out[name] = _restored(recorded, (name, None), value, sources, expected)
    return out, expected


def _restored(
    recorded: Recorded,
    slot: tuple[str, int | None],
    item: Any,
    sources: Mapping[tuple[Any, Any], Mapping[str, Any]],
    expected: Expected,
) -> Any:
    """One URL input value as sent again."""
    if not isinstance(item, str):
        return item
    entry = sources.get(slot)
    if entry is not None and entry.get("url") == item:
        job, path = entry.get("job"), entry.get("path")
        if isinstance(job, str) and job:
            return f"@job:{job}"
        if isinstance(path, str) and Path(path).is_absolute():
            _check_still_there(recorded, slot, path)
            sha256 = entry.get("sha256")
            expected[slot] = (path, sha256 if isinstance(sha256, str) else None)
            return "@" + path
    return "@" + item if item.startswith("@") else item


def _label(slot: tuple[str, int | None]) -> str:
    name, index = slot
    return shown(name) if index is None else f"{shown(name)}[{index}]"


def _check_still_there(recorded: Recorded, slot: tuple[str, int | None], path: str) -> None:
    if not os.path.lexists(path):
        raise UsageError(
            f"{_label(slot)}: {shown(path, 200)}, the file job {shown(recorded.job_id)} sent, "
            "is no longer there; nothing was submitted.",
            hint=f"Send another file with -p {shown(slot[0])}=@PATH.",
        )


def _refuse_stand_ins(recorded: Recorded, inputs: dict[str, Any]) -> None:
    """A `data:TYPE;sha256,HEX` left over: a file sent inline whose source is not
    known (not in the ledger); it must never be sent as it is."""
    for name, value in inputs.items():
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            if isinstance(item, str) and _STAND_IN.fullmatch(item):
                slot = (name, index if isinstance(value, list) else None)
                raise UsageError(
                    f"{_label(slot)} of job {shown(recorded.job_id)} was a local file sent "
                    "inline, and the job ledger does not say which file; nothing was submitted.",
                    hint=f"Give it again with -p {shown(name)}=@PATH.",
                )


def check_unchanged(recorded: Recorded, expected: Expected, submission: Submission) -> None:
    """Each restored local file is the one the job sent (its SHA-256, as `prepare`
    read it just now): a usage error otherwise, before anything is uploaded."""
    files = submission.files
    if files is None:
        return
    for ref_slot, local in files.slots:
        want = expected.get((ref_slot.input, ref_slot.index))
        if want is None or local is None or want[1] is None or local.sha256 == want[1]:
            continue
        path, _ = want
        raise UsageError(
            f"{_label((ref_slot.input, ref_slot.index))}: {shown(path, 200)} has changed since "
            f"job {shown(recorded.job_id)} sent it (its SHA-256 differs); nothing was submitted.",
            hint=f"Send it as it is now with -p {shown(ref_slot.input)}=@{shown(path, 200)}.",
        )
