"""Which addresses an output download may connect to.

An API names its output URLs, and a hostile one could name an address inside
the user's network: a cloud metadata service (`169.254.169.254`), a loopback
admin port, a printer. Output downloads connect only to public addresses,
unless the API itself is on a private one (the emulator, a local test) or the
`allow_private_outputs` setting says otherwise.

"The API is on a private address" is read from the base URL's text alone: an
address literal inside the network, or `localhost` / `*.localhost` (RFC 6761:
always this machine; every connection to such a name goes to 127.0.0.1 or ::1,
never to what a resolver says). Any other name counts as public, however it
resolves: a DNS answer is the server's to choose, so it must not open the
user's network to the server's outputs.

The check is of the addresses a host name resolves to, not of the name, and
the connection is then made to an address that was checked (`connections`), so
a name that resolves once to a public address and then to a private one gets
nowhere. Every spelling a resolver accepts (`2130706433`, `0x7f.1`, `127.1`,
`[::ffff:127.0.0.1]`) ends up as the address it stands for before it is judged.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from pixeldojo_cli.core import deadlines
from pixeldojo_cli.core.errors import OutputRefusedError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# `socket.getaddrinfo`'s shape: (host, port, family, type) -> [(..., sockaddr)].
Resolver = Callable[[str, int, int, int], Sequence[tuple[Any, ...]]]

# Ranges Python's `is_global` calls public though nothing on the internet is there.
_NOT_PUBLIC_V4 = (ipaddress.ip_network("192.0.0.0/24"),)  # IETF protocol assignments
# IPv6 prefixes that carry an IPv4 address in their last 32 bits (NAT64, RFC 6052).
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class OutputAddressRefused(Exception):
    """An output's host resolves to an address the policy refuses. Not an
    `httpx` error, so nothing on the way retries it. `hint`: how to allow it,
    as the guard that refused it knows (`AddressGuard.how_to_allow`)."""

    def __init__(self, host: str, address: str, why: str, hint: str = "") -> None:
        super().__init__(f"{host} is {address}, {why}")
        self.host = host
        self.address = address
        self.why = why
        self.hint = hint

    def error(
        self, first: str, hop: str | None, shown: Callable[[str, int], str]
    ) -> OutputRefusedError:
        """The one error for the user: the output URL `first` (and the redirect
        `hop` that was refused, when there was one), `shown` masking the key."""
        via = "" if hop is None else f" (it redirects to {shown(hop, 100)})"
        host = shown(self.host, 60)
        where = f"{host} is" if host == self.address else f"{host} resolves to {self.address},"
        return OutputRefusedError(
            f"Refusing to download {shown(first, 100)}{via}: {where} {self.why}, which "
            "output URLs may not reach.",
            hint=f"Nothing was fetched. {self.hint or ALLOW_HINT}",
        )


# How to allow outputs inside the network, when nothing has refused them outright.
ALLOW_HINT = (
    "If you expect this API's outputs on your own network, allow them with "
    "`pixeldojo config set allow_private_outputs true` (or PIXELDOJO_ALLOW_PRIVATE_OUTPUTS=true)."
)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for, where it carries one: mapped
    (`::ffff:a.b.c.d`), 6to4 (`2002:AABB:CCDD::`), Teredo's client, NAT64."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def why_refused(address: IPAddress) -> str | None:
    """Why an output may not be fetched from `address` ("a loopback address"...),
    or None for a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            why = why_refused(inner)
            if why is not None:
                return f"{why} ({inner}) inside an IPv6 address"
            if address.ipv4_mapped is not None or address in _NAT64:
                return None  # a public IPv4 address reached through IPv6
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
        ("non-public", any(address in net for net in _NOT_PUBLIC_V4)),
    )
    for name, hit in checks:
        if hit:
            return f"{'an' if name[0] in 'aeiou' else 'a'} {name} address"
    return None if address.is_global else "a non-public address"


def parse_address(text: str) -> IPAddress:
    """An address as a resolver hands it back (a zone, `%eth0` or `%2`, dropped)."""
    return ipaddress.ip_address(text.split("%", 1)[0])


