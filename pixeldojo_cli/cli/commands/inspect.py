"""`pixeldojo inspect FILE...`: how a saved output was made, from the metadata
written into it, or from the sidecar beside it when that is gone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pixeldojo_cli.cli.state import AppState, get_state
from pixeldojo_cli.core.errors import PixelDojoError, UsageError, combined_exit_code

if TYPE_CHECKING:
    from pixeldojo_cli.store.embedded import Embedded

HELP = """\
Show how a saved output was made: model, prompt, seed, other inputs, job id,
API, when, and what it cost.

Read from the metadata this tool writes into PNG, JPEG and WebP outputs (setting
embed_metadata), or, when it is gone (a picture edited elsewhere), from the
<jobId>.json sidecar beside the file. Metadata another program wrote is shown
as text only. A file that holds none: exit 6; a path that is not a readable
file: exit 2. --json prints a list, one object per FILE.
"""

EXAMPLES = """\
Examples:

  pixeldojo inspect out/job_123-1.png

  pixeldojo inspect renders/*.webp --json

  pixeldojo inspect photo.jpg --json | jq -r '.[0].seed'
"""

# What is shown of one value read from a file: a hostile file's prompt may be a megabyte.
SHOWN_CHARS = 4000
SHOWN_VALUE_CHARS = 300


class NoMetadataError(PixelDojoError):
    """A readable file that says nothing about its making (exit 6)."""

    code = "not_found"


def inspect(
    ctx: typer.Context,
    files: Annotated[
        list[Path],
        typer.Argument(metavar="FILE...", help="Saved outputs to read.", show_default=False),
    ],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print a JSON list: one object per FILE.")
    ] = False,
) -> None:
    state = get_state(ctx)
    with state.guard(json_output=json_output):
        documents, codes = [], []
        for index, path in enumerate(files):
            document, error = _inspect_one(path)
            documents.append(document)
            if not json_output and (error is None or document["otherMetadata"]):
                _print(state, document, first=index == 0)
            if error is not None:
                state.render.error(error)
                codes.append(error.exit_code)
        if json_output:
            state.render.json(documents)
        code = combined_exit_code(codes)
        if code:
            raise typer.Exit(int(code))


def _inspect_one(path: Path) -> tuple[dict[str, Any], PixelDojoError | None]:
    """One FILE's document, and the error that says why it holds nothing."""
    from pixeldojo_cli.cli.documents import provenance_document
    from pixeldojo_cli.store.embedded import Embedded, provenance_of

    try:
        embedded, made = provenance_of(path)
    except OSError as exc:
        error: PixelDojoError = UsageError(f"Cannot read {str(path)[:200]!r}: {_reason(exc)}.")
        return provenance_document(path, Embedded(None), None, error), error
    if made is not None:
        return provenance_document(path, embedded, made), None
    other = " (what other programs wrote is shown above)" if embedded.foreign else ""
    error = NoMetadataError(
        f"{str(path)[:200]!r} holds no pixeldojo metadata, and no sidecar beside it "
        f"names it{other}.",
        hint=_why_none(embedded),
    )
    return provenance_document(path, embedded, None, error), error


def _reason(exc: OSError) -> str:
    """Why a path cannot be read, in words (never a traceback)."""
    import errno

    if exc.errno == errno.EINVAL:
        return "it is not a regular file (a folder, a FIFO or a device)"
    if exc.errno == errno.EISDIR:
        return "it is a folder"
    return str(exc.strerror or exc)


def _why_none(embedded: Embedded) -> str:
    if embedded.problems:
        return "Ignored: " + "; ".join(embedded.problems) + "."
    if embedded.kind is None:
        return "It is not a PNG, JPEG or WebP picture: only a sidecar (<jobId>.json) could say."
    return "Was it saved with embed_metadata off, or renamed away from its sidecar?"


def _print(state: AppState, document: dict[str, Any], *, first: bool) -> None:
    """One file's provenance for a person, on stdout."""
    if not first:
        state.render.result("")
    state.render.result(str(document["path"]))
    rows: list[tuple[str, Any]] = [
        ("Model", document["model"]),
        ("Prompt", document["prompt"]),
        ("Seed", document["seed"]),
        ("Inputs", _other_inputs(document["inputs"])),
        ("Job", document["jobId"]),
        ("API", document["api"]),
        ("Created", document["createdAt"]),
        ("Credits", None if document["credits"] is None else f"{document['credits']:g}"),
    ]
    if document["source"] is not None:
        rows.append(("From", _from(document)))
    for label, value in rows:
        if value not in (None, ""):
            state.render.result(f"  {label + ':':<9} {_shown(str(value), SHOWN_CHARS)}")
    if document["truncated"]:
        state.render.result("  (long inputs were cut to fit the file's metadata)")
    if document["otherMetadata"]:
        state.render.result("  Other metadata (not written by pixeldojo; shown as text):")
        for item in document["otherMetadata"]:
            label = _shown(item["label"], 60)
            state.render.result(f"    {label}: {_shown(item['text'], SHOWN_CHARS)}")
    for problem in document["problems"]:
        state.render.warn(f"{document['path']}: {problem}")


def _from(document: dict[str, Any]) -> str:
    if document["source"] == "sidecar":
        return f"the sidecar {document['where']} (the file's own metadata is gone)"
    return f"metadata in the file ({document['where']})"


def _other_inputs(inputs: Any) -> str:
    """The inputs but the prompt and the seed, as `key=value, ...`, each value cut."""
    if not isinstance(inputs, dict):
        return ""
    shown = []
    for key, value in inputs.items():
        if key in ("prompt", "seed"):
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        shown.append(f"{_shown(str(key), 60)}={_shown(text, SHOWN_VALUE_CHARS)}")
    return ", ".join(shown)


def _shown(text: str, limit: int) -> str:
    """Text from a file, made safe (one line, no control characters) and cut."""
    from pixeldojo_cli.core.text import safe_text

    cut = text if len(text) <= limit else text[:limit] + "..."
    return safe_text(cut)
