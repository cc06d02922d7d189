"""The emulator's webhook deliveries: a POST of the finished job to the URL it
was submitted with, to loopback hosts only unless told otherwise."""

from __future__ import annotations

import time
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from pixeldojo_cli.emulator.jobs import iso


def deliver(
    job_id: str, url: str, payload: bytes, replay: bool, hosts: tuple[str, ...]
) -> dict[str, Any]:
    """POST `payload` to `url` if its host is one of `hosts`; the record of the
    attempt (`status` delivered, failed or skipped). Never raises: any failure
    is the receiver's, recorded."""
    record: dict[str, Any] = {
        "jobId": job_id,
        "url": url,
        "replay": replay,
        "at": iso(time.time()),
    }
    host = urlsplit(url).hostname or ""
    if host not in hosts:
        record.update(status="skipped", reason=f"host {host!r} is not in webhook_hosts")
        return record
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
    return record


def state_after(previous: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """A job's `webhook` field after the delivery attempt `record`."""
    return {
        "url": record["url"],
        "status": record["status"],
        "attempts": previous.get("attempts", 0) + 1,
        "lastAttemptAt": record["at"],
    }
