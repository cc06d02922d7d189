"""HTTP plumbing under the client: the rate limiter, retries, Retry-After, and
an Authorization header that only ever goes to the API's own origin.

Every request that carries the key goes through a `Transport` (shell
completion included). Redirects of API requests are never followed; output
downloads follow them one hop at a time, each hop checked (no step down from
https to plain http) and given the key only on the API's own origin. API
answers are decoded here, piece by piece, so that their size cap counts
decoded bytes: a small compressed answer cannot expand in memory.

Retry rules (README, "HTTP behaviour"):
- a GET is retried on connection errors, timeouts, 429 and 5xx;
- a request that may create something (`POST .../run`) is retried only when
  the server certainly did not take it: a 429, or a connection that failed
  before the request was sent. Never after a timeout or a 5xx.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import random
import ssl
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from pixeldojo_cli.api.responses import api_response, error_from_response
from pixeldojo_cli.core.errors import (
    BadResponseError,
    DownloadError,
    NetworkError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    SubmissionUncertainError,
    UsageError,
)
from pixeldojo_cli.core.redact import check_api_key, mask_key, redact
from pixeldojo_cli.core.untrusted import loads, open_regular

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


class SharedBudgetUnavailable(Exception):
    """The shared budget file cannot be used (any more): keep a per-process budget."""


# Budget files untouched this long belong to keys or APIs no longer used.
_STALE_BUDGET = 7 * 86400
# A budget file larger than this is not ours: it is reset.
_MAX_BUDGET_BYTES = 256 * 1024
# Seconds to wait for another process to let go of the budget file's lock.
_LOCK_PATIENCE = 2.0


class SharedBudget:
    """The rate budget of one (API origin, key), shared by every process on the
    machine through a small file: the send times of the last window and a
    `not_before` pause, read and rewritten under an exclusive `flock`.

    Nothing can leave it stuck: the OS drops the lock of a process that dies,
    times older than the window are dropped at every look, a pause is never
    taken for longer than two windows, and a file that does not parse is reset.
    The file is named by a hash of the origin and key, never the key itself.

    Each request holds a slot from just before it is sent until its answer has
    arrived (`settle` moves the slot's time there): the server counts the
    request somewhere in between, so the slot frees a full window after the
    latest moment the server could have counted it, whatever the processes'
    scheduling did to the order of arrivals.
    """

    def __init__(self, path: Path, *, window: float, clock: Callable[[], float] = time.time):
        import fcntl  # ImportError (Windows): the caller keeps a per-process budget

        self._flock = fcntl.flock
        self._lock_ex, self._lock_un = fcntl.LOCK_EX | fcntl.LOCK_NB, fcntl.LOCK_UN
        self.path = path
        self.window = window
        self._clock = clock
        self._fd = open_regular(path, os.O_RDWR | os.O_CREAT)

    @classmethod
    def open(
        cls, folder: Path, origin: Origin, api_key: str | None, *, window: float
    ) -> SharedBudget | None:
        """The budget file for `origin` and `api_key` in `folder`, or None when
        this platform or folder cannot hold one (no error: the caller keeps a
        per-process budget)."""
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = folder / budget_file_name(origin, api_key)
            fresh = not path.exists()
            budget = cls(path, window=window)
        except (ImportError, OSError, ValueError):
            return None
        if fresh:
            _prune_stale_budgets(folder, keep=path)
        return budget

    def close(self) -> None:
        os.close(self._fd)

    @contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        """The file's state, locked; written back when the block ends."""
        self._lock()
        try:
            state = self._read()
            yield state
            self._write(state)
        except OSError as exc:
            raise SharedBudgetUnavailable(str(exc)) from exc
        finally:
            with suppress(OSError):
                self._flock(self._fd, self._lock_un)

    def _lock(self) -> None:
        """Take the file's lock. Holders keep it for microseconds; one that is not
        let go within `_LOCK_PATIENCE` s belongs to a stopped process (Ctrl-Z):
        this process then stops sharing rather than wait for it."""
        give_up = time.monotonic() + _LOCK_PATIENCE
        pause = 0.001
        while True:
            try:
                self._flock(self._fd, self._lock_ex)
                return
            except BlockingIOError:
                if time.monotonic() >= give_up:
                    raise SharedBudgetUnavailable("the budget file stays locked") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.05)
            except OSError as exc:
                raise SharedBudgetUnavailable(str(exc)) from exc

    def _read(self) -> dict[str, Any]:
        os.lseek(self._fd, 0, os.SEEK_SET)
        data = os.read(self._fd, _MAX_BUDGET_BYTES + 1)
        now = self._clock()
        try:
            raw = loads(data) if data and len(data) <= _MAX_BUDGET_BYTES else {}
            sent = [
                (float(at), int(ticket))
                for at, ticket in raw.get("sent", [])
                if now - self.window < float(at) <= now + self.window  # drop old and future
            ]
            not_before = float(raw.get("not_before", 0.0))
        except (ValueError, TypeError, AttributeError, OverflowError):  # damaged: start afresh
            sent, not_before = [], 0.0
        if not now - 1 <= not_before <= now + 2 * self.window:
            not_before = 0.0
        return {"sent": sent, "not_before": not_before}

    def _write(self, state: dict[str, Any]) -> None:
        sent = [[round(at, 6), ticket] for at, ticket in state["sent"]]
        data = json.dumps({"v": 1, "sent": sent, "not_before": state["not_before"]}).encode()
        os.lseek(self._fd, 0, os.SEEK_SET)
        os.ftruncate(self._fd, 0)
        os.write(self._fd, data)

    def reserve(self, limit: int) -> tuple[float, int | None]:
        """Take a slot if one is free now: (0, ticket); else (seconds to wait, None)."""
        with self._state() as state:
            now = self._clock()
            delay = max(0.0, state["not_before"] - now)
            times = sorted(at for at, _ in state["sent"])
            if len(times) >= limit:
                delay = max(delay, times[len(times) - limit] + self.window - now)
            if delay > 0:
                return delay, None
            ticket = random.getrandbits(62)
            state["sent"].append((now, ticket))
            return 0.0, ticket

    def settle(self, ticket: int) -> None:
        """The request holding `ticket` has its answer: its slot counts from now."""
        with self._state() as state:
            now = self._clock()
            state["sent"] = [
                (max(at, now) if held == ticket else at, held) for at, held in state["sent"]
            ]

    def pause_until(self, when: float) -> None:
        """No process sends before `when` (wall-clock seconds), within two windows."""
        with self._state() as state:
            state["not_before"] = max(
                state["not_before"], min(when, self._clock() + 2 * self.window)
            )


