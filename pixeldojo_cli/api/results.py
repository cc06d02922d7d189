"""Typed results and the tolerant parsing that builds them.

Pure functions over decoded JSON: no HTTP here, so every shape the API may
answer with (docs/api-tolerance.md) can be tested and fuzzed directly.
Anything that cannot be made into a result raises `BadResponseError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pixeldojo_cli.core.errors import BadResponseError, WrongJobError
from pixeldojo_cli.core.timestamps import plausible

# The published statuses are pending, processing, completed and failed. Known
# synonyms of the terminal ones end a wait too; anything else counts as running.
SUCCEEDED_STATUSES = frozenset({"completed", "succeeded", "success", "done", "finished"})
FAILED_STATUSES = frozenset({"failed", "error", "errored", "canceled", "cancelled", "aborted"})
EXPIRED_STATUSES = frozenset({"expired"})
TERMINAL_STATUSES = SUCCEEDED_STATUSES | FAILED_STATUSES | EXPIRED_STATUSES
RUNNING_STATUSES = frozenset(
    {"pending", "processing", "queued", "running", "starting", "submitted"}
)
DEFAULT_OUTPUT_LIFETIME = timedelta(hours=24)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer of hundreds of digits: not a usable number
        return None
    return number if math.isfinite(number) else None


def _price(value: Any) -> float | None:
    """A price as a job can have one: a finite number, 0 or more. A negative one
    (from a hostile or broken server) is unknown: it would make every job fit a
    budget and lower what others count."""
    number = _number(value)
    return number if number is not None and number >= 0 else None


@dataclass(frozen=True)
class Cost:
    """A model's price: `default` credits per image (or per second for video)."""

    default: float | None
    kind: str = "fixed"
    by_resolution: dict[str, float] = field(default_factory=dict)
    raw: Any = None

    @property
    def per_second(self) -> bool:
        return "second" in self.kind

    def describe(self) -> str:
        """`1`, `1.5/s`, `1.5 (0.5 MP=1, 1 MP=1.5)`: short enough for a table cell."""
        if self.default is None:
            return "?"
        text = f"{self.default:g}" + ("/s" if self.per_second else "")
        if self.by_resolution:
            text += " (" + ", ".join(f"{k}={v:g}" for k, v in self.by_resolution.items()) + ")"
        return text


def parse_cost(value: Any) -> Cost:
    """`creditCost` as a number or as an object (`{"default", "type", ...}`); a
    price that is negative or not a finite number is unknown (None, or left out
    of `by_resolution`)."""
    number = _price(value)
    if number is not None:
        return Cost(default=number, raw=value)
    if not isinstance(value, dict):
        return Cost(default=None, raw=value)
    default = _price(value.get("default"))
    if default is None:
        default = _price(value.get("amount"))
    if default is None:
        default = _price(value.get("perSecond"))
    kind = _str(value.get("type")) or ("per_second" if "perSecond" in value else "fixed")
    table: dict[str, float] = {}
    raw_table = value.get("byResolution") or value.get("resolutions")
    if isinstance(raw_table, dict):
        for key, price in raw_table.items():
            price_number = _price(price)
            if isinstance(key, str) and price_number is not None:
                table[key] = price_number
    return Cost(default=default, kind=kind, by_resolution=table, raw=value)


@dataclass(frozen=True)
class Model:
    id: str
    name: str
    description: str
    modality: str
    cost: Cost
    features: tuple[str, ...]
    request_schema: dict[str, Any] | None
    raw: dict[str, Any]


def _features(value: Any) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(v).lower() for v in value if isinstance(v, str))
    if isinstance(value, dict):  # {"lora": true, "editing": false}
        return tuple(str(k).lower() for k, v in value.items() if v)
    return ()


