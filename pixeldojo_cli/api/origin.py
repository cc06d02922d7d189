"""The API's origin, and an Authorization header that only ever goes there.

An origin is (scheme, host, port) with the scheme's default port filled in:
the key is sent only to the base URL's own origin, and the shared rate budget
is kept per origin and key.
"""

from __future__ import annotations

from collections.abc import Generator

import httpx

from pixeldojo_cli.core.redact import mask_key

Origin = tuple[str, str, int]

# The schemes the client speaks, and their default ports.
DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: httpx.URL | str) -> Origin:
    """(scheme, host, port) with the scheme's default port filled in."""
    url = httpx.URL(url)
    port = url.port or DEFAULT_PORTS.get(url.scheme, 0)
    return (url.scheme, url.host.lower(), port)


class OriginBoundAuth(httpx.Auth):
    """Bearer auth that attaches the key only to requests for one origin.

    httpx itself drops Authorization when a redirect leaves the origin; this
    also keeps it off first requests to other hosts (output file servers,
    a `statusUrl` elsewhere).
    """

    def __init__(self, api_key: str, origin: Origin) -> None:
        self._api_key = api_key
        self._origin = origin

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if origin_of(request.url) == self._origin:
            request.headers["Authorization"] = f"Bearer {self._api_key}"
        yield request

    def __repr__(self) -> str:
        return f"OriginBoundAuth(key={mask_key(self._api_key)}, origin={self._origin!r})"
