"""The emulator's HTTP side: one handler for both origins (the API and the file
server), routing each request to the emulator, acting out injected faults, and
serving outputs (ranges, padding, gzip, cut or stalled bodies).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from pixeldojo_cli.emulator import png
from pixeldojo_cli.emulator.faults import Fault, FaultPlan
from pixeldojo_cli.emulator.messages import API_PREFIX, APIProblem, RecordedRequest

# Room for a request whose files go inline as data: URIs (20 MiB of files, in base64).
_MAX_BODY = 32 * 1024 * 1024


class Backend(Protocol):
    """What the handler asks of the emulator (`server.Emulator`)."""

    faults: FaultPlan
    submit_status: int

    def record(self, request: RecordedRequest) -> None: ...
    def authenticate(self, authorization: str | None, required: bool) -> str: ...
    def check_rate(self, who: str) -> dict[str, str]: ...
    def list_models(self, query: dict[str, list[str]]) -> dict[str, Any]: ...
    def model(self, model_id: str) -> dict[str, Any]: ...
    def submit(self, model_id: str, body: Any, owner: str) -> dict[str, Any]: ...
    def list_jobs(self, owner: str, query: dict[str, list[str]]) -> dict[str, Any]: ...
    def get_job(self, job_id: str, owner: str) -> dict[str, Any]: ...
    def replay_webhook(self, job_id: str, owner: str) -> dict[str, Any]: ...
    def output_body(self, job_id: str, index: int) -> bytes | png.PaddedPNG: ...


def make_server(host: str, port: int, backend: Backend, target: str) -> ThreadingHTTPServer:
    """An HTTP server (not yet serving) for `target`, "api" or "files"."""
    handler = type(f"{target.title()}Handler", (_Handler,), {"emulator": backend, "target": target})
    server = _QuietServer((host, port), handler)
    server.daemon_threads = True
    return server


class _QuietServer(ThreadingHTTPServer):
    """A client hanging up mid-answer is routine here (faults, timeouts, Ctrl-C):
    not worth a traceback on the user's terminal."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    emulator: Backend
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

    def _read_body(self, path: str) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        slow = self.emulator.faults.take(self.target, self.command, path, early=True)
        if slow is not None and length > 0:
            return self._read_slowly(length, slow.after_bytes or 65536, slow.delay)
        return self.rfile.read(min(length, _MAX_BODY)) if length > 0 else b""

    def _read_slowly(self, length: int, piece: int, delay: float) -> bytes:
        """The whole body, `piece` bytes every `delay` s (the first `_MAX_BODY` kept)."""
        kept = bytearray()
        while length > 0:
            time.sleep(delay)
            data = self.rfile.read1(min(piece, length))
            if not data:
                break
            length -= len(data)
            kept += data[: max(0, _MAX_BODY - len(kept))]
        return bytes(kept)

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
        body = self._read_body(path) if method == "POST" else b""
        emulator.record(
            RecordedRequest(
                self.target,
                method,
                path,
                {k.lower(): v for k, v in self.headers.items()},
                body,
                time.time(),
                split.path,
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
        elif fault is not None and fault.kind == "drip":
            self.wfile = fault.dripping(self.wfile)  # type: ignore[assignment]
            self.close_connection = True  # the next request on it gets a plain writer
            fault = None
        if fault is not None and self._apply_fault(fault):
            return
        try:
            if self.target == "files":
                self._serve_file(path, fault)
            else:
                self._serve_api(method, split.path, parse_qs(split.query), body, fault)
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
        if fault.kind in ("bomb", "deep", "picture"):
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
        return False  # truncate, other_job, the lists, reshape: carried out on the normal path

    def _serve_api(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: bytes,
        fault: Fault | None = None,
    ) -> None:
        emulator = self.emulator
        if not path.startswith(API_PREFIX + "/"):
            raise APIProblem(404, "not_found", f"No route for {path}.")
        # `path` as sent: split at each `/`, then each segment decoded (as a web
        # server routes: `%2F` inside an id is part of the id).
        route = path[len(API_PREFIX) :].rstrip("/")
        parts = [unquote(part) for part in route.strip("/").split("/")]
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
            if fault is not None:
                result = fault.rewrite(result, lambda job_id: self._record_or_none(job_id, who))
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
        if fault is not None:
            result = fault.rewrite(result, lambda job_id: self._record_or_none(job_id, who))
        self._send_json(200, result, rate_headers)

    def _record_or_none(self, job_id: str, owner: str) -> dict[str, Any] | None:
        try:
            return self.emulator.get_job(job_id, owner)
        except APIProblem:
            return None

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