def parse_model(value: Any) -> Model:
    """One model from `GET /models` or `GET /models/{apiId}` (`apiId` or `id`)."""
    if isinstance(value, dict) and isinstance(value.get("model"), dict):
        value = {**value["model"], **{k: v for k, v in value.items() if k != "model"}}
    if not isinstance(value, dict):
        raise BadResponseError("A model in the response is not an object.")
    model_id = _str(value.get("apiId")) or _str(value.get("id"))
    if model_id is None:
        raise BadResponseError("A model in the response has no `apiId`.")
    modality = _str(value.get("modality")) or _str(value.get("type")) or "unknown"
    schema = value.get("requestSchema") or value.get("schema") or value.get("inputSchema")
    return Model(
        id=model_id,
        name=_str(value.get("name")) or model_id,
        description=_str(value.get("description")) or "",
        modality=modality.lower(),
        cost=parse_cost(value.get("creditCost", value.get("cost"))),
        features=_features(value.get("features")),
        request_schema=schema if isinstance(schema, dict) else None,
        raw=value,
    )


def parse_model_list(value: Any) -> list[Model]:
    """`{"models": [...], "total": N}` or a bare list. Bad entries are skipped."""
    items = value.get("models", value.get("data")) if isinstance(value, dict) else value
    if not isinstance(items, list):
        raise BadResponseError("The model list response has no `models` list.")
    models: list[Model] = []
    for item in items:
        try:
            models.append(parse_model(item))
        except BadResponseError:
            continue
    return models


def parse_schema(value: Any) -> dict[str, Any]:
    """`{"schema": {JSON Schema}}` or a bare JSON Schema."""
    if isinstance(value, dict) and isinstance(value.get("schema"), dict):
        return dict(value["schema"])
    if isinstance(value, dict) and isinstance(value.get("requestSchema"), dict):
        return dict(value["requestSchema"])
    if isinstance(value, dict):
        return value
    raise BadResponseError("The schema response is not a JSON object.")


def _parse_time(value: Any) -> datetime | None:
    """A time in an answer; None when it is none a job can have (9999-12-31:
    no time zone or added day could take it)."""
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return plausible(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))
    number = _number(value)
    if number is not None and 0 < number < 1e13:
        seconds = number / 1000 if number > 1e11 else number  # epoch ms or s
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def _urls_in(value: Any) -> list[str]:
    """Every URL in an output value: a string, a list, or objects with `url`."""
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, dict):
        url = value.get("url") or value.get("uri")
        return [url] if isinstance(url, str) and url else []
    if isinstance(value, list):
        return [url for item in value for url in _urls_in(item)]
    return []


_OUTPUT_KEYS = ("images", "image", "videos", "video", "audio", "files", "urls", "url")


def extract_output_urls(job: dict[str, Any]) -> list[str]:
    """Output URLs wherever the API put them, in order, without duplicates."""
    found: list[str] = []
    output = job.get("output")
    if isinstance(output, dict):
        for key in _OUTPUT_KEYS:
            found += _urls_in(output.get(key))
    else:
        found += _urls_in(output)
    found += _urls_in(job.get("assets"))
    found += _urls_in(job.get("outputs"))
    return list(dict.fromkeys(found))


def _error_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, dict):
        message, code = _str(value.get("message")), _str(value.get("code"))
        if message and code:
            return f"{message} ({code})"
        return message or code
    return None


@dataclass(frozen=True)
class Job:
    id: str
    status: str
    output_urls: list[str]
    raw: dict[str, Any]
    credit_cost: float | None = None
    credits_remaining: float | None = None
    expires_at: datetime | None = None
    completed_at: datetime | None = None
    error: str | None = None
    model: str | None = None
    created_at: datetime | None = None
    # Every id the answer gave for its job (`id_claims`), this one included.
    claims: tuple[Any, ...] = field(default=(), compare=False, repr=False)

    @property
    def succeeded(self) -> bool:
        """Completed: its outputs are there to download."""
        return self.status in SUCCEEDED_STATUSES

    @property
    def failed(self) -> bool:
        """Failed, errored or cancelled: nothing to download, ever."""
        return self.status in FAILED_STATUSES

    @property
    def expired(self) -> bool:
        """The API says the job (and its outputs) are gone."""
        return self.status in EXPIRED_STATUSES

    @property
    def is_terminal(self) -> bool:
        """The job will not change any more: waiting for it is over."""
        return self.status in TERMINAL_STATUSES

    @property
    def known_status(self) -> bool:
        """A status the client understands (a published one or a known synonym)."""
        return self.status in TERMINAL_STATUSES or self.status in RUNNING_STATUSES

    @property
    def other_ids(self) -> list[Any]:
        """Ids the answer also gave for its job that are not `id` (a submit
        answer naming two jobs): distinct, in the order given."""
        others: list[Any] = []
        for claim in self.claims:
            if not _names(claim, self.id) and claim not in others:
                others.append(claim)
        return others

    def output_expiry(self) -> datetime | None:
        """`expiresAt` when the API gives it, else 24 h after completion."""
        if self.expires_at is not None:
            return self.expires_at
        if self.completed_at is not None:
            return self.completed_at + DEFAULT_OUTPUT_LIFETIME
        return None


