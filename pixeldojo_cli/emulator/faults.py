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
- `drip`: handle it normally but send the answer (status line, headers, body) one
  byte every `delay` seconds, after the first `after_bytes` sent at once, then
  close the connection (a server holding a client just under its read timeout);
- `redirect`: answer `status` (301/302/307) with `Location: location`.
- `bomb`: answer `status` (default 200) with a `Content-Encoding: encoding`
  (gzip or deflate) body of about a thousandth of `size` bytes that decodes
  to `size` bytes of spaces: a decompression bomb (2 GiB in ~2 MB).
- `deep`: answer `status` (default 200) with a JSON job whose `output` is
  nested `depth` levels deep (`[[[...]]]`).
- `picture` (files): answer with a valid PNG of `width` x `height` pixels
  (12,000 x 12,000 by default: 432 MB decoded, about 450 kB on the wire).
- `slow_read`: take the request body `after_bytes` at a time, one piece every
  `delay` seconds, then handle the request normally (a server that keeps a
  client's upload going just inside each send's timeout).

- `other_job`: `GET /jobs/{id}` answers about another job: `other` names an
  existing job (its record is served), or is any other JSON value (a made-up
  id, a number, "") served as the `jobId` of the asked job's record; `None`
  (the default) serves that record with no `jobId` at all. In-process, `other`
  may be a function of the asked id (`str.upper`: the id in upper case).
- `stale_list`: `GET /jobs` shows every job as `processing`, without outputs
  (a list that lags for ever); `GET /jobs/{id}` still tells the truth.
- `list_says`: `GET /jobs` shows every job with the status `other` (default
  `failed`; `completed`: completed without its outputs), without outputs (a
  list that says jobs ended that did not); `GET /jobs/{id}` tells the truth.
- `reshape`: the API answer (the submit answer too) passed through `other`, a
  function of it (in-process only): wrapped, given a second id...

`headers` adds headers to a `status`, `bomb` or `deep` answer (for example a
`Content-Encoding` for a hand-made `body`).

