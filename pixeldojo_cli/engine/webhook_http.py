"""The webhook listener's HTTP side: requests read under a whole deadline, with
no thread per connection (standard library only).

One thread runs a `selectors` loop over every connection. A request (request
line, headers and body) must arrive whole within `request_timeout` of its
connection's accept, however its bytes are paced; the connection is then cut.
Heads are capped (line length, line count, total bytes) and bodies by the
`Responder`. Connections are capped per peer address and in all; at a cap the
OLDEST connection still being read (of that peer, or of the peer holding the
most) is cut, never the newcomer: a slow sender holding connections cannot keep
a real notification out, even from the same address. A complete request is
answered at once in the loop (the `Responder` only queues work), and every
connection is closed after its answer.
"""

from __future__ import annotations

import contextlib
import json
import re
import selectors
import socket
import threading
import time
from collections import OrderedDict
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
MAX_PER_PEER = 32
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

    def __init__(self, sock: socket.socket, peer: str, deadline: float) -> None:
        self.sock = sock
        self.peer = peer
        self.deadline = deadline
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
        self._open: OrderedDict[socket.socket, _Connection] = OrderedDict()  # oldest first
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = socket.socketpair()
        self._stopping = threading.Event()
        server.setblocking(False)
        self._wake_read.setblocking(False)
        self._selector.register(server, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_read, selectors.EVENT_READ, "wake")

    def run(self) -> None:
        """Serve until `stop()`, then close every connection and the sockets."""
        try:
            while not self._stopping.is_set():
                for key, events in self._selector.select(self._next_wait()):
                    if key.data == "accept":
                        self._accept_some()
                    elif key.data == "wake":
                        with contextlib.suppress(OSError):
                            self._wake_read.recv(64)
                    elif key.fileobj in self._open:
                        self._service(self._open[key.fileobj], events)  # type: ignore[index]
                self._expire(time.monotonic())
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
            try:
                sock, address = self.server.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. out of file descriptors: cut the oldest, go on
                self._evict(None)
                return
            sock.setblocking(False)
            peer = str(address[0]) if isinstance(address, tuple) else str(address)
            self._make_room(peer)
            connection = _Connection(sock, peer, time.monotonic() + self.request_timeout)
            self._open[sock] = connection
            self._selector.register(sock, selectors.EVENT_READ, "conn")

    def _make_room(self, peer: str) -> None:
        """Cut the oldest connection still being read: of `peer` past its cap,
        else of the peer holding the most past the total cap."""
        per_peer: dict[str, int] = {}
        for connection in self._open.values():
            per_peer[connection.peer] = per_peer.get(connection.peer, 0) + 1
        if per_peer.get(peer, 0) >= self.max_per_peer:
            self._evict(peer)
        elif len(self._open) >= self.max_connections:
            busiest = max(per_peer, key=lambda p: per_peer[p])
            if not self._evict(busiest):
                self._evict(None)

    def _evict(self, peer: str | None) -> bool:
        """Cut the oldest connection still being read (of `peer`, or of anyone);
        False when there is none (connections still sending an answer stay)."""
        for connection in self._open.values():
            if connection.evictable and (peer is None or connection.peer == peer):
                if not connection.answered:
                    with contextlib.suppress(OSError):  # a polite word, if it fits at once
                        connection.sock.send(encode_answer(_BUSY))
                self._close(connection)
                return True
        return False

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
