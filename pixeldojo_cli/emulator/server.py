"""A PixelDojo-compatible API on loopback, from the standard library alone.

Two origins: the API (`http://HOST:PORT/api/v1`) and a file server on another
port for the outputs, which never needs (or wants) the key. Every request is
recorded in `Emulator.requests` so tests can assert on what reached the
server. This module never imports the client or the CLI: it must not be able
to share their bugs.

`Emulator` holds the knobs and the state and answers the API's operations; the
parts live next door: `handler.py` (HTTP, routing, faults acted out, file
serving), `jobs.py` (the job state machine, durations, job answers),
`validation.py`, `ratelimit.py`, `webhooks.py`, `catalogue.py`, `faults.py`.
"""

from __future__ import annotations

import json
import random
import re
import secrets
import threading
import time
from typing import Any

from pixeldojo_cli.emulator import png, webhooks
from pixeldojo_cli.emulator.catalogue import build_catalogue, charge_for
from pixeldojo_cli.emulator.faults import Fault, FaultPlan
from pixeldojo_cli.emulator.handler import make_server
from pixeldojo_cli.emulator.jobs import (
    FAIL_MARKER,
    STATUS_MARKER,
    EmulatedJob,
    JobFormat,
    job_answer,
    lognormal_seconds,
    output_urls,
)
from pixeldojo_cli.emulator.messages import API_PREFIX, APIProblem, RecordedRequest
from pixeldojo_cli.emulator.ratelimit import RateLimiter
from pixeldojo_cli.emulator.validation import validate


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
    the caller's API key; jobs also in reversible forms, under `echoes`),
    `output_base_url` (output URLs name this base instead of the file origin,
    e.g. `http://127.0.0.2:8000`: a hostile API pointing outputs inside the
    network).
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
        output_base_url: str | None = None,
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
        self.output_base_url = output_base_url
        self._padded: dict[tuple[str, int], png.PaddedPNG] = {}
        self.catalogue = build_catalogue()
        self.jobs: dict[str, EmulatedJob] = {}
        self.requests: list[RecordedRequest] = []
        self.webhook_deliveries: list[dict[str, Any]] = []
        self._random = random.Random(seed)
        self._durations = random.Random(None if seed is None else seed + 1)
        self._rates = RateLimiter()
        self._lock = threading.RLock()
        self._timers: list[threading.Timer] = []
        self._api = make_server(host, port, self, "api")
        self._files = make_server(host, files_port, self, "files")
        self._threads: list[threading.Thread] = []

    # --- lifecycle -----------------------------------------------------------

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
        """Serve both origins, each on a daemon thread."""
        for server in (self._api, self._files):
            thread = threading.Thread(
                target=server.serve_forever, daemon=True, kwargs={"poll_interval": 0.05}
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop serving and cancel the webhooks not yet sent."""
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
        """Inject a fault (see `faults.py`) from now on."""
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

    @property
    def rate_limited(self) -> int:
        """429 answers given by the rate limit (not by faults)."""
        return self._rates.limited

    def set_status(self, job_id: str, status: str | None) -> None:
        """Make a job report `status` once it is done (None: its real status again)."""
        with self._lock:
            self.jobs[job_id].forced_status = status

    # --- the API: keys, rate, models -----------------------------------------

    def check_rate(self, who: str) -> dict[str, str]:
        """Count a request; raise the 429 problem when the window is full."""
        if not self.rate_limit:
            return {}
        return self._rates.check(who, self.rate_limit, self.rate_window)

    def authenticate(self, authorization: str | None, required: bool) -> str:
        """The caller's key (or "anonymous"), or the 401 problem."""
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
        """`GET /models`: by `modality`, with schemas when `detailed=true`."""
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
        """The inputs of `body` checked against the model's schema (`validation.py`)."""
        return validate(model, body)

    # --- the API: jobs -------------------------------------------------------

    def job_duration(self, model: dict[str, Any]) -> float:
        """Seconds a new job of `model` takes: `latency` when set, else a draw
        from the model's log-normal spread (clipped to half its low end and
        twice its high end), times `time_scale`."""
        if self.latency is not None:
            return self.latency
        with self._lock:
            seconds = lognormal_seconds(self._durations, model)
        return seconds * self.time_scale

    def submit(self, model_id: str, body: Any, owner: str) -> dict[str, Any]:
        """`POST /models/{id}/run`: check, charge, and start a job."""
        model = self.model(model_id)
        if not isinstance(body, dict):
            raise APIProblem(400, "invalid_json", "The request body must be a JSON object.")
        inputs = self.validate(model, body)
        webhook_url = body.get("webhook_url")
        if webhook_url is not None and not (
            isinstance(webhook_url, str) and webhook_url.startswith(("http://", "https://"))
        ):
            raise APIProblem(400, "validation_error", "webhook_url must be an http(s) URL.")
        job, remaining = self._charge_and_start(model, inputs, owner, webhook_url)
        if webhook_url:
            self._schedule_webhook(job)
        answer: dict[str, Any] = {
            "jobId": job.id,
            "status": "pending",
            "statusUrl": f"{self.status_url_base or self.base_url}/jobs/{job.id}",
            "creditCost": job.cost,
            "creditsRemaining": remaining,
        }
        if self.echo_key:
            answer["message"] = f"Accepted for key {owner}"
        return answer

    def _charge_and_start(
        self, model: dict[str, Any], inputs: dict[str, Any], owner: str, webhook_url: str | None
    ) -> tuple[EmulatedJob, float]:
        """Take the job's credits (or raise 402) and add it; it and the credits left."""
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
            return job, self.credits

    def job(self, job_id: str, owner: str) -> EmulatedJob:
        """The caller's job `job_id`, or the 404 problem."""
        job = self.jobs.get(job_id)
        if job is None or job.owner != owner:
            raise APIProblem(404, "not_found", f"Job '{job_id}' not found.")
        return job

    def expired(self, job: EmulatedJob, now: float) -> bool:
        return job.expired(now, self.ttl)

    def output_urls(self, job: EmulatedJob) -> list[str]:
        return output_urls(job, self._job_format())

    def job_json(self, job: EmulatedJob, now: float) -> dict[str, Any]:
        """The job object the API answers with at `now`."""
        return job_answer(job, now, self._job_format())

    def _job_format(self) -> JobFormat:
        return JobFormat(
            status_url_base=self.status_url_base or self.base_url,
            files_url=self.output_base_url or self.files_url,
            output_name=self.output_name,
            ttl=self.ttl,
            job_times=self.job_times,
            echo_key=self.echo_key,
        )

    def get_job(self, job_id: str, owner: str) -> dict[str, Any]:
        """`GET /jobs/{id}`."""
        job, now = self.job(job_id, owner), time.time()
        if self.expired(job, now):
            raise APIProblem(410, "expired", f"Job '{job_id}' has expired.")
        return self.job_json(job, now)

    def list_jobs(self, owner: str, query: dict[str, list[str]]) -> dict[str, Any]:
        """`GET /jobs`: the caller's live jobs, newest first, up to `limit`."""
        try:
            limit = max(1, min(100, int((query.get("limit") or ["20"])[0])))
        except ValueError as exc:
            raise APIProblem(400, "validation_error", "limit must be an integer.") from exc
        now = time.time()
        with self._lock:
            mine = [j for j in self.jobs.values() if j.owner == owner and not self.expired(j, now)]
        mine.sort(key=lambda j: j.created, reverse=True)
        return {"jobs": [self.job_json(j, now) for j in mine[:limit]], "total": len(mine)}

    # --- the API: webhooks ---------------------------------------------------

    def _schedule_webhook(self, job: EmulatedJob) -> None:
        job.webhook = {"url": job.webhook_url, "status": "pending", "attempts": 0}
        # `--latency inf`: a job that never ends notifies never (a Timer cannot wait for ever).
        if not job.latency < 365 * 86400:
            return
        timer = threading.Timer(max(0.0, job.latency), self.deliver_webhook, (job.id,))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def deliver_webhook(self, job_id: str, replay: bool = False) -> dict[str, Any]:
        """POST the job to its webhook URL now (`webhooks.py`); the record of it."""
        job = self.jobs[job_id]
        payload = json.dumps(
            {
                "event": f"job.{job.status(time.time())}",
                "replay": replay,
                "job": self.job_json(job, time.time()),
            }
        ).encode()
        record = webhooks.deliver(
            job_id, job.webhook_url or "", payload, replay, self.webhook_hosts
        )
        with self._lock:
            job.webhook = webhooks.state_after(job.webhook, record)
            self.webhook_deliveries.append(record)
        return record

    def replay_webhook(self, job_id: str, owner: str) -> dict[str, Any]:
        """`POST /jobs/{id}/webhook`: deliver a finished job's webhook again."""
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

    # --- the file origin -----------------------------------------------------

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
        """The PNG of a completed job's output `index` (from 1), or 404/410."""
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