def parse_job(value: Any) -> Job:
    """A job from the submit answer, `GET /jobs/{id}` or an entry of `GET /jobs`.

    Its id is the first string of `id_claims` (a top-level `jobId` first, then
    one inside a `{"job": ...}` wrapper, a top-level `id` last); every id the
    answer gave is kept in `claims`, for `jobs_by_id` and `Job.other_ids`."""
    claims = tuple(id_claims(value))
    if isinstance(value, dict) and isinstance(value.get("job"), dict):
        value = value["job"]
    if not isinstance(value, dict):
        raise BadResponseError("The job response is not a JSON object.")
    job_id = next((claim for claim in claims if _str(claim)), None)
    if job_id is None:
        raise BadResponseError("The job response has no `jobId`.")
    if next((claim for claim in id_claims(value) if _str(claim)), None) != job_id:
        value = {**value, "jobId": job_id}  # the record read again (the ledger) reads the same
    status = (_str(value.get("status")) or "unknown").lower()
    return Job(
        id=job_id,
        status=status,
        output_urls=extract_output_urls(value),
        raw=value,
        credit_cost=_number(value.get("creditCost")),
        credits_remaining=_number(value.get("creditsRemaining")),
        expires_at=_parse_time(value.get("expiresAt")),
        completed_at=_parse_time(value.get("completedAt")),
        error=_error_text(value.get("error")),
        model=_str(value.get("model")) or _str(value.get("apiId")),
        created_at=_parse_time(value.get("createdAt") or value.get("created_at")),
        claims=claims,
    )


# Where this package reads a job's id, anywhere: in an answer to `GET /jobs/{id}`,
# a list entry, a submit or webhook-replay answer, a webhook notification. One
# rule for all of them (`id_claims`), so an id one part would take for the job's,
# every other part checks. The keys are matched whatever their case, `_` or `-`
# (`jobId`, `job_id`, `jobID`, `JobId`, `job-id`; `id`, `ID`); `job` holding a
# string (not an object) names a job too.
JOB_ID_KEYS = ("jobId", "job_id", "jobID")
JOB_ALIAS_KEY = "id"
# Objects that may hold the job (or a notification's job) and are looked into,
# two levels deep: `job.jobId`, `data.jobId`, `data.job.id`...
JOB_NESTS = ("job", "data", "payload", "object", "resource")
_NEST_DEPTH = 2


def _spelling(key: Any) -> str:
    return key.replace("_", "").replace("-", "").casefold() if isinstance(key, str) else ""


def _scope_claims(scope: dict[str, Any], *, alias: bool) -> list[Any]:
    """The ids one object gives: its job-id keys (`jobId` first), a `job` that is
    no object, and (with `alias`) its `id`. Null counts as no id."""
    keys = [k for k in JOB_ID_KEYS if k in scope]
    keys += [k for k in scope if _spelling(k) == "jobid" and k not in keys]
    if not isinstance(scope.get("job"), dict):
        keys.append("job")
    if alias:
        keys += [k for k in scope if _spelling(k) == JOB_ALIAS_KEY]
    return [scope[k] for k in keys if scope.get(k) is not None]


def _nested_claims(scope: dict[str, Any], depth: int) -> list[Any]:
    claims: list[Any] = []
    for nest in JOB_NESTS:
        inner = scope.get(nest)
        if isinstance(inner, dict):
            claims += _scope_claims(inner, alias=True)
            if depth + 1 < _NEST_DEPTH:
                claims += _nested_claims(inner, depth + 1)
    return claims


