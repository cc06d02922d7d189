"""`pixeldojo api`: an authenticated request to any API path, after `gh api`."""

from __future__ import annotations

import json
import math
import re
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pixeldojo_cli.cli.commands.run_flags import IgnoreBudgetOption
from pixeldojo_cli.cli.state import AppState, get_state, read_text_argument
from pixeldojo_cli.core.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from pixeldojo_cli.api.client import Client
    from pixeldojo_cli.core.errors import ApiResponse

HELP = """\
Send an authenticated request to any API path and print the answer.

PATH is relative to the base URL (`models`, `jobs/ID`; `/api/v1/models`
as the API's docs write it works too). An absolute URL must be on the
API's own origin: the key never goes anywhere else. The key, the rate
limit and the retry rules are those of every other command: GET is
retried, anything else never once it was sent.

METHOD (or -X) defaults to GET, or to POST when fields or --input are
given. -f KEY=VALUE adds a string field, -F KEY=VALUE a typed one (true,
false, null, numbers, JSON arrays and objects; @FILE reads the value from
a file, @- from stdin). Fields go into the query string for GET and HEAD
(and with --input), into a JSON object body otherwise. --input FILE (or
-) sends the file as the body.

A request that can create a job (POST models/ID/run, however the path is
spelled) is a paid one: the budgets (budget_daily, budget_monthly) are
checked and its cost reserved first, as `run` does (--ignore-budget skips
them), and the job goes into the local ledger.

The body goes to stdout: indented JSON on a terminal, as received
otherwise; -i prints the status line and headers first. An error answer
is printed too, and the exit code comes from the usual table (400: 2,
401: 3, 404: 6, 429: 8, 5xx: 10). No API endpoint is paginated (`jobs`
takes only `?limit=`), so there is no --paginate.
"""

EXAMPLES = """\
Examples:

  pixeldojo api models

  pixeldojo api models -X GET -f modality=video -f detailed=true

  pixeldojo api POST models/flux-dev/run -f prompt="a lighthouse" -F seed=42

  pixeldojo api jobs/job_123 -i

  echo '{"prompt": "a fox"}' | pixeldojo api POST models/flux-dev/run --input -
"""

_METHOD = re.compile(r"[A-Za-z]{1,20}")
# Control characters that must never reach a terminal or a pipe (tab and newlines may).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# In JSON text they can only stand inside strings, where an escape says the same.
_JSON_CONTROL = re.compile(r"[\x7f-\x9f]")


def _split_field(text: str, option: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"{option} takes KEY=VALUE, got {text[:60]!r}.")
    return key, value


def typed_value(text: str) -> Any:
    """`-F`: true, false, null, numbers, JSON arrays and objects, `@FILE`; else a string."""
    if text.startswith("@"):
        return read_text_argument(text[1:], "-F @FILE")
    if text in ("true", "false", "null"):
        return json.loads(text)
    if re.fullmatch(r"-?\d+", text):
        try:
            return int(text)
        except ValueError:  # more digits than Python converts
            raise UsageError(f"-F: the number {text[:20]}... has too many digits.") from None
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(number) and re.fullmatch(r"-?[\d.]+(e[-+]?\d+)?", text, re.IGNORECASE):
            return number
    if text[:1] in ("[", "{"):
        from pixeldojo_cli.core.untrusted import loads

        try:
            return loads(text)
        except ValueError as exc:
            raise UsageError(f"-F {text[:60]!r} looks like JSON but is not: {exc}.") from exc
    return text


def build_fields(raw_fields: list[str], typed_fields: list[str]) -> dict[str, Any]:
    """The -f and -F fields, in the order given (a repeated key: the last wins)."""
    fields: dict[str, Any] = {}
    for text in raw_fields:
        key, value = _split_field(text, "-f")
        fields[key] = value
    for text in typed_fields:
        key, value = _split_field(text, "-F")
        fields[key] = typed_value(value)
    return fields


