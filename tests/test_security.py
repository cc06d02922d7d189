"""Security under hostile servers and hostile input (the README's "Security"):
the key goes only to the API's origin and is never shown or stored whole,
server text never drives a terminal, no answer can exhaust memory, and exit 1
stays for bugs. Against the emulator over real sockets, with its fault knobs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import unicodedata
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pixeldojo_cli.emulator import Emulator

from conftest import FAST, PYTHON, TEST_KEY, Invoke, make_invoker, pixeldojo, run_subprocess_env

ROOT = Path(__file__).resolve().parent.parent
VALID_EXITS = {0, 2, 3, 4, 5, 6, 7, 8, 9, 10}


# --- helpers -------------------------------------------------------------------------


class Elsewhere:
    """Another origin (another port of loopback) that records every request."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
                body = b"\x89PNG\r\n\x1a\n" if self.path.endswith(".png") else b"{}"
                self.send_response(200)
                self.send_header(
                    "Content-Type", "image/png" if body[:1] == b"\x89" else "application/json"
                )
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def keys_seen(self) -> list[str]:
        return [h["authorization"] for h in self.seen if "authorization" in h]


@pytest.fixture
def elsewhere() -> Iterator[Elsewhere]:
    other = Elsewhere()
    yield other
    other.server.shutdown()
    other.server.server_close()