def _literal(host: str) -> IPAddress | None:
    """The address a host that is an address literal names (a zone, percent-encoded
    or not, dropped); None for a name."""
    try:
        return parse_address(host.strip("[]").replace("%25", "%"))
    except ValueError:
        return None


# What `localhost` and every `*.localhost` name stand for (RFC 6761), in the order tried.
LOOPBACK = ("127.0.0.1", "::1")


def is_localhost_name(host: str) -> bool:
    """`localhost` or a name under it (any case, a final dot or not): this machine,
    never a resolver's answer."""
    name = host.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


def _numeric_addresses(host: str) -> list[IPAddress]:
    """The address `host` names when it is an address in any spelling a resolver
    accepts (`127.1`, `2130706433`, `0x7f.1`, `[::1]`), read without any
    resolver at all; [] for a name."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    if not _IPV4_SPELLING.fullmatch(host):
        return []
    try:
        return [ipaddress.IPv4Address(socket.inet_aton(host))]
    except OSError:
        return []


# What inet_aton (and so a resolver) may read as an IPv4 address: digits, hex, dots.
_IPV4_SPELLING = re.compile(r"[0-9a-fA-FxX.]+")


def on_private_address(host: str) -> bool:
    """Whether a base URL's host is inside the network by its text alone: an
    address literal there, or a `localhost` name. No DNS is asked: an answer
    the server controls must not decide what its outputs may reach."""
    if is_localhost_name(host):
        return True
    found = _numeric_addresses(host)
    return bool(found) and all(why_refused(a) is not None for a in found)


class ResolveTimeout(OSError):
    """The resolver did not answer within the time left (`resolve`)."""


class _Lookup:
    """One resolver call, run in a daemon thread: its answer (or error) once done."""

    def __init__(self, resolver: Resolver, name: str, port: int) -> None:
        self.done = threading.Event()
        self.finished = 0.0
        self.outcome: Any = None

        def run() -> None:
            try:
                self.outcome = resolver(name, port, 0, socket.SOCK_STREAM)
            except BaseException as exc:  # handed to the waiting thread as it is
                self.outcome = exc
            self.finished = time.monotonic()
            self.done.set()

        threading.Thread(target=run, name="pixeldojo-resolve", daemon=True).start()

    def stale(self) -> bool:
        """Whether its answer came too long ago to be used."""
        return self.done.is_set() and time.monotonic() - self.finished > _LEFT_FOR


# Lookups a caller stopped waiting for, still under way or done since: the next
# attempt waits for the same one rather than start again (a slow resolver's
# answer is not thrown away, nor are threads piled up). An answer left here
# longer than this is not used.
_LEFT_LOOKUPS: dict[tuple[Any, str, int], _Lookup] = {}
_LEFT_FOR = 30.0
_LEFT_LOCK = threading.Lock()


def _in_time(host: str, port: int, resolver: Resolver, timeout: float | None) -> Any:
    """`resolver`'s answer for `host`, waited for at most `timeout` seconds cut to
    the deadline in force. getaddrinfo takes no timeout and cannot be
    interrupted, so a name is looked up in a daemon thread, left to finish on
    its own when the time is up (`ResolveTimeout`). An address literal is
    answered at once, without a thread."""
    name = host.strip("[]")
    limit, why = deadlines.bounded(timeout)
    if limit is None or _literal(host) is not None:
        return resolver(name, port, 0, socket.SOCK_STREAM)
    if limit <= 0:
        raise ResolveTimeout(f"resolving {host[:100]} took too long ({why or 'timed out'})")
    key = (resolver, name, port)
    with _LEFT_LOCK:
        lookup = _LEFT_LOOKUPS.pop(key, None)
        if lookup is None or lookup.stale():
            lookup = _Lookup(resolver, name, port)
    if not lookup.done.wait(limit):
        with _LEFT_LOCK:
            _LEFT_LOOKUPS[key] = lookup
        raise ResolveTimeout(f"resolving {host[:100]} took too long ({why or 'timed out'})")
    if isinstance(lookup.outcome, BaseException):
        raise lookup.outcome
    return lookup.outcome


def resolve(host: str, port: int, resolver: Resolver, timeout: float | None = None) -> list[str]:
    """Every address `host` resolves to, in the resolver's order, as strings a
    socket connects to without asking a resolver again (an IPv6 zone kept as
    `%<index>`); a `localhost` name is `LOOPBACK`, whatever a resolver says.
    `socket.gaierror` when it resolves to nothing; `ResolveTimeout` when the
    resolver takes longer than `timeout` or the deadline in force. Every
    connection the package makes resolves here (`connections`)."""
    if is_localhost_name(host):
        return list(LOOPBACK)
    found: list[str] = []
    for info in _in_time(host, port, resolver, timeout):
        sockaddr = info[4]
        text = str(sockaddr[0])
        if len(sockaddr) >= 4 and sockaddr[3] and "%" not in text:
            text = f"{text}%{sockaddr[3]}"
        if text not in found:
            found.append(text)
    if not found:
        raise socket.gaierror(socket.EAI_NONAME, f"{host} resolves to no address")
    return found


def system_resolver(host: str, port: int, family: int, kind: int) -> Sequence[tuple[Any, ...]]:
    """The system's resolver (`socket.getaddrinfo`, looked up at each call)."""
    return socket.getaddrinfo(host, port, family, kind)


