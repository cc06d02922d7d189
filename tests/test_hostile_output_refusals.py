"""Output URLs cannot reach inside the network, round two (issue 24, class 11).

An outside review of the first fix found: the "API is on a private address"
rule trusted a DNS answer the API controls; URLs the server writes that no
parser reads (`xn--` hosts, `http:\\\\host`, a tab) ended in "this is a bug" or
in five retries; a refused job stayed pending for every sweep. Nothing here
leaves loopback: "inside the network" is a recording server on 127.0.0.2.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from test_hostile_output_urls import (
    NEVER_AGAIN,
    Inside,
    fetch,
    inside,  # noqa: F401 - the fixture
    numeric_only,
    stub,
    transport_for,
)

from pixeldojo_cli.api.addresses import AddressGuard
from pixeldojo_cli.api.transport import Transport
from pixeldojo_cli.core.errors import OutputRefusedError
from pixeldojo_cli.emulator import Emulator

from conftest import FAST, TEST_KEY, Invoke, make_invoker

# --- the API's own address is the base URL's text, never a DNS answer ----------------------


@pytest.mark.parametrize("api_host", ["api.example.test", "files.example.test"])
def test_the_apis_own_address_is_never_taken_from_dns(api_host: str) -> None:
    """A hostile API answers its own name with a private address for the check
    (and a public one for the connection): the name still counts as public,
    and nothing asks the resolver about it."""
    calls: list[str] = []
    guard = AddressGuard(None, api_host, resolver=stub({api_host: ["127.0.0.9"]}, calls))
    assert guard.private_allowed() is False
    assert calls == []


@pytest.mark.parametrize(
    "api_host",
    ["127.0.0.1", "127.1", "2130706433", "[::1]", "10.1.2.3", "localhost", "API.localhost."],
)
def test_an_api_on_an_address_literal_inside_or_on_localhost_allows_private_outputs(
    api_host: str,
) -> None:
    calls: list[str] = []
    guard = AddressGuard(None, api_host, resolver=stub({}, calls))
    assert guard.private_allowed() is True and calls == []


def test_an_api_whose_name_resolves_inside_the_network_gets_no_private_outputs(
    make_emulator: Callable[..., Emulator],
    inside: Inside,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The API's name resolves to loopback (the emulator); its outputs on 127.0.0.2
    are refused by default all the same: only the setting allows them."""
    emulator = make_emulator(output_base_url=inside.url)
    real = socket.getaddrinfo

    def hostile_dns(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real("127.0.0.1" if host == "api.hostile.test" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hostile_dns)
    base = emulator.base_url.replace("127.0.0.1", "api.hostile.test")
    cli = make_invoker(None)
    result = cli("run", "flux-dev", "x", "-o", "out", *FAST, env={"PIXELDOJO_BASE_URL": base})
    assert result.exit_code == 10, result.output
    assert "127.0.0.2 is a loopback address" in result.stderr
    assert inside.connections == 0
    allowed = {"PIXELDOJO_BASE_URL": base, "PIXELDOJO_ALLOW_PRIVATE_OUTPUTS": "true"}
    assert cli("run", "flux-dev", "x", "-o", "out", *FAST, env=allowed).exit_code == 0
    assert inside.connections == 1


@pytest.fixture
def hosts_file_says(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], None]:
    """Make the system's resolver answer `name` with `address` (a hosts file, a DNS)."""
    real = socket.getaddrinfo
    table: dict[str, str] = {}

    def lying(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real(table.get(host, host), *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", lying)
    return table.__setitem__


@pytest.mark.parametrize("name", ["localhost", "api.localhost", "LOCALHOST."])
def test_a_localhost_api_is_reached_on_loopback_whatever_a_resolver_says(
    make_emulator: Callable[..., Emulator],
    hosts_file_says: Callable[[str, str], None],
    name: str,
) -> None:
    """`localhost` names are this machine (RFC 6761): connected to 127.0.0.1 (or
    ::1), never where a resolver points them, so an API "on localhost" really is."""
    emulator = make_emulator()
    for lie in ("localhost", "api.localhost", "LOCALHOST."):
        hosts_file_says(lie, "127.0.0.2")
    base = emulator.base_url.replace("127.0.0.1", name)
    transport = Transport(base, TEST_KEY)
    try:
        assert transport.request("GET", "models").status_code == 200
        assert transport.output_guard.private_allowed() is True
    finally:
        transport.close()
    assert emulator.requests_to("GET", "/models")


def test_an_output_on_a_localhost_name_is_loopback_whatever_a_resolver_says(
    inside: Inside,  # noqa: F811
    tmp_path: Path,
) -> None:
    names = {"localhost": ["93.184.216.34"], "x.localhost": ["93.184.216.34"]}
    transport = transport_for("http://public.invalid/api/v1", None, stub(names))
    for host in ("localhost", "x.localhost"):
        with pytest.raises(OutputRefusedError, match="a loopback address"):
            fetch(transport, f"http://{host}:{inside.port}/x.png", tmp_path)


# --- URLs from the server that no parser reads: one line, exit 10, never retried ----------


def job_answer(job_id: str, urls: list[str]) -> str:
    return json.dumps(
        {
            "jobId": job_id,
            "status": "completed",
            "output": {"images": urls},
            "createdAt": "2030-01-01T00:00:00Z",
            "completedAt": "2030-01-01T00:00:01Z",
        }
    )


def serve_job(emulator: Emulator, job_id: str, urls: list[str]) -> None:
    body = job_answer(job_id, urls)
    emulator.add_fault("status", path=f"/jobs/{job_id}$", method="GET", count=-1, status=200,
                       body=body)  # fmt: skip


def assert_one_line_exit_10(result: Any) -> None:
    assert result.exit_code == 10, result.output
    lines = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "not a valid URL" in lines[0], result.stderr
    assert "This is a bug" not in result.stderr and "Traceback" not in result.stderr
    assert not any(word in result.stderr for word in NEVER_AGAIN), result.stderr


@pytest.mark.parametrize(
    "url", ["http://xn--localhost:{port}/a.png", "http://xn--a:{port}/a.png", "https://xn--/a.png"]
)
def test_an_output_url_whose_host_is_not_idna_is_refused_on_one_line(
    make_emulator: Callable[..., Emulator],
    inside: Inside,  # noqa: F811
    url: str,
) -> None:
    emulator = make_emulator()
    serve_job(emulator, "job_idna", [url.format(port=inside.port)])
    cli = make_invoker(emulator)
    assert_one_line_exit_10(cli("download", "job_idna", "-o", "out"))
    assert inside.connections == 0


class Redirector:
    """A server on 127.0.0.1 answering every request with a 302 to the raw
    `Location` bytes given: text httpx may refuse to read (UTF-8, a tab)."""

    def __init__(self, location: bytes) -> None:
        self.location = location
        self.requests = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                self.requests += 1
                conn.sendall(
                    b"HTTP/1.1 302 Found\r\nLocation: " + self.location
                    + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )  # fmt: skip


@pytest.fixture
def redirector() -> Iterator[Callable[[bytes], Redirector]]:
    made: list[Redirector] = []

    def make(location: bytes) -> Redirector:
        made.append(Redirector(location))
        return made[-1]

    yield make
    for server in made:
        server.sock.close()


UNREADABLE_LOCATIONS = [
    "http:\\\\127.0.0.2:{port}/x.png",
    "http://127.0.0.2\t:{port}/x.png",
    "http://0177.0.0.2:{port}/x.png",
    "http://\uff11\uff12\uff17.0.0.2:{port}/x.png",
    "http://xn--localhost:{port}/x.png",
    "http://xn--a/x.png",
]


@pytest.mark.parametrize("location", UNREADABLE_LOCATIONS)
def test_a_redirect_to_a_location_no_parser_reads_is_refused_once(
    redirector: Callable[[bytes], Redirector],
    inside: Inside,  # noqa: F811
    tmp_path: Path,
    location: str,
) -> None:
    """Refused with the output URL and the Location named, never retried (such a
    Location can never work), nothing saved, no connection inside."""
    server = redirector(location.format(port=inside.port).encode())
    transport = transport_for("http://127.0.0.1:9/api/v1", None, numeric_only)
    with pytest.raises(OutputRefusedError) as error:
        fetch(transport, f"{server.url}/x.png", tmp_path / "out", attempts=5)
    assert f"{server.url}/x.png: it redirects to" in error.value.message
    assert "not a valid URL" in error.value.message
    assert not any(word in error.value.hint for word in NEVER_AGAIN)
    assert server.requests == 1 and inside.connections == 0
    assert not list((tmp_path / "out").iterdir())


def test_a_redirect_no_parser_reads_is_one_line_from_the_cli(
    make_emulator: Callable[..., Emulator],
    redirector: Callable[[bytes], Redirector],
) -> None:
    server = redirector(b"http:\\\\127.0.0.2:9/x.png")
    emulator = make_emulator()
    serve_job(emulator, "job_loc", [f"{server.url}/x.png"])
    assert_one_line_exit_10(make_invoker(emulator)("download", "job_loc", "-o", "out"))
    assert server.requests == 1


@pytest.mark.parametrize("command", [("jobs", "show", "job_x"), ("download", "job_x")])
def test_an_api_redirect_to_a_location_no_parser_reads_is_a_bad_answer(
    make_emulator: Callable[..., Emulator], command: Sequence[str]
) -> None:
    emulator = make_emulator()
    emulator.add_fault(
        "redirect", path="/jobs/job_x", count=-1, status=302, location="http:\\\\127.0.0.2\\x"
    )
    result = make_invoker(emulator)(*command)
    assert result.exit_code == 10, result.output
    assert "redirected GET /api/v1/jobs/job_x to" in result.stderr
    assert "This is a bug" not in result.stderr
    assert len(emulator.requests_to("GET", "/jobs/job_x")) == 1, "never retried"


@pytest.mark.parametrize("base", ["http://xn--a:1/api/v1", "http://xn--localhost/api/v1"])
@pytest.mark.parametrize("command", [("jobs", "show", "job_x"), ("download", "job_x")])
def test_a_base_url_whose_host_is_not_idna_is_a_usage_error(
    cli: Invoke, base: str, command: Sequence[str]
) -> None:
    result = cli(*command, env={"PIXELDOJO_BASE_URL": base})
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: The base URL is not a valid URL")
    assert "This is a bug" not in result.stderr


# --- a refused job is not promised to the next sweep -----------------------------------------

REFUSE = {"PIXELDOJO_ALLOW_PRIVATE_OUTPUTS": "false"}


def finished_job(cli: Invoke) -> str:
    job_id = cli("run", "flux-dev", "x", "--no-wait").stdout.strip()
    assert cli("jobs", "wait", job_id, "--no-download", *FAST).exit_code == 0
    return job_id


def test_a_refused_job_fails_one_sweep_then_is_skipped_with_a_note(
    make_emulator: Callable[..., Emulator],
    inside: Inside,  # noqa: F811
) -> None:
    cli = make_invoker(make_emulator(output_base_url=inside.url))
    job_id = finished_job(cli)
    first = cli("download", "--pending", env=REFUSE)
    assert first.exit_code == 10, first.output
    assert f"will not be tried by later sweeps: {job_id}" in first.stderr
    assert "next sweep" not in first.stderr
    for _ in range(2):
        later = cli("download", "--pending", env=REFUSE)
        assert later.exit_code == 0, later.output
        assert f"Skipped 1 job whose outputs were refused before: {job_id}" in later.stderr
        assert "Refusing to download" not in later.stderr
    assert inside.connections == 0


def test_download_id_still_tries_a_job_the_sweep_skips(
    make_emulator: Callable[..., Emulator],
    inside: Inside,  # noqa: F811
    tmp_path: Path,
) -> None:
    cli = make_invoker(make_emulator(output_base_url=inside.url))
    job_id = finished_job(cli)
    assert cli("download", "--pending", env=REFUSE).exit_code == 10
    assert "REFUSED" in cli("jobs", "list").stdout
    again = cli("download", job_id, "-o", "out", env=REFUSE)
    assert again.exit_code == 10 and "Refusing to download" in again.stderr
    allowed = cli("download", job_id, "-o", "out", env={"PIXELDOJO_ALLOW_PRIVATE_OUTPUTS": "true"})
    assert allowed.exit_code == 0, allowed.output
    assert Path(allowed.stdout.strip()).read_bytes() == b"\x89PNG"
    swept = cli("download", "--pending", env=REFUSE)
    assert swept.exit_code == 0 and "Skipped" not in swept.stderr, swept.stderr


def test_a_job_refused_by_run_is_skipped_by_the_sweep(
    make_emulator: Callable[..., Emulator],
    inside: Inside,  # noqa: F811
) -> None:
    cli = make_invoker(make_emulator(output_base_url=inside.url))
    ran = cli("run", "flux-dev", "x", "-o", "out", *FAST, env=REFUSE)
    assert ran.exit_code == 10, ran.output
    swept = cli("download", "--pending", env=REFUSE)
    assert swept.exit_code == 0 and "Skipped 1 job whose outputs were refused" in swept.stderr


def test_a_batch_line_whose_outputs_were_refused_is_not_submitted_again(
    make_emulator: Callable[..., Emulator],
    inside: Inside,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Refused is not expired: running the batch again must not pay for the line twice."""
    emulator = make_emulator(output_base_url=inside.url)
    cli = make_invoker(emulator)
    (tmp_path / "b.txt").write_text("a fox\n")
    for _ in range(2):
        result = cli("run", "flux-dev", "--batch", "b.txt", "-o", "out", *FAST, env=REFUSE)
        assert result.exit_code == 10, result.output
    assert len(emulator.requests_to("POST", "/run")) == 1


# --- what the refusal says, and the setting's spellings ----------------------------------------


@pytest.mark.parametrize("spelling", ["HTTP://127.0.0.2:{port}/x.png", "http://127.0.0.2:{port}"])
def test_an_output_url_only_spelled_another_way_is_not_called_a_redirect(
    inside: Inside,  # noqa: F811
    tmp_path: Path,
    spelling: str,
) -> None:
    transport = transport_for("http://public.invalid/api/v1", None, stub({}))
    with pytest.raises(OutputRefusedError) as error:
        fetch(transport, spelling.format(port=inside.port), tmp_path)
    assert "a loopback address" in error.value.message
    assert "redirects to" not in error.value.message


def test_a_refusal_by_the_environment_says_to_change_the_environment(
    make_emulator: Callable[..., Emulator],
    inside: Inside,  # noqa: F811
) -> None:
    """`config set` cannot override the variable, so the hint does not suggest it."""
    cli = make_invoker(make_emulator(output_base_url=inside.url))
    result = cli("run", "flux-dev", "x", "-o", "out", *FAST, env=REFUSE)
    assert result.exit_code == 10
    assert "PIXELDOJO_ALLOW_PRIVATE_OUTPUTS=false in the environment" in result.stderr
    assert "config set allow_private_outputs true" not in result.stderr


def test_a_refusal_by_the_config_file_names_the_file(
    make_emulator: Callable[..., Emulator],
    inside: Inside,  # noqa: F811
) -> None:
    cli = make_invoker(make_emulator(output_base_url=inside.url))
    assert cli("config", "set", "allow_private_outputs", "false").exit_code == 0
    result = cli("run", "flux-dev", "x", "-o", "out", *FAST)
    assert result.exit_code == 10
    assert "allow_private_outputs = false in " in result.stderr and "config.toml" in result.stderr


@pytest.mark.parametrize(
    ("word", "value"), [("TRUE", "true"), ("yes", "true"), ("On", "true"), ("0", "false")]
)
@pytest.mark.parametrize("key", ["allow_private_outputs", "checksum", "preview"])
def test_every_switch_takes_the_same_spellings_and_prints_true_or_false(
    cli: Invoke, key: str, word: str, value: str
) -> None:
    saved = cli("config", "set", key, word)
    assert saved.exit_code == 0, saved.output
    assert f"{key} = {value} saved" in saved.stderr
    assert cli("config", "get", key).stdout.strip() == value
