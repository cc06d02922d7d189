"""The webhook listener's HTTP side: requests read under a whole deadline, with
no thread per connection (standard library only).

One thread runs a `selectors` loop over every connection. A request (request
line, headers and body) must arrive whole within `request_timeout` of its
connection's accept, however its bytes are paced; the connection is then cut.
Heads are capped (line length, line count, total bytes) and bodies by the
`Responder`. A complete request is answered at once in the loop (the
`Responder` only queues work), and every connection is closed after its answer.

Who is cut when connections run out: only at `max_connections` (one address
may hold many while there is room: a reverse proxy holds them all), the
connection still being read that has been IDLE LONGEST (since its last byte,
or its accept) is cut for the newcomer, first among addresses holding more than
`max_per_peer`; fewest bytes received breaks a tie. A sender that keeps sending
is therefore cut after those that hold, drip or reconnect and wait. At most one
connection is cut per `EVICTION_INTERVAL`: newcomers past that wait in the
system's queue of pending connections, so reconnecting over and over cannot
churn through every idle moment of a real sender.

One connection's failure (a bug in the `Responder`, say) is answered 500 and
closed; the loop goes on. Should the loop itself fail, `failure` says why.
"""

from __future__ import annotations

import contextlib
import json
import re
import selectors
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Protocol

# Seconds a client has, from its connection's accept, to send its whole request.
REQUEST_TIMEOUT = 10.0
MAX_LINE = 8 * 1024  # the request line, or one header line
MAX_HEADERS = 64
MAX_HEAD = 32 * 1024  # the request line and every header
MAX_CONNECTIONS = 256
MAX_PER_PEER = 32  # at MAX_CONNECTIONS, addresses holding more are cut first
# At most one connection cut per this many seconds to make room for a newcomer.
EVICTION_INTERVAL = 0.01
# Accepts per turn of the loop, so that the bytes of a connection just accepted are
# read before a burst of newer ones from its address could push it out.
_ACCEPTS_PER_TURN = 8
# After an answer: how long to write it and read what the client still sends
# (closing with unread bytes would reset the connection, losing the answer).
_LINGER = 2.0
_DRAIN_BYTES = 1024 * 1024
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_REQUEST_LINE = re.compile(r"([A-Z]+) (\S+) HTTP/1\.[0-9]")


@dataclass(frozen=True)
class Head:
    """A request's line and headers (names lower-cased, repeats joined by ', ')."""

    method: str
    target: str
    headers: dict[str, str]
    peer: str


@dataclass(frozen=True)
class Answer:
    """What to answer: a status, a JSON document, extra headers."""

    status: int
    document: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


_BUSY = Answer(503, {"error": "too many connections"}, {"Retry-After": "5"})
_BROKEN = Answer(500, {"error": "the listener failed on this request"})


class Responder(Protocol):
    """What the loop asks about each request."""

    def check_head(self, head: Head) -> Answer | int:
        """An answer now (the body is not read), or the body's length to read."""
        ...

    def answer(self, head: Head, body: bytes) -> Answer:
        """The answer to a complete request (quick: it runs in the loop)."""
        ...


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_head(raw: bytes, peer: str) -> Head:
    """The request line and headers of `raw` (without the blank line), or `_Refused`."""
    lines = raw.decode("latin-1").split("\n")
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    if len(lines[0]) > MAX_LINE:
        raise _Refused(414, "the request line is too long")
    matched = _REQUEST_LINE.fullmatch(lines[0])
    if matched is None:
        raise _Refused(400, "not an HTTP/1 request line")
    if len(lines) - 1 > MAX_HEADERS:
        raise _Refused(431, f"more than {MAX_HEADERS} header lines")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if len(line) > MAX_LINE:
            raise _Refused(431, f"a header line is longer than {MAX_LINE} bytes")
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name):  # also a folded (indented) line
            raise _Refused(400, "a header line is malformed")
        name, value = name.lower(), value.strip(" \t")
        if name == "content-length" and headers.get(name, value) != value:
            raise _Refused(400, "two different Content-Lengths")
        if name in headers and name != "content-length":
            value = f"{headers[name]}, {value}"
        headers[name] = value
    return Head(matched.group(1), matched.group(2), headers, peer)


_PATH_CHAR = re.compile(r"[!$&'()*+,./:;=@_~A-Za-z0-9-]")
_PATH = re.compile(r"/(?!/)(?:[!$&'()*+,./:;=@_~A-Za-z0-9-]|%[0-9A-Fa-f]{2})*")


def check_path(path: str) -> str:
    """`path` if the listener can match it, as printed: "/" and then visible
    ASCII, no "?" or "#", not "//" first, "%" only in a %XX escape (a request's
    path matches with its escapes decoded, in any hex case). Else ValueError
    with the reason (other characters: percent-encode them as UTF-8)."""
    if not path.startswith("/") or path.startswith("//"):
        raise ValueError("it must start with a single '/'")
    if not path.isascii() or not path.isprintable():
        raise ValueError("only visible ASCII: percent-encode the rest as UTF-8 (/w%C3%A9bhook)")
    if not _PATH.fullmatch(path):
        bad = next((c for c in path if not _PATH_CHAR.fullmatch(c)), "%")
        why = "only starts a %XX escape" if bad == "%" else "is not allowed"
        raise ValueError(f"{bad!r} {why}")
    return path


