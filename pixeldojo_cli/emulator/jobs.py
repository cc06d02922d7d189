"""The emulator's jobs: their state machine (pending, processing, then completed
or failed, or a forced status), how long they take, and the job object the API
answers with.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from pixeldojo_cli.emulator.catalogue import duration_range

FAIL_MARKER = "#fail"  # a prompt containing it makes the job fail
# A prompt containing `#status=WORD` makes the job report WORD once it is done
# (`canceled`, `succeeded`, `weird`, ...): for clients' handling of other statuses.
STATUS_MARKER = re.compile(r"#status=([A-Za-z_-]{1,40})")
# Forced statuses that still come with the outputs (synonyms of `completed`).
_SUCCESS_WORDS = frozenset({"completed", "succeeded", "success", "done", "finished"})


@dataclass
class EmulatedJob:
    """One submitted job; its status follows from the clock."""

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

    def expired(self, now: float, ttl: float) -> bool:
        """Done for more than `ttl` seconds: gone from the API and the file origin."""
        return self.status(now) in ("completed", "failed") and now >= self.done_at + ttl


# The last second a datetime holds: `--ttl inf` (never expires) or `1e308` ends there.
LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


def iso(at: float) -> str:
    """A timestamp as the API writes it: ISO 8601 in UTC, with a `Z`; clamped to
    the years 1970 to 9999 (an endless ttl expires at the end of 9999)."""
    at = min(max(at, 0.0), LATEST) if at == at else LATEST
    return datetime.fromtimestamp(at, tz=UTC).isoformat().replace("+00:00", "Z")


def lognormal_seconds(rng: random.Random, model: dict[str, Any]) -> float:
    """A draw from the model's log-normal spread of durations, clipped to half
    its low end and twice its high end."""
    low, high = duration_range(model)
    mu = (math.log(low) + math.log(high)) / 2
    sigma = (math.log(high) - math.log(low)) / 4
    seconds = rng.lognormvariate(mu, sigma)
    return min(2 * high, max(low / 2, seconds))


@dataclass(frozen=True)
class JobFormat:
    """The emulator's knobs that shape a job answer, read afresh for each one."""

    status_url_base: str  # `statusUrl` is `{status_url_base}/jobs/{id}`
    files_url: str
    output_name: str | None  # the last part of output URLs instead of `N.png`
    ttl: float
    job_times: bool  # False: no `createdAt`/`completedAt`
    echo_key: bool  # a careless server: echo the owner's key


def output_urls(job: EmulatedJob, fmt: JobFormat) -> list[str]:
    """Where the file origin serves the job's outputs."""
    count = job.inputs.get("num_outputs", 1) if job.model["modality"] == "image" else 1

    def name(n: int) -> str:
        return f"{n}.png" if fmt.output_name is None else f"{n}/{fmt.output_name}"

    query = f"?key={quote(job.owner, safe='')}" if fmt.echo_key else ""
    return [f"{fmt.files_url}/outputs/{job.id}/{name(n)}{query}" for n in range(1, count + 1)]


def job_answer(job: EmulatedJob, now: float, fmt: JobFormat) -> dict[str, Any]:
    """The job object `GET /jobs/{id}` answers with at `now`."""
    data: dict[str, Any] = {
        "jobId": job.id,
        "status": job.reported_status(now),
        "model": job.model["apiId"],
        "createdAt": iso(job.created),
        "creditCost": job.cost,
        "statusUrl": f"{fmt.status_url_base}/jobs/{job.id}",
    }
    data.update(_outcome(job, now, fmt))
    if not fmt.job_times:
        data.pop("createdAt")
        data.pop("completedAt", None)
    if job.webhook:
        data["webhook"] = dict(job.webhook)
    if fmt.echo_key:
        data["request"] = {"headers": {"Authorization": f"Bearer {job.owner}"}}
        data["owner"] = json.dumps({"apiKey": job.owner})  # escaped inside a string
        data["echoes"] = echoed_forms(job.owner)
    return data


def echoed_forms(key: str) -> dict[str, str]:
    """A careless server's reversible renderings of a key: percent-encoded in
    full (either hex case, or every other character), HTML character references
    (decimal, hex with leading zeros, mixed with plain and named ones), JSON
    `\\u` escapes inside a string."""
    data = key.encode()
    named = {"&": "&amp;", "/": "&sol;", "_": "&lowbar;", ".": "&period;"}
    return {
        "percentUpper": "".join(f"%{byte:02X}" for byte in data),
        "percentLower": "".join(f"%{byte:02x}" for byte in data),
        "percentMixed": "".join(ch if i % 2 else f"%{ord(ch):02X}" for i, ch in enumerate(key)),
        "htmlDecimal": "".join(f"&#{ord(ch)};" for ch in key),
        "htmlHex": "".join(f"&#X{ord(ch):04x};" for ch in key),
        "htmlMixed": "".join(
            named.get(ch) or (ch, f"&#00{ord(ch)};", f"&#x{ord(ch):X};")[i % 3]
            for i, ch in enumerate(key)
        ),
        "jsonEscapes": "".join(f"\\u{ord(ch):04x}" for ch in key),
    }


def _outcome(job: EmulatedJob, now: float, fmt: JobFormat) -> dict[str, Any]:
    """The fields of a finished job: its outputs or its error, and when."""
    status = job.status(now)
    if status == "completed" and not job.has_outputs(now):
        return {"completedAt": iso(job.done_at)}
    if status == "completed":
        urls = output_urls(job, fmt)
        output = {"video": urls[0]} if job.model["modality"] == "video" else {"images": urls}
        return {
            "output": output,
            "completedAt": iso(job.done_at),
            "expiresAt": iso(job.done_at + fmt.ttl),
        }
    if status == "failed":
        error = {"code": "generation_failed", "message": "The model failed to generate an output."}
        return {"error": error, "completedAt": iso(job.done_at)}
    return {}