def budget_file_name(origin: Origin, api_key: str | None) -> str:
    """The budget file's name: a hash of the origin and key (never the key itself)."""
    scheme, host, port = origin
    digest = hashlib.sha256(f"pixeldojo-rate\0{scheme}://{host}:{port}\0{api_key or ''}".encode())
    return f"{digest.hexdigest()[:32]}.json"


def _prune_stale_budgets(folder: Path, *, keep: Path) -> None:
    """Remove budget files nobody has used for a week (old keys, old emulators)."""
    cutoff = time.time() - _STALE_BUDGET
    with suppress(OSError):
        for path in folder.glob("*.json"):
            if path != keep and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)


class RateLimiter:
    """A sliding-window limiter: at most `per_minute` requests in any `window` s (60).

    Thread-safe; one per `Client`, shared by every endpoint. With a
    `SharedBudget` the window is counted across every process on the machine
    using the same API and key; should that file fail, this process carries on
    with its own count, silently. A 429 lowers the rate by a quarter (the
    server knows better than our default) and pauses until the server's
    `Retry-After` (every process sharing the budget pauses too);
    `X-RateLimit-Remaining: 0` pauses until the reset.
    """

    window = 60.0

    def __init__(
        self,
        per_minute: float = 60,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        window: float | None = None,
        budget: SharedBudget | None = None,
    ) -> None:
        self.per_minute = max(1, int(per_minute))
        if window is not None:
            self.window = window
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._not_before = 0.0
        self._lock = threading.Lock()
        self.budget = budget

    @property
    def shared(self) -> bool:
        """Whether the budget is currently shared with other processes."""
        return self.budget is not None

    def _delay_locked(self, now: float) -> float:
        while self._sent and self._sent[0] <= now - self.window:
            self._sent.popleft()
        delay = max(0.0, self._not_before - now)
        if len(self._sent) >= self.per_minute:
            delay = max(delay, self._sent[0] + self.window - now)
        return delay

    def _drop_budget_locked(self) -> None:
        if self.budget is not None:
            with suppress(OSError):
                self.budget.close()
            self.budget = None

    def acquire(self) -> int | None:
        """Block until one more request fits, then count it. Returns a ticket to
        hand to `settle` once the answer has arrived (None: nothing to settle)."""
        while True:
            with self._lock:
                now = self._clock()
                delay = max(0.0, self._not_before - now)
                if self.budget is not None and delay <= 0:
                    try:
                        delay, ticket = self.budget.reserve(self.per_minute)
                    except SharedBudgetUnavailable:
                        self._drop_budget_locked()
                    else:
                        if ticket is not None:
                            return ticket
                if self.budget is None:
                    delay = self._delay_locked(now)
                    if delay <= 0:
                        self._sent.append(now)
                        return None
            self._sleep(delay)

    def settle(self, ticket: int | None) -> None:
        """The request of `ticket` has been answered (or failed)."""
        if ticket is None:
            return
        with self._lock:
            if self.budget is not None:
                try:
                    self.budget.settle(ticket)
                except SharedBudgetUnavailable:
                    self._drop_budget_locked()

    def pause(self, seconds: float) -> None:
        """Send nothing for `seconds` (Retry-After, or a reset header)."""
        with self._lock:
            self._not_before = max(self._not_before, self._clock() + seconds)
            if self.budget is not None:
                try:
                    self.budget.pause_until(time.time() + seconds)
                except SharedBudgetUnavailable:
                    self._drop_budget_locked()

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

    def close(self) -> None:
        with self._lock:
            self._drop_budget_locked()


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
# It counts decoded bytes (and, separately, the bytes on the wire).
MAX_API_BODY = 16 * 2**20


