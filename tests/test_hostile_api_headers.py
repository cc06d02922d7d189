"""`api -H` headers the HTTP layer would refuse are usage errors (issue 24, class 9):
every header httpx/h11 would refuse, or that would frame the request apart from
its body or manage the connection, is exit 2 with one line naming it, before
anything is sent; the library's `Client.request(headers=)` refuses the same."""

from __future__ import annotations

import pytest

from pixeldojo_cli.api.client import Client
from pixeldojo_cli.core.errors import UsageError
from pixeldojo_cli.core.text import safe_text
from pixeldojo_cli.emulator import Emulator

from conftest import TEST_KEY, Invoke

# (header as given to -H, the name the message must show)
CLIENT_OWNED = [
    ("Content-Length: 5", "Content-Length"),
    ("content-length: abc", "content-length"),
    ("Content-Length: 0", "Content-Length"),
    ("Transfer-Encoding: chunked", "Transfer-Encoding"),
    ("Transfer-Encoding: gzip", "Transfer-Encoding"),
    ("TE: trailers", "TE"),
    ("Trailer: X-Sum", "Trailer"),
    ("Expect: 100-continue", "Expect"),
    ("Connection: close", "Connection"),
    ("Connection: keep-alive, Upgrade", "Connection"),
    ("Keep-Alive: timeout=5", "Keep-Alive"),
    ("Proxy-Connection: keep-alive", "Proxy-Connection"),
    ("Upgrade: websocket", "Upgrade"),
    ("Host: evil.example", "Host"),
    ("HOST: evil.example", "HOST"),
    ("Authorization: Bearer someone-elses", "Authorization"),
    ("authorization:x", "authorization"),
]
BAD_VALUES = [
    ("X-A: a\r\nX-Injected: b", "X-A"),
    ("X-A: a\nb", "X-A"),
    ("X-A: a\rb", "X-A"),
    ("X-A: a\r\n\r\nGET / HTTP/1.1", "X-A"),
    ("X-A: a\x00b", "X-A"),
    ("X-A: a\x1b[31mb", "X-A"),
    ("X-A: a\x7fb", "X-A"),
    ("X-A: a\x0bb", "X-A"),
    ("X-A: a\x0cb", "X-A"),
    ("X-A: caf\u00e9", "X-A"),  # latin-1, but httpx sends header values as ASCII
    ("X-A: \u2028", "X-A"),
    ("X-A: \u202egnp.exe", "X-A"),
    ("X-A: \U0001f600", "X-A"),
]
BAD_NAMES = [
    (": value", ""),
    (" X-A: v", " X-A"),
    ("X-A : v", "X-A "),
    ("X A: v", "X A"),
    ("X\tA: v", "X\tA"),
    ("X-\u00e9: v", "X-\u00e9"),
    ("X-A\r\nX-B: v", "X-A\r\nX-B"),
    ("X\x00A: v", "X\x00A"),
    ("(X): v", "(X)"),
    ("X@A: v", "X@A"),
    ('"X": v', '"X"'),
    ("X/A: v", "X/A"),
    ("X\u202eA: v", "X\u202eA"),
]
REFUSED = CLIENT_OWNED + BAD_VALUES + BAD_NAMES


def refused_on_one_line(cli: Invoke, header: str, *extra: str) -> str:
    result = cli("api", "models", "-H", header, *extra)
    assert result.exit_code == 2, (header, result.exit_code, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, (header, result.stderr)
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize("header, name", CLIENT_OWNED, ids=[h for h, _ in CLIENT_OWNED])
def test_a_header_the_client_owns_is_a_usage_error(
    cli: Invoke, emulator: Emulator, header: str, name: str
) -> None:
    line = refused_on_one_line(cli, header)
    assert f"The {name} header cannot be set by hand" in line and "Remove it" in line, line
    assert emulator.requests == []


@pytest.mark.parametrize("header, name", BAD_VALUES, ids=[repr(h) for h, _ in BAD_VALUES])
def test_a_value_the_http_layer_would_refuse_is_a_usage_error(
    cli: Invoke, emulator: Emulator, header: str, name: str
) -> None:
    line = refused_on_one_line(cli, header)
    assert f"The value of the {name} header" in line, line
    assert emulator.requests == []


@pytest.mark.parametrize("header, name", BAD_NAMES, ids=[repr(h) for h, _ in BAD_NAMES])
def test_a_name_that_is_not_a_token_is_a_usage_error(
    cli: Invoke, emulator: Emulator, header: str, name: str
) -> None:
    line = refused_on_one_line(cli, header)
    if name:
        assert f"'{safe_text(name)}' is not valid" in line, line
    else:
        assert "cannot be empty" in line, line
    assert emulator.requests == []


@pytest.mark.parametrize("header", [h for h, _ in REFUSED[:8] + BAD_VALUES[:4]])
def test_a_refused_header_sends_nothing_on_a_post_either(
    cli: Invoke, emulator: Emulator, header: str
) -> None:
    refused_on_one_line(cli, header, "-X", "POST", "-f", "prompt=x")
    assert emulator.requests == []


def test_the_message_never_passes_a_control_character_to_the_terminal(cli: Invoke) -> None:
    for header, _ in BAD_NAMES:
        line = refused_on_one_line(cli, header)
        assert not any(ch in line for ch in "\x00\x1b\r\u202e\t"), repr(line)


@pytest.mark.parametrize(
    "header, name, sent",
    [
        ("X-Trace: 7", "x-trace", "7"),
        ("X-Empty:", "x-empty", ""),
        ("X-Padded:   a value  \t", "x-padded", "a value"),
        ("X-Tab: a\tb", "x-tab", "a\tb"),
        ("X-Colon: a:b: c", "x-colon", "a:b: c"),
        ("X-Odd!#$%&'*+.^_`|~: v", "x-odd!#$%&'*+.^_`|~", "v"),
        ("Accept-Language: en", "accept-language", "en"),
        ("X-Long: " + "v" * 4000, "x-long", "v" * 4000),
    ],
)
def test_a_header_the_http_layer_takes_is_sent_as_given(
    cli: Invoke, emulator: Emulator, header: str, name: str, sent: str
) -> None:
    result = cli("api", "models", "-H", header)
    assert result.exit_code == 0, result.output
    assert emulator.requests[0].headers[name] == sent


@pytest.mark.parametrize("header", [h for h, _ in REFUSED if ":" in h.lstrip(":")])
def test_the_library_refuses_the_same_headers(emulator: Emulator, header: str) -> None:
    name, _, value = header.partition(":")
    with (
        Client(api_key=TEST_KEY, base_url=emulator.base_url) as client,
        pytest.raises(UsageError),
    ):
        client.request("GET", "models", headers={name: value})
    assert emulator.requests == []