def id_claims(value: Any) -> list[Any]:
    """Every id an answer (or a notification) gives for the job it is about, in the
    order this package prefers them: the top level's job-id keys, then those
    and `id` inside the objects that hold a job (`JOB_NESTS`, two levels deep),
    then the top level's `id`. Not only strings: a number, `""` or a list given
    as an id is a claim too (and never the id it spells)."""
    if not isinstance(value, dict):
        return []
    alias = [value[k] for k in value if _spelling(k) == JOB_ALIAS_KEY and value[k] is not None]
    return _scope_claims(value, alias=False) + _nested_claims(value, 0) + alias


def _is_id_key(key: str) -> bool:
    return _spelling(key) in ("jobid", JOB_ALIAS_KEY) or key == "job"


def ids_given_twice(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as `json.loads` builds it (a repeated key: its last value),
    except that an id key given twice with different values (`{"jobId": "A",
    "jobId": "B"}`) keeps both, as a list: an id that names no one job, which
    `check_about` refuses whichever value a reader would have taken."""
    built: dict[str, Any] = {}
    for key, value in pairs:
        if key in built and _is_id_key(key) and built[key] != value:
            value = [built[key], value]
        built[key] = value
    return built


def _names(claim: Any, job_id: str) -> bool:
    return type(claim) is str and claim == job_id


def check_about(answer: Any, job_id: str) -> None:
    """`WrongJobError` when an answer about `job_id` (to `GET /jobs/{id}`, a
    webhook replay...) gives, anywhere `id_claims` looks, an id other than
    `job_id`, compared exactly (case, spaces and look-alike characters count;
    a number is not a string)."""
    for claim in id_claims(answer):
        if not _names(claim, job_id):
            raise WrongJobError(job_id, claim)


def parse_job_about(value: Any, job_id: str) -> Job:
    """The answer to `GET /jobs/{job_id}`, as a job only if it is about `job_id`:
    every id it gives must be `job_id` (`check_about`). An answer that gives no
    id at all stands for the job asked about when it reads as a job."""
    check_about(value, job_id)
    if isinstance(value, dict) and not id_claims(value):
        inner = value["job"] if isinstance(value.get("job"), dict) else value
        if _reads_as_job(inner):
            return parse_job({**inner, "jobId": job_id})
    return parse_job(value)


def _reads_as_job(value: dict[str, Any]) -> bool:
    """Whether an answer naming no job still reads as one: a status the client
    knows and, once completed, its outputs. (`{"status": "completed"}` alone
    says nothing about any job: it stays a malformed answer.)"""
    status = value.get("status")
    if not isinstance(status, str) or status.lower() not in TERMINAL_STATUSES | RUNNING_STATUSES:
        return False
    return status.lower() not in SUCCEEDED_STATUSES or bool(extract_output_urls(value))


def jobs_by_id(jobs: list[Job]) -> dict[str, Job]:
    """List entries by the job each one is about, for standing in for that
    job's own answer: only an entry every id of which (`id_claims`) is exactly
    its id counts, and a job two entries claim is left out (which to believe?)."""
    found: dict[str, Job] = {}
    twice: set[str] = set()
    for job in jobs:
        if not all(_names(claim, job.id) for claim in job.claims):
            continue
        if job.id in found:
            twice.add(job.id)
        found[job.id] = job
    return {job_id: job for job_id, job in found.items() if job_id not in twice}


def taken_from_list(job: Job) -> bool:
    """Whether a list entry's word is taken for its job's state: still running (a
    status the client knows as running), or completed with its outputs. Any
    other end (failed, expired, cancelled, completed without outputs) or an
    unknown status is a hint only, for the job's own answer to confirm."""
    if job.status in RUNNING_STATUSES:
        return True
    return job.succeeded and bool(job.output_urls)


def parse_job_list(value: Any) -> list[Job]:
    """`GET /jobs`: `{"jobs": [...]}` (or `data`/`items`) or a bare list."""
    items = value
    if isinstance(value, dict):
        items = next(
            (value[k] for k in ("jobs", "data", "items") if isinstance(value.get(k), list)),
            None,
        )
    if not isinstance(items, list):
        raise BadResponseError("The job list response has no `jobs` list.")
    jobs: list[Job] = []
    for item in items:
        try:
            jobs.append(parse_job(item))
        except BadResponseError:
            continue
    return jobs
