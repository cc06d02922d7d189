"""An id (a model's, a job's) put into an API path as exactly one segment.

`quote(id, safe="")` encodes every `/`, `?`, `#` and `%`, so no id can add a
segment or a query; but `.` and `..` are dot-segments, which URL resolution
removes (`models/..` is the API's root), and an empty id names the collection.
No model or job has such an id: each is refused before any request.
"""

from __future__ import annotations

from urllib.parse import quote

from pixeldojo_cli.core.errors import UsageError

_NOT_NAMES = ("", ".", "..")


class NotAnIdError(UsageError):
    """An id no model or job can have: nothing was asked (and no job is waiting)."""


def path_segment(value: str, what: str) -> str:
    """`value` (the `what`: "model id", "job id") as one percent-encoded path
    segment; `NotAnIdError` (a usage error, exit 2) for an id that cannot be one."""
    if not value.strip():
        raise NotAnIdError(f"The {what} must not be empty.")
    if value in _NOT_NAMES:
        raise NotAnIdError(
            f"{value!r} is not a {what}: in a URL path it names a folder of the API "
            "(a dot-segment), never one model or job."
        )
    return quote(value, safe="")
