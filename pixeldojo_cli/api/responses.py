"""What the API answered, as values: the JSON of an answer (bounded, the key
masked), an `ApiResponse` from httpx's answer, and the right `APIError` from an
error answer's status and body; and the key masked in any error raised.

A server may echo the key it was sent (in an error message, a header, a body):
the errors this package raises never carry it, neither in their text (`str`,
`repr`, `args`, `message`, `hint`) nor in the `ApiResponse` they hold.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pixeldojo_cli.core.errors import (
    API_ERROR_CLASSES,
    EXIT_CODES,
    APIError,
    ApiResponse,
    BadResponseError,
    PixelDojoError,
    ServerError,
)
from pixeldojo_cli.core.redact import redact
from pixeldojo_cli.core.untrusted import LimitError, loads, tidy

if TYPE_CHECKING:
    import httpx


def json_body(
    response: httpx.Response,
    secret: str | None = None,
    *,
    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
) -> Any:
    """The answer's JSON, where server text enters: nested at most `MAX_DEPTH`
    deep, with `secret` (the key) masked in every string (see `untrusted`);
    `object_pairs_hook` builds its objects, as in `json.loads`."""
    where = f"{response.request.method} {response.request.url.path}"
    try:
        value = loads(response.content, object_pairs_hook=object_pairs_hook)
    except LimitError as exc:
        raise BadResponseError(
            redact(f"The API's answer to {where} is not usable: {exc}.", secret)
        ) from None
    except (ValueError, UnicodeDecodeError):
        # Masked before it is cut: a cut could leave part of the key unrecognised.
        kind = redact(response.headers.get("content-type", "unknown type"), secret)[:60]
        raise BadResponseError(
            redact(f"Expected JSON from {where}, got {kind} (HTTP {response.status_code}).", secret)
        ) from None
    return tidy(value, secret)


def api_response(response: httpx.Response) -> ApiResponse:
    """httpx's answer as an `ApiResponse` (the body read whole)."""
    return ApiResponse(
        status=response.status_code,
        reason=response.reason_phrase,
        headers=tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers.raw),
        body=response.content,
        http_version=response.http_version,
    )


# When an error body carries no code, the HTTP status decides.
_STATUS_CODES: dict[int, str] = {
    400: "validation_error",
    401: "unauthorized",
    403: "unauthorized",
    402: "insufficient_credits",
    404: "not_found",
    410: "expired",
    429: "rate_limit_exceeded",
}


def _code_and_message(body: Any) -> tuple[str | None, str | None]:
    """Pull (code, message) from any of the error body shapes the API may use."""
    if not isinstance(body, dict):
        return None, None
    err = body.get("error")
    if isinstance(err, dict):
        code, message = err.get("code"), err.get("message")
    else:
        code = body.get("code")
        message = err if isinstance(err, str) else body.get("message")
    return (
        code if isinstance(code, str) and code else None,
        message if isinstance(message, str) and message else None,
    )


# The longest error message from a server that is shown whole.
MAX_MESSAGE = 1000


def error_from_response(
    status: int, text: str, *, retry_after: float | None = None, secret: str | None = None
) -> APIError:
    """Build the right `APIError` from an error response's status and body text.

    Accepts `{"error": {"code", "message"}}`, `{"error": "...", "code": "..."}`
    and plain text; the status decides when the body names no code. `secret`
    (the key) is masked in the text before any of it is cut to length.
    """
    text = redact(text, secret)
    try:
        body: Any = loads(text) if text else None
    except ValueError:  # not JSON, or nested too deep to be an error body
        body = None
    code, message = _code_and_message(body)
    if message is not None and len(message) > MAX_MESSAGE:  # one line, not a page
        message = message[:MAX_MESSAGE] + "..."
    if code is None:
        code = _STATUS_CODES.get(status, "internal_error" if status >= 500 else None)
    if message is None:
        plain = " ".join(text.split())[:200] if body is None and text else ""
        message = plain if plain and not plain.startswith("<") else f"HTTP {status}"
    cls = API_ERROR_CLASSES.get(code or "", ServerError if status >= 500 else APIError)
    err = cls(message, status=status, code=code, retry_after=retry_after)
    if code not in EXIT_CODES:
        # An unknown code: keep it for the message, let the status pick the exit code.
        err.code = _STATUS_CODES.get(status, "server_error" if status >= 500 else "usage_error")
        err.message = f"{message} ({code})" if code else message
    return err


def masked_response(response: ApiResponse, secret: str | None) -> ApiResponse:
    """`response` with `secret` masked in its header values and its body.

    The body is masked where the key appears as ASCII bytes (UTF-8, Latin-1 and
    every other ASCII-compatible charset), every other byte left as it came;
    `Content-Length` still gives the length of the answer as received."""
    if not secret:
        return response
    # Latin-1 maps each byte to one character and back: nothing else changes.
    body = redact(response.body.decode("latin-1"), secret).encode("latin-1")
    headers = tuple((name, redact(value, secret)) for name, value in response.headers)
    if body == response.body and headers == response.headers:
        return response
    return dataclasses.replace(response, body=body, headers=headers)


def mask_error(error: PixelDojoError, secret: str | None) -> PixelDojoError:
    """`error`, changed in place: `secret` masked in its message, hint and args
    (what `str` and `repr` show), and in the answer it holds, if any."""
    if not secret:
        return error
    error.message = redact(error.message, secret)
    error.hint = redact(error.hint, secret)
    error.args = tuple(redact(a, secret) if isinstance(a, str) else a for a in error.args)
    if isinstance(error, APIError) and error.response is not None:
        error.response = masked_response(error.response, secret)
    return error


@contextmanager
def key_masked(secret: str | None) -> Iterator[None]:
    """Any `PixelDojoError` raised in the block leaves it with `secret` masked."""
    try:
        yield
    except PixelDojoError as exc:
        mask_error(exc, secret)
        raise