`probability` (0..1) makes a rule fire on only that share of the requests it
matches (drawn from the plan's seeded random generator): faults "at 5 %".
"""

from __future__ import annotations

import functools
import random
import re
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pixeldojo_cli.emulator.png import big_picture

KINDS = (
    "status",
    "reset",
    "truncate",
    "stall",
    "gzip",
    "delay",
    "trickle",
    "drip",
    "redirect",
    "bomb",
    "deep",
    "other_job",
    "stale_list",
    "picture",
    "list_says",
    "reshape",
    "slow_read",
)
# Faults acted out before the request body is read (`FaultPlan.take(early=True)`).
_EARLY = ("slow_read",)
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
    size: int = 2 * 2**30
    encoding: str = "gzip"
    depth: int = 100_000
    headers: dict[str, str] | None = None
    other: Any = None
    width: int = 12_000
    height: int = 12_000
    fired: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {', '.join(KINDS)}")
        if self.kind == "bomb" and self.encoding not in ("gzip", "deflate"):
            raise ValueError("a bomb's encoding is 'gzip' or 'deflate'")
        if self.target not in ("api", "files"):
            raise ValueError("target is 'api' or 'files'")
        re.compile(self.path)
        if self.kind == "picture" and self.content_type == "application/json":
            self.content_type = "image/png"

    @property
    def body_bytes(self) -> bytes | None:
        """The raw body to answer with (a str is sent as UTF-8)."""
        return self.body.encode() if isinstance(self.body, str) else self.body

    def answer(self) -> tuple[int, bytes, dict[str, str]]:
        """(status, body, headers) of a `bomb`, `deep` or `picture` answer."""
        status = 200 if self.status == 500 else self.status  # 500 is the field's default
        headers = dict(self.headers or {})
        if self.kind == "picture":
            return status, big_picture(self.width, self.height), headers
        if self.kind == "bomb":
            headers["Content-Encoding"] = self.encoding
            return status, compressed_spaces(self.size, self.encoding), headers
        nested = b"[" * self.depth + b"]" * self.depth
        body = b'{"jobId": "job_deep", "status": "completed", "output": ' + nested + b"}"
        return status, body, headers

    def rewrite(self, answer: Any, record_of: Callable[[str], Any]) -> Any:
        """An API answer as an `other_job` or `stale_list` fault changes it;
        `record_of(id)` is another job's record (None when there is none)."""
        if self.kind == "reshape" and callable(self.other):
            return self.other(answer)
        if self.kind in ("stale_list", "list_says") and isinstance(answer, dict):
            status = "processing" if self.kind == "stale_list" else self.other or "failed"
            jobs = answer.get("jobs")
            if isinstance(jobs, list):
                return {**answer, "jobs": [_unfinished(job, status) for job in jobs]}
        if self.kind != "other_job" or not isinstance(answer, dict) or "jobId" not in answer:
            return answer
        claim = self.other(answer["jobId"]) if callable(self.other) else self.other
        if claim is None:
            return {k: v for k, v in answer.items() if k != "jobId"}
        other = record_of(claim) if isinstance(claim, str) else None
        return other if other is not None else {**answer, "jobId": claim}

    def dripping(self, out: Any) -> Drip:
        """A `drip` fault's writer in front of the connection's `out`."""
        return Drip(out, self.delay, self.after_bytes)

    @property
    def error_code(self) -> str:
        if self.code:
            return self.code
        return _DEFAULT_CODES.get(self.status, "internal_error")

    def matches(self, target: str, method: str, path: str) -> bool:
        if target != self.target or (self.method and self.method.upper() != method):
            return False
        return re.search(self.path, path) is not None


def _unfinished(job: dict[str, Any], status: str = "processing") -> dict[str, Any]:
    """A job as a lagging (or lying) list shows it: `status`, no outputs."""
    gone = ("output", "completedAt", "expiresAt", "error")
    return {**{k: v for k, v in job.items() if k not in gone}, "status": status}


class Drip:
    """Writes the first `after_bytes` as they come, then one byte every `delay`
    seconds, whatever the caller hands it at once."""

    def __init__(self, out: Any, delay: float, after_bytes: int) -> None:
        self.out, self.delay, self.at_once = out, delay, after_bytes

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        now, view = view[: max(0, self.at_once)], view[max(0, self.at_once) :]
        self.at_once -= len(now)
        if now:
            self.out.write(now)
            self.out.flush()
        for i in range(len(view)):
            time.sleep(self.delay)
            self.out.write(view[i : i + 1])
            self.out.flush()
        return len(data)

    def __getattr__(self, name: str) -> object:  # flush, close, closed: the connection's
        return getattr(self.out, name)


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

    def take(self, target: str, method: str, path: str, *, early: bool = False) -> Fault | None:
        """The fault that fires for this request, if any: with `early`, only one
        acted out before the body is read (`slow_read`), else any other."""
        with self._lock:
            for fault in self._faults:
                if (fault.kind in _EARLY) != early:
                    continue
                if fault.count != 0 and fault.matches(target, method, path):
                    if fault.probability < 1.0 and self._random.random() >= fault.probability:
                        continue
                    if fault.count > 0:
                        fault.count -= 1
                    fault.fired += 1
                    return fault
        return None


@functools.lru_cache(maxsize=4)
def compressed_spaces(size: int, encoding: str = "gzip") -> bytes:
    """`size` bytes of spaces (rounded up to whole MiB), gzip- or zlib-compressed.

    Each MiB is compressed once, after a full flush, so the same ~1 KiB of
    deflate data stands for every MiB: 2 GiB takes a second, not a minute.
    """
    block = b" " * 2**20
    count = max(1, -(-size // len(block)))
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    repeat = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    stream = first + repeat * (count - 1) + deflate.flush(zlib.Z_FINISH)
    if encoding == "gzip":
        crc = 0
        for _ in range(count):
            crc = zlib.crc32(block, crc)
        trailer = struct.pack("<II", crc, (count * len(block)) & 0xFFFFFFFF)
        return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + stream + trailer
    adler = 1
    for _ in range(count):
        adler = zlib.adler32(block, adler)
    return b"\x78\xda" + stream + struct.pack(">I", adler)