def complete(line: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Ask for bash completion of `line`, as the shell does on TAB."""
    import shlex

    words = shlex.split(line)
    extra = {
        "COMP_WORDS": line,
        "COMP_CWORD": str(len(words) - (0 if line.endswith(" ") else 1)),
        "_PIXELDOJO_COMPLETE": "complete_bash",
    }
    return subprocess.run(
        [PYTHON, "-m", "pixeldojo_cli"],
        capture_output=True,
        text=True,
        env={**env, **extra},
        timeout=60,
    )


def job_body(**fields: Any) -> bytes:
    return json.dumps({"jobId": "job_x", "status": "completed", **fields}).encode()


# --- 1. one HTTP path for the key ----------------------------------------------------------


@pytest.mark.parametrize(
    "line", ["pixeldojo run fl", "pixeldojo models show fl", "pixeldojo run flux-dev -p asp"]
)
def test_completion_never_follows_a_redirect_with_the_key(
    emulator: Emulator, elsewhere: Elsewhere, line: str
) -> None:
    emulator.add_fault("redirect", status=302, location=f"{elsewhere.url}/steal", count=-1)
    done = complete(line, run_subprocess_env(emulator))
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert emulator.requests_to("GET", r"/models")  # it did ask the API...
    assert elsewhere.seen == []  # ...and did not follow it elsewhere, key or not


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_no_command_follows_an_api_redirect_with_the_key(
    emulator: Emulator, elsewhere: Elsewhere, cli: Invoke, status: int
) -> None:
    job_id = json.loads(cli("run", "flux-dev", "x", "--no-wait", "--json").stdout)["jobId"]
    emulator.add_fault("redirect", status=status, location=f"{elsewhere.url}/steal", count=-1)
    commands = [
        ["models"],
        ["models", "show", "flux-dev"],
        ["models", "schema", "flux-dev"],
        ["run", "flux-dev", "x", *FAST],
        ["jobs", "list"],
        ["jobs", "show", job_id],
        ["jobs", "wait", job_id, "--timeout", "2", *FAST],
        ["download", job_id],
        ["webhook", "replay", job_id],
        ["auth", "status"],
    ]
    for args in commands:
        result = cli(*args)
        assert result.exit_code in VALID_EXITS - {0}, (args, result.output)
        assert "Traceback" not in result.output
    login = make_invoker(emulator, key=None)("auth", "login", "--with-token", input=TEST_KEY)
    assert login.exit_code in VALID_EXITS - {0}
    assert elsewhere.seen == []


def test_an_output_on_the_api_origin_redirected_elsewhere_loses_the_key(
    emulator: Emulator, elsewhere: Elsewhere, cli: Invoke
) -> None:
    # The first hop is the API's own origin (so it carries the key); the next is not.
    on_api = emulator.base_url.replace("/api/v1", "/cdn/1.png")
    emulator.add_fault("status", status=200, method="GET", path=r"/jobs/", count=-1,
                       body=job_body(output={"images": [on_api]}))  # fmt: skip
    emulator.add_fault(
        "redirect", status=302, path=r"^/cdn/", location=f"{elsewhere.url}/x.png", count=-1
    )
    result = cli("download", "job_x")
    assert result.exit_code == 0, result.output
    [cdn] = emulator.requests_to("GET", r"^/cdn/")
    assert cdn.authorization == f"Bearer {TEST_KEY}"
    assert [h["path"] for h in elsewhere.seen] == ["/x.png"]
    assert elsewhere.keys_seen() == []


def test_a_redirect_chain_is_checked_and_bounded_at_every_hop(
    emulator: Emulator, elsewhere: Elsewhere, cli: Invoke
) -> None:
    loop = f"{emulator.files_url}/loop.png"
    emulator.add_fault("status", status=200, method="GET", path=r"/jobs/", count=-1,
                       body=job_body(output={"images": [loop]}))  # fmt: skip
    emulator.add_fault(
        "redirect", status=307, target="files", path=r"^/loop", location=loop, count=-1
    )
    result = cli("download", "job_x")
    assert result.exit_code == 10, result.output
    assert "redirected more than" in result.stderr
    assert len(emulator.requests_to(target="files")) == 11  # the first hop and 10 redirects


def test_no_module_builds_its_own_http_requests() -> None:
    # Every request goes through the one Transport: no second HTTP client in the package
    # (the emulator, a server that sends webhooks, never sees the key).
    offenders = []
    for path in (ROOT / "pixeldojo_cli").rglob("*.py"):
        if "emulator" in path.parts or path.name == "transport.py":
            continue
        text = path.read_text()
        if re.search(
            r"urllib\.request|http\.client|httpx\.(Client|get|post|stream|request)\(", text
        ):
            offenders.append(path.name)
    assert offenders == []


# --- 2. a key that cannot be a header ----------------------------------------------------


@pytest.mark.parametrize("padding", ["\n", "\r\n", "  ", "\t \r\n"])
def test_whitespace_around_a_key_is_dropped_wherever_it_comes_from(
    emulator: Emulator, isolated_env: Path, padding: str
) -> None:
    anon = make_invoker(emulator, key=None)
    sent = [
        anon("--api-key", TEST_KEY + padding, "jobs", "list"),
        anon("jobs", "list", env={"PIXELDOJO_API_KEY": padding + TEST_KEY + padding}),
        anon("auth", "login", "--with-token", input=TEST_KEY + padding),
        anon("jobs", "list"),  # with the key saved by that login
    ]
    assert [r.exit_code for r in sent] == [0, 0, 0, 0], [r.output for r in sent]
    saved = (isolated_env / "xdg_config_home" / "pixeldojo" / "config.toml").read_text()
    assert f'api_key = "{TEST_KEY}"' in saved
    checks = emulator.requests_to("GET", r"/jobs$")
    assert [r.authorization for r in checks] == [f"Bearer {TEST_KEY}"] * 4


BAD_KEYS = {
    "a control character inside": TEST_KEY[:10] + "\x1b" + TEST_KEY[10:],
    "a CR inside": TEST_KEY[:10] + "\r" + TEST_KEY[10:],
    "a DEL": TEST_KEY + "\x7f",
    "a space inside": TEST_KEY[:10] + " " + TEST_KEY[10:],
    "non-ASCII": TEST_KEY + "é",
    "a bidi override": "\u202e" + TEST_KEY,
}


@pytest.mark.parametrize("name", list(BAD_KEYS))
@pytest.mark.parametrize("source", ["flag", "env", "config", "login"])
def test_a_key_that_cannot_be_a_header_is_refused_before_any_request_without_showing_it(
    emulator: Emulator, isolated_env: Path, name: str, source: str
) -> None:
    key = BAD_KEYS[name]
    anon = make_invoker(emulator, key=None)
    if source == "flag":
        result = anon("--api-key", key, "jobs", "list", "--json")
    elif source == "env":
        result = anon("jobs", "list", "--json", env={"PIXELDOJO_API_KEY": key})
    elif source == "config":
        folder = isolated_env / "xdg_config_home" / "pixeldojo"
        folder.mkdir(parents=True)
        toml_string = json.dumps(key).replace("\x7f", "\\u007f")  # TOML escapes as JSON does
        (folder / "config.toml").write_text(
            f"[profiles.default]\napi_key = {toml_string}\n", encoding="utf-8"
        )
        (folder / "config.toml").chmod(0o600)
        result = anon("jobs", "list", "--json")
    else:
        result = anon("auth", "login", "--with-token", input=key)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    [line, *_] = result.stderr.splitlines()
    assert line.startswith("error: The API key") and "(invalid_api_key)" in line
    for part in (key, key.strip(), TEST_KEY, TEST_KEY[:10], TEST_KEY[10:]):
        assert part not in result.output
    assert emulator.requests == []
    if source != "login":
        assert json.loads(result.stdout)["error"]["code"] == "invalid_api_key"


def test_masking_covers_the_forms_a_key_takes_in_other_peoples_text() -> None:
    from urllib.parse import quote

    from pixeldojo_cli.cli.render import Renderer

    key = 'k3y/with"odd+chars%&<0123456789'
    in_html = key.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
    render = Renderer()
    render.add_secret(key + "\r\n")  # as it was given, with a newline
    forms = [
        f"Illegal header value b'Bearer {key}\\r\\n'",
        repr(f"Bearer {key}\r"),
        json.dumps(f"Bearer {key}"),
        json.dumps(json.dumps(key)),
        quote(key, safe=""),
        quote(key, safe="").lower(),
        key.replace("/", "\\/"),
        f"<b>{in_html}</b>",
    ]
    for text in forms:
        scrubbed = render.scrub(text)
        assert "6789" in scrubbed and "k3y" not in scrubbed, (text, scrubbed)


def test_masking_never_corrupts_text_for_a_key_too_short_to_be_one(emulator: Emulator) -> None:
    from pixeldojo_cli.core.redact import redact

    assert redact("pixeldojo models show x", "x") == "pixeldojo models show x"
    result = make_invoker(emulator, key="x")("models", "show", "nosuch")
    assert result.exit_code == 6
    assert "pixeldojo models" in result.stderr and "****" not in result.stderr


# --- 3. a key echoed by the server -----------------------------------------------------------


def key_parts_in(text: str) -> bool:
    from urllib.parse import quote

    return TEST_KEY in text or quote(TEST_KEY, safe="") in text or TEST_KEY[5:20] in text


def test_a_key_echoed_in_jobs_is_masked_before_any_output_file_or_ledger_row(
    make_emulator: Callable[..., Emulator], tmp_path: Path, isolated_env: Path
) -> None:
    emulator = make_emulator(echo_key=True)
    cli = make_invoker(emulator)
    run = cli("run", "flux-dev", "x", "--json", "-o", str(tmp_path / "out"), *FAST)
    assert run.exit_code == 0, run.output
    job = json.loads(run.stdout)
    assert job["request"]["headers"]["Authorization"] == "Bearer ****" + TEST_KEY[-4:]
    outputs = [
        run,
        cli("run", "flux-dev", "x", "--no-wait", "--json"),
        cli("jobs", "show", job["jobId"]),
        cli("jobs", "show", job["jobId"], "--json"),
        cli("jobs", "list", "--json"),
        cli("jobs", "wait", job["jobId"], "--no-download"),
        cli("download", job["jobId"], "-o", str(tmp_path / "again"), "--json"),
        cli("-v", "jobs", "show", job["jobId"]),
    ]
    for result in outputs:
        assert result.exit_code == 0, result.output
        assert not key_parts_in(result.output), result.output
    assert emulator.requests_to(target="files")  # the outputs were fetched all the same
    stored = [p for p in tmp_path.rglob("*") if p.is_file()]
    stored += [p for p in (isolated_env / "xdg_data_home").rglob("*") if p.is_file()]
    assert any(p.suffix == ".json" for p in stored)
    for path in stored:
        data = path.read_bytes()
        assert TEST_KEY.encode() not in data and TEST_KEY[5:20].encode() not in data, path


def test_a_key_echoed_in_an_error_message_is_masked(
    make_emulator: Callable[..., Emulator],
) -> None:
    emulator = make_emulator(key="the-only-key-that-works", echo_key=True)
    result = make_invoker(emulator)("jobs", "list", "--json")
    assert result.exit_code == 3
    assert "is not valid" in result.stderr  # the server did echo it...
    assert not key_parts_in(result.output)  # ...and it was masked
    assert "****" + TEST_KEY[-4:] in json.loads(result.stdout)["error"]["message"]


# --- 4. no downgrade at any hop ---------------------------------------------------------------


def test_an_https_output_redirected_to_plain_http_is_refused(
    tls_files: tuple[str, Path, list[str]],
    elsewhere: Elsewhere,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pixeldojo_cli.api.client import Client
    from pixeldojo_cli.core.errors import DownloadError
    from pixeldojo_cli.store.downloads import download_file

    https_url, cert, hits = tls_files
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    client = Client(api_key=TEST_KEY, base_url=elsewhere.url + "/api/v1")
    start = f"{https_url}/hop?to={elsewhere.url}/x.png"
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DownloadError) as caught:  # https -> https -> http
        download_file(client.transport, start, out, "job_1", 1)
    assert "plain http" in caught.value.message
    assert hits == ["/hop", "/hop2"]  # both https hops were followed...
    assert elsewhere.seen == []  # ...the plain-http one never asked for
    assert list(out.iterdir()) == []


def test_every_hop_is_checked_under_an_https_api() -> None:
    import httpx

    from pixeldojo_cli.api.transport import Transport
    from pixeldojo_cli.core.errors import DownloadError

    asked: list[tuple[str, str | None]] = []

    def server(request: httpx.Request) -> httpx.Response:
        asked.append((str(request.url), request.headers.get("authorization")))
        hops = {
            "https://api.example/o/1.png": "https://cdn.example/1.png",
            "https://cdn.example/1.png": "http://cdn.example/1.png",  # the downgrade
            "https://api.example/o/2.png": "ftp://cdn.example/2.png",
            "https://api.example/o/3.png": "http://api.example/o/3.png",
        }
        if str(request.url) in hops:
            return httpx.Response(302, headers={"Location": hops[str(request.url)]})
        return httpx.Response(200, content=b"x")

    http = httpx.Client(transport=httpx.MockTransport(server))
    transport = Transport("https://api.example/v1", TEST_KEY, http=http)
    for n in (1, 2, 3):
        with pytest.raises(DownloadError), transport.stream(f"https://api.example/o/{n}.png"):
            pass
    assert [url for url, _ in asked] == [
        "https://api.example/o/1.png",
        "https://cdn.example/1.png",
        "https://api.example/o/2.png",
        "https://api.example/o/3.png",
    ]
    # The key went with the API-origin hops only, never to the CDN.
    assert [key is not None for _, key in asked] == [True, False, True, True]


def test_an_http_api_upgrading_to_https_on_the_same_host_gets_no_key() -> None:
    import httpx

    from pixeldojo_cli.api.transport import Transport

    asked: list[tuple[str, str | None]] = []

    def server(request: httpx.Request) -> httpx.Response:
        asked.append((str(request.url), request.headers.get("authorization")))
        if request.url.scheme == "http":
            return httpx.Response(301, headers={"Location": "https://api.example/o/1.png"})
        return httpx.Response(200, content=b"x")

    http = httpx.Client(transport=httpx.MockTransport(server))
    transport = Transport("http://api.example/v1", TEST_KEY, http=http)
    with transport.stream("http://api.example/o/1.png") as response:
        assert response.read() == b"x"
    assert asked == [
        ("http://api.example/o/1.png", f"Bearer {TEST_KEY}"),
        ("https://api.example/o/1.png", None),  # another origin (scheme): no key
    ]


@pytest.fixture
def tls_files(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """An https file server on loopback: /hop -> /hop2 -> `to`; (URL, its certificate, paths)."""
    import shutil
    import ssl
    from urllib.parse import parse_qs, urlsplit

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    hits: list[str] = []

    class Hops(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            split = urlsplit(self.path)
            hits.append(split.path)
            to = parse_qs(split.query).get("to", [""])[0]
            self.send_response(302)
            self.send_header("Location", f"/hop2?to={to}" if split.path == "/hop" else to)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hops)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}", cert, hits
    server.shutdown()
    server.server_close()


# --- 5. server text never drives the terminal ------------------------------------------------

HOSTILE = {
    "clear screen": "\x1b[2J\x1b[H",
    "OSC 52 clipboard write": "\x1b]52;c;cm0gLXJmIH4=\x07",
    "window title": "\x1b]0;owned\x1b\\",
    "C1 CSI": "\x9b31m",
    "bidi override": "\u202egnp.exe",
    "zero width": "a\u200bb\ufeff",
    "line separator": "\u2028\u2029",
    "forged line": "\nerror: forged\r",
    "bell, backspace, DEL": "\x07\x08\x7f",
}
EVIL = "".join(HOSTILE.values())


def assert_inert(text: str, what: object = "") -> None:
    """Nothing in `text` that a terminal would act on, and no line forged from server text."""
    for ch in text:
        if ch in "\n\t":
            continue
        category = unicodedata.category(ch)
        assert category not in ("Cc", "Cf", "Cs", "Zl", "Zp"), (what, repr(ch), text[-300:])
    assert not re.search(r"^(error: forged|forged)", text, re.M), (what, text[-300:])


def test_safe_text_makes_every_control_and_format_character_visible() -> None:
    from pixeldojo_cli.core.text import safe_text

    for name, evil in HOSTILE.items():
        shown = safe_text(f"model {evil} end")
        assert_inert(shown, name)
        assert "\n" not in shown and shown.startswith("model ") and shown.endswith(" end")
    assert safe_text("\x1b]52;c;x\x07") == "\\u001b]52;c;x\\u0007"
    assert safe_text("a\nb\tc\rd") == "a\\nb\\tc\\rd"
    assert safe_text("\U000e0041") == "\\udb40\\udc41"  # a tag character, as JSON writes it
    for fine in ("Flux 1.1 [pro] — café ✓ 🎨 日本語 👩‍💻", "16:9", "a b", "\\u001b"):
        assert safe_text(fine) == fine.replace("\u200d", "\\u200d")


def test_the_unsafe_set_is_every_control_format_and_separator_character() -> None:
    from pixeldojo_cli.core.text import _UNSAFE

    for code in range(0x110000):
        ch = chr(code)
        category = unicodedata.category(ch)
        if category in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            assert _UNSAFE.match(ch), hex(code)
        elif category[0] in "LMNPSZ":
            assert not _UNSAFE.match(ch), hex(code)


def test_dump_json_is_exact_json_with_nothing_a_terminal_acts_on() -> None:
    from pixeldojo_cli.core.text import dump_json

    value = {"name": EVIL, EVIL: [EVIL, "\ud800", "\U000e0001", 1, None], "ok": "café 🎨"}
    text = dump_json(value)
    assert json.loads(text) == value
    assert_inert(text)
    assert "café 🎨" in text  # readable text stays as it is


def hostile_model() -> dict[str, Any]:
    param = {"type": "string", "description": f"desc {EVIL}", "enum": [f"v{EVIL}"]}
    return {
        "apiId": f"evil{EVIL}",
        "name": f"name {EVIL}",
        "description": f"about {EVIL}",
        "modality": f"image{EVIL}",
        "creditCost": 1,
        "features": [f"lora{EVIL}"],
        "requestSchema": {"type": "object", "properties": {f"p{EVIL}": param}},
    }


def serve_hostile_models(emulator: Emulator) -> None:
    emulator.add_fault("status", status=200, method="GET", path=r"/models$", count=-1,
                       body=json.dumps({"models": [hostile_model()]}))  # fmt: skip
    emulator.add_fault("status", status=200, method="GET", path=r"/models/evil$", count=-1,
                       body=json.dumps(hostile_model()))  # fmt: skip


def test_model_names_and_descriptions_are_inert_in_tables_tsv_show_and_json(
    emulator: Emulator, cli: Invoke
) -> None:
    serve_hostile_models(emulator)
    for args in (["models"], ["models", "show", "evil"], ["models", "--json"]):
        result = cli(*args)
        assert result.exit_code == 0, result.output
        assert_inert(result.output, args)
    listed = json.loads(cli("models", "--json").stdout)
    assert listed[0]["name"] == f"name {EVIL}"  # --json stays exact
    assert cli("models").stdout.count("\n") == 1  # one TSV line, one model


@pytest.mark.slow
def test_a_terminal_table_and_live_progress_stay_inert(emulator: Emulator, tmp_path: Path) -> None:
    serve_hostile_models(emulator)
    emulator.add_fault("status", status=200, method="GET", path=r"/jobs/job_x", count=2,
                       body=job_body(status=f"processing{EVIL}"))  # fmt: skip
    emulator.add_fault("status", status=200, method="GET", path=r"/jobs/job_x", count=-1,
                       body=job_body(status="failed", error=f"reason {EVIL}"))  # fmt: skip
    env = run_subprocess_env(emulator, TERM="xterm-256color", COLUMNS="200")
    env.pop("CI", None)
    for args in (["jobs", "wait", "job_x", *FAST], ["models", "show", "evil"], ["models"]):
        code, screen = run_on_terminal(args, env, tmp_path)
        assert code in (0, 5), screen
        assert "evil" in screen or "job_x" in screen  # it drew something
        for sequence in ("\x1b]", "\x1b[2J", "\x9b", "\u202e", "\x07", "\u2028", "\u200b"):
            assert sequence not in screen, (args, repr(sequence))


def run_on_terminal(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run with stdout and stderr on one pseudo-terminal; (exit code, all it drew)."""
    from conftest import run_in_pty

    return run_in_pty(args, env, cwd, stdout_too=True)


def test_error_messages_and_failed_jobs_are_inert_and_exact_under_json(
    emulator: Emulator, cli: Invoke
) -> None:
    emulator.add_fault("status", status=400, method="GET", path=r"/models/bad", count=-1,
                       message=f"no {EVIL}")  # fmt: skip
    emulator.add_fault("status", status=200, method="GET", path=r"/jobs/job_x", count=-1,
                       body=job_body(status="failed", error={"message": f"reason {EVIL}"}))  # fmt: skip
    for args, code in ((["models", "show", "bad"], 2), (["jobs", "wait", "job_x", *FAST], 5)):
        result = cli(*args)
        assert result.exit_code == code, result.output
        assert_inert(result.output, args)
        assert len(result.stderr.strip().splitlines()) <= 3  # one error line and its hint
    document = json.loads(cli("models", "show", "bad", "--json").stdout)
    assert document["error"]["message"] == f"no {EVIL}"


def test_statuses_ids_and_urls_are_inert_in_show_views_and_status_lines(
    emulator: Emulator, cli: Invoke
) -> None:
    hostile_job = job_body(
        jobId=f"job_x{EVIL}",
        status=f"completed{EVIL}",
        output={"images": [f"http://127.0.0.1:1/x.png?{EVIL}"]},
        model=f"m{EVIL}",
    )
    forged = f"job_\nforged{EVIL}"
    emulator.add_fault("status", status=200, method="GET", path=r"/jobs$", count=-1,
                       body=b'{"jobs": [' + hostile_job + b"]}")  # fmt: skip
    # Each job's own answer names it (an answer about another job is refused).
    emulator.add_fault("status", status=200, method="GET", path="/jobs/job_\nforged", count=-1,
                       body=hostile_job.replace(json.dumps(f"job_x{EVIL}").encode(),
                                                json.dumps(forged).encode()))  # fmt: skip
    emulator.add_fault(
        "status", status=200, method="GET", path=r"/jobs/", count=-1, body=hostile_job
    )
    emulator.add_fault("status", status=200, method="POST", path=r"/run$", count=-1,
                       body=job_body(jobId=forged, status="pending"))  # fmt: skip
    for args in (
        ["jobs", "show", f"job_x{EVIL}"],
        ["jobs", "list"],
        ["jobs", "wait", f"job_x{EVIL}", "--timeout", "1", *FAST],
        ["run", "flux-dev", "x", "--timeout", "1", "--progress", "plain", *FAST],
        ["run", "flux-dev", "x", "--no-wait"],
    ):
        result = cli(*args)
        assert result.exit_code in VALID_EXITS, (args, result.output)
        assert_inert(result.output, args)
    plain = cli("run", "flux-dev", "x", "--timeout", "1", "--progress", "plain", *FAST)
    assert re.search(r"^job_\\nforged.*: completed.* \(\d+s\)$", plain.stderr, re.M), plain.stderr


# --- 6. memory and decompression --------------------------------------------------------------


def peak_rss_kib(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, int, str]:
    """(exit code, peak resident memory in KiB, stderr) of one CLI process."""
    proc = subprocess.Popen(
        [PYTHON, "-m", "pixeldojo_cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
    )
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss, err


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.slow
def test_a_decompression_bomb_is_refused_in_a_few_mib(
    emulator: Emulator, tmp_path: Path, encoding: str
) -> None:
    env = run_subprocess_env(emulator)
    code, baseline, _ = peak_rss_kib(["models"], env, tmp_path)
    assert code == 0
    # ~2 MB on the wire that decodes to 2 GiB of spaces.
    emulator.add_fault("bomb", method="GET", path=r"/models$", encoding=encoding, count=-1)
    code, peak, err = peak_rss_kib(["models"], env, tmp_path)
    assert code == 10, err
    assert "larger than 16 MiB" in err and "Traceback" not in err
    assert peak - baseline < 40 * 1024, (baseline, peak)  # the cap, a 1 MiB step, change


def test_a_bomb_as_an_error_answer_or_a_submit_answer_is_refused(
    emulator: Emulator, cli: Invoke
) -> None:
    emulator.add_fault("bomb", status=503, method="GET", path=r"/models$", count=-1)
    emulator.add_fault("bomb", method="POST", path=r"/run$", count=-1)
    listed = cli("models")
    assert listed.exit_code == 10 and "16 MiB" in listed.stderr
    submitted = cli("run", "flux-dev", "x")
    assert submitted.exit_code == 10 and "pixeldojo jobs list" in submitted.stderr
    assert len(emulator.requests_to("POST", r"/run$")) == 1


def test_compressed_answers_are_still_read(emulator: Emulator, cli: Invoke) -> None:
    import gzip
    import zlib

    layers = {
        "gzip": gzip.compress,
        "deflate": zlib.compress,
        "raw deflate": lambda b: zlib.compress(b, wbits=-15),
        "gzip, gzip": lambda b: gzip.compress(gzip.compress(b)),
    }
    for name, pack in layers.items():
        emulator.faults.clear()
        header = "deflate" if "deflate" in name else name
        emulator.add_fault("status", status=200, method="GET", path=r"/jobs/job_x", count=-1,
                           body=pack(job_body(status="processing")),
                           headers={"Content-Encoding": header})  # fmt: skip
        result = cli("jobs", "show", "job_x", "--json")
        assert result.exit_code == 0, (name, result.output)
        assert json.loads(result.stdout)["status"] == "processing"
    emulator.faults.clear()
    emulator.add_fault("status", status=200, method="GET", path=r"/jobs/job_x", count=-1,
                       body=b"\x00" * 10, headers={"Content-Encoding": "br"})  # fmt: skip
    assert cli("jobs", "show", "job_x").exit_code == 10


DEEP_ENDPOINTS = [
    ("GET", r"/models$", ["models"]),
    ("GET", r"/models/flux-dev$", ["models", "show", "flux-dev"]),
    ("GET", r"/models/flux-dev/schema$", ["models", "schema", "flux-dev"]),
    ("GET", r"/jobs$", ["jobs", "list"]),
    ("GET", r"/jobs/job_x$", ["jobs", "show", "job_x"]),
    ("POST", r"/webhook$", ["webhook", "replay", "job_x"]),
    ("POST", r"/run$", ["run", "flux-dev", "x"]),
]


@pytest.mark.parametrize("depth", [65, 900, 100_000])
@pytest.mark.parametrize(
    ("method", "path", "args"), DEEP_ENDPOINTS, ids=[" ".join(e[2][:2]) for e in DEEP_ENDPOINTS]
)
def test_an_answer_nested_too_deep_is_exit_10_never_a_traceback(
    emulator: Emulator, cli: Invoke, method: str, path: str, args: list[str], depth: int
) -> None:
    emulator.add_fault("deep", method=method, path=path, depth=depth, count=-1)
    for extra in ([], ["--json"]):
        result = cli(*args, *extra)
        assert result.exit_code == 10, (args, result.output)
        assert "nested more than" in result.stderr and "Traceback" not in result.output
        if method == "POST" and path == r"/run$":
            assert "pixeldojo jobs list" in result.stderr  # the job may exist


def test_an_error_answer_nested_too_deep_still_gives_its_status(
    emulator: Emulator, cli: Invoke
) -> None:
    deep = b'{"error": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    emulator.add_fault("status", status=404, method="GET", path=r"/models/x$", count=-1, body=deep)
    result = cli("models", "show", "x")
    assert result.exit_code == 6, result.output


# --- 7. exit 1 only for bugs ------------------------------------------------------------------


def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    "args",
    [
        ["-p", "seed=" + "9" * 5000],
        ["-p", "num_outputs=" + "1" * 5000],
        ["-p", "seed:=" + "9" * 5000],
        ["-p", "lora_url:=" + deep_json(5000)],
        ["-p", "lora_url:=" + deep_json(100)],
        ["-p", "prompt:=" + deep_json(100_000)],
        ["-p", "guidance:=1" + "0" * 400],
        ["-p", "seed=1" + "0" * 400],
    ],
    ids=lambda a: a[1][:24],
)
def test_huge_numbers_and_deep_json_in_inputs_are_exit_2(cli: Invoke, args: list[str]) -> None:
    result = cli("run", "flux-dev", "x", *args, "--dry-run")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.stderr.startswith("error: ")


@pytest.mark.parametrize("depth", [100, 5000, 100_000])
def test_an_input_or_batch_file_nested_thousands_deep_is_exit_2(
    cli: Invoke, tmp_path: Path, depth: int
) -> None:
    inputs = tmp_path / "in.json"
    inputs.write_text('{"prompt": "x", "image_urls": ' + deep_json(depth) + "}")
    batch = tmp_path / "batch.jsonl"
    batch.write_text('{"prompt": ' + deep_json(depth) + "}\n")
    for args in (["--input", str(inputs)], ["--batch", str(batch)]):
        result = cli("run", "flux-dev", *args, "--dry-run")
        assert result.exit_code == 2, result.output
        assert "nested more than" in result.stderr


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:1/a\x01b.png", "http://127.0.0.1:1/\x7f.png", "http://[::1/x.png"]
)
def test_an_output_url_that_is_no_url_is_a_download_error(
    emulator: Emulator, cli: Invoke, url: str
) -> None:
    emulator.add_fault("status", status=200, method="GET", path=r"/jobs/job_x", count=-1,
                       body=job_body(output={"images": [url]}))  # fmt: skip
    result = cli("download", "job_x")
    assert result.exit_code == 10, result.output
    assert "(download_failed)" in result.stderr and "Traceback" not in result.output
    assert_inert(result.output)


