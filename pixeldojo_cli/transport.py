"""HTTP plumbing under the client: the rate limiter, retries, Retry-After, and
an Authorization header that only ever goes to the API's own origin.

Retry rules (README, "HTTP behaviour"):
- a GET is retried on connection errors, timeouts, 429 and 5xx;
- a request that may create something (`POST .../run`) is retried only when
  the server certainly did not take it: a 429, or a connection that failed
  before the request was sent. Never after a timeout or a 5xx.
"""

from __future__ import annotations

import email.utils
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from pixeldojo_cli.errors import (
    BadResponseError,
    NetworkError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    SubmissionUncertainError,
    UsageError,
    error_from_response,
)
from pixeldojo_cli.redact import mask_key

Trace = Callable[[str], None]
Origin = tuple[str, str, int]

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Errors raised before a single byte of the request left this machine.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Errors after which the server may have received (and acted on) the request.
_MAYBE_SENT = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)


def origin_of(url: httpx.URL | str) -> Origin:
    """(scheme, host, port) with the scheme's default port filled in."""
    url = httpx.URL(url)
    port = url.port or _DEFAULT_PORTS.get(url.scheme, 0)
    return (url.scheme, url.host.lower(), port)


def request_url(transport: Transport, path: str) -> httpx.URL:
    """Where `pixeldojo api PATH` goes: `PATH` relative to the base URL (a copy of
    the base path in front, as the API's docs write paths, is dropped), or an
    absolute URL, which must be on the API's own origin."""
    if "://" in path or path.startswith("//"):
        try:
            url = httpx.URL(path if "://" in path else f"{transport.base_url.scheme}:{path}")
            foreign = origin_of(url) != transport.origin
        except (httpx.InvalidURL, ValueError) as exc:
            raise UsageError(f"{path[:200]!r} is not a valid URL: {exc}.") from exc
        if foreign:
            there, home = origin_of(url), transport.origin
            raise UsageError(
                f"{there[0]}://{there[1]}:{there[2]} is not the API's origin "
                f"({home[0]}://{home[1]}:{home[2]}): refusing to send the key there.",
                hint="Give a path relative to the base URL, such as `models` or `jobs/ID`.",
            )
        return url
    base_path = transport.base_url.path  # ends with "/"
    if path.startswith(base_path) and base_path != "/":
        path = path[len(base_path) :]
    try:
        return transport.url(path)
    except (httpx.InvalidURL, ValueError) as exc:
        raise UsageError(f"{path[:200]!r} is not a valid API path: {exc}.") from exc


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


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


