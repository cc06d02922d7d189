"""Output URLs cannot reach inside the network (issue 24, class 11).

An API names its outputs' URLs; a hostile one names `http://169.254.169.254/...`
or a loopback service. Downloads connect only to public addresses unless the
API itself is on a private one, or `allow_private_outputs` decides. Nothing
here leaves loopback: "inside the network" is a recording server on 127.0.0.2,
"public" an address a stub resolver hands out and nothing ever connects to.
"""

from __future__ import annotations

import contextlib
import json
import queue
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pixeldojo_cli.api import addresses
from pixeldojo_cli.api.addresses import AddressGuard, OutputAddressRefused
from pixeldojo_cli.api.transport import Transport
from pixeldojo_cli.core.errors import DownloadError, OutputRefusedError
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.store.downloads import download_file

from conftest import FAST, PYTHON, TEST_KEY, Invoke, make_invoker, run_subprocess_env

PUBLIC = "93.184.216.34"  # handed out by stub resolvers only: never connected to
NEVER_AGAIN = ("Retry", "try again", "Try again", "pixeldojo download")


# --- a server inside the network, and resolvers that never ask the internet ----------------


class Inside:
    """An HTTP server on 127.0.0.2 that counts every connection made to it."""

    def __init__(self, host: str = "127.0.0.2", context: ssl.SSLContext | None = None) -> None:
        self.connections = 0
        self.hosts: list[str] = []
        outer = self

        class Serve(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hosts.append(self.headers.get("Host", ""))
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", "4")
                self.end_headers()
                self.wfile.write(b"\x89PNG")

            def log_message(self, *args: Any) -> None:
                pass

        class Counting(ThreadingHTTPServer):
            def verify_request(self, request: Any, client_address: Any) -> bool:
                outer.connections += 1
                return True

        self.server = Counting((host, 0), Serve)
        if context is not None:
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def inside() -> Iterator[Inside]:
    try:
        server = Inside()
    except OSError:
        pytest.skip("127.0.0.2 is not a loopback address here")
    yield server
    server.close()


def numeric_only(host: str, port: int, family: int, kind: int) -> Sequence[tuple[Any, ...]]:
    """The system's resolver for literal addresses only (every spelling of one that
    a resolver accepts): it never asks DNS."""
    return socket.getaddrinfo(host, port, family, kind, 0, socket.AI_NUMERICHOST)


def stub(names: dict[str, list[str]], calls: list[str] | None = None) -> addresses.Resolver:
    """A resolver for made-up names (then literal addresses); `calls` records each name asked."""

    def resolve(host: str, port: int, family: int, kind: int) -> Sequence[tuple[Any, ...]]:
        if calls is not None:
            calls.append(host)
        if host in names:
            return [info for a in names[host] for info in numeric_only(a, port, family, kind)]
        return numeric_only(host, port, family, kind)

    return resolve


def transport_for(
    base_url: str, allow: bool | None, resolver: addresses.Resolver, **knobs: Any
) -> Transport:
    """A Transport whose output downloads resolve through `resolver`."""
    transport = Transport(base_url, TEST_KEY, allow_private_outputs=allow, **knobs)
    transport.output_guard.resolver = resolver
    return transport


def fetch(transport: Transport, url: str, folder: Path, attempts: int = 5) -> Path:
    folder.mkdir(exist_ok=True)
    return download_file(
        transport, url, folder, "job_x", 1, max_attempts=attempts, sleep=lambda _: None
    ).path


# --- the address rule, on a table of hostile hosts ------------------------------------------

HOSTILE = [
    *("127.0.0.1", "127.255.255.254", "2130706433", "0x7f.1", "0x7f000001", "017700000001"),
    *("127.1", "0", "0.0.0.0", "::", "[::]", "::1", "[::1]", "0:0:0:0:0:0:0:1"),
    *("::ffff:127.0.0.1", "::ffff:7f00:1", "::ffff:169.254.169.254", "::ffff:10.0.0.1"),
    *("::127.0.0.1", "::a9fe:a9fe"),  # IPv4-compatible (deprecated) forms
    *("169.254.169.254", "169.254.0.1", "10.0.0.1", "172.16.0.1", "192.168.1.1"),
    *("100.64.0.1", "192.0.0.8", "198.18.0.1", "192.0.2.1", "224.0.0.1", "239.255.255.250"),
    *(
        "240.0.0.1",
        "255.255.255.255",
        "fe80::1",
        "fe80::1%1",
        "fe80::1%25lo",
        "fc00::1",
        "fd00:ec2::254",
    ),
    *("fec0::1", "ff02::1", "ff0e::1", "2001:db8::1"),
    *("2002:7f00:1::", "2002:a9fe:a9fe::1", "2002:c0a8:101::"),  # 6to4 around private ones
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo whose client is 127.0.0.1
    *("64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::10.0.0.1"),  # NAT64 of private ones
    *("localhost", "metadata.google.internal", "mixed.invalid"),  # names: see NAMES
]
NAMES = {
    "localhost": ["127.0.0.1", "::1"],
    "metadata.google.internal": ["169.254.169.254"],
    "mixed.invalid": [PUBLIC, "10.0.0.1"],  # one private address among public ones is enough
    "public.invalid": [PUBLIC, "2606:4700:4700::1111"],
}
PUBLIC_HOSTS = [
    *("8.8.8.8", "1.1.1.1", PUBLIC, "2606:4700:4700::1111", "::ffff:8.8.8.8"),
    *("64:ff9b::808:808", "2002:808:808::", "public.invalid"),
]


@pytest.mark.parametrize("host", HOSTILE)
def test_the_address_rule_refuses_every_address_inside_the_network(host: str) -> None:
    guard = AddressGuard(False, "api.invalid", resolver=stub(NAMES))
    with pytest.raises(OutputAddressRefused) as refused:
        guard.checked(host, 80)
    assert refused.value.why.startswith(("a ", "an ")) and "address" in refused.value.why


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("169.254.169.254", "a link-local address"),
        ("2130706433", "a loopback address"),
        ("10.0.0.1", "a private address"),
        ("[::]", "an unspecified address"),
        ("239.255.255.250", "a multicast address"),
        ("2002:7f00:1::", "a loopback address (127.0.0.1) inside an IPv6 address"),
        ("64:ff9b::a9fe:a9fe", "a link-local address (169.254.169.254) inside an IPv6 address"),
    ],
)
def test_the_refusal_says_what_kind_of_address_it_is(host: str, why: str) -> None:
    with pytest.raises(OutputAddressRefused) as refused:
        AddressGuard(False, "api.invalid", resolver=numeric_only).checked(host, 80)
    assert refused.value.why == why


