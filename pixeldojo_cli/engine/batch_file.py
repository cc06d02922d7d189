"""A batch file read as `wc -l` reads it, streaming, from an open binary file.

Lines end at `\\n` only (a `\\r` before it is dropped: `\\r\\n`); a UTF-8
byte-order mark at the very start of the file is dropped before the comment
and JSON checks. U+2028, U+0085, form feed, VT, FS and the like stay inside
their line: they are text, not line ends, so the line numbers in every message
are the ones an editor shows. The file is read a line at a time, never whole,
and each line can be read again from its offset, so that a batch of a million
lines holds no line's text while it runs.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from typing import IO, Any

from pixeldojo_cli.core.errors import UsageError

_BOM = b"\xef\xbb\xbf"
# A line longer than this is refused: no batch needs it, and it bounds memory.
MAX_LINE_BYTES = 16 * 1024 * 1024


def seekable(stream: IO[bytes], *, copy: bool = False) -> IO[bytes]:
    """`stream` itself when it can be read again from an offset; else (a pipe),
    or when asked to `copy` (standard input), a copy of it in an unnamed
    temporary file, copied in pieces."""
    try:
        if not copy and stream.seekable():
            stream.seek(0)
            return stream
    except OSError:
        pass
    spooled = tempfile.TemporaryFile()  # noqa: SIM115 (closed with the BatchFile)
    shutil.copyfileobj(stream, spooled, 1024 * 1024)
    spooled.seek(0)
    return spooled


class BatchFile:
    """An open batch file: its entries in order, and any one of them again by offset.

    `name` is how messages name it (the path given to --batch). Reading again
    is safe from several threads. `copy`: read `stream` into a temporary file
    first, which `close` closes (for standard input, which stays open).
    """

    def __init__(self, stream: IO[bytes], name: str, *, copy: bool = False) -> None:
        self.stream = seekable(stream, copy=copy)
        self.name = name
        self._lock = threading.Lock()

    def close(self) -> None:
        self.stream.close()

    def entries(self) -> Iterator[tuple[int, int, str | dict[str, Any]]]:
        """(line number, offset, prompt or inputs object) for every line that is
        neither blank nor a `# comment`, in order."""
        offset, number = 0, 0
        while raw := self._read(offset):
            number += 1
            entry = self._entry(raw, offset, number)
            if entry is not None:
                yield number, offset, entry
            offset += len(raw)

    def entry_at(self, offset: int, number: int) -> str | dict[str, Any] | None:
        """The entry of the line that starts at `offset` (line `number`), read again."""
        return self._entry(self._read(offset), offset, number)

    def _read(self, offset: int) -> bytes:
        try:
            with self._lock:
                self.stream.seek(offset)
                return self.stream.readline(MAX_LINE_BYTES + 1)
        except OSError as exc:
            reason = exc.strerror or exc
            raise UsageError(f"Cannot read --batch {self.name[:200]!r}: {reason}.") from None

    def _entry(self, raw: bytes, offset: int, number: int) -> str | dict[str, Any] | None:
        if len(raw) > MAX_LINE_BYTES:
            raise UsageError(
                f"--batch {self.name!r} line {number} is longer than "
                f"{MAX_LINE_BYTES // (1024 * 1024)} MiB."
            )
        return parse_line(decode_line(raw, offset == 0, number, self.name), number)


def decode_line(raw: bytes, first: bool, number: int, name: str) -> str:
    """One line's text: without its `\\n` or `\\r\\n`, without the byte-order mark
    that may open the file (`first`), or a usage error naming the line when it is
    not UTF-8."""
    if raw.endswith(b"\n"):
        raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
    if first and raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"--batch {name!r} line {number} is not UTF-8 text (byte {exc.start + 1} of the line).",
            hint="Save the file as UTF-8.",
        ) from None


def parse_line(text: str, number: int) -> str | dict[str, Any] | None:
    """A line's entry: a JSON object of inputs when it starts with `{`, None when it
    is blank or a `# comment`, else the prompt (without the spaces around it)."""
    line = text.strip()
    if not line or line.startswith("#"):
        return None
    if line.startswith("{"):
        return _inputs_object(line, number, column=len(text) - len(text.lstrip()))
    return line


def _inputs_object(line: str, number: int, column: int) -> dict[str, Any]:
    """A JSON line's inputs; an error naming the file's line, and the column in
    it (never the JSON parser's own "line 1")."""
    import json

    from pixeldojo_cli.core.untrusted import loads

    try:
        value = loads(line)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"--batch line {number} is not valid JSON: {exc.msg} at column {column + exc.colno}."
        ) from None
    except ValueError as exc:  # too deep, too many values, a number of too many digits
        raise UsageError(f"--batch line {number} is not valid JSON: {exc}.") from None
    if not isinstance(value, dict):
        raise UsageError(f"--batch line {number} must be a JSON object of inputs.")
    return value
