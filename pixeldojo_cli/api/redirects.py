"""Where a redirect leads, read from the server's `Location` before anything
follows it.

A `Location` is the server's text: a host that is not IDNA (`xn--a`), a
backslash where a slash goes (`http:\\\\host/`), a tab, fullwidth digits. httpx
works out where every redirect leads while it sends (even one it will not
follow), and a `Location` it cannot read ends there as an exception about an
invalid URL, or as a protocol error that looks worth retrying. Every
`Location` is read here first (`check_location`, a response hook), and one
that leads nowhere is `UnusableLocation`: not an httpx error, so nothing
retries it, and the caller says what it was (an output refused; an API
answer that makes no sense).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from pixeldojo_cli.api.origin import DEFAULT_PORTS
from pixeldojo_cli.core.errors import OutputRefusedError

# What reading a URL from server text may raise: httpx's own error, an IDNA
# error (a `UnicodeError`, so a `ValueError`), a type the parser trips on.
URL_ERRORS = (httpx.InvalidURL, ValueError, TypeError)


class UnusableLocation(Exception):
    """A redirect whose `Location` is no URL anything could follow."""

    def __init__(self, location: str) -> None:
        super().__init__(f"a redirect to {location!r}, which is not a valid URL")
        self.location = location


def readable(url: httpx.URL) -> httpx.URL:
    """`url`, once its host has been read as httpx reads it when connecting
    (IDNA decoded), so that a host nothing can connect to fails here."""
    url.host  # noqa: B018 - decoding the host is the check
    url.netloc.decode("ascii")
    return url


def redirect_target(url: httpx.URL, location: str) -> httpx.URL:
    """Where a redirect from `url` to `location` leads, worked out as httpx
    works it out (`Client._redirect_url`); one of `URL_ERRORS` if it leads nowhere."""
    target = httpx.URL(location)
    if target.scheme and not target.host:
        target = target.copy_with(host=url.host)
    if target.is_relative_url:
        target = url.join(target)
    return readable(target)


def check_location(response: httpx.Response) -> None:
    """A response hook: `UnusableLocation` for a redirect httpx could not work out."""
    if not response.has_redirect_location:
        return
    location = response.headers["location"]
    try:
        redirect_target(response.request.url, location)
    except URL_ERRORS:
        raise UnusableLocation(location) from None


def hop_url(location: str, base: httpx.URL | None = None) -> httpx.URL:
    """The URL of a download hop: `location` (the output URL, or a redirect's
    `Location` relative to `base`); `UnusableLocation` when it is no URL at all
    (a control character, a bad port, a host that is not IDNA)."""
    try:
        return readable(base.join(location) if base is not None else httpx.URL(location))
    except URL_ERRORS:
        raise UnusableLocation(location) from None


def check_hop(url: httpx.URL, secure: bool, first: str, shown: Callable[[str, int], str]) -> bool:
    """Refuse a hop (read by `hop_url`) that is not http(s), or that steps down to
    plain http from an https API or an https hop; returns whether the chain is
    now https. `first` is the output URL, `shown` masks the key."""
    if url.scheme not in DEFAULT_PORTS or not url.host:
        raise OutputRefusedError(
            f"Refusing to download {shown(first, 100)}: it leads to {shown(str(url), 100)}."
        )
    if url.scheme == "http" and secure:
        raise OutputRefusedError(
            f"Refusing to download {shown(first, 100)} over plain http: it steps "
            f"down from https to {shown(str(url), 100)}.",
            hint="Anyone on the way could change the file. `pixeldojo jobs show ID` prints "
            "the URL if you want to fetch it yourself.",
        )
    return secure or url.scheme == "https"


def unusable(first: str, location: str, shown: Callable[[str, int], str]) -> OutputRefusedError:
    """The refusal of an output URL `first` that is no URL, or that redirects to one."""
    if location == first:
        return OutputRefusedError(
            f"Refusing to download {shown(first, 100)!r}: it is not a valid URL."
        )
    return OutputRefusedError(
        f"Refusing to download {shown(first, 100)}: it redirects to "
        f"{shown(location, 100)!r}, which is not a valid URL."
    )
