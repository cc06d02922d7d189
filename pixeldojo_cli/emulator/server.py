"""A PixelDojo-compatible API on loopback, from the standard library alone.

Two origins: the API (`http://HOST:PORT/api/v1`) and a file server on another
port for the outputs, which never needs (or wants) the key. Every request is
recorded in `Emulator.requests` so tests can assert on what reached the
server. This module never imports the client or the CLI: it must not be able
to share their bugs.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import random
import re
import secrets
import sys
import threading
import time
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from pixeldojo_cli.emulator import png
from pixeldojo_cli.emulator.catalogue import build_catalogue, charge_for, duration_range
from pixeldojo_cli.emulator.faults import Fault, FaultPlan

API_PREFIX = "/api/v1"
FAIL_MARKER = "#fail"  # a prompt containing it makes the job fail
# A prompt containing `#status=WORD` makes the job report WORD once it is done
# (`canceled`, `succeeded`, `weird`, ...): for clients' handling of other statuses.
STATUS_MARKER = re.compile(r"#status=([A-Za-z_-]{1,40})")
# Forced statuses that still come with the outputs (synonyms of `completed`).
_SUCCESS_WORDS = frozenset({"completed", "succeeded", "success", "done", "finished"})
_MAX_BODY = 1024 * 1024


@dataclass(frozen=True)
class RecordedRequest:
    target: str  # "api" or "files"
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


@dataclass
class EmulatedJob:
    id: str
    model: dict[str, Any]
    inputs: dict[str, Any]
    owner: str
    created: float
    latency: float
    fails: bool
    cost: float
    webhook_url: str | None
    webhook: dict[str, Any] = field(default_factory=dict)
    forced_status: str | None = None  # reported once done, instead of the real one

    @property
    def done_at(self) -> float:
        return self.created + self.latency

    def status(self, now: float) -> str:
        if now < self.created + self.latency * 0.25:
            return "pending"
        if now < self.done_at:
            return "processing"
        return "failed" if self.fails else "completed"

    def reported_status(self, now: float) -> str:
        """What the API says: the real status, or the forced one once done."""
        real = self.status(now)
        if self.forced_status is not None and real in ("completed", "failed"):
            return self.forced_status
        return real

    def has_outputs(self, now: float) -> bool:
        forced = self.forced_status
        return self.status(now) == "completed" and (forced is None or forced in _SUCCESS_WORDS)


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, tz=UTC).isoformat().replace("+00:00", "Z")


class APIProblem(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


class Emulator:
    """The emulated API. Start it, point a client at `base_url`, stop it.

    Knobs: `latency` (seconds from submit to a terminal state for every job; a
    quarter of it pending, the rest processing; None, the default: each model's
    own spread of durations, from a second or two for fast image models to a
    minute or two for video, drawn from a seeded RNG), `time_scale` (multiplies
    those drawn durations: 0.01 runs a 60 s video job in 0.6 s), `job_times`
    (False: no `createdAt`/`completedAt` in job answers), `failure_rate` (0..1, or a prompt with
    `#fail`), `ttl` (seconds outputs live after completion), `credits`,
    `rate_limit` (requests/min per key; 0 = off), `key` (accept only this key),
    `faults` (see `faults.py`), `image_size` (long side of output PNGs),
    `output_name` (the last part of output URLs instead of `N.png`: to test how a
    client treats hostile names such as `..%2F..%2Fx.png`), `rate_window` (the
    rate limit's window in seconds: 60, or shorter to test a limiter quickly),
    `status_url_base` (put `statusUrl` on another origin), `output_bytes` (make
    every output a valid PNG of about that size, streamed, for download benchmarks),
    `echo_key` (a careless server: jobs, their output URLs and 401 messages echo
    the caller's API key).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        files_port: int = 0,
        latency: float | None = None,
        time_scale: float = 1.0,
        job_times: bool = True,
        failure_rate: float = 0.0,
        ttl: float = 24 * 3600,
        credits: float = 1000.0,
        rate_limit: int = 60,
        key: str | None = None,
        faults: list[Fault] | tuple[Fault, ...] = (),
        image_size: int = 256,
        submit_status: int = 200,
        webhook_hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1"),
        seed: int | None = None,
        output_name: str | None = None,
        rate_window: float = 60.0,
        status_url_base: str | None = None,
        output_bytes: int | None = None,
        echo_key: bool = False,
    ) -> None:
        self.host = host
        self.latency = latency
        self.time_scale = time_scale
        self.job_times = job_times
        self.failure_rate = failure_rate
        self.ttl = ttl
        self.credits = credits
        self.rate_limit = rate_limit
        self.key = key
        self.faults = FaultPlan(faults, seed=seed)
        self.image_size = image_size
        self.submit_status = submit_status
        self.webhook_hosts = webhook_hosts
        self.output_name = output_name
        self.rate_window = rate_window
        self.status_url_base = status_url_base
        self.output_bytes = output_bytes
        self.echo_key = echo_key
        self._padded: dict[tuple[str, int], png.PaddedPNG] = {}
        self.catalogue = build_catalogue()
        self.jobs: dict[str, EmulatedJob] = {}
        self.requests: list[RecordedRequest] = []
        self.webhook_deliveries: list[dict[str, Any]] = []
        self.rate_limited = 0  # 429 answers given by the rate limit (not by faults)
        self._random = random.Random(seed)
        self._durations = random.Random(None if seed is None else seed + 1)
        self._windows: dict[str, deque[float]] = {}
        self._lock = threading.RLock()
        self._timers: list[threading.Timer] = []
        self._api = self._make_server(port, "api")
        self._files = self._make_server(files_port, "files")
        self._threads: list[threading.Thread] = []

    # --- lifecycle -----------------------------------------------------------

    def _make_server(self, port: int, target: str) -> ThreadingHTTPServer:
        handler = type(
            f"{target.title()}Handler", (_Handler,), {"emulator": self, "target": target}
        )
        server = _QuietServer((self.host, port), handler)
        server.daemon_threads = True
        return server

    @property
    def base_url(self) -> str:
        return f"http://{self._url_host}:{self._api.server_address[1]}{API_PREFIX}"

    @property
    def files_url(self) -> str:
        return f"http://{self._url_host}:{self._files.server_address[1]}"

    @property
    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def start(self) -> Emulator:
        for server in (self._api, self._files):
            thread = threading.Thread(
                target=server.serve_forever, daemon=True, kwargs={"poll_interval": 0.05}
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        for server in (self._api, self._files):
            server.shutdown()
            server.server_close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- helpers for tests ---------------------------------------------------

    def add_fault(self, kind: str, **kwargs: Any) -> Fault:
        return self.faults.add(Fault(kind, **kwargs))

    def requests_to(
        self, method: str | None = None, path: str = "", target: str = "api"
    ) -> list[RecordedRequest]:
        """Recorded requests on `target` whose path matches the regex `path`."""
        with self._lock:
            return [
                r
                for r in self.requests
                if r.target == target
                and (method is None or r.method == method)
                and re.search(path, r.path)
            ]

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    # --- rate limit ----------------------------------------------------------

    def check_rate(self, who: str) -> dict[str, str]:
        """Count a request; raise the 429 problem when the window is full."""
        if not self.rate_limit:
            return {}
        now = time.monotonic()
        with self._lock:
            window = self._windows.setdefault(who, deque())
            while window and window[0] <= now - self.rate_window:
                window.popleft()
            reset = time.time() + (
                window[0] + self.rate_window - now if window else self.rate_window
            )
            if len(window) >= self.rate_limit:
                self.rate_limited += 1
                wait = max(1, math.ceil(window[0] + self.rate_window - now))
                raise APIProblem(
                    429,
                    "rate_limit_exceeded",
                    f"Rate limit exceeded: {self.rate_limit} requests per minute.",
                    {"Retry-After": str(wait), **self._rate_headers(0, reset)},
                )
            window.append(now)
            return self._rate_headers(self.rate_limit - len(window), reset)

    def _rate_headers(self, remaining: int, reset: float) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(max(0, remaining)),
            "X-RateLimit-Reset": str(math.ceil(reset)),
        }

    # --- the API -------------------------------------------------------------

    def authenticate(self, authorization: str | None, required: bool) -> str:
        match = re.fullmatch(r"Bearer\s+(\S+)\s*", authorization or "")
        if match is None:
            if required:
                raise APIProblem(401, "unauthorized", "Missing or invalid API key.")
            return "anonymous"
        key = match.group(1)
        if self.key is not None and key != self.key:
            echoed = f" {key!r} is not valid" if self.echo_key else ""
            raise APIProblem(401, "unauthorized", f"Missing or invalid API key.{echoed}")
        return key

    def model(self, model_id: str) -> dict[str, Any]:
        model = self.catalogue.get(model_id)
        if model is None:
            raise APIProblem(404, "not_found", f"Model '{model_id}' not found.")
        return model

    def list_models(self, query: dict[str, list[str]]) -> dict[str, Any]:
        modality = (query.get("modality") or [""])[0]
        detailed = (query.get("detailed") or ["false"])[0] == "true"
        models = []
        for model in self.catalogue.values():
            if modality and model["modality"] != modality:
                continue
            entry = (
                dict(model)
                if detailed
                else {k: v for k, v in model.items() if k != "requestSchema"}
            )
            models.append(entry)
        return {
            "models": models,
            "total": len(models),
            "modalities": sorted({m["modality"] for m in self.catalogue.values()}),
        }

    def validate(self, model: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        schema = model["requestSchema"]
        props: dict[str, Any] = schema["properties"]
        inputs = {k: v for k, v in body.items() if k != "webhook_url"}
        for name, value in inputs.items():
            spec = props.get(name)
            if spec is None:
                raise APIProblem(400, "validation_error", f"Unknown parameter '{name}'.")
            problem = _check(spec, value)
            if problem:
                raise APIProblem(400, "validation_error", f"Invalid '{name}': {problem}.")
        for name in schema.get("required", []):
            if name not in inputs or inputs[name] in ("", None):
                raise APIProblem(400, "validation_error", f"'{name}' is required.")
        return inputs

    def job_duration(self, model: dict[str, Any]) -> float:
        """Seconds a new job of `model` takes: `latency` when set, else a draw
        from the model's log-normal spread (clipped to half its low end and
        twice its high end), times `time_scale`."""
        if self.latency is not None:
            return self.latency
        low, high = duration_range(model)
        mu = (math.log(low) + math.log(high)) / 2
        sigma = (math.log(high) - math.log(low)) / 4
        with self._lock:
            seconds = self._durations.lognormvariate(mu, sigma)
        return min(2 * high, max(low / 2, seconds)) * self.time_scale

    def submit(self, model_id: str, body: Any, owner: str) -> dict[str, Any]:
        model = self.model(model_id)
        if not isinstance(body, dict):
            raise APIProblem(400, "invalid_json", "The request body must be a JSON object.")
        inputs = self.validate(model, body)
        webhook_url = body.get("webhook_url")
        if webhook_url is not None and not (
            isinstance(webhook_url, str) and webhook_url.startswith(("http://", "https://"))
        ):
            raise APIProblem(400, "validation_error", "webhook_url must be an http(s) URL.")
        cost = charge_for(model, inputs)
        with self._lock:
            if self.credits < cost:
                raise APIProblem(
                    402,
                    "insufficient_credits",
                    f"This job costs {cost:g} credits; {self.credits:g} remaining.",
                )
            self.credits = round(self.credits - cost, 4)
            fails = (
                FAIL_MARKER in str(inputs.get("prompt", ""))
                or self._random.random() < self.failure_rate
            )
            marker = STATUS_MARKER.search(str(inputs.get("prompt", "")))
            job = EmulatedJob(
                forced_status=marker.group(1) if marker else None,
                id=f"job_{secrets.token_hex(8)}",
                model=model,
                inputs=inputs,
                owner=owner,
                created=time.time(),
                latency=self.job_duration(model),
                fails=fails,
                cost=cost,
                webhook_url=webhook_url,
            )
            self.jobs[job.id] = job
            remaining = self.credits
        if webhook_url:
            job.webhook = {"url": webhook_url, "status": "pending", "attempts": 0}
            timer = threading.Timer(max(0.0, job.latency), self.deliver_webhook, (job.id,))
            timer.daemon = True
            self._timers.append(timer)
            timer.start()
        answer: dict[str, Any] = {
            "jobId": job.id,
            "status": "pending",
            "statusUrl": f"{self.status_url_base or self.base_url}/jobs/{job.id}",
            "creditCost": cost,
            "creditsRemaining": remaining,
        }
        if self.echo_key:
            answer["message"] = f"Accepted for key {owner}"
        return answer

    def job(self, job_id: str, owner: str) -> EmulatedJob:
        job = self.jobs.get(job_id)
        if job is None or job.owner != owner:
            raise APIProblem(404, "not_found", f"Job '{job_id}' not found.")
        return job

    def expired(self, job: EmulatedJob, now: float) -> bool:
        return job.status(now) in ("completed", "failed") and now >= job.done_at + self.ttl

    def output_urls(self, job: EmulatedJob) -> list[str]:
        count = job.inputs.get("num_outputs", 1) if job.model["modality"] == "image" else 1

        def name(n: int) -> str:
            return f"{n}.png" if self.output_name is None else f"{n}/{self.output_name}"

        query = f"?key={quote(job.owner, safe='')}" if self.echo_key else ""
        return [f"{self.files_url}/outputs/{job.id}/{name(n)}{query}" for n in range(1, count + 1)]

    def set_status(self, job_id: str, status: str | None) -> None:
        """Make a job report `status` once it is done (None: its real status again)."""
        with self._lock:
            self.jobs[job_id].forced_status = status

    def job_json(self, job: EmulatedJob, now: float) -> dict[str, Any]:
        status = job.status(now)
        data: dict[str, Any] = {
            "jobId": job.id,
            "status": job.reported_status(now),
            "model": job.model["apiId"],
            "createdAt": _iso(job.created),
            "creditCost": job.cost,
            "statusUrl": f"{self.status_url_base or self.base_url}/jobs/{job.id}",
        }
        if status == "completed" and not job.has_outputs(now):
            data["completedAt"] = _iso(job.done_at)
        elif status == "completed":
            urls = self.output_urls(job)
            if job.model["modality"] == "video":
                data["output"] = {"video": urls[0]}
            else:
                data["output"] = {"images": urls}
            data["completedAt"] = _iso(job.done_at)
            data["expiresAt"] = _iso(job.done_at + self.ttl)
        elif status == "failed":
            data["error"] = {
                "code": "generation_failed",
                "message": "The model failed to generate an output.",
            }
            data["completedAt"] = _iso(job.done_at)
        if not self.job_times:
            data.pop("createdAt")
            data.pop("completedAt", None)
        if job.webhook:
            data["webhook"] = dict(job.webhook)
        if self.echo_key:
            data["request"] = {"headers": {"Authorization": f"Bearer {job.owner}"}}
            data["owner"] = json.dumps({"apiKey": job.owner})  # escaped inside a string
        return data

    def get_job(self, job_id: str, owner: str) -> dict[str, Any]:
        job, now = self.job(job_id, owner), time.time()
        if self.expired(job, now):
            raise APIProblem(410, "expired", f"Job '{job_id}' has expired.")
        return self.job_json(job, now)

    def list_jobs(self, owner: str, query: dict[str, list[str]]) -> dict[str, Any]:
        try:
            limit = max(1, min(100, int((query.get("limit") or ["20"])[0])))
        except ValueError as exc:
            raise APIProblem(400, "validation_error", "limit must be an integer.") from exc
        now = time.time()
        with self._lock:
            mine = [j for j in self.jobs.values() if j.owner == owner and not self.expired(j, now)]
        mine.sort(key=lambda j: j.created, reverse=True)
        return {"jobs": [self.job_json(j, now) for j in mine[:limit]], "total": len(mine)}

    def deliver_webhook(self, job_id: str, replay: bool = False) -> dict[str, Any]:
        job = self.jobs[job_id]
        url = job.webhook_url or ""
        payload = json.dumps(
            {
                "event": f"job.{job.status(time.time())}",
                "replay": replay,
                "job": self.job_json(job, time.time()),
            }
        ).encode()
        record: dict[str, Any] = {
            "jobId": job_id,
            "url": url,
            "replay": replay,
            "at": _iso(time.time()),
        }
        host = urlsplit(url).hostname or ""
        if host not in self.webhook_hosts:
            record.update(status="skipped", reason=f"host {host!r} is not in webhook_hosts")
        else:
            request = urllib.request.Request(
                url,
                data=payload,
                method="POST",
                headers={
                    "Content-Type": "application/json",
                    "User-Agent": "pixeldojo-emulator",
                    "X-PixelDojo-Event": "job.webhook",
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    record.update(status="delivered", httpStatus=response.status)
            except Exception as exc:  # any failure is the receiver's, recorded not raised
                record.update(status="failed", reason=str(exc))
        with self._lock:
            job.webhook = {
                "url": url,
                "status": record["status"],
                "attempts": job.webhook.get("attempts", 0) + 1,
                "lastAttemptAt": record["at"],
            }
            self.webhook_deliveries.append(record)
        return record

    def replay_webhook(self, job_id: str, owner: str) -> dict[str, Any]:
        job = self.job(job_id, owner)
        now = time.time()
        if self.expired(job, now):
            raise APIProblem(410, "expired", f"Job '{job_id}' has expired.")
        if job.status(now) not in ("completed", "failed"):
            raise APIProblem(400, "validation_error", "The job has not finished yet.")
        if not job.webhook_url:
            raise APIProblem(
                400, "validation_error", "The job was submitted without a webhook_url."
            )
        record = self.deliver_webhook(job_id, replay=True)
        return {"jobId": job_id, "replayed": True, "webhook": dict(job.webhook), "delivery": record}

    def output_body(self, job_id: str, index: int) -> bytes | png.PaddedPNG:
        """What the file origin serves: the picture, or it padded to `output_bytes`."""
        picture = self.output_file(job_id, index)
        if self.output_bytes is None:
            return picture
        with self._lock:
            if (job_id, index) not in self._padded:
                self._padded[(job_id, index)] = png.PaddedPNG(picture, self.output_bytes)
            return self._padded[(job_id, index)]

    def output_file(self, job_id: str, index: int) -> bytes:
        job = self.jobs.get(job_id)
        now = time.time()
        if (
            job is None
            or job.status(now) != "completed"
            or index < 1
            or index > len(self.output_urls(job))
        ):
            raise APIProblem(404, "not_found", "No such file.")
        if self.expired(job, now):
            raise APIProblem(410, "expired", "This file has expired.")
        seed = job.inputs.get("seed")
        width, height = png.size_for(job.inputs.get("aspect_ratio"), self.image_size)
        return png.render(
            str(job.inputs.get("prompt", "")),
            seed if isinstance(seed, int) else 0,
            index,
            width,
            height,
        )


_TYPES: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}
# What a `format: uri` value must look like: a scheme, then something, no spaces.
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s]+")


def _check(spec: dict[str, Any], value: Any, depth: int = 0) -> str | None:
    """The emulator's own check of one value against the keywords its catalogue
    uses (as the API would refuse it); never the client's code."""
    if depth > 32:
        return "nested too deeply"
    kinds = spec.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds] if kinds else []
    if kinds and not any(_TYPES.get(str(kind), lambda v: True)(value) for kind in kinds):
        return f"expected {'/'.join(map(str, kinds))}"
    if "enum" in spec and not any(
        (value == allowed and type(value) is type(allowed)) or _both_numbers(value, allowed)
        for allowed in spec["enum"]
    ):
        return "must be one of " + ", ".join(map(str, spec["enum"]))
    if _TYPES["number"](value):
        return _check_number(spec, value)
    if isinstance(value, str):
        return _check_string(spec, value)
    if isinstance(value, list):
        return _check_array(spec, value, depth)
    return None


def _both_numbers(a: Any, b: Any) -> bool:
    return bool(_TYPES["number"](a) and _TYPES["number"](b) and a == b)


def _check_number(spec: dict[str, Any], value: float) -> str | None:
    if "minimum" in spec and value < spec["minimum"]:
        return f"must be >= {spec['minimum']}"
    if "maximum" in spec and value > spec["maximum"]:
        return f"must be <= {spec['maximum']}"
    if "exclusiveMinimum" in spec and value <= spec["exclusiveMinimum"]:
        return f"must be > {spec['exclusiveMinimum']}"
    if "exclusiveMaximum" in spec and value >= spec["exclusiveMaximum"]:
        return f"must be < {spec['exclusiveMaximum']}"
    return None


def _check_string(spec: dict[str, Any], value: str) -> str | None:
    if "minLength" in spec and len(value) < spec["minLength"]:
        return "must not be empty" if spec["minLength"] == 1 else "is too short"
    if "maxLength" in spec and len(value) > spec["maxLength"]:
        return f"at most {spec['maxLength']} characters"
    if "pattern" in spec and re.search(spec["pattern"], value) is None:
        return f"must match {spec['pattern']}"
    if spec.get("format") == "uri" and not _URI.fullmatch(value):
        return "must be a URI"
    return None


def _check_array(spec: dict[str, Any], value: list[Any], depth: int) -> str | None:
    if "minItems" in spec and len(value) < spec["minItems"]:
        return f"at least {spec['minItems']} items"
    if "maxItems" in spec and len(value) > spec["maxItems"]:
        return f"at most {spec['maxItems']} items"
    if spec.get("uniqueItems") and len({json.dumps(v, sort_keys=True) for v in value}) < len(value):
        return "items must be unique"
    items = spec.get("items")
    if isinstance(items, dict):
        for n, item in enumerate(value):
            problem = _check(items, item, depth + 1)
            if problem:
                return f"item {n}: {problem}"
    return None


class _QuietServer(ThreadingHTTPServer):
    """A client hanging up mid-answer is routine here (faults, timeouts, Ctrl-C):
    not worth a traceback on the user's terminal."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    emulator: Emulator
    target: str
    protocol_version = "HTTP/1.1"
    server_version = "PixelDojoEmulator/1"
    # Headers and body go out in two writes: with Nagle's algorithm on, the body
    # waits for the client's delayed ACK, 40 ms on Linux, on every answer.
    disable_nagle_algorithm = True
    trickle_seconds = 0.0  # > 0 while answering under a `trickle` fault

    def log_message(self, format: str, *args: Any) -> None:  # quiet by default
        return

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    # --- plumbing ------------------------------------------------------------

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        return self.rfile.read(min(length, _MAX_BODY)) if length > 0 else b""

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        trickle = self.trickle_seconds
        if not trickle or not body:
            self.wfile.write(body)
            return
        pieces = max(1, min(len(body), 200))
        step = -(-len(body) // pieces)
        for start in range(0, len(body), step):
            self.wfile.write(body[start : start + step])
            self.wfile.flush()
            time.sleep(trickle / pieces)

    def _send_json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers=headers)

    def _send_problem(self, problem: APIProblem, headers: dict[str, str] | None = None) -> None:
        body = {
            "error": {"code": problem.code, "message": problem.message, "status": problem.status}
        }
        self._send_json(problem.status, body, {**(headers or {}), **problem.headers})

    def _abort(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(2)

    def _handle(self, method: str) -> None:
        emulator = self.emulator
        split = urlsplit(self.path)
        path = unquote(split.path)
        body = self._read_body() if method == "POST" else b""
        emulator.record(
            RecordedRequest(
                self.target,
                method,
                path,
                {k.lower(): v for k, v in self.headers.items()},
                body,
                time.time(),
            )
        )
        fault = emulator.faults.take(self.target, method, path)
        self.trickle_seconds = 0.0
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.delay)
            fault = None
        elif fault is not None and fault.kind == "trickle":
            self.trickle_seconds = fault.delay
            fault = None
        if fault is not None and self._apply_fault(fault):
            return
        try:
            if self.target == "files":
                self._serve_file(path, fault)
            else:
                self._serve_api(method, path, parse_qs(split.query), body)
        except APIProblem as problem:
            self._send_problem(problem)

    def _apply_fault(self, fault: Fault) -> bool:
        """Act out a fault; False when it is one the normal path must carry out."""
        if fault.kind == "reset":
            self._abort()
            return True
        if fault.kind == "redirect":
            self._send(fault.status or 302, b"", headers={"Location": fault.location})
            return True
        if fault.kind in ("bomb", "deep"):
            status, body, extra = fault.answer()
            self._send(status, body, fault.content_type, extra)
            return True
        if fault.kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            headers.update(fault.headers or {})
            if fault.body_bytes is not None:
                self._send(fault.status, fault.body_bytes, fault.content_type, headers)
            else:
                message = fault.message or f"Injected fault: HTTP {fault.status}."
                self._send_problem(APIProblem(fault.status, fault.error_code, message), headers)
            return True
        return False  # truncate: handled while sending the body

    def _serve_api(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> None:
        emulator = self.emulator
        if not path.startswith(API_PREFIX + "/"):
            raise APIProblem(404, "not_found", f"No route for {path}.")
        route = path[len(API_PREFIX) :].rstrip("/")
        parts = route.strip("/").split("/")
        is_models = parts[0] == "models" and not (len(parts) == 3 and parts[2] == "run")
        who = emulator.authenticate(self.headers.get("Authorization"), required=not is_models)
        rate_headers = emulator.check_rate(who)
        if method == "GET" and parts == ["models"]:
            result: Any = emulator.list_models(query)
        elif method == "GET" and len(parts) == 2 and parts[0] == "models":
            result = emulator.model(parts[1])
        elif method == "GET" and len(parts) == 3 and parts[0] == "models" and parts[2] == "schema":
            result = {"apiId": parts[1], "schema": emulator.model(parts[1])["requestSchema"]}
        elif method == "POST" and len(parts) == 3 and parts[0] == "models" and parts[2] == "run":
            try:
                parsed = json.loads(body or b"null")
            except ValueError as exc:
                raise APIProblem(400, "invalid_json", "Invalid JSON in request body.") from exc
            result = emulator.submit(parts[1], parsed, who)
            self._send_json(emulator.submit_status, result, rate_headers)
            return
        elif method == "GET" and parts == ["jobs"]:
            result = emulator.list_jobs(who, query)
        elif method == "GET" and len(parts) == 2 and parts[0] == "jobs":
            result = emulator.get_job(parts[1], who)
        elif method == "POST" and len(parts) == 3 and parts[0] == "jobs" and parts[2] == "webhook":
            result = emulator.replay_webhook(parts[1], who)
        else:
            raise APIProblem(404, "not_found", f"No route for {method} {path}.")
        self._send_json(200, result, rate_headers)

    def _serve_padded(self, data: png.PaddedPNG) -> None:
        total = len(data)
        range_match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "").strip())
        start = int(range_match.group(1)) if range_match else 0
        start = start if start < total else 0
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(total - start))
        self.send_header("Accept-Ranges", "bytes")
        if start:
            self.send_header("Content-Range", f"bytes {start}-{total - 1}/{total}")
        self.end_headers()
        if self.command != "HEAD":
            for piece in data.pieces(start):
                self.wfile.write(piece)

    def _serve_file(self, path: str, fault: Fault | None) -> None:
        match = re.fullmatch(r"/outputs/([A-Za-z0-9_]+)/(\d+)(?:\.png|/.*)", path)
        if match is None:
            raise APIProblem(404, "not_found", "No such file.")
        data = self.emulator.output_body(match.group(1), int(match.group(2)))
        if isinstance(data, png.PaddedPNG) and fault is not None and fault.kind == "gzip":
            data = b"".join(data.pieces(0))
        if isinstance(data, png.PaddedPNG):
            self._serve_padded(data)
            return
        start = 0
        range_match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "").strip())
        if range_match and int(range_match.group(1)) < len(data):
            start = int(range_match.group(1))
        status = 206 if start else 200
        headers = {"Accept-Ranges": "bytes", "Cache-Control": "no-store"}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        payload = data[start:]
        if fault is not None and fault.kind == "gzip":
            self._serve_gzip(data, fault)
            return
        if fault is None or fault.kind not in ("truncate", "stall"):
            self._send(status, payload, "image/png", headers)
            return
        self.send_response(status)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload[: fault.after_bytes])
        self.wfile.flush()
        if fault.kind == "stall":
            time.sleep(fault.delay)
        self._abort()

    def _serve_gzip(self, data: bytes, fault: Fault) -> None:
        """The whole output gzip-encoded, asked for or not (no Range), its
        Content-Length counting encoded bytes; cut after `after_bytes` if set."""
        encoded = gzip.compress(data, mtime=0)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(encoded)))
        self.end_headers()
        if self.command == "HEAD":
            return
        self.wfile.write(encoded[: fault.after_bytes] if fault.after_bytes else encoded)
        self.wfile.flush()
        if fault.after_bytes:
            self._abort()