def encode_answer(answer: Answer, *, head_only: bool = False) -> bytes:
    """The whole HTTP/1.0 response for `answer` (the connection closes after it)."""
    body = json.dumps(answer.document).encode()
    try:
        reason = HTTPStatus(answer.status).phrase
    except ValueError:
        reason = ""
    lines = [
        f"HTTP/1.0 {answer.status} {reason}",
        "Server: pixeldojo-webhook/1",
        f"Date: {formatdate(usegmt=True)}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in answer.headers.items()),
    ]
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + (b"" if head_only else body)


class _Connection:
    """One accepted connection: what has come in, and what is left to send."""

    def __init__(self, sock: socket.socket, peer: str, now: float, deadline: float) -> None:
        self.sock = sock
        self.peer = peer
        self.deadline = deadline
        self.last_heard = now  # the last byte received, or the accept
        self.received = 0
        self.inbox = bytearray()
        self.head: Head | None = None
        self.body_length = 0
        self.outbox = b""
        self.answered = False  # then: sending `outbox`, then draining until EOF
        self.drained = 0

    @property
    def evictable(self) -> bool:
        """Not yet answered, or answered and only draining."""
        return not self.answered or not self.outbox


class RequestLoop:
    """Serves `responder` on a bound, listening socket from one thread."""

    def __init__(
        self,
        server: socket.socket,
        responder: Responder,
        *,
        request_timeout: float = REQUEST_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        max_per_peer: int = MAX_PER_PEER,
    ) -> None:
        self.server = server
        self.responder = responder
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        self.max_per_peer = max_per_peer
        self.failure: BaseException | None = None  # why `run` ended, if not by `stop`
        self._open: dict[socket.socket, _Connection] = {}
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = socket.socketpair()
        self._stopping = threading.Event()
        self._next_eviction = 0.0  # no connection is cut for a newcomer before then
        self._accepting = True
        server.setblocking(False)
        self._wake_read.setblocking(False)
        self._selector.register(server, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_read, selectors.EVENT_READ, "wake")

    def run(self) -> None:
        """Serve until `stop()`, then close every connection and the sockets. An
        unexpected failure of the loop itself ends it too, kept in `failure`."""
        try:
            while not self._stopping.is_set():
                for key, events in self._selector.select(self._next_wait()):
                    if key.data == "accept":
                        self._accept_some()
                    elif key.data == "wake":
                        with contextlib.suppress(OSError):
                            self._wake_read.recv(64)
                    elif key.fileobj in self._open:
                        self._service(self._open[key.fileobj], events)
                now = time.monotonic()
                self._expire(now)
                if not self._accepting and now >= self._next_eviction:
                    self._pause_accepting(False)
        except Exception as exc:  # kept for the owner to report; a thread's traceback is not
            self.failure = exc
        finally:
            self.close()

    def stop(self) -> None:
        """Ask `run` to end (from any thread)."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_write.send(b"x")

    def close(self) -> None:
        """Close every connection and the listening socket (idempotent)."""
        for connection in list(self._open.values()):
            self._close(connection)
        for sock in (self.server, self._wake_read, self._wake_write):
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(sock)
            sock.close()
        self._selector.close()

    # --- connections in and out ---------------------------------------------------

    def _accept_some(self) -> None:
        for _ in range(_ACCEPTS_PER_TURN):
            full = len(self._open) >= self.max_connections
            now = time.monotonic()
            if full and now < self._next_eviction:
                self._pause_accepting(True)  # the newcomer waits in the system's queue
                return
            try:
                sock, address = self.server.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. out of file descriptors: cut the idlest, go on
                self._evict(self._idlest(now, over_share=False))
                return
            sock.setblocking(False)
            peer = str(address[0]) if isinstance(address, tuple) else str(address)
            if full and self._evict(self._idlest(now, over_share=True)):
                self._next_eviction = now + EVICTION_INTERVAL
            self._open[sock] = _Connection(sock, peer, now, now + self.request_timeout)
            self._selector.register(sock, selectors.EVENT_READ, "conn")

    def _pause_accepting(self, pause: bool) -> None:
        """Stop (or resume) watching the listening socket: while paused, newcomers
        wait in the system's queue instead of waking the loop for nothing."""
        self._accepting = not pause
        if pause:
            self._selector.unregister(self.server)
        else:
            self._selector.register(self.server, selectors.EVENT_READ, "accept")

    def _idlest(self, now: float, *, over_share: bool) -> _Connection | None:
        """The connection still being read that has waited longest since its last
        byte (fewest bytes received breaks a tie); with `over_share`, of the
        addresses holding more than `max_per_peer` if there are any."""
        candidates = [c for c in self._open.values() if c.evictable]
        if over_share:
            per_peer = Counter(c.peer for c in self._open.values())
            greedy = [c for c in candidates if per_peer[c.peer] > self.max_per_peer]
            candidates = greedy or candidates
        return min(candidates, key=lambda c: (c.last_heard, c.received), default=None)

    def _evict(self, connection: _Connection | None) -> bool:
        """Cut `connection` for a newcomer (a polite 503 first, if it is still
        being read and the word fits at once); False when there is none."""
        if connection is None:
            return False
        if not connection.answered:
            with contextlib.suppress(OSError):
                connection.sock.send(encode_answer(_BUSY))
        self._close(connection)
        return True

    def _close(self, connection: _Connection) -> None:
        self._open.pop(connection.sock, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(connection.sock)
        connection.sock.close()

    def _expire(self, now: float) -> None:
        for connection in list(self._open.values()):
            if connection.deadline > now:
                continue
            if not connection.answered:
                with contextlib.suppress(OSError):
                    connection.sock.send(encode_answer(Answer(408, {"error": "too slow"})))
            self._close(connection)

    def _next_wait(self) -> float:
        soonest = min((c.deadline for c in self._open.values()), default=None)
        if not self._accepting:
            soonest = self._next_eviction if soonest is None else min(soonest, self._next_eviction)
        if soonest is None:
            return 0.5
        return max(0.0, min(0.5, soonest - time.monotonic()))

    # --- one connection's turn -------------------------------------------------------

    def _service(self, connection: _Connection, events: int) -> None:
        try:
            if events & selectors.EVENT_WRITE:
                self._send_some(connection)
            if events & selectors.EVENT_READ and connection.sock in self._open:
                self._receive(connection)
        except OSError:  # reset, broken pipe: the client is gone
            self._close(connection)
        except Exception:  # a bug met on one request: answer it, serve the others
            if not connection.answered:
                with contextlib.suppress(OSError):
                    connection.sock.send(encode_answer(_BROKEN))
            self._close(connection)

    def _receive(self, connection: _Connection) -> None:
        try:
            data = connection.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            self._close(connection)  # the client hung up (or finished after our answer)
            return
        if connection.answered:
            connection.drained += len(data)
            if connection.drained > _DRAIN_BYTES:
                self._close(connection)
            return
        connection.last_heard = time.monotonic()
        connection.received += len(data)
        connection.inbox += data
        try:
            answer = self._read_request(connection)
        except _Refused as refused:
            answer = Answer(refused.status, {"error": str(refused)})
        if answer is not None:
            self._respond(connection, answer)

    def _read_request(self, connection: _Connection) -> Answer | None:
        """The answer once the request is whole (or refused); None while it is not."""
        if connection.head is None:
            end, size = _end_of_head(connection.inbox)
            if end < 0:
                _check_partial_head(connection.inbox)
                return None
            if end > MAX_HEAD:
                raise _Refused(431, f"the request line and headers pass {MAX_HEAD} bytes")
            head = parse_head(bytes(connection.inbox[:end]), connection.peer)
            del connection.inbox[: end + size]
            connection.head = head
            checked = self.responder.check_head(head)
            if isinstance(checked, Answer):
                return checked
            connection.body_length = checked
            if "100-continue" in head.headers.get("expect", "").lower():
                connection.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        if len(connection.inbox) < connection.body_length:
            return None
        return self.responder.answer(
            connection.head, bytes(connection.inbox[: connection.body_length])
        )

    def _respond(self, connection: _Connection, answer: Answer) -> None:
        head_only = connection.head is not None and connection.head.method == "HEAD"
        connection.answered = True
        connection.outbox = encode_answer(answer, head_only=head_only)
        connection.inbox = bytearray()
        connection.deadline = time.monotonic() + _LINGER
        self._send_some(connection)

    def _send_some(self, connection: _Connection) -> None:
        """Send what the socket takes now; once all is sent, only drain until EOF."""
        if connection.outbox:
            sent = connection.sock.send(connection.outbox)
            connection.outbox = connection.outbox[sent:]
        wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if connection.outbox else 0)
        self._selector.modify(connection.sock, wanted, "conn")
        if not connection.outbox:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_WR)


def _check_partial_head(inbox: bytearray) -> None:
    """`_Refused` for a head that is already too long, before it is complete."""
    if len(inbox) > MAX_HEAD:
        raise _Refused(431, f"the request line and headers are longer than {MAX_HEAD} bytes")
    if len(inbox) > MAX_LINE and b"\n" not in inbox[: MAX_LINE + 1]:
        raise _Refused(414, "the request line is too long")


def _end_of_head(inbox: bytearray) -> tuple[int, int]:
    """Where the blank line that ends the head starts, and its size; (-1, 0) if none."""
    ends = [(at, size) for mark, size in ((b"\r\n\r\n", 4), (b"\n\n", 2))
            if (at := inbox.find(mark)) >= 0]  # fmt: skip
    return min(ends) if ends else (-1, 0)