@pytest.mark.parametrize("host", PUBLIC_HOSTS)
def test_the_address_rule_lets_public_addresses_through(host: str) -> None:
    guard = AddressGuard(False, "api.invalid", resolver=stub(NAMES))
    assert guard.checked(host, 80)


@pytest.mark.parametrize(
    ("setting", "api_host", "allowed"),
    [
        (None, "127.0.0.1", True),
        (None, "::1", True),
        (None, "localhost", True),  # every address of the API's name is inside
        (None, "10.1.2.3", True),
        (None, "public.invalid", False),
        (None, "mixed.invalid", False),
        (None, "unknown.invalid", False),  # unresolvable: the strict rule
        (False, "127.0.0.1", False),  # false refuses even next to a loopback API
        (True, "public.invalid", True),  # true allows whatever the API's address
    ],
)
def test_private_outputs_are_allowed_by_the_setting_or_else_by_the_apis_own_address(
    setting: bool | None, api_host: str, allowed: bool
) -> None:
    guard = AddressGuard(setting, api_host, resolver=stub(NAMES))
    assert guard.private_allowed() is allowed


# --- downloads, through the library ----------------------------------------------------


def test_an_output_inside_the_network_is_refused_before_any_connection(
    inside: Inside, tmp_path: Path
) -> None:
    transport = transport_for("http://public.invalid/api/v1", None, stub(NAMES))
    with pytest.raises(OutputRefusedError) as error:
        fetch(transport, f"{inside.url}/x.png", tmp_path / "out")
    message = error.value.message
    assert f"{inside.url}/x.png" in message and "127.0.0.2 is a loopback address" in message
    assert inside.connections == 0 and list((tmp_path / "out").iterdir()) == []
    assert error.value.exit_code == 10
    assert not any(word in error.value.hint for word in NEVER_AGAIN)


def test_allow_private_outputs_true_allows_them_next_to_a_public_api(
    inside: Inside, tmp_path: Path
) -> None:
    transport = transport_for("http://public.invalid/api/v1", True, stub(NAMES))
    assert fetch(transport, f"{inside.url}/x.png", tmp_path).read_bytes() == b"\x89PNG"
    assert inside.connections == 1