def as_query(fields: dict[str, Any]) -> dict[str, str]:
    """Fields in a query string: strings as they are, anything else as JSON text."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}


def parse_headers(values: list[str]) -> dict[str, str]:
    """`-H 'Name: value'`, each checked as the request would need it
    (`api.headers.check_header`: Authorization, Host and the headers that frame
    the request are never set by hand)."""
    from pixeldojo_cli.api.headers import check_headers

    pairs: list[tuple[str, str]] = []
    for text in values:
        name, sep, value = text.partition(":")
        if not sep:
            raise UsageError(f"-H takes 'Name: value', got {text[:60]!r}.")
        pairs.append((name, value))
    return check_headers(pairs)


def _method_and_path(words: list[str], method: str | None) -> tuple[str | None, str]:
    if len(words) not in (1, 2):
        raise UsageError(f"Give [METHOD] PATH: one or two arguments, not {len(words)}.")
    if len(words) == 1:
        return method, words[0]
    first, second = words
    if not _METHOD.fullmatch(first):
        raise UsageError(f"{first[:60]!r} is not an HTTP method (give METHOD PATH, or just PATH).")
    if method is not None and method.upper() != first.upper():
        raise UsageError(f"Two methods given: {first} and -X {method}.")
    return first, second


def printable_body(body: bytes, *, terminal: bool) -> bytes:
    """The body for stdout: indented JSON on a terminal, the bytes as received
    otherwise; control characters are escaped either way, never passed on."""
    from pixeldojo_cli.core.untrusted import loads

    try:
        text = body.decode("utf-8")
        value = loads(text) if text.strip() else None
    except (UnicodeDecodeError, ValueError):
        text = body.decode("utf-8", errors="replace")
        return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text).encode()
    if value is None and not text.strip():
        return b""
    if terminal:
        text = json.dumps(value, indent=2, ensure_ascii=False)
    return _JSON_CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode()


def _status_and_headers(response: ApiResponse) -> bytes:
    lines = [f"{response.http_version} {response.status} {response.reason}"]
    lines += [f"{name}: {value}" for name, value in response.headers]
    text = "\n".join(_CONTROL.sub("?", line) for line in lines)
    return (text + "\n\n").encode()


def _write(state: AppState, response: ApiResponse, include: bool) -> None:
    out = b""
    if include:
        out += _status_and_headers(response)
    body = printable_body(response.body, terminal=state.render.stdout_is_terminal())
    out += body
    if body and not body.endswith(b"\n"):
        out += b"\n"
    out = state.render.scrub(out.decode("utf-8", errors="replace")).encode()
    sys.stdout.flush()
    sys.stdout.buffer.write(out)
    sys.stdout.buffer.flush()


WordsArgument = Annotated[
    list[str],
    typer.Argument(metavar="[METHOD] PATH", help="An HTTP method (optional), then a path."),
]
MethodOption = Annotated[
    str | None,
    typer.Option(
        "--method", "-X", help="HTTP method (default: GET, or POST with fields or --input)."
    ),
]
RawFieldOption = Annotated[
    list[str] | None,
    typer.Option("--raw-field", "-f", metavar="KEY=VALUE", help="A string field."),
]
TypedFieldOption = Annotated[
    list[str] | None,
    typer.Option(
        "--field",
        "-F",
        metavar="KEY=VALUE",
        help="A typed field: true, false, null, a number, JSON, or @FILE.",
    ),
]
InputOption = Annotated[
    str | None,
    typer.Option(
        "--input", metavar="FILE", help="Send this file as the body (`-`: standard input)."
    ),
]
HeaderOption = Annotated[
    list[str] | None,
    typer.Option("--header", "-H", metavar="'NAME: VALUE'", help="An extra request header."),
]
IncludeOption = Annotated[
    bool,
    typer.Option("--include", "-i", help="Print the status line and headers before the body."),
]


def api(
    ctx: typer.Context,
    words: WordsArgument,
    method: MethodOption = None,
    raw_fields: RawFieldOption = None,
    typed_fields: TypedFieldOption = None,
    input_file: InputOption = None,
    header: HeaderOption = None,
    include: IncludeOption = False,
    ignore_budget: IgnoreBudgetOption = False,
) -> None:
    from pixeldojo_cli.core.errors import APIError

    state = get_state(ctx)
    with state.guard():
        given_method, path = _method_and_path(words, method)
        if given_method is not None and not _METHOD.fullmatch(given_method):
            raise UsageError(f"{given_method[:60]!r} is not an HTTP method.")
        fields = build_fields(raw_fields or [], typed_fields or [])
        headers = parse_headers(header or [])
        content = _body(input_file, headers)
        verb = (given_method or ("POST" if fields or content is not None else "GET")).upper()
        in_query = verb in ("GET", "HEAD") or content is not None
        client = state.client()

        def send() -> ApiResponse:
            return client.request(
                verb,
                path,
                params=as_query(fields) if fields and in_query else None,
                json=fields if fields and not in_query else None,
                content=content,
                headers=headers or None,
            )

        try:
            body = fields or _json_of(content)
            response = _paid(state, client, (verb, path), body, send, ignore_budget)
            if response is None:
                response = send()
        except APIError as exc:
            if exc.response is not None:
                _write(state, exc.response, include)
            raise
        _write(state, response, include)


def _paid(
    state: AppState,
    client: Client,
    request: tuple[str, str],
    body: Any,
    send: Callable[[], ApiResponse],
    ignore_budget: bool,
) -> ApiResponse | None:
    """A request that can create a job goes through the budgets and into the
    ledger (`engine.raw_runs`); None for any other (not sent)."""
    from pixeldojo_cli.engine.raw_runs import run_route_model, send_run

    model_id = run_route_model(client, *request)
    if model_id is None:
        return None
    budget = state.budget(ignore=ignore_budget)
    return send_run(client, model_id, body, send, recorder=state.recorder(), budget=budget)


def _json_of(content: bytes | None) -> Any:
    """--input's body as JSON (for the job's estimate), or None."""
    from pixeldojo_cli.core.untrusted import loads

    try:
        return None if content is None else loads(content.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None


def _body(input_file: str | None, headers: dict[str, str]) -> bytes | None:
    """--input's bytes (None without it); a JSON content type unless one was given."""
    if input_file is None:
        return None
    content = read_text_argument(input_file, "--input").encode("utf-8")
    if not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = "application/json"
    return content
