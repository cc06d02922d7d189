"""`@` values: a local file (`@PATH`) or an earlier job's output (`@job:ID`,
`@job:ID/N`) named where a model input takes a URL; `@@` stands for a literal `@`.

Which inputs take a URL is the schema's to say: a string with `format: uri`, or
an array of them (`webhook_url` never: it is not a model input). The prompt and
every other free-text input are never read as files: their `@` is text. A `@`
value for any other input (a number, a choice, a switch, an input the schema
does not declare) is a usage error with a hint.

What kind of file an input takes (a picture, a video, a sound) is read from the
schema: `contentMediaType` when it says, else the input's name (`image_url`:
pictures; `video_url`: videos; `audio_url`: sounds), else its description;
an input that says none of these takes any of them.

Pure (no I/O): fuzzed with the rest of `inputs`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pixeldojo_cli.core.errors import UsageError

# What a `@` value stands as while the schema is checked: a URL of the right form.
PLACEHOLDER = "https://upload.invalid/file"
IMAGE, VIDEO, AUDIO = "image", "video", "audio"
ANY_MEDIA = frozenset({IMAGE, VIDEO, AUDIO})
_NOT_INPUTS = frozenset({"webhook_url"})
_TEXT_INPUTS = frozenset({"prompt"})  # never a file, declared or not
_JOB_REF = re.compile(r"job:([A-Za-z0-9_.:-]{1,200})(?:/([0-9]{1,6}))?")
_WORDS = (
    (VIDEO, ("video", "clip", "movie")),
    (AUDIO, ("audio", "sound", "voice", "music", "speech", "song")),
    (IMAGE, ("image", "img", "photo", "picture", "frame", "mask", "reference")),
)


@dataclass(frozen=True)
class LocalRef:
    """`@PATH`: a file on this machine (the path as written, without the `@`)."""

    path: str


@dataclass(frozen=True)
class JobRef:
    """`@job:ID` or `@job:ID/N`: output N (from 1; None: the job's only one)."""

    job_id: str
    n: int | None = None

    @property
    def text(self) -> str:
        return f"job:{self.job_id}" + (f"/{self.n}" if self.n is not None else "")


Ref = LocalRef | JobRef


@dataclass(frozen=True)
class UrlInput:
    """A model input that takes a URL: one, or an array of them; and the kinds of
    file (`image`, `video`, `audio`) a `@` value for it may name."""

    name: str
    array: bool
    kinds: frozenset[str]


@dataclass(frozen=True)
class RefSlot:
    """Where one `@` value sits: the input, its position in an array input (None:
    the input's single value), what it names, and the kinds of file allowed."""

    input: str
    index: int | None
    ref: Ref
    kinds: frozenset[str]

    @property
    def label(self) -> str:
        """`image_url`, `image_urls[1]` (from 0, as the schema check counts)."""
        return self.input if self.index is None else f"{self.input}[{self.index}]"


def _is_uri_string(spec: Any) -> bool:
    if not isinstance(spec, Mapping) or spec.get("format") != "uri":
        return False
    kind = spec.get("type")
    return kind == "string" or (isinstance(kind, list) and "string" in kind)


def _kinds(name: str, spec: Mapping[str, Any], item: Mapping[str, Any]) -> frozenset[str]:
    for where in (item, spec):
        media = where.get("contentMediaType")
        if isinstance(media, str) and media.split("/")[0] in ANY_MEDIA:
            return frozenset({media.split("/")[0]})
    for text in (name.lower(), str(spec.get("description") or "").lower()):
        for kind, words in _WORDS:
            if any(word in text for word in words):
                return frozenset({kind})
    return ANY_MEDIA


def url_inputs(schema: Mapping[str, Any] | None) -> dict[str, UrlInput]:
    """The schema's inputs that take a URL (or an array of them), by name."""
    props = schema.get("properties") if isinstance(schema, Mapping) else None
    if not isinstance(props, Mapping):
        return {}
    found: dict[str, UrlInput] = {}
    for name, spec in props.items():
        if not isinstance(name, str) or name in _NOT_INPUTS or not isinstance(spec, Mapping):
            continue
        if _is_uri_string(spec):
            found[name] = UrlInput(name, False, _kinds(name, spec, spec))
        elif spec.get("type") == "array" and _is_uri_string(spec.get("items")):
            found[name] = UrlInput(name, True, _kinds(name, spec, spec["items"]))
    return found


def parse_ref(text: str, label: str) -> Ref | None:
    """What a value names: a `Ref` for `@PATH` or `@job:...`, None for anything
    else (`@@...` included: a literal `@`). A usage error for a bare `@` or a
    malformed `@job:` value."""
    if not text.startswith("@") or text.startswith("@@"):
        return None
    body = text[1:]
    if body.startswith("job:"):
        match = _JOB_REF.fullmatch(body)
        if match is None or match.group(2) == "0" or int(match.group(2) or 1) < 1:
            raise UsageError(
                f"{label}: {text[:80]!r} is not a job output.",
                hint="Write @job:JOB_ID for a job's only output, or @job:JOB_ID/N for output N "
                "(from 1).",
            )
        return JobRef(match.group(1), int(match.group(2)) if match.group(2) else None)
    if not body:
        raise UsageError(f"{label}: @ must be followed by a file's path, e.g. @photo.png.")
    return LocalRef(body)


def unescaped(text: str) -> str:
    """A URL input's value as sent: `@@x` is the text `@x`."""
    return text[1:] if text.startswith("@@") else text


def find_refs(
    schema: Mapping[str, Any] | None, inputs: Mapping[str, Any]
) -> tuple[dict[str, Any], list[RefSlot]]:
    """The inputs with `@@` made `@` in URL inputs (refs left as written), and
    every `@` value's slot, in order. A usage error for a `@` value where the
    schema takes no URL."""
    takes_url = url_inputs(schema)
    out = dict(inputs)
    slots: list[RefSlot] = []
    for name, value in inputs.items():
        spec = takes_url.get(name)
        if spec is None:
            _refuse_at_values(schema, name, value, takes_url)
            continue
        values = value if isinstance(value, list) else [value]
        kept: list[Any] = []
        for index, item in enumerate(values):
            position = index if isinstance(value, list) else None
            ref = (
                parse_ref(item, name if position is None else f"{name}[{index}]")
                if (isinstance(item, str))
                else None
            )
            if ref is not None:
                slots.append(RefSlot(name, position, ref, spec.kinds))
            kept.append(unescaped(item) if isinstance(item, str) and ref is None else item)
        out[name] = kept if isinstance(value, list) else kept[0]
    return out, slots


def checkable(schema: Mapping[str, Any] | None, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs as the schema check sees them: each `@` value stands as a URL
    (`PLACEHOLDER`), `@@` as `@`. The same usage errors as `find_refs`."""
    out, slots = find_refs(schema, inputs)
    return with_urls(out, {(slot.input, slot.index): PLACEHOLDER for slot in slots})


def with_urls(
    inputs: Mapping[str, Any], urls: Mapping[tuple[str, int | None], str]
) -> dict[str, Any]:
    """`inputs` with the value at each (input, index) replaced by its URL."""
    out = dict(inputs)
    for (name, index), url in urls.items():
        if index is None:
            out[name] = url
        else:
            items = list(out[name])
            items[index] = url
            out[name] = items
    return out


def _refuse_at_values(
    schema: Mapping[str, Any] | None, name: str, value: Any, takes_url: Mapping[str, UrlInput]
) -> None:
    """A `@` value where no URL goes: text inputs keep it as text; elsewhere it is
    a usage error saying which inputs take files."""
    if name in _TEXT_INPUTS or name in _NOT_INPUTS or _free_text(schema, name):
        return
    values = value if isinstance(value, list) else [value]
    if not any(isinstance(v, str) and v.startswith("@") and not v.startswith("@@") for v in values):
        return
    where = ", ".join(sorted(takes_url)) or "none of this model's inputs"
    raise UsageError(
        f"{name} takes no URL, so {str(values[0])[:60]!r} cannot name a file or a job's output.",
        hint=f"@PATH and @job:ID go in inputs that take a URL ({where}); "
        "write @@ for a value that starts with a literal @.",
    )


def _free_text(schema: Mapping[str, Any] | None, name: str) -> bool:
    """A declared string input with no choices and no format: text, never a file."""
    props = schema.get("properties") if isinstance(schema, Mapping) else None
    spec = props.get(name) if isinstance(props, Mapping) else None
    if not isinstance(spec, Mapping):
        return False
    kind = spec.get("type")
    is_string = kind == "string" or (isinstance(kind, list) and "string" in kind)
    return is_string and "enum" not in spec and "format" not in spec