def test_a_name_is_judged_by_the_address_it_resolves_to(inside: Inside, tmp_path: Path) -> None:
    names = {**NAMES, "files.invalid": ["127.0.0.2"]}
    transport = transport_for("http://public.invalid/api/v1", None, stub(names))
    with pytest.raises(
        OutputRefusedError, match=r"files\.invalid resolves to 127\.0\.0\.2, a loopback"
    ):
        fetch(transport, f"http://files.invalid:{inside.port}/x.png", tmp_path)
    assert inside.connections == 0


def test_the_address_checked_is_the_address_connected_to(inside: Inside, tmp_path: Path) -> None:
    """A name resolved once, then to somewhere else (DNS rebinding): the download
    goes to the first answer, the one that was checked, and nothing resolves the
    name again (the system could not: `.invalid` names resolve nowhere)."""
    calls: list[str] = []
    answers = iter([["127.0.0.2"], ["127.0.0.3"], ["127.0.0.3"]])

    def rebinding(host: str, port: int, family: int, kind: int) -> Sequence[tuple[Any, ...]]:
        if host == "files.invalid":
            calls.append(host)
            return [numeric_only(a, port, family, kind)[0] for a in next(answers)]
        return numeric_only(host, port, family, kind)

    transport = transport_for("http://127.0.0.1:9/api/v1", True, rebinding)
    saved = fetch(transport, f"http://files.invalid:{inside.port}/x.png", tmp_path)
    assert saved.read_bytes() == b"\x89PNG" and calls == ["files.invalid"]
    assert inside.hosts == [f"files.invalid:{inside.port}"], "the URL's host, not the address"


def test_a_refused_address_is_not_retried(inside: Inside, tmp_path: Path) -> None:
    calls: list[str] = []
    names = {**NAMES, "files.invalid": ["127.0.0.2"]}
    transport = transport_for("http://public.invalid/api/v1", None, stub(names, calls))
    with pytest.raises(OutputRefusedError):
        fetch(transport, f"http://files.invalid:{inside.port}/x.png", tmp_path, attempts=5)
    assert calls.count("files.invalid") == 1 and inside.connections == 0


def test_every_redirect_hop_is_checked(
    make_emulator: Callable[..., Emulator],
    inside: Inside,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """127.0.0.1 stands for a public file host here; its redirect to 127.0.0.2 is refused."""
    real = addresses.why_refused
    monkeypatch.setattr(
        addresses, "why_refused", lambda a: None if str(a) == "127.0.0.1" else real(a)
    )
    emulator = make_emulator()
    emulator.add_fault("redirect", target="files", status=302, location=f"{inside.url}/x.png")
    transport = transport_for(emulator.base_url, False, numeric_only)
    first = f"{emulator.files_url}/outputs/job_x/1.png"
    with pytest.raises(OutputRefusedError) as error:
        fetch(transport, first, tmp_path)
    assert f"{first} (it redirects to {inside.url}/x.png)" in error.value.message
    assert emulator.requests_to(target="files") and inside.connections == 0


def test_downloads_never_go_through_a_proxy_from_the_environment(
    inside: Inside, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The address checked is the one connected to: no HTTP(S)_PROXY in between."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, inside.url)
    target = Inside("127.0.0.1")
    try:
        transport = transport_for("http://127.0.0.1:9/api/v1", None, numeric_only)
        assert fetch(transport, f"{target.url}/x.png", tmp_path / "out").read_bytes() == b"\x89PNG"
    finally:
        target.close()
    assert target.connections == 1 and inside.connections == 0


@pytest.fixture
def certificate(tmp_path: Path) -> Callable[[str], tuple[Path, Path]]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")

    def make(name: str) -> tuple[Path, Path]:
        cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
                *("-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}"),
                *("-keyout", str(key), "-out", str(cert)),
            ],
            check=True,
            capture_output=True,
        )
        return cert, key

    return make


