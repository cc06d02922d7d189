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

import os
import tempfile
import threading
from collections.abc import Iterator
from typing import IO, Any

from pixeldojo_cli.core.errors import UsageError

_BOM = b"\xef\xbb\xbf"
# A line whose text (without its `\n` or `\r\n`) is longer than this is refused:
# no batch needs it, and it bounds memory.
MAX_LINE_BYTES = 16 * 1024 * 1024
# A batch file of more lines, or more bytes, than this is refused: ten million
# jobs is more than anyone means, and it bounds the time spent planning and the
# copy of standard input (`yes | pixeldojo run M --batch -` must end).
MAX_BATCH_LINES = 10_000_000
MAX_BATCH_BYTES = 1024 * 1024 * 1024
_CHUNK = 1024 * 1024


def seekable(stream: IO[bytes], name: str, *, copy: bool = False) -> IO[bytes]:
    """`stream` itself when it can be read again from an offset; else (a pipe, a
    FIFO), or when asked to `copy` (standard input), a copy of it in a temporary
    file that has no name (so nothing is left behind, whatever ends the process),
    readable by this user alone, copied in pieces within the batch file's limits."""
    try:
        if not copy and stream.seekable():
            stream.seek(0)
            return stream
    except OSError:
        pass
    spooled = tempfile.TemporaryFile()  # noqa: SIM115 (closed with the BatchFile)
    try:
        _copy_within_limits(stream, spooled, name)
        spooled.seek(0)
    except BaseException:
        spooled.close()
        raise
    return spooled


def _copy_within_limits(source: IO[bytes], target: IO[bytes], name: str) -> None:
    """Copy `source` to `target`, refusing it as soon as it passes a limit: a
    line longer than `MAX_LINE_BYTES` (`< /dev/zero` fails after 16 MiB), more
    lines than `MAX_BATCH_LINES` or bytes than `MAX_BATCH_BYTES` (endless input)."""
    total = newlines = run = 0  # run: bytes since the last `\n`
    longest = MAX_LINE_BYTES + 1  # (+1: a `\r` before the `\n`; the reader checks)
    while chunk := source.read(_CHUNK):
        total += len(chunk)
        first = chunk.find(b"\n")
        if first >= 0 and run + first > longest:
            raise line_too_long(name, newlines + 1)
        if first < 0:
            run += len(chunk)
        else:
            newlines += chunk.count(b"\n")
            run = len(chunk) - chunk.rfind(b"\n") - 1
        if run > longest:
            raise line_too_long(name, newlines + 1)
        if newlines > MAX_BATCH_LINES or total > MAX_BATCH_BYTES:
            raise batch_too_big(name)
        target.write(chunk)


def line_too_long(name: str, number: int) -> UsageError:
    return UsageError(
        f"--batch {name[:200]!r} line {number} is longer than {MAX_LINE_BYTES // 2**20} MiB."
    )


def batch_too_big(name: str) -> UsageError:
    return UsageError(
        f"--batch {name[:200]!r} has more than {MAX_BATCH_LINES:,} lines or "
        f"{MAX_BATCH_BYTES // 2**30} GiB.",
        hint="Split it into several batches; nothing was submitted.",
    )


