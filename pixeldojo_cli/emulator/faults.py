"""Faults the emulator can inject, one rule at a time, for tests and pipelines.

A rule matches requests by origin (`api` or `files`), method and a regular
expression searched in the path, fires `count` times (-1: for ever), and does
one thing:

- `status`: answer with an HTTP error (`status`, API `code`, `retry_after`);
- `reset`: read the request, then close the connection without answering
  (for a POST: the body reached the server, the client never hears back);
- `truncate`: send the headers and `after_bytes` of the body, then close;
- `stall`: send the headers and `after_bytes` of the body, then send nothing
  more for `delay` seconds before closing (a server that hangs mid-body;
  `delay` hangs before the headers);
- `gzip` (files): serve the output gzip-encoded whatever the client asked for,
  with `Content-Length` counting the encoded bytes, the whole body (no
  `Range`); with `after_bytes`, close after that many encoded bytes;
- `delay`: sleep `delay` seconds before handling the request normally;
- `trickle`: handle it normally but send the body in up to 200 pieces spread over
  `delay` seconds (a slow server);
- `redirect`: answer `status` (301/302/307) with `Location: location`.

`probability` (0..1) makes a rule fire on only that share of the requests it
matches (drawn from the plan's seeded random generator): faults "at 5 %".
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass, field

KINDS = ("status", "reset", "truncate", "stall", "gzip", "delay", "trickle", "redirect")
_DEFAULT_CODES = {
    400: "validation_error",
    401: "unauthorized",
    402: "insufficient_credits",
    404: "not_found",
    410: "expired",
    429: "rate_limit_exceeded",
}


@dataclass
class Fault:
    kind: str
    path: str = ""
    method: str | None = None
    target: str = "api"
    count: int = 1
    status: int = 500
    code: str | None = None
    message: str | None = None
    retry_after: str | None = None
    after_bytes: int = 0
    delay: float = 0.0
    location: str = ""
    body: bytes | str | None = None
    content_type: str = "application/json"
    probability: float = 1.0
    fired: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {', '.join(KINDS)}")
        if self.target not in ("api", "files"):
            raise ValueError("target is 'api' or 'files'")
        re.compile(self.path)

    @property
    def body_bytes(self) -> bytes | None:
        """The raw body to answer with (a str is sent as UTF-8)."""
        return self.body.encode() if isinstance(self.body, str) else self.body

    @property
    def error_code(self) -> str:
        if self.code:
            return self.code
        return _DEFAULT_CODES.get(self.status, "internal_error")

    def matches(self, target: str, method: str, path: str) -> bool:
        if target != self.target or (self.method and self.method.upper() != method):
            return False
        return re.search(self.path, path) is not None


class FaultPlan:
    """The rules in force; the first live match fires. Thread-safe."""

    def __init__(
        self, faults: list[Fault] | tuple[Fault, ...] = (), seed: int | None = None
    ) -> None:
        self._faults = list(faults)
        self._lock = threading.Lock()
        self._random = random.Random(seed)

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, target: str, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.count != 0 and fault.matches(target, method, path):
                    if fault.probability < 1.0 and self._random.random() >= fault.probability:
                        continue
                    if fault.count > 0:
                        fault.count -= 1
                    fault.fired += 1
                    return fault
        return None
