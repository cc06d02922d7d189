"""Every line of a running batch, by its index in the plan, in bounded memory:
a `Line` object only while the line is alive (being submitted, followed,
saved, or waiting for another process), a byte or two per line otherwise.
A batch of a million lines would otherwise hold a million objects (about
360 bytes each) to the end, most of them long finished or not yet begun."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from pixeldojo_cli.engine.batch_lines import Line

_QUEUED, _ALIVE, _DONE = 0, 1, 2


class LineSource(Protocol):
    """Where the lines come from: a `Plan`."""

    def __len__(self) -> int: ...

    def line(self, index: int) -> Line: ...


class LineBook:
    """The state of every line of a batch: queued, alive (a `Line`), or done
    (its exit code kept, and whether an earlier run had submitted it)."""

    def __init__(self, source: LineSource) -> None:
        self.source = source
        self.total = len(source)
        self.resumed = 0  # lines that ended and had been submitted by an earlier run
        self._state = bytearray(self.total)
        self._exit_codes = bytearray(self.total)
        self._alive: dict[int, Line] = {}

    def __len__(self) -> int:
        return self.total

    def queued(self, index: int) -> bool:
        """Whether line `index` has never been taken up (nor ended)."""
        return self._state[index] == _QUEUED

    def take(self, index: int) -> Line:
        """Line `index` as an object, alive until it ends (or is `let_go`)."""
        line = self._alive.get(index)
        if line is None:
            line = self.source.line(index)
            self._alive[index] = line
            self._state[index] = _ALIVE
        return line

    def let_go(self, line: Line) -> None:
        """A line taken up only to be looked at, still queued: forget its object."""
        if not line.done and line.job_id is None and line.index in self._alive:
            del self._alive[line.index]
            self._state[line.index] = _QUEUED

    def ended(self, line: Line) -> None:
        """The line ended (its outcome is set and reported): keep what the end needs."""
        self._state[line.index] = _DONE
        self._exit_codes[line.index] = int(line.exit_code)
        self.resumed += line.resumed
        self._alive.pop(line.index, None)

    def unfinished(self) -> list[Line]:
        """Every line that has not ended, as objects: a scan, for the end of a batch."""
        indexes = [i for i in range(self.total) if self._state[i] != _DONE]
        return [self.take(index) for index in indexes]

    def exit_codes(self) -> Iterator[int]:
        """Every line's exit code (those still alive: as they stand)."""
        yield from (code for i, code in enumerate(self._exit_codes) if self._state[i] == _DONE)
        yield from (int(line.exit_code) for line in self._alive.values())
