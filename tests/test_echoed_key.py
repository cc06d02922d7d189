"""A server that echoes the key it was sent: no error the library raises carries
it, whatever the path the error took (an error answer, 5xx after retries, a
body that is not JSON, a redirect, a broken connection naming the URL). Tested
on the library alone, no CLI: its renderer masks what it prints a second time,
which would hide a leak here."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from pixeldojo_cli.api.client import Client
from pixeldojo_cli.api.transport import RetryPolicy
from pixeldojo_cli.core.errors import (
    APIError,
    AuthenticationError,
    BadResponseError,
    NetworkError,
    PixelDojoError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    ValidationError,
)
from pixeldojo_cli.emulator import Emulator

KEY = "sk-echo-9f8e7d6c5b4a3210zyxw"  # made up: never a real key
MASKED = "****" + KEY[-4:]
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02)


def leaks(text: str | bytes) -> bool:
    """Whether `text` holds the key, or any 8 characters of it in a row."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    return any(KEY[i : i + 8] in text for i in range(len(KEY) - 7))


def assert_masked(error: PixelDojoError) -> None:
    """Every place a library user may print an error from holds the key masked."""
    shown = [str(error), repr(error), repr(error.args), error.message, error.hint]
    assert not [text for text in shown if leaks(text)], shown
    response = error.response if isinstance(error, APIError) else None
    if response is not None:
        assert not leaks(response.body), response.body[:300]
        assert not [(k, v) for k, v in response.headers if leaks(k) or leaks(v)]


@pytest.fixture
def api(make_emulator: Callable[..., Emulator]) -> Iterator[tuple[Emulator, Client]]:
    emulator = make_emulator(latency=0.0)
    with Client(api_key=KEY, base_url=emulator.base_url, retry=FAST_RETRY) as client:
        yield emulator, client


def raised(call: Callable[[], Any]) -> PixelDojoError:
    with pytest.raises(PixelDojoError) as info:
        call()
    return info.value


# --- error answers, over real sockets -----------------------------------------------


def test_a_401_that_quotes_the_wrong_key(make_emulator: Callable[..., Emulator]) -> None:
    emulator = make_emulator(key="the-only-key-that-works", echo_key=True)
    with Client(api_key=KEY, base_url=emulator.base_url, retry=FAST_RETRY) as client:
        error = raised(lambda: client.list_jobs())
    assert isinstance(error, AuthenticationError)
    assert f"{MASKED!r} is not valid" in error.message  # the server did echo it (as a repr)
    assert_masked(error)


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ({"status": 400, "message": f"the key {KEY} may not ask that"}, ValidationError),
        ({"status": 404, "code": "not_found", "message": f"no job for {KEY}"}, APIError),
        ({"status": 418, "code": "teapot", "message": f"{KEY} is a teapot"}, APIError),
        ({"status": 503, "count": -1, "message": f"busy, {KEY}"}, ServerError),
        ({"status": 429, "count": -1, "retry_after": "0", "message": KEY}, RateLimitError),
        (
            {
                "status": 502,
                "count": -1,
                "body": f"upstream: {KEY} refused",
                "content_type": "text/plain",
            },
            ServerError,
        ),
        (
            {
                "status": 500,
                "count": -1,
                "body": f'{{"error": "{KEY}"}}',
                "headers": {"X-Echo": KEY},
            },
            ServerError,
        ),
        # Cut to 1,000 characters across the key: the cut must not leave a part of it.
        ({"status": 400, "message": "x" * 990 + KEY}, ValidationError),
    ],
    ids=["400", "404", "unknown-code", "503-retried", "429-retried", "not-json", "header", "cut"],
)
def test_an_error_answer_echoing_the_key(
    api: tuple[Emulator, Client], fault: dict[str, Any], expected: type[PixelDojoError]
) -> None:
    emulator, client = api
    emulator.add_fault("status", path="/jobs", **fault)
    error = raised(lambda: client.list_jobs())
    assert isinstance(error, expected)
    echoed = [error.message]
    if isinstance(error, APIError) and error.response is not None:
        echoed.append(error.response.body.decode())
    assert any(MASKED in text for text in echoed), echoed  # the server did echo it
    assert_masked(error)