@pytest.mark.parametrize("served_name", ["files.test", "other.test"])
def test_https_outputs_are_verified_against_the_urls_name_not_the_address(
    served_name: str,
    certificate: Callable[[str], tuple[Path, Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Connected to the checked address, TLS still checks the certificate against
    the URL's name (sent as SNI): `files.test` verifies, `other.test` fails."""
    cert, key = certificate(served_name)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    names_seen: list[str | None] = []
    context.sni_callback = lambda _sock, name, _ctx: names_seen.append(name)  # type: ignore[assignment,func-returns-value]
    server = Inside("127.0.0.1", context)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    try:
        names = {"files.test": ["127.0.0.1"]}
        transport = transport_for("https://public.invalid/api/v1", True, stub(names))
        url = f"https://files.test:{server.port}/x.png"
        if served_name == "files.test":
            assert fetch(transport, url, tmp_path / "out").read_bytes() == b"\x89PNG"
        else:
            with pytest.raises(DownloadError, match="CERTIFICATE_VERIFY_FAILED"):
                fetch(transport, url, tmp_path / "out", attempts=1)
    finally:
        server.close()
    assert names_seen and set(names_seen) == {"files.test"}


# --- every command that downloads ------------------------------------------------------


def cli_for(make_emulator: Callable[..., Emulator], base: str) -> tuple[Emulator, Invoke]:
    emulator = make_emulator(output_base_url=base)
    return emulator, make_invoker(emulator)


def refuse_env() -> dict[str, str]:
    return {"PIXELDOJO_ALLOW_PRIVATE_OUTPUTS": "false"}


def assert_refused_once(stderr: str, inside: Inside, folder: Path) -> None:
    """One refusal line naming the output URL and why; no hint to try again; no
    connection to the server inside; no file saved."""
    lines = [x for x in stderr.splitlines() if "Refusing to download" in x]
    assert len(lines) == 1, stderr
    assert f"{inside.url}/outputs/job_" in lines[0] and "a loopback address" in lines[0]
    assert not any(word in stderr for word in NEVER_AGAIN), stderr
    assert "Traceback" not in stderr and TEST_KEY not in stderr
    assert inside.connections == 0
    assert not list(folder.glob("job_*.png"))


def test_run_refuses_an_output_inside_the_network(
    make_emulator: Callable[..., Emulator], inside: Inside, tmp_path: Path
) -> None:
    _, cli = cli_for(make_emulator, inside.url)
    result = cli("run", "flux-dev", "x", "-o", "out", *FAST, env=refuse_env())
    assert result.exit_code == 10, result.stderr
    assert_refused_once(result.stderr, inside, tmp_path / "out")


def test_jobs_wait_and_download_refuse_an_output_inside_the_network(
    make_emulator: Callable[..., Emulator], inside: Inside, tmp_path: Path
) -> None:
    _, cli = cli_for(make_emulator, inside.url)
    job_id = cli("run", "flux-dev", "x", "--no-wait").stdout.strip()
    waited = cli("jobs", "wait", job_id, "-o", "out", *FAST, env=refuse_env())
    assert waited.exit_code == 10, waited.stderr
    assert_refused_once(waited.stderr, inside, tmp_path / "out")
    downloaded = cli("download", job_id, "-o", "out", env=refuse_env())
    assert downloaded.exit_code == 10, downloaded.stderr
    assert_refused_once(downloaded.stderr, inside, tmp_path / "out")


def test_download_pending_refuses_an_output_inside_the_network(
    make_emulator: Callable[..., Emulator], inside: Inside, tmp_path: Path
) -> None:
    _, cli = cli_for(make_emulator, inside.url)
    job_id = cli("run", "flux-dev", "x", "--no-wait").stdout.strip()
    assert cli("jobs", "wait", job_id, "--no-download", *FAST).exit_code == 0
    swept = cli("download", "--pending", env=refuse_env())
    assert swept.exit_code == 10, swept.stderr
    assert_refused_once(swept.stderr, inside, tmp_path)


def test_a_batch_refuses_outputs_inside_the_network(
    make_emulator: Callable[..., Emulator], inside: Inside, tmp_path: Path
) -> None:
    _, cli = cli_for(make_emulator, inside.url)
    (tmp_path / "b.txt").write_text("a fox\n")
    result = cli("run", "flux-dev", "--batch", "b.txt", "-o", "out", *FAST, env=refuse_env())
    assert result.exit_code == 10, result.stderr
    assert_refused_once(result.stderr, inside, tmp_path / "out")


def read_until(lines: queue.Queue[str], seen: list[str], text: str, seconds: float = 20) -> str:
    """Lines into `seen` until one holds `text` (returned), for at most `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = next((x for x in seen if text in x), None)
        if found is not None:
            return found
        with contextlib.suppress(queue.Empty):
            seen.append(lines.get(timeout=0.5))
    raise AssertionError(f"no line with {text!r} in {seen}")


def test_webhook_listen_refuses_an_output_inside_the_network(
    make_emulator: Callable[..., Emulator], inside: Inside, tmp_path: Path
) -> None:
    emulator, cli = cli_for(make_emulator, inside.url)
    listener = subprocess.Popen(
        [PYTHON, "-m", "pixeldojo_cli", "webhook", "listen", "--port", "0", "-o", "out"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=run_subprocess_env(emulator, **refuse_env()),
        cwd=tmp_path,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in listener.stderr or ()])
    reader.start()
    seen: list[str] = []
    try:
        url = read_until(lines, seen, "Listening on").split("Listening on ", 1)[1].split()[0]
        job_id = cli("run", "flux-dev", "x", "--no-wait", "--webhook-url", url).stdout.strip()
        read_until(lines, seen, "Refusing to download")
    finally:
        listener.send_signal(signal.SIGTERM)
        listener.wait(timeout=30)
        reader.join(timeout=10)
    while not lines.empty():
        seen.append(lines.get())
    stderr = "\n".join(seen)
    assert job_id in stderr and "Stopped." in stderr
    assert_refused_once(stderr, inside, tmp_path / "out")


def test_by_default_a_loopback_api_may_have_loopback_outputs(
    make_emulator: Callable[..., Emulator], inside: Inside, tmp_path: Path
) -> None:
    _, cli = cli_for(make_emulator, inside.url)
    for setting in ({}, {"PIXELDOJO_ALLOW_PRIVATE_OUTPUTS": "true"}):
        result = cli("run", "flux-dev", "x", "-o", "out", *FAST, env=setting)
        assert result.exit_code == 0, result.stderr
        assert Path(result.stdout.strip()).read_bytes() == b"\x89PNG"
    assert inside.connections == 2


@pytest.mark.parametrize(
    "base", ["file:///etc", "data:text/plain,x", "ftp://127.0.0.1", "http://[::1"]
)
def test_hints_never_suggest_retrying_an_output_that_can_never_work(
    make_emulator: Callable[..., Emulator], base: str
) -> None:
    _, cli = cli_for(make_emulator, base)
    result = cli("run", "flux-dev", "x", *FAST)
    assert result.exit_code == 10 and "Refusing to download" in result.stderr, result.stderr
    assert not any(word in result.stderr for word in NEVER_AGAIN), result.stderr


# --- the setting ---------------------------------------------------------------------


def test_the_setting_comes_from_the_environment_or_the_config_file(
    make_emulator: Callable[..., Emulator], inside: Inside, tmp_path: Path
) -> None:
    _, cli = cli_for(make_emulator, inside.url)
    assert cli("config", "set", "allow_private_outputs", "false").exit_code == 0
    got = cli("config", "get", "allow_private_outputs")
    assert got.stdout.strip() == "false" and "config file" in got.stderr
    listed = json.loads(cli("config", "list", "--json").stdout)["settings"]
    assert listed["allow_private_outputs"]["value"] is False
    refused = cli("run", "flux-dev", "x", "-o", "out", *FAST)
    assert refused.exit_code == 10 and inside.connections == 0
    env = {"PIXELDOJO_ALLOW_PRIVATE_OUTPUTS": "true"}  # the environment wins over the file
    assert cli("config", "get", "allow_private_outputs", env=env).stdout.strip() == "true"
    assert cli("run", "flux-dev", "x", "-o", "out", *FAST, env=env).exit_code == 0
    assert cli("config", "unset", "allow_private_outputs").exit_code == 0
    unset = json.loads(cli("config", "list", "--json").stdout)["settings"]
    assert unset["allow_private_outputs"] == {"value": None, "source": "default"}


def test_a_bad_value_is_one_line_naming_where_it_came_from(cli: Invoke, tmp_path: Path) -> None:
    from_env = cli("run", "flux-dev", "x", env={"PIXELDOJO_ALLOW_PRIVATE_OUTPUTS": "maybe"})
    assert from_env.exit_code == 2
    assert from_env.stderr.splitlines()[0].startswith("error: In $PIXELDOJO_ALLOW_PRIVATE_OUTPUTS")
    assert "allow_private_outputs must be true or false" in from_env.stderr
    assert cli("config", "set", "allow_private_outputs", "sometimes").exit_code == 2
    config = tmp_path / "home" / "xdg_config_home" / "pixeldojo" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('[defaults]\nallow_private_outputs = "perhaps"\n')
    from_file = cli("download", "--pending")
    assert from_file.exit_code == 2 and str(config) in from_file.stderr.splitlines()[0]
    assert "Traceback" not in from_env.stderr + from_file.stderr