# What API requests accept: encodings `_BoundedDecoder` undoes in bounded memory.
API_ACCEPT_ENCODING = "gzip, deflate"

# A download redirected more often than this is going round in circles.
MAX_REDIRECTS = 10


class _TooLarge(Exception):
    """More decoded bytes than the cap allows."""


class _Inflater:
    """One gzip or deflate layer, undone a bounded piece at a time."""

    # Decoded bytes per step: what one layer holds at once beyond the body itself.
    STEP = 2**20

    def __init__(self, encoding: str) -> None:
        self._raw_fallback = encoding == "deflate"  # some servers send raw deflate
        wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
        self._zlib = zlib.decompressobj(wbits)
        self._started = False

    def _step(self, data: bytes) -> bytes:
        try:
            out = self._zlib.decompress(data, self.STEP)
        except zlib.error:
            if not (self._raw_fallback and not self._started):
                raise
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            out = self._zlib.decompress(data, self.STEP)
        self._started = True
        return out

    def pieces(self, data: bytes, final: bool) -> Iterator[bytes]:
        """`data` decoded, at most `STEP` bytes at a time (a full step may leave
        more waiting inside zlib, so ask again until a step comes back short)."""
        while True:
            out = self._step(data)
            if out:
                yield out
            data = self._zlib.unconsumed_tail
            if not data and len(out) < self.STEP:
                break
        if final:
            rest = self._zlib.flush()  # nothing is pending any more: this is small
            if rest:
                yield rest