class BatchFile:
    """An open batch file: its entries in order, and any one of them again by offset.

    `name` is how messages name it (the path given to --batch). Reading again
    is safe from several threads, and reads the file itself, never a buffer
    (a line changed since it was planned is seen changed). `copy`: read
    `stream` into a temporary file first, which `close` closes (for standard
    input, which stays open).
    """

    def __init__(self, stream: IO[bytes], name: str, *, copy: bool = False) -> None:
        self.stream = seekable(stream, name, copy=copy)
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
            if number > MAX_BATCH_LINES or offset > MAX_BATCH_BYTES:
                raise batch_too_big(self.name)
            entry = self._entry(raw, offset, number)
            if entry is not None:
                yield number, offset, entry
            offset += len(raw)

    def entry_at(self, offset: int, number: int) -> str | dict[str, Any] | None:
        """The entry of the line that starts at `offset` (line `number`), read
        again from the file."""
        return self._entry(self._read(offset, again=True), offset, number)

    def _read(self, offset: int, *, again: bool = False) -> bytes:
        """The line at `offset` with its line end, at most 2 bytes past the cap."""
        try:
            if again and (fd := _fileno(self.stream)) is not None:
                return _read_line_at(fd, offset)
            with self._lock:
                self.stream.seek(offset)
                return self.stream.readline(MAX_LINE_BYTES + 2)
        except OSError as exc:
            reason = exc.strerror or exc
            raise UsageError(f"Cannot read --batch {self.name[:200]!r}: {reason}.") from None

    def _entry(self, raw: bytes, offset: int, number: int) -> str | dict[str, Any] | None:
        if len(raw) - len(_line_end(raw)) > MAX_LINE_BYTES:
            raise line_too_long(self.name, number)
        return parse_line(decode_line(raw, offset == 0, number, self.name), number, self.name)


def _fileno(stream: IO[bytes]) -> int | None:
    try:
        return stream.fileno()
    except (OSError, ValueError):  # (io.UnsupportedOperation is both)
        return None


def _read_line_at(fd: int, offset: int) -> bytes:
    """The line at `offset` read from the file itself (`pread`: no buffer that may
    hold what the file said before, no shared position), in growing pieces."""
    data = bytearray()
    size = 4096
    while len(data) < MAX_LINE_BYTES + 2:
        piece = os.pread(fd, min(size, MAX_LINE_BYTES + 2 - len(data)), offset + len(data))
        end = piece.find(b"\n")
        data += piece if end < 0 else piece[: end + 1]
        if not piece or end >= 0:
            break
        size = min(size * 4, _CHUNK)
    return bytes(data)


def _line_end(raw: bytes) -> bytes:
    if raw.endswith(b"\n"):
        return b"\r\n" if raw.endswith(b"\r\n") else b"\n"
    return b""


def decode_line(raw: bytes, first: bool, number: int, name: str) -> str:
    """One line's text: without its `\\n` or `\\r\\n`, without the byte-order mark
    that may open the file (`first`), or a usage error naming the line when it is
    not UTF-8."""
    raw = raw[: len(raw) - len(_line_end(raw))]
    if first and raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"--batch {name!r} line {number} is not UTF-8 text (byte {exc.start + 1} of the line).",
            hint="Save the file as UTF-8.",
        ) from None


def parse_line(text: str, number: int, name: str) -> str | dict[str, Any] | None:
    """A line's entry: a JSON object of inputs when it starts with `{`, None when it
    is blank or a `# comment`, else the prompt (without the spaces around it).
    `name` names the file in messages."""
    line = text.strip()
    if not line or line.startswith("#"):
        return None
    if line.startswith("{"):
        return _inputs_object(
            line, f"--batch {name[:200]!r} line {number}", column=len(text) - len(text.lstrip())
        )
    return line


def _inputs_object(line: str, where: str, column: int) -> dict[str, Any]:
    """A JSON line's inputs; an error naming the file's line (`where`), and the
    column in it (never the JSON parser's own "line 1")."""
    import json

    from pixeldojo_cli.core.untrusted import loads

    try:
        value = loads(line)
    except json.JSONDecodeError as exc:
        # "Unterminated string starting at" names its column itself.
        at = "" if exc.msg.endswith(" at") else " at"
        raise UsageError(
            f"{where} is not valid JSON: {exc.msg}{at} column {column + exc.colno}."
        ) from None
    except ValueError as exc:  # too deep, too many values, a number of too many digits
        raise UsageError(f"{where} is not valid JSON: {str(exc).rstrip('.')}.") from None
    if not isinstance(value, dict):
        raise UsageError(f"{where} must be a JSON object of inputs.")
    return value
