"""The PixelDojo client: a small library over httpx, with no typer and no rich.

from pixeldojo_cli.api.client import Client

with Client(api_key="...") as client:
    job = client.run("flux-dev", {"prompt": "a lighthouse at dusk"})
    print(job.id, job.status)

Waiting for a job, saving its outputs and the ledger are the workflow on top:
`pixeldojo_cli.engine` (`engine.wait(client, job.id)` yields each state).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from pixeldojo_cli.api.defaults import DEFAULT_BASE_URL
from pixeldojo_cli.api.headers import Headers, check_headers
from pixeldojo_cli.api.model_cache import ModelCache
from pixeldojo_cli.api.paths import path_segment
from pixeldojo_cli.api.responses import api_response, json_body
from pixeldojo_cli.api.results import (
    Job,
    Model,
    check_about,
    ids_given_twice,
    parse_job,
    parse_job_about,
    parse_job_list,
    parse_model,
    parse_model_list,
    parse_schema,
)
from pixeldojo_cli.api.transport import RetryPolicy, Trace, Transport
from pixeldojo_cli.core import cancelling
from pixeldojo_cli.core.errors import (
    ApiResponse,
    BadResponseError,
    MissingAPIKeyError,
    NotFoundError,
    PixelDojoError,
    SubmissionUncertainError,
)
from pixeldojo_cli.core.redact import clean_api_key
from pixeldojo_cli.core.version import __version__


class Client:
    """PixelDojo API client. Thread-safe; one rate limiter shared by all calls.

    No error it raises holds the key, even one the server echoed back: its text
    and the `response` an `APIError` carries have it masked."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        *,
        rate_limit: float = 60,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        trace: Trace | None = None,
        sleep: Callable[[float], None] = cancelling.pause,
        http: httpx.Client | None = None,
        rate_window: float = 60.0,
        budget_dir: Path | None = None,
        cache_dir: Path | None = None,
        model_types_hint_schedule: bool = True,
        allow_private_outputs: bool | None = None,
        allow_private_outputs_source: str = "",
    ) -> None:
        """`rate_limit` requests per `rate_window` seconds; `budget_dir` shares that
        budget with every other process using the same API and key (see
        `ratelimit.SharedBudget`); without it the budget is this client's own.
        `cache_dir` is the folder of the local model cache (`model_cache`), read
        for model types and did-you-mean ids, never written; None: no cache.
        `model_types_hint_schedule=False` keeps model types out of the engine's
        poll schedule: for a server whose jobs take the same time whatever the
        model, as the embedded emulator's do. `allow_private_outputs`: whether
        output downloads may reach loopback, link-local, private... addresses;
        None: only when the API's base URL is such an address or `localhost`
        (`addresses`); `allow_private_outputs_source` says where it was set
        (`env:NAME`, `config:PATH`), for the hint after a refusal."""
        self.api_key = clean_api_key(api_key)
        self.base_url = base_url.rstrip("/")
        self._modalities: dict[str, str] = {}
        self.model_cache = ModelCache(cache_dir, self.base_url) if cache_dir else None
        self.model_types_hint_schedule = model_types_hint_schedule
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
            allow_private_outputs=allow_private_outputs,
            allow_private_outputs_source=allow_private_outputs_source,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.transport.close()

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r}, api_key={'set' if self.api_key else 'unset'})"

    def require_key(self) -> None:
        """`MissingAPIKeyError` when no key is set (the job endpoints need one)."""
        if not self.api_key:
            raise MissingAPIKeyError("No API key is set.")

    def _get(self, path: str, *, about_jobs: bool = False, **kwargs: Any) -> Any:
        """`GET path`'s JSON; `about_jobs`: an answer about jobs, whose ids given
        twice, differently, are both kept (`ids_given_twice`)."""
        hook = ids_given_twice if about_jobs else None
        response = self.transport.request("GET", path, **kwargs)
        return json_body(response, self.api_key, object_pairs_hook=hook)

    # --- any request (`pixeldojo api`) ---------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Headers | None = None,
    ) -> ApiResponse:
        """Any API request: `path` relative to the base URL (or an absolute URL on
        the API's own origin; any other origin is refused), with the key, the rate
        limiter and the retry rules. Only GET and HEAD are ever repeated. An error
        answer raises its `APIError`, whose `response` holds the answer. `headers`:
        a mapping or a list of (name, value) pairs; a header the HTTP layer would
        refuse, the client sets itself, or one given twice (`api.headers`) is a
        `UsageError` before anything is sent."""
        method = method.upper()
        url = self.transport.request_url(path)
        checked = check_headers(headers)  # before anything is sent
        response = self.transport.request(
            method,
            str(url),
            params=params,
            json=json,
            content=content,
            headers=checked,
            creates=method not in ("GET", "HEAD"),
        )
        return api_response(response)

    # --- models (the API allows these without a key) --------------------------

    def list_models(self, *, modality: str | None = None, detailed: bool = False) -> list[Model]:
        """`GET /models`, optionally filtered by `modality` (image or video)."""
        params: dict[str, Any] = {}
        if modality:
            params["modality"] = modality
        if detailed:
            params["detailed"] = "true"
        models = parse_model_list(self._get("models", params=params or None))
        self._modalities.update((m.id, m.modality) for m in models)
        if modality:  # the server may ignore the filter
            models = [m for m in models if m.modality == modality]
        return models

    def get_model(self, model_id: str) -> Model:
        """`GET /models/{apiId}`: details, price and (usually) the request schema."""
        try:
            model = parse_model(self._get(f"models/{path_segment(model_id, 'model id')}"))
        except NotFoundError as exc:
            raise self._model_not_found(exc, model_id) from None
        self._modalities[model_id] = model.modality
        return model

    def modality_of(self, model_id: str) -> str | None:
        """The model's type (`image`, `video`) as this client last saw it, else as
        the local model cache has it; None when neither knows. Never a request:
        the poll schedule asks, and an unknown type only means a generic one."""
        if model_id in self._modalities:
            return self._modalities[model_id]
        return self.model_cache.modality(model_id) if self.model_cache else None

    def get_schema(self, model_id: str) -> dict[str, Any]:
        """`GET /models/{apiId}/schema`: the model's input JSON Schema."""
        try:
            return parse_schema(self._get(f"models/{path_segment(model_id, 'model id')}/schema"))
        except NotFoundError as exc:
            raise self._model_not_found(exc, model_id) from None

    def _model_not_found(self, exc: NotFoundError, model_id: str) -> NotFoundError:
        """The API's not_found, plus the model ids close to the one asked for (from
        the completion cache when there is one, else one `GET /models`)."""
        from pixeldojo_cli.core.suggest import close_matches, did_you_mean

        known = self.model_cache.model_ids() if self.model_cache else []
        if not known:
            try:
                known = [model.id for model in self.list_models()]
            except PixelDojoError:
                known = []
        suggestion = did_you_mean(close_matches(model_id, known))
        if suggestion:
            exc.message = f"{exc.message.rstrip()} {suggestion}"
        return exc

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
        self.require_key()
        body = dict(inputs)
        if webhook_url:
            body["webhook_url"] = webhook_url
        try:
            response = self.transport.request(
                "POST", f"models/{path_segment(model_id, 'model id')}/run", json=body, creates=True
            )
            return parse_job(json_body(response, self.api_key))
        except BadResponseError as exc:  # the server took the request: the job may exist
            exc.hint = SubmissionUncertainError.default_hint
            raise

    def get_job(self, job_id: str, *, timeout: float | None = None) -> Job:
        """`GET /jobs/{jobId}`, always on the API's origin (never a foreign statusUrl).
        An answer about another job raises `WrongJobError` (one naming no job
        stands for this one)."""
        self.require_key()
        answer = self._get(
            f"jobs/{path_segment(job_id, 'job id')}", about_jobs=True, timeout=timeout
        )
        return parse_job_about(answer, job_id)

    def list_jobs(self, *, limit: int | None = None, timeout: float | None = None) -> list[Job]:
        """`GET /jobs?limit=N`: the account's recent jobs."""
        self.require_key()
        params = {"limit": limit} if limit else None
        return parse_job_list(self._get("jobs", about_jobs=True, params=params, timeout=timeout))

    def replay_webhook(self, job_id: str) -> dict[str, Any]:
        """`POST /jobs/{jobId}/webhook`: ask the API to resend the terminal webhook.
        An answer naming another job raises `WrongJobError`."""
        self.require_key()
        response = self.transport.request("POST", f"jobs/{path_segment(job_id, 'job id')}/webhook")
        if not response.content:
            return {}
        body = json_body(response, self.api_key, object_pairs_hook=ids_given_twice)
        check_about(body, job_id)
        return body if isinstance(body, dict) else {"response": body}
