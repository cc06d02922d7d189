"""TLS: built only when an https URL is asked for, and then always verifying."""

from __future__ import annotations

import http.server
import shutil
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pixeldojo_cli.api.client import Client
from pixeldojo_cli.core.errors import NetworkError
from pixeldojo_cli.emulator import Emulator

from conftest import TEST_KEY


class _Models(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"models": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An https API on loopback with a self-signed certificate: (base URL, cert file)."""
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
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Models)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/api/v1", cert
    server.shutdown()
    server.server_close()


def test_a_plain_http_api_never_builds_a_tls_context(
    make_emulator: Callable[..., Emulator],
) -> None:
    client = Client(api_key=TEST_KEY, base_url=make_emulator().base_url)
    assert client.list_models()
    assert not client.transport.connections.tls_ready


@pytest.mark.usefixtures("fast_retries")
def test_an_https_api_with_an_untrusted_certificate_is_refused(
    https_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    base_url, _ = https_server
    client = Client(api_key=TEST_KEY, base_url=base_url)
    with pytest.raises(NetworkError, match="CERTIFICATE_VERIFY_FAILED"):
        client.list_models()
    assert client.transport.connections.tls_ready


def test_an_https_api_trusted_through_ssl_cert_file_is_used(
    https_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    base_url, cert = https_server
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    client = Client(api_key=TEST_KEY, base_url=base_url)
    assert client.list_models() == []
