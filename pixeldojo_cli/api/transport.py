"""The one HTTP path under the client: sending, retries, Retry-After, redirects,
and an Authorization header that only ever goes to the API's own origin.

Every request that carries the key goes through a `Transport` (shell
completion included). Redirects of API requests are never followed; output
downloads follow them one hop at a time, each hop checked (no step down from
https to plain http) and given the key only on the API's own origin (`origin`).
API answers are decoded piece by piece (`decoding`), within a size cap that
counts decoded bytes; the pace is the rate limiter's (`ratelimit`). No error
raised here carries the key, even when the server echoes it (`responses`).

Retry rules (README, "HTTP behaviour"):
- a GET is retried on connection errors, timeouts, 429 and 5xx;
- a request that may create something (`POST .../run`) is retried only when
  the server certainly did not take it: a 429, or a connection that failed
  before the request was sent. Never after a timeout or a 5xx.

Deadlines (`core.deadlines`), not per-read timeouts: each attempt at an API
request ends within `total_timeout` (connecting, the headers and the body
together), one call with all its attempts, pauses and rate-limit waits within
`call_timeout` (unless a command's deadline is in force: it decides), and
nothing waits past a deadline in force (a command's `--timeout`, a TAB's):
neither an attempt, nor a pause between attempts, nor the rate limiter. A
download has no deadline of its own but must keep moving (`DOWNLOAD_PROGRESS`
bytes in every `DOWNLOAD_WINDOW` seconds).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from pixeldojo_cli.api.addresses import AddressGuard, OutputAddressRefused
from pixeldojo_cli.api.connections import OUTPUT_DOWNLOAD, TLSWhenNeeded, read_in_larger_pieces
from pixeldojo_cli.api.decoding import API_ACCEPT_ENCODING, read_answer
from pixeldojo_cli.api.origin import DEFAULT_PORTS, OriginBoundAuth, origin_of
from pixeldojo_cli.api.ratelimit import RateLimiter, SharedBudget
from pixeldojo_cli.api.redirects import (
    UnusableLocation,
    check_hop,
    check_location,
    hop_url,
    unusable,
)
from pixeldojo_cli.api.responses import api_response, error_from_response, key_masked
from pixeldojo_cli.api.retries import RetryPolicy as RetryPolicy
from pixeldojo_cli.api.retries import parse_retry_after as parse_retry_after
from pixeldojo_cli.core import cancelling, deadlines
from pixeldojo_cli.core.errors import (
    APIError,
    BadResponseError,
    DeadlineError,
    DownloadError,
    NetworkError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    SubmissionUncertainError,
    UsageError,
)
from pixeldojo_cli.core.redact import check_api_key, mask_key, redact
from pixeldojo_cli.core.text import safe_text

Trace = Callable[[str], None]

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

# A download redirected more often than this is going round in circles.
MAX_REDIRECTS = 10

# The socket timeout of one read (or write); connecting gets at most 10 s of it.
READ_TIMEOUT = 30.0
# Each attempt at an API request, whole: four reads' worth. Answers are small.
ATTEMPT_DEADLINE = 4 * READ_TIMEOUT
# One API call as a whole, every attempt, pause and rate-limit wait together,
# when no command deadline (`--timeout`) is in force: five attempts of
# `ATTEMPT_DEADLINE` would otherwise hold a command for over ten minutes.
CALL_DEADLINE = 180.0
# A download may take as long as it needs while it moves: at least this many
# bytes in every window, about 0.5 KiB/s (a dial-up line does ten times that).
DOWNLOAD_PROGRESS = 16 * 1024
DOWNLOAD_WINDOW = READ_TIMEOUT


# The policy a Transport gets when none is given (tests swap in a faster one).
DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True)
class _Call:
    """One `Transport.request`: what every attempt at it shares."""

    method: str  # as the caller wrote it, for messages
    url: httpx.URL  # without the query parameters, for messages
    request: httpx.Request
    creates: bool  # must not be repeated once the server may have seen it
    deadline: float | None  # monotonic; one deadline for every attempt, when given
    # Monotonic; past it no attempt starts and no pause is waited for
    # (`CALL_DEADLINE`; None under a command's deadline).
    whole: float | None = None


class Transport:
    """One `httpx.Client` plus the limiter, the retry loop and the trace."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        rate_limit: float = 60,
        timeout: float = READ_TIMEOUT,
        retry: RetryPolicy | None = None,
        trace: Trace | None = None,
        total_timeout: float = ATTEMPT_DEADLINE,
        call_timeout: float = CALL_DEADLINE,
        user_agent: str = "pixeldojo-cli",
        sleep: Callable[[float], None] = cancelling.pause,
        http: httpx.Client | None = None,
        rate_window: float = 60.0,
        budget_dir: Path | None = None,
        allow_private_outputs: bool | None = None,
        allow_private_outputs_source: str = "",
        download_progress: tuple[int, float] = (DOWNLOAD_PROGRESS, DOWNLOAD_WINDOW),
    ) -> None:
        """`budget_dir`: a folder where every process using the same API origin
        and key shares one rate budget (off by default: a per-process one).
        `allow_private_outputs`: see `addresses.AddressGuard` (None: by the API's address);
        `allow_private_outputs_source` where it came from (`env:NAME`, `config:PATH`).
        `timeout` bounds each socket read, `total_timeout` each attempt at an
        API request as a whole (connecting, headers and body); a download must
        take in `download_progress[0]` bytes in every `[1]` seconds; one call,
        all its attempts and pauses, gives up after `call_timeout` unless a
        command's deadline is in force."""
        read_in_larger_pieces()
        api_key = check_api_key(api_key)  # before any request: a key that is not a header
        try:
            self.base_url = httpx.URL(base_url.rstrip("/") + "/")
            self.base_url.host  # noqa: B018 - a name that is not IDNA (`xn--a`) fails here
        except UnicodeError:  # `xn--a`: punycode that decodes to no name
            raise UsageError(
                f"The base URL is not a valid URL: its host is not a valid international "
                f"name ({safe_text(base_url[:100])!r})."
            ) from None
        except (httpx.InvalidURL, ValueError) as exc:
            raise UsageError(
                f"The base URL is not a valid URL: {safe_text(str(exc))[:200]}"
            ) from None
        if self.base_url.scheme not in DEFAULT_PORTS or not self.base_url.host:
            raise UsageError(f"The base URL must be an http(s) URL, got {base_url[:100]!r}.")
        self.origin = origin_of(self.base_url)
        self.has_key = bool(api_key)
        self.retry = retry or DEFAULT_RETRY
        budget = (
            None
            if budget_dir is None
            else SharedBudget.open(budget_dir, self.origin, api_key, window=rate_window)
        )
        self.limiter = RateLimiter(rate_limit, sleep=sleep, window=rate_window, budget=budget)
        self._trace = trace
        self.total_timeout = total_timeout
        self.call_timeout = call_timeout
        self.download_progress = download_progress
        self._sleep = sleep
        self._key = api_key
        auth = OriginBoundAuth(api_key, self.origin) if api_key else None
        self.output_guard = AddressGuard(
            allow_private_outputs,
            self.base_url.raw_host.decode("ascii"),
            source=allow_private_outputs_source,
        )
        self.connections = TLSWhenNeeded(self.output_guard)
        self.http = http or httpx.Client(
            auth=auth,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"User-Agent": user_agent, "Accept": "application/json"},
            follow_redirects=False,
            transport=self.connections,
        )
        if http is not None and auth is not None:
            self.http.auth = auth
        # Every `Location` read before httpx works out where it leads (`redirects`).
        hooks = self.http.event_hooks
        self.http.event_hooks = {**hooks, "response": [*hooks.get("response", []), check_location]}

    def close(self) -> None:
        self.http.close()
        self.limiter.close()

    def url(self, path: str) -> httpx.URL:
        """An API URL: `path` relative to the base URL (`models/x` -> .../api/v1/models/x)."""
        return self.base_url.join(path.lstrip("/"))

    def request_url(self, path: str) -> httpx.URL:
        """Where `pixeldojo api PATH` goes: `PATH` relative to the base URL (a copy of
        the base path in front, as the API's docs write paths, is dropped), or an
        absolute URL, which must be on the API's own origin."""
        with key_masked(self._key):
            if "://" in path or path.startswith("//"):
                return self._absolute_api_url(path)
            base_path = self.base_url.path  # ends with "/"
            if path.startswith(base_path) and base_path != "/":
                path = path[len(base_path) :]
            try:
                return self.url(path)
            except (httpx.InvalidURL, ValueError) as exc:
                raise UsageError(
                    f"{self._shown(path, 200)!r} is not a valid API path: {exc}."
                ) from exc

    def _absolute_api_url(self, path: str) -> httpx.URL:
        """An absolute URL (`//host/...` takes the base URL's scheme), refused
        unless it is on the API's own origin."""
        try:
            url = httpx.URL(path if "://" in path else f"{self.base_url.scheme}:{path}")
            there = origin_of(url)
        except (httpx.InvalidURL, ValueError) as exc:
            raise UsageError(f"{self._shown(path, 200)!r} is not a valid URL: {exc}.") from exc
        if there != self.origin:
            home = self.origin
            raise UsageError(
                f"{there[0]}://{there[1]}:{there[2]} is not the API's origin "
                f"({home[0]}://{home[1]}:{home[2]}): refusing to send the key there.",
                hint="Give a path relative to the base URL, such as `models` or `jobs/ID`.",
            )
        return url

    def _shown(self, text: str, limit: int) -> str:
        """`text` as a message may quote it: the key masked first, then cut to
        `limit` characters (cut first, part of the key could stay unrecognised)."""
        return redact(text, self._key)[:limit]

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
        answer raises its `APIError`, carrying the answer as `response`. No
        error raised carries the key (`responses.mask_error`).
        """
        with key_masked(self._key):
            try:
                url = self.url(path_or_url) if "://" not in path_or_url else httpx.URL(path_or_url)
            except httpx.InvalidURL as exc:
                raise UsageError(f"Not a valid API path: {exc}") from None
            # Only encodings the bounded decoder undoes, whatever the caller asked:
            # set on httpx's Headers, which replace a name whatever its case.
            sent = httpx.Headers(headers or {})
            sent["Accept-Encoding"] = API_ACCEPT_ENCODING
            request = self.http.build_request(
                method,
                url,
                json=json,
                params=params,
                content=content,
                headers=sent,
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
            )
            # With `timeout`, one deadline covers every attempt (a --timeout must
            # hold); without, each attempt gets `total_timeout`.
            now = time.monotonic()
            deadline = None if timeout is None else now + timeout
            # A command's deadline in force decides alone, however far it is.
            whole = None if deadlines.remaining() is not None else now + self.call_timeout
            try:
                return self._with_retries(_Call(method, url, request, creates, deadline, whole))
            except UnusableLocation as bad:  # the server answered: nothing to retry
                raise BadResponseError(
                    f"The API redirected {method} {url.path} to "
                    f"{self._shown(bad.location, 200)!r}, which is not a valid URL; redirects "
                    "are not followed with your key."
                ) from None

    def _with_retries(self, call: _Call) -> httpx.Response:
        """Attempt `call` until it succeeds, or its error may not be retried."""
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= self.retry.max_attempts
            try:
                response = self._attempt(call)
            except httpx.HTTPError as exc:
                self._after_failure(call, exc, attempt, last=last)
                continue
            if response.is_success:
                return response
            self._after_error_answer(call, response, attempt, last=last)

    def _attempt(self, call: _Call) -> httpx.Response:
        """One attempt: a slot from the limiter, then the exchange, read whole."""
        ends = [at for at in (call.deadline, call.whole) if at is not None]
        # With a deadline, the rate budget is not waited for past it.
        ticket = self.limiter.acquire(by=min(ends) if ends else None)
        if deadlines.passed():
            self.limiter.answered(ticket)
            raise self._too_late(call, sent=False)
        if ends and time.monotonic() >= min(ends):
            self.limiter.answered(ticket)
            raise RequestTimeoutError(f"{call.method} {call.url.path} did not finish in time.")
        self._trace_request(call.request)
        started = time.monotonic()
        try:
            deadline = call.deadline if call.deadline is not None else started + self.total_timeout
            deadline = min(deadline, call.whole) if call.whole is not None else deadline
            with deadlines.until(deadline):  # every socket operation, not only the body
                response = read_answer(self.http, call.request, deadline)
        finally:
            self.limiter.answered(ticket)
        self._trace_response(response, started)
        self.limiter.observe(response.headers)
        return response

    def _after_failure(
        self, call: _Call, exc: httpx.HTTPError, attempt: int, *, last: bool
    ) -> None:
        """Wait before the next attempt after a failed exchange, or raise when
        there may be none: the last attempt, or a request that may have reached
        a server that must not see it twice."""
        method, url = call.method, call.url
        if deadlines.passed():
            raise self._too_late(call, sent=not isinstance(exc, _NOT_SENT)) from exc
        if isinstance(exc, _NOT_SENT):
            if last:
                raise NetworkError(f"Could not connect to {url.host}: {exc}") from exc
            self._wait_before_retry(call, attempt, None, f"connection failed ({exc})")
        elif isinstance(exc, _MAYBE_SENT):
            if call.creates:
                raise SubmissionUncertainError(
                    f"The connection broke after the request was sent ({type(exc).__name__})."
                ) from exc
            if last:
                cls = (
                    RequestTimeoutError if isinstance(exc, httpx.TimeoutException) else NetworkError
                )
                raise cls(f"{method} {url.path} failed: {type(exc).__name__}: {exc}") from exc
            self._wait_before_retry(call, attempt, None, type(exc).__name__)
        else:
            raise NetworkError(redact(f"{method} {url} failed: {exc}", self._key)) from None

    def _after_error_answer(
        self, call: _Call, response: httpx.Response, attempt: int, *, last: bool
    ) -> None:
        """Wait before the next attempt after an error answer (a 429; a 5xx to a
        request that may be repeated), or raise its error."""
        error = self._error_for(call, response)
        if isinstance(error, RateLimitError):
            self.limiter.on_rate_limited(error.retry_after)
            left = deadlines.remaining()
            if left is not None and (error.retry_after or 0) >= left:
                raise self._too_late(call, sent=False)  # a --timeout ends it, whatever the wait
            if last or (error.retry_after or 0) > self.retry.max_retry_after:
                raise error
            self._wait_before_retry(
                call, attempt, error.retry_after, "rate limited (429)", instead=error
            )
            return
        retriable_5xx = response.status_code >= 500 or isinstance(error, ServerError)
        if retriable_5xx and not call.creates and not last:
            self._wait_before_retry(
                call, attempt, error.retry_after, f"HTTP {response.status_code}"
            )
            return
        if retriable_5xx and call.creates:
            error.hint = SubmissionUncertainError.default_hint
        raise error

    def _too_late(self, call: _Call, *, sent: bool) -> DeadlineError | SubmissionUncertainError:
        """The deadline in force (`--timeout`) came before `call` could end. A
        request that may create something and may have been sent stays uncertain."""
        where = f"{call.method} {call.url.path}"
        if call.creates and sent:
            return SubmissionUncertainError(
                f"--timeout was reached after {where} was sent, before its answer came."
            )
        nothing = "; nothing was submitted" if call.creates else ""
        return DeadlineError(f"--timeout was reached before {where} could end{nothing}.")

    def _error_for(self, call: _Call, response: httpx.Response) -> APIError:
        """The error an answer that is neither a success nor followed stands for,
        the answer attached; a redirect raises at once (never followed: the key
        stays with this origin)."""
        if response.has_redirect_location:
            location = self._shown(response.headers["location"], 200)
            raise BadResponseError(
                f"The API redirected {call.method} {call.url.path} to {location}; redirects are "
                "not followed with your key.",
                hint="If that is the API's new address, make it the base URL "
                "(--base-url, or `pixeldojo config set base_url URL`).",
            )
        error = error_from_response(
            response.status_code,
            response.text,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
            secret=self._key,  # a server may echo the key
        )
        error.response = api_response(response)
        return error

    def _wait_before_retry(
        self,
        call: _Call,
        attempt: int,
        retry_after: float | None,
        why: str,
        *,
        instead: APIError | None = None,
    ) -> None:
        """Pause before attempt `attempt + 1`; one that would pass the deadline in
        force raises `_too_late`, one past the call's whole bound `instead`
        (the answer's own error) or a timeout saying why the last one failed."""
        delay = retry_after if retry_after is not None else self.retry.backoff(attempt)
        left = deadlines.remaining()
        if left is not None and delay >= left:  # the next attempt would come too late
            raise self._too_late(call, sent=False)
        if call.deadline is not None and time.monotonic() + delay >= call.deadline:
            self._sleep(max(0.0, call.deadline - time.monotonic()))  # its timeout, not later
            raise RequestTimeoutError(f"{call.method} {call.url.path} did not finish in time.")
        if call.whole is not None and time.monotonic() + delay >= call.whole:
            raise instead or RequestTimeoutError(
                f"{call.method} {call.url.path} did not succeed within {self.call_timeout:g} s "
                f"({attempt} {'attempt' if attempt == 1 else 'attempts'}; the last: {why})."
            )
        if self._trace is not None:
            self._trace(f"  {why}; retrying in {delay:.1f} s (attempt {attempt + 1})")
        if retry_after is not None:
            # The limiter already pauses every request until then; sleep here too so
            # that the attempt count means what it says.
            self.limiter.pause(retry_after)
        else:
            self._sleep(delay)

    # --- downloads -----------------------------------------------------------

    @contextmanager
    def stream(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> Iterator[httpx.Response]:
        """A streamed GET of any URL (an output file).

        Redirects are followed one hop at a time, at most `MAX_REDIRECTS`, and
        every hop is checked as the first one is: http(s) only, never plain
        http once the API or an earlier hop was https, and connected only to
        addresses `output_guard` allows. Each hop carries the key only if it is
        on the API's own origin (the auth asks per request). `extensions` go
        to httpx (a `trace` hook sees each new connection). No deadline of its
        own, but it must keep moving (`download_progress`).
        """
        with key_masked(self._key), deadlines.progressing(*self.download_progress):
            try:
                yield from self._follow(url, {**(extensions or {}), OUTPUT_DOWNLOAD: True}, headers)
            except UnusableLocation as bad:  # no URL, or a redirect to none: never retried
                raise unusable(url, bad.location, self._shown) from None

    def _follow(
        self, url: str, extensions: dict[str, Any], headers: dict[str, str] | None
    ) -> Iterator[httpx.Response]:
        """`stream`'s hops, each checked, until an answer that is not a redirect."""
        target = first = hop_url(url)
        secure = self.base_url.scheme == "https"
        for _ in range(MAX_REDIRECTS + 1):
            secure = check_hop(target, secure, url, self._shown)
            request = self.http.build_request("GET", target, headers=headers, extensions=extensions)
            self._trace_request(request)
            started = time.monotonic()
            try:
                response = self.http.send(request, stream=True, follow_redirects=False)
            except OutputAddressRefused as refused:
                # A hop that only spells the output URL another way is not a redirect.
                hop = None if target == first else str(target)
                raise refused.error(url, hop, self._shown) from None
            self._trace_response(response, started)
            if not response.has_redirect_location:
                try:
                    yield response
                finally:
                    response.close()
                return
            location = response.headers["location"]
            response.close()
            target = hop_url(location, target)
        raise DownloadError(
            f"Refusing to download {self._shown(url, 100)}: redirected more than "
            f"{MAX_REDIRECTS} times."
        )