class RateLimiter:
    """A sliding-window limiter: at most `per_minute` requests in any 60 s.

    Thread-safe; one per `Client`, shared by every endpoint. A 429 lowers the
    rate by a quarter (the server knows better than our default) and pauses
    until the server's `Retry-After`; `X-RateLimit-Remaining: 0` pauses until the reset.
    """

    window = 60.0

    def __init__(
        self,
        per_minute: float = 60,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.per_minute = max(1, int(per_minute))
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._not_before = 0.0
        self._lock = threading.Lock()

    def _delay_locked(self, now: float) -> float:
        while self._sent and self._sent[0] <= now - self.window:
            self._sent.popleft()
        delay = max(0.0, self._not_before - now)
        if len(self._sent) >= self.per_minute:
            delay = max(delay, self._sent[0] + self.window - now)
        return delay

    def acquire(self) -> None:
        """Block until one more request fits, then count it."""
        while True:
            with self._lock:
                now = self._clock()
                delay = self._delay_locked(now)
                if delay <= 0:
                    self._sent.append(now)
                    return
            self._sleep(delay)

    def pause(self, seconds: float) -> None:
        """Send nothing for `seconds` (Retry-After, or a reset header)."""
        with self._lock:
            self._not_before = max(self._not_before, self._clock() + seconds)

    def on_rate_limited(self, retry_after: float | None) -> None:
        # Slow down, but not below the lowest limit public material mentions (10/min).
        with self._lock:
            self.per_minute = max(min(self.per_minute, 10), int(self.per_minute * 0.75))
        self.pause(retry_after if retry_after is not None else self.window / self.per_minute)

    def observe(self, headers: httpx.Headers) -> None:
        """Follow `X-RateLimit-Limit/Remaining/Reset` when the server sends them."""
        limit = _header_number(headers, "x-ratelimit-limit")
        if limit is not None and limit >= 1:
            with self._lock:
                self.per_minute = min(self.per_minute, int(limit))
        remaining = _header_number(headers, "x-ratelimit-remaining")
        reset = _header_number(headers, "x-ratelimit-reset")
        if remaining is not None and remaining <= 0 and reset is not None:
            # Reset is either an epoch timestamp or seconds from now.
            seconds = reset - time.time() if reset > 1e9 else reset
            self.pause(min(max(0.0, seconds), self.window))


def _header_number(headers: httpx.Headers, name: str) -> float | None:
    try:
        value = float(headers.get(name, ""))
    except ValueError:
        return None
    return value if value == value else None


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts, and how long between them (jittered exponential)."""

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 120.0

    def backoff(self, attempt: int) -> float:
        """Delay before retry number `attempt` (1-based): half fixed, half random."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


# No API answer is this large; a bigger one is refused rather than held in memory.
MAX_API_BODY = 16 * 2**20


@dataclass(frozen=True)
class ApiResponse:
    """One API answer as it came: status, headers (in order, repeats kept) and body."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    http_version: str = "HTTP/1.1"

    @classmethod
    def from_httpx(cls, response: httpx.Response) -> ApiResponse:
        return cls(
            status=response.status_code,
            reason=response.reason_phrase,
            headers=tuple(
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers.raw
            ),
            body=response.content,
            http_version=response.http_version,
        )

    def header(self, name: str) -> str | None:
        """The first header called `name` (any case), or None."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def json(self) -> Any:
        """The body decoded as JSON; `BadResponseError` when it is not JSON."""
        import json

        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadResponseError(f"The answer (HTTP {self.status}) is not JSON.") from exc


# The policy a Transport gets when none is given (tests swap in a faster one).
DEFAULT_RETRY = RetryPolicy()


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


class Transport:
    """One `httpx.Client` plus the limiter, the retry loop and the trace."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        rate_limit: float = 60,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        trace: Trace | None = None,
        total_timeout: float = 120.0,
        user_agent: str = "pixeldojo-cli",
        sleep: Callable[[float], None] = time.sleep,
        http: httpx.Client | None = None,
    ) -> None:
        read_in_larger_pieces()
        self.base_url = httpx.URL(base_url.rstrip("/") + "/")
        self.origin = origin_of(self.base_url)
        self.has_key = bool(api_key)
        self.retry = retry or DEFAULT_RETRY
        self.limiter = RateLimiter(rate_limit, sleep=sleep)
        self._trace = trace
        self.total_timeout = total_timeout
        self._sleep = sleep
        self._key = api_key
        auth = OriginBoundAuth(api_key, self.origin) if api_key else None
        self.connections = TLSWhenNeeded()
        self.http = http or httpx.Client(
            auth=auth,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"User-Agent": user_agent, "Accept": "application/json"},
            follow_redirects=False,
            transport=self.connections,
        )
        if http is not None and auth is not None:
            self.http.auth = auth

    def close(self) -> None:
        self.http.close()

    def url(self, path: str) -> httpx.URL:
        """An API URL: `path` relative to the base URL (`models/x` -> .../api/v1/models/x)."""
        return self.base_url.join(path.lstrip("/"))

    # --- tracing -------------------------------------------------------------

    def _trace_request(self, request: httpx.Request) -> None:
        if self._trace is None:
            return
        # Auth is applied while sending, so ask the same rule the auth flow uses.
        carries_key = self._key is not None and origin_of(request.url) == self.origin
        auth = "Authorization: Bearer " + mask_key(self._key) if carries_key else "no Authorization"
        self._trace(f"> {request.method} {request.url} ({auth})")

    def _trace_response(self, response: httpx.Response, started: float) -> None:
        if self._trace is not None:
            elapsed = (time.monotonic() - started) * 1000
            self._trace(f"< {response.status_code} {response.reason_phrase} ({elapsed:.0f} ms)")

    # --- the retry loop ------------------------------------------------------

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        creates: bool = False,
        timeout: float | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send one API request and return its successful (2xx) response.

        `creates=True` marks a request that must not be repeated once the
        server may have seen it (submitting a job costs credits). An error
        answer raises its `APIError`, carrying the answer as `response`.
        """
        url = self.url(path_or_url) if "://" not in path_or_url else httpx.URL(path_or_url)
        request = self.http.build_request(
            method,
            url,
            json=json,
            params=params,
            content=content,
            headers=headers,
            timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
        )
        # With `timeout`, one deadline covers every attempt (a --timeout must hold);
        # without, each attempt gets `total_timeout`.
        overall = None if timeout is None else time.monotonic() + timeout
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= self.retry.max_attempts
            self.limiter.acquire()
            if overall is not None and time.monotonic() >= overall:
                raise RequestTimeoutError(f"{method} {url.path} did not finish in time.")
            self._trace_request(request)
            started = time.monotonic()
            deadline = overall if overall is not None else started + self.total_timeout
            try:
                response = self._send_within(request, deadline)
            except _NOT_SENT as exc:
                if last:
                    raise NetworkError(f"Could not connect to {url.host}: {exc}") from exc
                self._wait_before_retry(attempt, None, f"connection failed ({exc})")
                continue
            except _MAYBE_SENT as exc:
                if creates:
                    raise SubmissionUncertainError(
                        f"The connection broke after the request was sent ({type(exc).__name__})."
                    ) from exc
                if last:
                    cls = (
                        RequestTimeoutError
                        if isinstance(exc, httpx.TimeoutException)
                        else NetworkError
                    )
                    raise cls(f"{method} {url.path} failed: {type(exc).__name__}: {exc}") from exc
                self._wait_before_retry(attempt, None, type(exc).__name__)
                continue
            except httpx.HTTPError as exc:
                raise NetworkError(f"{method} {url} failed: {exc}") from exc
            self._trace_response(response, started)
            self.limiter.observe(response.headers)
            if response.is_success:
                return response
            error = error_from_response(
                response.status_code,
                response.text,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
            error.response = ApiResponse.from_httpx(response)
            if isinstance(error, RateLimitError):
                self.limiter.on_rate_limited(error.retry_after)
                if last or (error.retry_after or 0) > self.retry.max_retry_after:
                    raise error
                self._wait_before_retry(attempt, error.retry_after, "rate limited (429)")
                continue
            retriable_5xx = response.status_code >= 500 or isinstance(error, ServerError)
            if retriable_5xx and not creates and not last:
                self._wait_before_retry(attempt, error.retry_after, f"HTTP {response.status_code}")
                continue
            if retriable_5xx and creates:
                error.hint = SubmissionUncertainError.default_hint
            raise error

    def _send_within(self, request: httpx.Request, deadline: float) -> httpx.Response:
        """Send, then read the body against a deadline for the whole exchange.

        httpx's timeouts bound each read, so a server trickling a byte at a time
        could hold a request for ever; this bounds the total, and the size.
        """
        response = self.http.send(request, stream=True)
        try:
            body = bytearray()
            # (A response already read in full, e.g. from httpx.MockTransport, has no stream.)
            chunks = [response.content] if response.is_stream_consumed else response.iter_raw()
            for chunk in chunks:
                body += chunk
                if len(body) > MAX_API_BODY:
                    raise BadResponseError(
                        f"The API's answer to {request.method} {request.url.path} is larger "
                        f"than {MAX_API_BODY // 2**20} MiB; refusing to read it."
                    )
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("the response took too long", request=request)
        finally:
            response.close()
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=bytes(body),
            request=request,
            extensions=response.extensions,
        )

    def _wait_before_retry(self, attempt: int, retry_after: float | None, why: str) -> None:
        delay = retry_after if retry_after is not None else self.retry.backoff(attempt)
        if self._trace is not None:
            self._trace(f"  {why}; retrying in {delay:.1f} s (attempt {attempt + 1})")
        if retry_after is not None:
            # The limiter already pauses every request until then; sleep here too so
            # that the attempt count means what it says.
            self.limiter.pause(retry_after)
        else:
            self._sleep(delay)

    @contextmanager
    def stream(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> Iterator[httpx.Response]:
        """A streamed GET of any URL (an output file). Redirects are followed;
        httpx drops Authorization whenever a redirect leaves the API origin.
        `extensions` go to httpx (a `trace` hook sees each new connection)."""
        self._trace_request(self.http.build_request("GET", url, headers=headers))
        started = time.monotonic()
        with self.http.stream(
            "GET", url, headers=headers, follow_redirects=True, extensions=extensions
        ) as response:
            self._trace_response(response, started)
            yield response
