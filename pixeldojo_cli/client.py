"""The PixelDojo client: a small library over httpx, with no typer and no rich.

from pixeldojo_cli.client import Client

with Client(api_key="...") as client:
    job = client.run("flux-dev", {"prompt": "a lighthouse at dusk"})
    for job in client.wait(job.id):
        print(job.status)
    print(job.output_urls)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from pixeldojo_cli import __version__
from pixeldojo_cli.errors import (
    BadResponseError,
    MissingAPIKeyError,
    RequestTimeoutError,
    UsageError,
    WaitTimeoutError,
)
from pixeldojo_cli.results import (
    Job,
    Model,
    parse_job,
    parse_job_list,
    parse_model,
    parse_model_list,
    parse_schema,
)
from pixeldojo_cli.settings import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_POLL_INTERVAL,
    DEFAULT_POLL_INTERVAL,
)
from pixeldojo_cli.transport import RetryPolicy, Trace, Transport


def _segment(value: str, what: str) -> str:
    """A model or job id as one URL path segment (nothing can climb out of it)."""
    if not value or not value.strip():
        raise UsageError(f"The {what} must not be empty.")
    return quote(value, safe="")


def _json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError) as exc:
        kind = response.headers.get("content-type", "unknown type")
        raise BadResponseError(
            f"Expected JSON from {response.request.method} {response.request.url.path}, "
            f"got {kind} (HTTP {response.status_code})."
        ) from exc


class Client:
    """PixelDojo API client. Thread-safe; one rate limiter shared by all calls."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        *,
        rate_limit: float = 60,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        trace: Trace | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        http: httpx.Client | None = None,
        rate_window: float = 60.0,
        budget_dir: Path | None = None,
    ) -> None:
        """`rate_limit` requests per `rate_window` seconds; `budget_dir` shares that
        budget with every other process using the same API and key (see
        `transport.SharedBudget`); without it the budget is this client's own."""
        self.api_key = api_key or None
        self.base_url = base_url.rstrip("/")
        self._sleep = sleep
        self._clock = clock
        self.transport = Transport(
            self.base_url,
            self.api_key,
            rate_limit=rate_limit,
            timeout=timeout,
            retry=retry,
            trace=trace,
            user_agent=f"pixeldojo-cli/{__version__}",
            sleep=sleep,
            http=http,
            rate_window=rate_window,
            budget_dir=budget_dir,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.transport.close()

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r}, api_key={'set' if self.api_key else 'unset'})"

    def _require_key(self) -> None:
        if not self.api_key:
            raise MissingAPIKeyError("No API key is set.")

    def _get(self, path: str, **kwargs: Any) -> Any:
        return _json_body(self.transport.request("GET", path, **kwargs))

    # --- models (the API allows these without a key) --------------------------

    def list_models(self, *, modality: str | None = None, detailed: bool = False) -> list[Model]:
        """`GET /models`, optionally filtered by `modality` (image or video)."""
        params: dict[str, Any] = {}
        if modality:
            params["modality"] = modality
        if detailed:
            params["detailed"] = "true"
        models = parse_model_list(self._get("models", params=params or None))
        if modality:  # the server may ignore the filter
            models = [m for m in models if m.modality == modality]
        return models

    def get_model(self, model_id: str) -> Model:
        """`GET /models/{apiId}`: details, price and (usually) the request schema."""
        return parse_model(self._get(f"models/{_segment(model_id, 'model id')}"))

    def get_schema(self, model_id: str) -> dict[str, Any]:
        """`GET /models/{apiId}/schema`: the model's input JSON Schema."""
        return parse_schema(self._get(f"models/{_segment(model_id, 'model id')}/schema"))

    def model_with_schema(self, model_id: str) -> tuple[Model, dict[str, Any]]:
        """The model and its input schema, asking `/schema` only when needed."""
        model = self.get_model(model_id)
        schema = model.request_schema
        if schema is None:
            schema = self.get_schema(model_id)
        return model, schema

    # --- jobs ----------------------------------------------------------------

    def run(self, model_id: str, inputs: dict[str, Any], *, webhook_url: str | None = None) -> Job:
        """`POST /models/{apiId}/run`. Never retried once the server may have it."""
        self._require_key()
        body = dict(inputs)
        if webhook_url:
            body["webhook_url"] = webhook_url
        response = self.transport.request(
            "POST", f"models/{_segment(model_id, 'model id')}/run", json=body, creates=True
        )
        return parse_job(_json_body(response))

    def get_job(self, job_id: str, *, timeout: float | None = None) -> Job:
        """`GET /jobs/{jobId}`, always on the API's origin (never a foreign statusUrl)."""
        self._require_key()
        return parse_job(self._get(f"jobs/{_segment(job_id, 'job id')}", timeout=timeout))

    def list_jobs(self, *, limit: int | None = None) -> list[Job]:
        """`GET /jobs?limit=N`: the account's recent jobs."""
        self._require_key()
        params = {"limit": limit} if limit else None
        return parse_job_list(self._get("jobs", params=params))

    def replay_webhook(self, job_id: str) -> dict[str, Any]:
        """`POST /jobs/{jobId}/webhook`: ask the API to resend the terminal webhook."""
        self._require_key()
        response = self.transport.request("POST", f"jobs/{_segment(job_id, 'job id')}/webhook")
        if not response.content:
            return {}
        body = _json_body(response)
        return body if isinstance(body, dict) else {"response": body}

    def wait(
        self,
        job_id: str,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        max_poll_interval: float = DEFAULT_MAX_POLL_INTERVAL,
        timeout: float | None = None,
    ) -> Iterator[Job]:
        """Poll `GET /jobs/{id}` until the job is terminal, yielding every answer.

        Backoff: `poll_interval` first, doubling, capped at `max_poll_interval`.
        A status the client does not know counts as still running. Raises
        `WaitTimeoutError` once `timeout` seconds have passed.
        """
        self._require_key()
        if poll_interval <= 0 or max_poll_interval <= 0:
            raise UsageError("Poll intervals must be positive.")
        deadline = None if timeout is None else self._clock() + timeout
        interval = poll_interval
        while True:
            request_timeout = None
            if deadline is not None:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise WaitTimeoutError(
                        f"Job {job_id} is still running after the timeout.", job_id=job_id
                    )
                self._sleep(min(interval, remaining))
                request_timeout = max(0.1, min(30.0, deadline - self._clock() + 0.5))
            else:
                self._sleep(interval)
            try:
                job = self.get_job(job_id, timeout=request_timeout)
            except RequestTimeoutError as exc:
                if deadline is not None and self._clock() >= deadline:
                    raise WaitTimeoutError(
                        f"Job {job_id} is still running after the timeout.", job_id=job_id
                    ) from exc
                raise
            yield job
            if job.is_terminal:
                return
            interval = min(interval * 2, max_poll_interval)