def closed_stdout_run(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run with stdout a pipe whose reader has already gone (`| head -1`, finished)."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [PYTHON, "-m", "pixeldojo_cli", *args],
            stdout=write,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            timeout=60,
        )
    finally:
        os.close(write)
    return done.returncode, done.stderr.decode()


@pytest.mark.parametrize(
    "args",
    [
        ["models", "show", "flux-dev"],
        ["models"],
        ["models", "--json"],
        ["models", "schema", "flux-dev"],
        ["--help"],
        ["run", "--help"],
    ],
)
def test_a_reader_that_went_away_ends_quietly_as_sigpipe_does(
    emulator: Emulator, tmp_path: Path, args: list[str]
) -> None:
    code, err = closed_stdout_run(args, run_subprocess_env(emulator), tmp_path)
    assert (code, err) == (141, "")


def test_a_pipe_closed_by_head_after_one_line_ends_quietly(
    emulator: Emulator, tmp_path: Path
) -> None:
    env = run_subprocess_env(emulator)
    done = subprocess.run(
        f"'{PYTHON}' -m pixeldojo_cli models show flux-dev | head -1; echo \"${{PIPESTATUS[0]}}\" >&2",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.stdout.count("\n") == 1
    *lines, status = done.stderr.splitlines()
    assert status in ("0", "141")  # 0 when it all fitted in the pipe before head left
    assert not any(line.startswith(("error", "Traceback", "Exception")) for line in lines)


NON_TEXT = ["12345678901234", '["a", "b"]', "true", "1.5", "{ a = 1 }", "1979-05-27T07:32:00Z"]


@pytest.mark.parametrize("value", NON_TEXT)
@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("profiles.default", "api_key"),
        ("profiles.default", "base_url"),
        ("defaults", "base_url"),
        ("defaults", "output_dir"),
        ("defaults", "rate_limit"),
        ("defaults", "poll_interval"),
        ("defaults", "max_poll_interval"),
        ("defaults", "checksum"),
    ],
)
def test_any_type_for_any_setting_is_a_one_line_config_error(
    cli: Invoke, isolated_env: Path, table: str, key: str, value: str
) -> None:
    folder = isolated_env / "xdg_config_home" / "pixeldojo"
    folder.mkdir(parents=True)
    path = folder / "config.toml"
    path.write_text(f"[{table}]\n{key} = {value}\n")
    for args in (["jobs", "list"], ["auth", "status", "--json"], ["config", "list"], ["models"]):
        result = cli(*args, env={"PIXELDOJO_API_KEY": ""})
        assert result.exit_code in {0, 2, 3}, (args, result.output)
        assert "Traceback" not in result.output and "This is a bug" not in result.output
        if result.exit_code == 2:
            assert str(path) in result.stderr and "(config_error)" in result.stderr
        if key == "api_key":
            assert "12345678901234" not in result.output


