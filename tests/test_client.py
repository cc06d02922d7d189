"""The client library: tolerant parsing, the error table, retries, the limiter, the key's origin."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest

from pixeldojo_cli.api.client import Client
from pixeldojo_cli.api.ratelimit import RateLimiter
from pixeldojo_cli.api.responses import error_from_response
from pixeldojo_cli.api.results import (
    extract_output_urls,
    parse_cost,
    parse_job,
    parse_model_list,
    parse_schema,
)
from pixeldojo_cli.api.transport import RetryPolicy, parse_retry_after
from pixeldojo_cli.core.errors import (
    EXIT_CODES,
    AuthenticationError,
    DownloadError,
    ExitCode,
    InsufficientCreditsError,
    NotFoundError,
    RateLimitError,
    ServerError,
    SubmissionFailedError,
    SubmissionUncertainError,
    ValidationError,
)

KEY = "unit-test-key-abcdef123456"

# --- tolerant parsing -------------------------------------------------------


def test_model_list_accepts_the_models_object_and_a_bare_list() -> None:
    entry = {"apiId": "a", "name": "A", "modality": "image", "creditCost": 1}
    assert [m.id for m in parse_model_list({"models": [entry], "total": 1})] == ["a"]
    assert [m.id for m in parse_model_list([{"id": "b", "type": "video"}])] == ["b"]
    assert parse_model_list([{"id": "b", "type": "video"}])[0].modality == "video"


def test_credit_cost_as_number_or_object() -> None:
    assert parse_cost(1.5).default == 1.5
    cost = parse_cost(
        {"default": 1, "type": "per_second", "byResolution": {"720p": 1, "1080p": 1.5}, "x": 1}
    )
    assert (cost.default, cost.per_second, cost.by_resolution["1080p"]) == (1, True, 1.5)
    assert parse_cost({"type": "fixed", "amount": 2}).default == 2
    assert parse_cost("weird").default is None


def test_schema_wrapped_or_bare() -> None:
    bare = {"type": "object", "properties": {}}
    assert parse_schema({"schema": bare}) == bare
    assert parse_schema(bare) == bare


@pytest.mark.parametrize(
    "job, urls",
    [
        ({"output": {"images": ["u1", "u2"]}}, ["u1", "u2"]),
        ({"assets": [{"url": "u1"}, {"url": "u2"}]}, ["u1", "u2"]),
        ({"output": {"image": "u1"}}, ["u1"]),
        ({"output": {"video": "v"}}, ["v"]),
        ({"output": {"videos": ["v1"], "audio": "a"}}, ["v1", "a"]),
        ({"output": "u1"}, ["u1"]),
        ({"output": ["u1", "u1"]}, ["u1"]),
        ({"output": 5}, []),
    ],
)
def test_output_urls_from_every_documented_shape(job: dict[str, object], urls: list[str]) -> None:
    assert extract_output_urls(job) == urls


def test_job_error_as_string_or_object_and_unknown_status() -> None:
    assert parse_job({"jobId": "j", "status": "failed", "error": "boom"}).error == "boom"
    job = parse_job({"jobId": "j", "status": "failed", "error": {"code": "x", "message": "boom"}})
    assert job.error == "boom (x)"
    assert not parse_job({"jobId": "j", "status": "queued"}).is_terminal


def test_expiry_defaults_to_24h_after_completion() -> None:
    job = parse_job({"jobId": "j", "status": "completed", "completedAt": "2026-01-01T00:00:00Z"})
    expiry = job.output_expiry()
    assert expiry is not None and expiry.isoformat() == "2026-01-02T00:00:00+00:00"


# --- the error table --------------------------------------------------------


@pytest.mark.parametrize(
    "status, body, cls, exit_code",
    [
        (401, '{"error": {"code": "unauthorized", "message": "no"}}', AuthenticationError, 3),
        (400, '{"error": "bad", "code": "validation_error"}', ValidationError, 2),
        (402, "", InsufficientCreditsError, 4),
        (404, "Not Found", NotFoundError, 6),
        (429, '{"error": {"code": "rate_limit_exceeded"}}', RateLimitError, 8),
        (
            500,
            '{"error": {"code": "submission_failed", "message": "x"}}',
            SubmissionFailedError,
            10,
        ),
        (503, "<html>Service Unavailable</html>", ServerError, 10),
    ],
)
def test_error_bodies_map_to_classes_and_exit_codes(
    status: int, body: str, cls: type[Exception], exit_code: int
) -> None:
    error = error_from_response(status, body)
    assert isinstance(error, cls)
    assert error.exit_code == exit_code


def test_every_api_error_code_of_the_reference_is_in_the_table() -> None:
    codes = {
        "unauthorized": 3,
        "invalid_json": 2,
        "validation_error": 2,
        "not_found": 6,
        "insufficient_credits": 4,
        "credit_error": 10,
        "submission_failed": 10,
        "expired": 7,
        "rate_limit_exceeded": 8,
        "internal_error": 10,
    }
    assert {code: int(EXIT_CODES[code]) for code in codes} == codes


def test_exceptions_repr_never_holds_the_key() -> None:
    client = Client(api_key=KEY, base_url="https://api.example/v1")
    assert KEY not in repr(client) and KEY not in repr(client.transport.http.auth)


# --- Retry-After and the limiter --------------------------------------------


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("2") == 2.0
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    parsed = parse_retry_after(date, now=now)
    assert parsed is not None and 28 <= parsed <= 31
    assert parse_retry_after("soon") is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_limiter_never_exceeds_the_rate_in_any_60s_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock, sleep=clock.sleep)
    sent = []
    for _ in range(200):
        limiter.acquire()
        sent.append(clock.now)
    for i, start in enumerate(sent):
        assert sum(1 for t in sent[i:] if t < start + 60) <= 60


def test_limiter_pauses_for_retry_after_and_slows_down() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock, sleep=clock.sleep)
    limiter.on_rate_limited(5.0)
    limiter.acquire()
    assert clock.now >= 5.0
    assert limiter.per_minute < 60


# --- which requests may be retried, and where the key goes -------------------


def mock_client(handler: httpx.MockTransport, **kwargs: object) -> Client:
    http = httpx.Client(transport=handler)
    retry = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0)
    return Client(
        api_key=KEY,
        base_url="https://api.example/v1",
        http=http,
        retry=retry,
        sleep=lambda s: None,
        **kwargs,
    )  # type: ignore[arg-type]


def test_post_is_retried_when_the_connection_failed_before_sending() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"jobId": "j1", "status": "pending"})

    job = mock_client(httpx.MockTransport(handler)).run("m", {"prompt": "x"})
    assert job.id == "j1" and len(calls) == 2


def test_post_is_not_retried_after_a_read_timeout() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(SubmissionUncertainError) as info:
        mock_client(httpx.MockTransport(handler)).run("m", {"prompt": "x"})
    assert len(calls) == 1 and info.value.exit_code == ExitCode.NETWORK


def test_post_is_retried_on_429() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(
                429, headers={"Retry-After": "0"}, json={"error": {"code": "rate_limit_exceeded"}}
            )
        return httpx.Response(202, json={"jobId": "j1", "status": "pending"})

    assert mock_client(httpx.MockTransport(handler)).run("m", {}).id == "j1"
    assert len(calls) == 2


def test_get_is_retried_on_5xx_then_gives_up() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503, text="busy")

    with pytest.raises(ServerError):
        mock_client(httpx.MockTransport(handler)).get_job("j")
    assert len(calls) == 3


class PauseClock(FakeClock):
    """A virtual clock that records every pause taken on it."""

    def __init__(self) -> None:
        super().__init__()
        self.pauses: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        super().sleep(seconds)


def answering(
    status: int, retry_after: str | None, calls: list[httpx.Request]
) -> tuple[Client, PauseClock]:
    """A client whose first request is answered `status` (with `Retry-After:
    retry_after`), the next ones 200; every pause, the limiter's included,
    taken on one virtual clock."""

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) > 1:
            return httpx.Response(200, json={"jobId": "j", "status": "pending"})
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return httpx.Response(status, headers=headers, json={"error": {"message": "later"}})

    clock = PauseClock()
    client = Client(
        api_key=KEY,
        base_url="https://api.example/v1",
        http=httpx.Client(transport=httpx.MockTransport(handler)),
        retry=RetryPolicy(max_attempts=3, base_delay=0.2, max_delay=0.4),
        sleep=clock.sleep,
    )
    client.transport.limiter = RateLimiter(60, clock=clock, sleep=clock.sleep)
    return client, clock


# 42 s: far from anything the limiter (60/min, less a quarter after a 429: 1.33 s)
# or the backoff (0.1-0.4 s here) would wait, so neither can pass for it.
@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_retry_after_is_the_pause_before_the_next_attempt(status: int, form: str) -> None:
    calls: list[httpx.Request] = []
    value = "42" if form == "seconds" else email.utils.formatdate(time.time() + 42, usegmt=True)
    client, clock = answering(status, value, calls)
    assert client.get_job("j").id == "j" and len(calls) == 2
    pauses = clock.pauses
    if form == "seconds":
        assert pauses == [42.0]
    else:  # whole seconds, counted from the wall clock's now
        assert len(pauses) == 1 and 40.5 <= pauses[0] <= 42.0, pauses


@pytest.mark.parametrize("status", [429, 503])
def test_without_retry_after_the_pause_is_the_limiter_s_or_the_backoff(status: int) -> None:
    calls: list[httpx.Request] = []
    client, clock = answering(status, None, calls)
    assert client.get_job("j").id == "j" and len(calls) == 2
    pauses = clock.pauses
    assert 0.1 <= pauses[0] <= 0.2  # the first backoff
    if status == 429:  # then the limiter's pause, slowed to 45 a minute: 60/45 s in all
        assert sum(pauses) == pytest.approx(60 / 45)
    else:
        assert len(pauses) == 1


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize(
    "nonsense", ["0", "-5", "soon", "inf", "nan", "1e999", "past-date", "0.0", "  "]
)
def test_a_retry_after_that_makes_no_sense_is_ignored_not_obeyed(
    status: int, nonsense: str
) -> None:
    """The pauses are exactly those taken with no header at all: never none."""
    value = email.utils.formatdate(time.time() - 3600, usegmt=True)
    value = value if nonsense == "past-date" else nonsense
    calls: list[httpx.Request] = []
    client, clock = answering(status, value, calls)
    assert client.get_job("j").id == "j" and len(calls) == 2
    pauses = clock.pauses
    assert 0.1 <= pauses[0] <= 0.2  # the first backoff, as without the header
    if status == 429:  # and the limiter slowed to 45 a minute, as without the header
        assert sum(pauses) == pytest.approx(60 / 45)
    else:
        assert len(pauses) == 1


def test_retry_after_parsing_refuses_waits_that_make_no_sense() -> None:
    past = email.utils.formatdate(time.time() - 60, usegmt=True)
    for value in ("0", "-1", "nan", "inf", "-inf", "1e999", past, "garbage", ""):
        assert parse_retry_after(value) is None, value
    assert parse_retry_after("0.5") == 0.5


def test_a_retry_after_longer_than_the_policy_allows_is_raised_at_once() -> None:
    calls: list[httpx.Request] = []
    client, clock = answering(429, "500", calls)
    with pytest.raises(RateLimitError) as info:
        client.get_job("j")
    assert info.value.retry_after == 500 and len(calls) == 1
    assert clock.pauses == []


def test_key_goes_only_to_the_api_origin() -> None:
    seen: dict[str, str | None] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen[str(request.url)] = request.headers.get("authorization")
        return httpx.Response(200, content=b"x")

    client = mock_client(httpx.MockTransport(handler))
    client.transport.request("GET", "models")
    for url in ("https://files.example/x.png", "https://api.example:8443/v1/x"):
        with client.transport.stream(url) as response:
            response.read()
    with pytest.raises(DownloadError), client.transport.stream("http://api.example/v1/x"):
        pass  # plain http under an https API is not even asked for
    assert seen["https://api.example/v1/models"] == f"Bearer {KEY}"
    assert [seen[u] for u in seen if "files" in u or "8443" in u] == [None, None]
    assert "http://api.example/v1/x" not in seen


def test_job_ids_cannot_climb_out_of_their_path() -> None:
    paths = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path.decode())
        return httpx.Response(200, json={"jobId": "../models/x?y=1", "status": "pending"})

    mock_client(httpx.MockTransport(handler)).get_job("../models/x?y=1")
    assert paths == ["/v1/jobs/..%2Fmodels%2Fx%3Fy%3D1"]


def test_wait_backs_off_2_4_8_then_caps() -> None:
    statuses = iter(["pending"] * 6 + ["completed"])
    sleeps: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"jobId": "j", "status": next(statuses)})

    client = mock_client(httpx.MockTransport(handler))
    now = [0.0]

    def sleep(seconds: float) -> None:  # a virtual clock: the schedule, not the wall
        sleeps.append(seconds)
        now[0] += seconds

    from pixeldojo_cli.engine import wait

    states = wait(
        client, "j", poll_interval=2, max_poll_interval=30, sleep=sleep, clock=lambda: now[0]
    )
    final = list(states)[-1]
    assert final.status == "completed"
    assert sleeps == [2, 4, 8, 16, 30, 30, 30]
