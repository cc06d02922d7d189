"""Headers a caller adds are merged whatever their case (issue 24, class 9's
variants): `Accept-Encoding` is the client's own (it asks only for what its
bounded decoder undoes), a header given twice is refused rather than one copy
silently dropped, and the library takes a list of pairs as well as a mapping."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from pixeldojo_cli.api.client import Client
from pixeldojo_cli.api.transport import Transport
from pixeldojo_cli.core.errors import UsageError
from pixeldojo_cli.emulator import Emulator

from conftest import TEST_KEY, Invoke

ACCEPT_ENCODINGS = ["Accept-Encoding: br", "accept-encoding: br", "ACCEPT-ENCODING: gzip"]


def one_line(cli: Invoke, *args: str) -> str:
    result = cli(*args)
    assert result.exit_code == 2, (args, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("header", ACCEPT_ENCODINGS)
def test_accept_encoding_is_the_clients_own(cli: Invoke, emulator: Emulator, header: str) -> None:
    line = one_line(cli, "api", "models", "-H", header)
    name = header.split(":")[0]
    assert f"The {name} header cannot be set by hand" in line and "gzip, deflate" in line, line
    assert emulator.requests == []


@pytest.mark.parametrize("header", ACCEPT_ENCODINGS)
def test_the_library_refuses_accept_encoding_too(emulator: Emulator, header: str) -> None:
    name, _, value = header.partition(":")
    with (
        Client(api_key=TEST_KEY, base_url=emulator.base_url) as client,
        pytest.raises(UsageError, match="cannot be set by hand"),
    ):
        client.request("GET", "models", headers={name: value})
    assert emulator.requests == []


@pytest.mark.parametrize("name", ["accept-encoding", "ACCEPT-ENCODING", "Accept-Encoding"])
def test_the_transport_sends_one_accept_encoding_whatever_the_case(name: str) -> None:
    """Below the check (a caller of `Transport` itself): one header on the wire,
    the client's, never the caller's beside it."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    http = httpx.Client(transport=httpx.MockTransport(answer))
    transport = Transport("http://127.0.0.1:9/api/v1", TEST_KEY, http=http)
    try:
        transport.request("GET", "models", headers={name: "br", "x-a": "1"})
    finally:
        transport.close()
    [request] = seen
    assert request.headers.get_list("accept-encoding") == ["gzip, deflate"]
    assert request.headers["x-a"] == "1"


@pytest.mark.parametrize(
    "first, second", [("X-A: 1", "x-a: 2"), ("X-A: 1", "X-A: 1"), ("Accept: a", "ACCEPT: b")]
)
def test_a_header_given_twice_is_refused(
    cli: Invoke, emulator: Emulator, first: str, second: str
) -> None:
    line = one_line(cli, "api", "models", "-H", first, "-H", second)
    assert "given twice" in line, line
    assert emulator.requests == []


def test_the_library_takes_a_list_of_pairs(emulator: Emulator) -> None:
    with Client(api_key=TEST_KEY, base_url=emulator.base_url) as client:
        client.request("GET", "models", headers=[("X-Trace", "7"), ("X-Other", "8")])
        with pytest.raises(UsageError, match="given twice"):
            client.request("GET", "models", headers=[("X-A", "1"), ("x-a", "2")])
    [request] = emulator.requests
    assert request.headers["x-trace"] == "7" and request.headers["x-other"] == "8"


@pytest.mark.parametrize("headers", [5, "X-A: 1", [("X-A",)], [("X-A", "1", "2")], [None]])
def test_headers_that_are_neither_a_mapping_nor_pairs_are_a_clear_error(
    emulator: Emulator, headers: Any
) -> None:
    with (
        Client(api_key=TEST_KEY, base_url=emulator.base_url) as client,
        pytest.raises(UsageError, match="mapping of names to values"),
    ):
        client.request("GET", "models", headers=headers)
    assert emulator.requests == []