def test_a_submit_answered_5xx_echoing_the_key(api: tuple[Emulator, Client]) -> None:
    emulator, client = api
    emulator.add_fault("status", status=500, method="POST", message=f"oops {KEY}")
    error = raised(lambda: client.run("flux-dev", {"prompt": "x"}))
    assert isinstance(error, ServerError) and error.hint  # the job may exist: the hint says so
    assert_masked(error)


def test_an_api_redirect_to_a_url_holding_the_key(api: tuple[Emulator, Client]) -> None:
    emulator, client = api
    emulator.add_fault("redirect", status=302, location=f"https://elsewhere.example/?k={KEY}")
    error = raised(lambda: client.list_jobs())
    assert isinstance(error, BadResponseError) and f"k={MASKED}" in error.message
    assert_masked(error)


def test_an_answer_that_is_not_json_with_the_key_in_its_type(api: tuple[Emulator, Client]) -> None:
    emulator, client = api
    kind = "text/plain; charset=utf-8; q=" + "y" * 17 + f"; k={KEY}"  # cut at 60 within the key
    emulator.add_fault("status", status=200, body="not json", content_type=kind)
    error = raised(lambda: client.list_jobs())
    assert isinstance(error, BadResponseError) and "Expected JSON" in error.message
    assert_masked(error)


# --- broken exchanges whose message names the URL -----------------------------------


def test_a_connection_broken_on_a_url_holding_the_key(api: tuple[Emulator, Client]) -> None:
    emulator, client = api
    emulator.add_fault("reset", count=-1)
    error = raised(lambda: client.get_job(KEY))  # the job id is the path: /jobs/<key>
    assert isinstance(error, NetworkError) and MASKED in error.message
    assert_masked(error)


def test_a_timeout_on_a_url_holding_the_key(api: tuple[Emulator, Client]) -> None:
    emulator, client = api
    emulator.add_fault("delay", delay=1.0, count=-1)
    error = raised(lambda: client.get_job(KEY, timeout=0.3))
    assert isinstance(error, RequestTimeoutError) and MASKED in error.message
    assert_masked(error)


def test_a_refused_connection(unused_port: int) -> None:
    with Client(api_key=KEY, base_url=f"http://127.0.0.1:{unused_port}/v1", retry=FAST_RETRY) as c:
        error = raised(lambda: c.get_job(KEY))
    assert isinstance(error, NetworkError)
    assert_masked(error)


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- what only a mock can make happen ------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        httpx.DecodingError("could not decode"),
        httpx.LocalProtocolError(f"Illegal header value b'Bearer {KEY}'"),
    ],
    ids=["decoding", "protocol-naming-the-key"],
)
def test_an_httpx_error_naming_the_url_or_the_key(failure: httpx.HTTPError) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise failure

    http = httpx.Client(transport=httpx.MockTransport(handler))
    with Client(api_key=KEY, base_url="https://api.example/v1", http=http, retry=FAST_RETRY) as c:
        error = raised(lambda: c.request("GET", f"models?token={KEY}"))
    assert isinstance(error, NetworkError) and MASKED in error.message
    assert_masked(error)


def test_an_api_path_refused_before_sending() -> None:
    with Client(api_key=KEY, base_url="https://api.example/v1") as client:
        error = raised(lambda: client.request("GET", f"https://{KEY}.example/x"))
        assert "refusing to send the key" in error.message and MASKED in error.message
        assert_masked(error)
        error = raised(lambda: client.request("GET", f"https://api.example:{KEY}/x"))
        assert "is not a valid URL" in error.message and MASKED in error.message
        assert_masked(error)
