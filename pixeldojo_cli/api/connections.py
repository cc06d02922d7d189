"""How requests reach the network: httpx's transport with its TLS side built
only when an https URL first needs it, and httpcore reading in larger pieces."""

from __future__ import annotations

import ssl
import threading

import httpx


class TLSWhenNeeded(httpx.BaseTransport):
    """httpx's own transport, with its TLS side built at the first https request.

    A verifying TLS context loads the whole CA bundle: ~35 ms, a sixth of a
    `download`'s start-up. Runs against the emulator or any plain-http
    endpoint never need it, and https runs pay it once, as before. The plain
    side holds a context that trusts no certificate at all, so were it ever
    handed a TLS connection it would fail closed, never connect unverified.
    """

    def __init__(self) -> None:
        self._plain = httpx.HTTPTransport(verify=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
        self._tls: httpx.HTTPTransport | None = None
        self._lock = threading.Lock()

    @property
    def tls_ready(self) -> bool:
        """Whether the verifying TLS side has been built yet."""
        return self._tls is not None

    def _tls_side(self) -> httpx.HTTPTransport:
        with self._lock:
            if self._tls is None:
                self._tls = httpx.HTTPTransport()  # verify=True, SSL_CERT_FILE honoured
            return self._tls

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "https":
            return self._tls_side().handle_request(request)
        return self._plain.handle_request(request)

    def close(self) -> None:
        self._plain.close()
        if self._tls is not None:
            self._tls.close()


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
