"""How requests reach the network: httpx's transport with its TLS side built
only when an https URL first needs it, output downloads connecting only where
the address rule allows (`addresses`), httpcore reading in larger pieces, and
every socket operation cut to the deadline in force (`core.deadlines`)."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, TypeVar

import httpcore
import httpx

from pixeldojo_cli.api.addresses import (
    AddressGuard,
    ResolveTimeout,
    resolve,
    system_resolver,
)
from pixeldojo_cli.core import deadlines

# The request extension that marks an output download: its connections are
# made through the address rule (`Transport.stream` sets it).
OUTPUT_DOWNLOAD = "pixeldojo.output_download"

_T = TypeVar("_T")


class CheckedBackend(httpcore.NetworkBackend):
    """httpcore's own backend, connecting to the addresses it resolved itself,
    within the time left: with a `guard`, only to addresses the guard allowed.

    The host is resolved here, once (`addresses.resolve`: never longer than
    the connect timeout or the deadline in force, unlike getaddrinfo inside
    `socket.create_connection`); with a guard every address is checked; then
    the socket connects to those addresses themselves (tried in order, as
    `socket.create_connection` would, all within the one timeout), so nothing
    resolves the name again between the check and the connection. TLS still
    checks the certificate against the URL's host name: httpcore passes it as
    the server name.
    """

    def __init__(self, guard: AddressGuard | None = None) -> None:
        self.guard = guard
        self._inner = httpcore.SyncBackend()

    def _addresses(self, host: str, port: int, timeout: float | None) -> list[str]:
        try:
            if self.guard is None:
                return resolve(host, port, system_resolver, timeout)
            return self.guard.checked(host, port, timeout)
        except ResolveTimeout as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except (OSError, UnicodeError) as exc:  # as httpcore reports a name that does not resolve
            raise httpcore.ConnectError(str(exc)) from exc

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        give_up = None if timeout is None else time.monotonic() + timeout
        addresses = self._addresses(host, port, timeout)
        failure: Exception = httpcore.ConnectError(f"{host} has no address")
        for address in addresses:
            left = None if give_up is None else give_up - time.monotonic()
            if left is not None and left <= 0:
                raise httpcore.ConnectTimeout(f"connecting to {host} took too long")
            try:
                return self._inner.connect_tcp(address, port, left, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("connections of this package do not use Unix sockets")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _checked(transport: httpx.HTTPTransport, guard: AddressGuard) -> httpx.HTTPTransport:
    """`transport` with its connections made through `CheckedBackend`. httpx has
    no public way to name a network backend; its pool's is replaced, and a
    future httpx without that attribute fails closed here, never unchecked."""
    pool = getattr(transport, "_pool", None)
    if not isinstance(pool, httpcore.ConnectionPool) or not hasattr(pool, "_network_backend"):
        raise RuntimeError("this httpx cannot check output addresses; downloads are refused")
    pool._network_backend = CheckedBackend(guard)
    return transport


class TLSWhenNeeded(httpx.BaseTransport):
    """httpx's own transport, with its TLS side built at the first https request.

    A verifying TLS context loads the whole CA bundle: ~35 ms, a sixth of a
    `download`'s start-up. Runs against the emulator or any plain-http
    endpoint never need it, and https runs pay it once, as before. The plain
    side holds a context that trusts no certificate at all, so were it ever
    handed a TLS connection it would fail closed, never connect unverified.

    Requests marked `OUTPUT_DOWNLOAD` go through a second pair of pools, built
    when first needed, whose connections `guard` checks (`CheckedBackend`):
    a connection to the API is never reused for an output, nor the reverse.
    """

    def __init__(self, guard: AddressGuard | None = None) -> None:
        # `bounded` gives both sides a `CheckedBackend` with no guard: names
        # resolved within the time left, `localhost` pinned to loopback (RFC 6761).
        self._plain = bounded(httpx.HTTPTransport(verify=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)))
        self._tls: httpx.HTTPTransport | None = None
        self._lock = threading.Lock()
        self.guard = guard
        self._outputs: dict[str, httpx.HTTPTransport] = {}

    @property
    def tls_ready(self) -> bool:
        """Whether the verifying TLS side has been built yet."""
        return self._tls is not None

    def _tls_side(self) -> httpx.HTTPTransport:
        with self._lock:
            if self._tls is None:
                # verify=True, SSL_CERT_FILE honoured
                self._tls = bounded(httpx.HTTPTransport())
            return self._tls

    def _output_side(self, scheme: str, guard: AddressGuard) -> httpx.HTTPTransport:
        with self._lock:
            if scheme not in self._outputs:
                verify: Any = True if scheme == "https" else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                self._outputs[scheme] = bounded(_checked(httpx.HTTPTransport(verify=verify), guard))
            return self._outputs[scheme]

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.guard is not None and request.extensions.get(OUTPUT_DOWNLOAD):
            return self._output_side(request.url.scheme, self.guard).handle_request(request)
        if request.url.scheme == "https":
            return self._tls_side().handle_request(request)
        return self._plain.handle_request(request)

    def close(self) -> None:
        self._plain.close()
        if self._tls is not None:
            self._tls.close()
        for side in self._outputs.values():
            side.close()


def read_in_larger_pieces() -> None:
    """httpcore reads a response 64 KiB per recv(); every piece then climbs
    through h11 and httpx's generators in Python. For outputs of hundreds of MiB
    that per-piece cost dominates: 1 MiB pieces measured 0.51x -> ~0.9x of curl
    on 1 GiB (benchmarks/download.py). recv() returns what is there, so small
    answers are not delayed. Applied only when httpcore still has the attribute
    with its known default, so a future httpcore is left as it is. Called where
    a `Transport` is built, never as a side effect of importing the library."""
    try:
        from httpcore._sync import http11
    except ImportError:  # pragma: no cover - another httpcore layout
        return
    if getattr(http11.HTTP11Connection, "READ_NUM_BYTES", None) == 64 * 1024:
        http11.HTTP11Connection.READ_NUM_BYTES = 1024 * 1024


# --- deadlines, not per-read timeouts ---------------------------------------------


def _cut(
    timeout: float | None,
    error: type[httpcore.TimeoutException],
    operation: Callable[[float | None], _T],
) -> _T:
    """`operation(timeout)` with the timeout cut to the deadline or progress rule
    in force (`core.deadlines`): none left raises `error` without trying; a cut
    timeout that runs out raises `error` saying which bound it was."""
    limit, why = deadlines.bounded(timeout)
    if limit is not None and limit <= 0:
        raise error(why)
    try:
        return operation(limit)
    except httpcore.TimeoutException:
        if why:
            raise error(why) from None
        raise


# How much of a request body goes to one TLS write, each cut to the time left.
WRITE_PIECE = 64 * 1024


def _send_all(sock: socket.socket, buffer: bytes, timeout: float | None) -> None:
    """`buffer` sent whole on a plain socket, each send() cut to the bound in force."""
    view = memoryview(buffer)
    while view:
        limit, why = deadlines.bounded(timeout)
        if limit is not None and limit <= 0:
            raise httpcore.WriteTimeout(why)
        try:
            sock.settimeout(limit)
            sent = sock.send(view)
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(why or str(exc)) from exc
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from exc
        view = view[sent:]


class _BoundedStream(httpcore.NetworkStream):
    """A connection whose every read and write is cut to the bound in force."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = _cut(timeout, httpcore.ReadTimeout, lambda t: self._stream.read(max_bytes, t))
        deadlines.took(len(data))
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Write `buffer` whole, within the bound in force as a whole: httpcore
        gives each send() the same timeout, so a server taking a request body in
        bursts just inside it could stretch one write without end. The buffer
        goes out a send (or a piece) at a time, each cut to the time left."""
        if deadlines.bounded(None)[0] is None:  # no bound in force: httpcore's own way
            self._stream.write(buffer, timeout)
            return
        sock = self._stream.get_extra_info("socket")
        if type(sock) is socket.socket and self._stream.get_extra_info("ssl_object") is None:
            _send_all(sock, buffer, timeout)
            return
        # TLS: one SSL_write of a piece runs against one timeout as a whole.
        view = memoryview(buffer)
        for start in range(0, len(view), WRITE_PIECE):
            piece = bytes(view[start : start + WRITE_PIECE])
            _cut(timeout, httpcore.WriteTimeout, partial(self._stream.write, piece))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _BoundedStream(
            _cut(
                timeout,
                httpcore.ConnectTimeout,
                lambda t: self._stream.start_tls(ssl_context, server_hostname, t),
            )
        )

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _BoundedBackend(httpcore.NetworkBackend):
    """httpcore's network backend, its connections cut to the bound in force."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        def connect(limit: float | None) -> httpcore.NetworkStream:
            return self._backend.connect_tcp(host, port, limit, local_address, socket_options)

        return _BoundedStream(_cut(timeout, httpcore.ConnectTimeout, connect))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        def connect(limit: float | None) -> httpcore.NetworkStream:
            return self._backend.connect_unix_socket(path, limit, socket_options)

        return _BoundedStream(_cut(timeout, httpcore.ConnectTimeout, connect))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def bounded(transport: httpx.HTTPTransport) -> httpx.HTTPTransport:
    """`transport` with its connections cut to the bound in force. httpx takes no
    network backend, so the pool's is wrapped where httpcore keeps it; a layout
    this does not know is left as it is (tests/test_hostile_deadlines.py notices)."""
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.SyncBackend):  # resolved within the time left too
        backend = CheckedBackend()
    if isinstance(backend, httpcore.NetworkBackend) and not isinstance(backend, _BoundedBackend):
        pool._network_backend = _BoundedBackend(backend)  # type: ignore[union-attr]
    return transport