def test_the_error_report_itself_never_raises() -> None:
    from pixeldojo_cli.cli.render import Renderer
    from pixeldojo_cli.core.errors import PixelDojoError

    render = Renderer()
    render.add_secret(12345678901234)  # not a string: ignored
    render.add_secret(["a list"])
    error = PixelDojoError(12345)  # type: ignore[arg-type]
    assert render.scrub(error.message) == "12345"
    render.error(error, json_output=True)  # prints, raises nothing


@pytest.mark.slow
def test_the_hostile_shapes_never_give_exit_1(emulator: Emulator) -> None:
    # The same hostile shapes, run the way a user's shell runs the program.
    env = run_subprocess_env(emulator)
    for args in (
        ["run", "flux-dev", "x", "-p", "seed=" + "9" * 5000, "--dry-run"],
        ["run", "flux-dev", "x", "-p", "x:=" + deep_json(50_000), "--dry-run"],
        ["--api-key", TEST_KEY + "\x01", "jobs", "list"],
    ):
        done = pixeldojo(*args, env=env)
        assert done.returncode == 2, (args[:3], done.stderr)
        assert "Traceback" not in done.stderr


def test_an_argument_of_bytes_that_are_not_utf8_is_exit_2(
    emulator: Emulator, tmp_path: Path
) -> None:
    env = {**run_subprocess_env(emulator), "LC_ALL": "C.UTF-8"}
    done = subprocess.run(
        [
            PYTHON.encode(),
            b"-m",
            b"pixeldojo_cli",
            b"run",
            b"flux-dev",
            b"a\xffb",
            *map(str.encode, FAST),
        ],
        capture_output=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert b"not valid Unicode text" in done.stderr and b"Traceback" not in done.stderr
    assert not emulator.requests_to("POST", r"/run$")


@pytest.mark.parametrize(
    "config",
    [
        "x = " + "[" * 3000 + "1" + "]" * 3000,
        "x = " + "{a = " * 3000 + "1" + "}" * 3000,
        "[defaults]\npoll_interval = 1e300",
        "[defaults]\nmax_poll_interval = 86400",
    ],
    ids=["arrays 3000 deep", "tables 3000 deep", "poll 1e300", "a day"],
)
def test_config_files_that_cannot_work_are_one_line_errors(
    cli: Invoke, isolated_env: Path, config: str
) -> None:
    folder = isolated_env / "xdg_config_home" / "pixeldojo"
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text(config + "\n")
    (folder / "config.toml").chmod(0o600)
    result = cli("run", "flux-dev", "x", *FAST)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and "(config_error)" in result.stderr


def test_an_api_redirect_names_where_it_pointed(
    emulator: Emulator, elsewhere: Elsewhere, cli: Invoke
) -> None:
    emulator.add_fault("redirect", status=301, location=f"{elsewhere.url}/api/v1/models")
    result = cli("models")
    assert result.exit_code == 10
    assert f"redirected GET /api/v1/models to {elsewhere.url}/api/v1/models" in result.stderr
    assert "base URL" in result.stderr and elsewhere.seen == []


def test_a_page_long_error_message_is_cut(emulator: Emulator, cli: Invoke) -> None:
    emulator.add_fault("status", status=400, path=r"/models/x$", message="no " * 10_000)
    result = cli("models", "show", "x")
    assert result.exit_code == 2
    [line, *_] = result.stderr.splitlines()
    assert line.endswith("... (validation_error)") and len(line) < 1100
