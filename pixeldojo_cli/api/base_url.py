"""The base URL in one spelling, so that the same API is always the same API.

`HTTP://Host:443//api/v1/.` and `https://host/api/v1` name one API: the ledger
keeps jobs and budgets per base URL, the rate budget and the key's origin per
origin, so each setting is normalised once, where it is resolved. Standard
library only (settings import it before any command needs httpx)."""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit, urlunsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
# An IPv4 address as the system's resolver also reads it (`2130706433`, `0x7f.1`).
_IPV4_LIKE = re.compile(r"(?=.*\d)[0-9a-fx.]+")


def canonical_base_url(url: str) -> str:
    """`url` with its scheme and host in lower case, the scheme's default port
    dropped, and its path's segments normalised (`//` collapsed, `.` and `..`
    resolved, no `/` at the end). A URL that cannot be read as an http(s) one
    is returned as given (without a final `/`), for the client to refuse."""
    try:
        parts = urlsplit(url.strip())
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError:  # a port that is no number, a broken [IPv6] host
        return url.rstrip("/")
    if scheme not in _DEFAULT_PORTS or not host:
        return url.rstrip("/")
    host = _address(host)
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    userinfo = parts.netloc.rpartition("@")[0]
    if userinfo:
        netloc = f"{userinfo}@{netloc}"
    return urlunsplit((scheme, netloc, _segments(parts.path), parts.query, parts.fragment))


def _address(host: str) -> str:
    """An IP address in its usual spelling (an IPv4-mapped IPv6 one as IPv4);
    a name as it is (lower case already)."""
    if ":" in host:
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError:
            return host
        return str(address.ipv4_mapped or address)
    if _IPV4_LIKE.fullmatch(host):
        try:
            return socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            return host
    return host


def _segments(path: str) -> str:
    kept: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if kept:
                kept.pop()
        elif segment not in ("", "."):
            kept.append(segment)
    return "/" + "/".join(kept) if kept else ""