class AddressGuard:
    """The rule for output downloads: which addresses they may connect to.

    `allow_private` True or False decides outright; None (unset) allows
    private addresses only when the API's own host (`api_host`, as the base
    URL writes it) is inside the network by its text: an address literal
    there, or `localhost` (`on_private_address`); never by a DNS answer.
    `source` is where a True or False came from, as settings name it
    (`env:NAME`, `config:PATH`), for the hint. `resolver` (default: the
    system's) resolves output hosts; tests replace it.
    """

    def __init__(
        self,
        allow_private: bool | None,
        api_host: str,
        resolver: Resolver | None = None,
        *,
        source: str = "",
    ) -> None:
        self.allow_private = allow_private
        self.api_host = api_host
        self.resolver: Resolver = resolver or system_resolver
        self.source = source
        self._api_is_private = on_private_address(api_host)

    def private_allowed(self) -> bool:
        """Whether private addresses are allowed: the setting, or the API's own
        address as its base URL writes it."""
        if self.allow_private is not None:
            return self.allow_private
        return self._api_is_private

    def how_to_allow(self) -> str:
        """The hint after a refusal: how to allow such outputs, from where the
        rule that refused them came (an environment variable outranks the file)."""
        if self.allow_private is False and self.source.startswith("env:"):
            name = self.source[len("env:") :]
            return (
                f"{name}=false in the environment refuses them; if you expect this API's "
                f"outputs on your own network, unset it or set it to true (`config set` "
                "cannot change it while it is set)."
            )
        if self.allow_private is False and self.source.startswith("config:"):
            return (
                f"allow_private_outputs = false in {self.source[len('config:') :]} refuses "
                "them; if you expect this API's outputs on your own network, set it to "
                "true there (or PIXELDOJO_ALLOW_PRIVATE_OUTPUTS=true)."
            )
        return ALLOW_HINT

    def checked(self, host: str, port: int, timeout: float | None = None) -> list[str]:
        """The addresses `host` resolves to, every one of them allowed; connect
        only to these. `OutputAddressRefused` when any is not (a name that
        resolves to a public and a private address is refused); `ResolveTimeout`
        when a lookup takes longer than `timeout` or the deadline in force."""
        allowed = self.private_allowed()
        literal = _literal(host)
        why = None if allowed or literal is None else why_refused(literal)
        if why is not None:  # also a literal no resolver takes (`fe80::1%25eth0`)
            raise OutputAddressRefused(host, host, why, self.how_to_allow())
        addresses = resolve(host, port, self.resolver, timeout)
        if allowed:
            return addresses
        for address in addresses:
            why = why_refused(parse_address(address))
            if why is not None:
                raise OutputAddressRefused(host, address.split("%", 1)[0], why, self.how_to_allow())
        return addresses