class _BoundedDecoder:
    """A response body's Content-Encoding undone as it arrives, never holding more
    than `limit` decoded bytes (httpx's own decoders expand a whole piece at once)."""

    def __init__(self, content_encoding: str, limit: int) -> None:
        names = [n.strip().lower() for n in content_encoding.split(",") if n.strip()]
        names = [n for n in names if n != "identity"]
        unknown = [n for n in names if n not in ("gzip", "deflate", "x-gzip")]
        if unknown:
            raise BadResponseError(
                f"The API's answer is encoded with {unknown[0][:40]!r}, which this client "
                "did not ask for."
            )
        # The last encoding applied is the first to undo.
        self._layers = [_Inflater("gzip" if n == "x-gzip" else n) for n in reversed(names)]
        self.limit = limit
        self.body = bytearray()

    def _through(self, data: bytes, layers: list[_Inflater], final: bool) -> None:
        if not layers:
            if len(self.body) + len(data) > self.limit:
                raise _TooLarge
            self.body += data
            return
        for piece in layers[0].pieces(data, final):
            self._through(piece, layers[1:], final=False)
        if final and len(layers) > 1:
            self._through(b"", layers[1:], final=True)

    def feed(self, data: bytes) -> None:
        """Decode one piece from the wire; `_TooLarge` past the limit."""
        self._through(data, self._layers, final=False)

    def finish(self) -> bytes:
        """The whole decoded body, once the last piece has arrived."""
        if self._layers:
            self._through(b"", self._layers, final=True)
        return bytes(self.body)


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
        rate_window: float = 60.0,
        budget_dir: Path | None = None,
    ) -> None:
        """`budget_dir`: a folder where every process using the same API origin
        and key shares one rate budget (off by default: a per-process one)."""
        read_in_larger_pieces()
        api_key = check_api_key(api_key)  # before any request: a key that is not a header
        try:
            self.base_url = httpx.URL(base_url.rstrip("/") + "/")
        except httpx.InvalidURL as exc:
            raise UsageError(f"The base URL is not a valid URL: {exc}") from None
        if self.base_url.scheme not in _DEFAULT_PORTS or not self.base_url.host:
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
        self.limiter.close()

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
        try:
            url = self.url(path_or_url) if "://" not in path_or_url else httpx.URL(path_or_url)
        except httpx.InvalidURL as exc:
            raise UsageError(f"Not a valid API path: {exc}") from None
        request = self.http.build_request(
            method,
            url,
            json=json,
            params=params,
            content=content,
            # Only encodings the bounded decoder undoes, whatever the caller asked.
            headers={**(headers or {}), "Accept-Encoding": API_ACCEPT_ENCODING},
            timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
        )
        # With `timeout`, one deadline covers every attempt (a --timeout must hold);
        # without, each attempt gets `total_timeout`.
        overall = None if timeout is None else time.monotonic() + timeout
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= self.retry.max_attempts
            ticket = self.limiter.acquire()
            if overall is not None and time.monotonic() >= overall:
                self.limiter.settle(ticket)
                raise RequestTimeoutError(f"{method} {url.path} did not finish in time.")
            self._trace_request(request)
            started = time.monotonic()
            deadline = overall if overall is not None else started + self.total_timeout
            try:
                try:
                    response = self._send_within(request, deadline)
                finally:
                    self.limiter.settle(ticket)
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
                raise NetworkError(redact(f"{method} {url} failed: {exc}", self._key)) from None
            self._trace_response(response, started)
            self.limiter.observe(response.headers)
            if response.is_success:
                return response
            if response.has_redirect_location:  # never followed: the key stays with this origin
                location = redact(response.headers["location"][:200], self._key)
                raise BadResponseError(
                    f"The API redirected {method} {url.path} to {location}; redirects are "
                    "not followed with your key.",
                    hint="If that is the API's new address, make it the base URL "
                    "(--base-url, or `pixeldojo config set base_url URL`).",
                )
            error = error_from_response(
                response.status_code,
                response.text,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
            error.response = api_response(response)

            error.message = redact(error.message, self._key)  # a server may echo the key
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
            if response.is_stream_consumed:
                # Read in full already (httpx.MockTransport), and decoded by httpx.
                decoder = _BoundedDecoder("", MAX_API_BODY)
                chunks: Iterator[bytes] = iter([response.content])
            else:
                decoder = _BoundedDecoder(
                    response.headers.get("content-encoding", ""), MAX_API_BODY
                )
                chunks = response.iter_raw()
            on_wire = 0
            for chunk in chunks:
                on_wire += len(chunk)
                if on_wire > MAX_API_BODY:
                    raise _TooLarge
                decoder.feed(chunk)
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("the response took too long", request=request)
            body = decoder.finish()
        except _TooLarge:
            raise BadResponseError(
                f"The API's answer to {request.method} {request.url.path} is larger "
                f"than {MAX_API_BODY // 2**20} MiB; refusing to read it."
            ) from None
        except zlib.error as exc:
            raise BadResponseError(
                f"The API's answer to {request.method} {request.url.path} could not be "
                f"decompressed ({exc})."
            ) from None
        finally:
            response.close()
        headers = response.headers.copy()
        for name in ("content-encoding", "content-length"):  # the body is decoded now
            headers.pop(name, None)
        return httpx.Response(
            response.status_code,
            headers=headers,
            content=body,
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
        """A streamed GET of any URL (an output file).

        Redirects are followed one hop at a time, at most `MAX_REDIRECTS`, and
        every hop is checked as the first one is: http(s) only, and never plain
        http once the API or an earlier hop was https. Each hop carries the key
        only if it is on the API's own origin (the auth asks per request).
        `extensions` go to httpx (a `trace` hook sees each new connection).
        """
        target = _hop_url(url)
        secure = self.base_url.scheme == "https"
        for _ in range(MAX_REDIRECTS + 1):
            secure = _check_hop(target, secure, url)
            request = self.http.build_request("GET", target, headers=headers, extensions=extensions)
            self._trace_request(request)
            started = time.monotonic()
            response = self.http.send(request, stream=True, follow_redirects=False)
            self._trace_response(response, started)
            if not response.has_redirect_location:
                try:
                    yield response
                finally:
                    response.close()
                return
            location = response.headers["location"]
            response.close()
            target = _hop_url(location, target)
        raise DownloadError(
            f"Refusing to download {url[:100]}: redirected more than {MAX_REDIRECTS} times."
        )


def _hop_url(location: str, base: httpx.URL | None = None) -> httpx.URL:
    """The URL of a download hop (`location` relative to `base`), or a download
    error when it is no URL at all (a control character, a bad port...)."""
    try:
        return base.join(location) if base is not None else httpx.URL(location)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise DownloadError(
            f"Refusing to download {location[:100]!r}: it is not a valid URL."
        ) from None


def _check_hop(url: httpx.URL, secure: bool, first: str) -> bool:
    """Refuse a hop that is not http(s), or that steps down to plain http from an
    https API or an https hop; returns whether the chain is now https."""
    if url.scheme not in _DEFAULT_PORTS or not url.host:
        raise DownloadError(f"Refusing to download {first[:100]}: it leads to {str(url)[:100]}.")
    if url.scheme == "http" and secure:
        raise DownloadError(
            f"Refusing to download {first[:100]} over plain http: it steps down from https "
            f"to {str(url)[:100]}.",
            hint="Anyone on the way could change the file. `pixeldojo jobs show ID` prints the "
            "URL if you want to fetch it yourself.",
        )
    return secure or url.scheme == "https"
