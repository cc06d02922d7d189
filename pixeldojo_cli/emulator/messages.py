"""What crosses the emulator's wire besides the API's data: the record of each
request that reached it, and the error answer (`APIProblem`) every part of it
raises to refuse one.
"""

from __future__ import annotations

from dataclasses import dataclass

API_PREFIX = "/api/v1"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as it reached the emulator, for tests to assert on."""

    target: str  # "api" or "files"
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    raw_path: str = ""  # as sent, percent-encoding and all (`path` is decoded)

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


class APIProblem(Exception):
    """An error answer: `{"error": {"code", "message", "status"}}` with `status`."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
