"""The built-in client's own HTTP layer (`registry/client.py`, `registry/connections.py`, on http.client):
keep-alive connections reused, TLS checked against the CA bundle given (an SSL error is final), and
HTTPS through a proxy's CONNECT tunnel."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pack_publisher.registry.http import HttpTransport
from pack_publisher.registry.retry import RetryPolicy, Transient
from pack_publisher.runtime.errors import AccessError
from testsupport.serving import serve_in_thread

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
MANIFEST = json.dumps({"schemaVersion": 2}).encode()


class Server:
    """An HTTP/1.1 registry stand-in (keep-alive), over TLS when given a context; records each request
    with the client port it came from (one port per connection)."""

    def __init__(self, tls: ssl.SSLContext | None = None, body: bytes = MANIFEST) -> None:
        self.seen: list[tuple[int, str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def do_GET(self) -> None:
                owner.seen.append((self.client_address[1], self.command, self.path))
                self.send_response(200)
                self.send_header("Content-Type", MANIFEST_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_HEAD = do_GET

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        serve_in_thread(self.httpd)

    def connections(self) -> int:
        return len({port for port, _, _ in self.seen})

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class ConnectProxy:
    """A forward proxy that only tunnels (CONNECT), recording each CONNECT line and its headers."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.seen: list[tuple[str, dict[str, str]]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        reader = client.makefile("rb")
        line = reader.readline().decode().strip()
        headers = {}
        while (header := reader.readline().decode().strip()) != "":
            name, _, value = header.partition(":")
            headers[name.strip()] = value.strip()
        self.seen.append((line, headers))
        host, _, port = line.split()[1].rpartition(":")
        upstream = socket.create_connection((host, int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        for source, target in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pipe, args=(source, target), daemon=True).start()

    def close(self) -> None:
        self.listener.close()


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for each in (source, target):
            each.close()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    """A CA (its PEM file) and a server context with a certificate it signed for 127.0.0.1 only."""
    folder = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return ca_file, context


@pytest.fixture
def servers() -> Iterator[list[Server | ConnectProxy]]:
    started: list[Server | ConnectProxy] = []
    yield started
    for each in started:
        each.close()


def transport(host: str, *, tls: bool = False, **kwargs: object) -> HttpTransport:
    return HttpTransport(host, None, not tls, RetryPolicy(attempts=3, read_timeout=2.0), **kwargs)  # type: ignore[arg-type]


def test_one_connection_serves_request_after_request(servers: list[Server | ConnectProxy]) -> None:
    registry = Server()
    servers.append(registry)
    client = transport(registry.host)
    for _ in range(3):
        assert client.fetch_manifest("acme/pack", "1.0.0").data == MANIFEST
        assert client.blob_exists("acme/pack", "sha256:" + "0" * 64)
    assert len(registry.seen) == 6 and registry.connections() == 1
    client.close()


def test_an_unread_body_closes_its_connection(servers: list[Server | ConnectProxy]) -> None:
    registry = Server()
    servers.append(registry)
    client = transport(registry.host)
    for _ in range(2):  # a blob answered with a body to a GET is not read when not wanted: not reused
        client._send("GET", client._url("acme/pack", "manifests/1.0.0"), "").close()
    assert registry.connections() == 2
    client.close()


def test_tls_with_the_ca_bundle_given(
    servers: list[Server | ConnectProxy], certificates: tuple[Path, ssl.SSLContext]
) -> None:
    ca_file, context = certificates
    registry = Server(context)
    servers.append(registry)
    client = transport(registry.host, tls=True, ca_bundle=str(ca_file))
    assert client.fetch_manifest("acme/pack", "1.0.0").data == MANIFEST
    assert client.fetch_manifest("acme/pack", "1.0.0").data == MANIFEST
    assert registry.connections() == 1
    client.close()


@pytest.mark.parametrize("case", ["unknown CA", "another host name"])
def test_a_tls_failure_is_final_and_says_why(
    servers: list[Server | ConnectProxy], certificates: tuple[Path, ssl.SSLContext], case: str
) -> None:
    ca_file, context = certificates
    registry = Server(context)
    servers.append(registry)
    host = registry.host if case == "unknown CA" else registry.host.replace("127.0.0.1", "localhost")
    client = transport(host, tls=True, ca_bundle=None if case == "unknown CA" else str(ca_file))
    with pytest.raises(AccessError) as info:
        client.fetch_manifest("acme/pack", "1.0.0")
    assert info.value.message.startswith(
        f"{host}: TLS failed ([SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"
    )
    assert ("unable to get local issuer certificate" if case == "unknown CA" else "mismatch") in info.value.message
    assert registry.seen == []  # one attempt, no request


def test_https_goes_through_the_proxy_in_a_connect_tunnel(
    servers: list[Server | ConnectProxy], certificates: tuple[Path, ssl.SSLContext]
) -> None:
    ca_file, context = certificates
    registry, proxy = Server(context), ConnectProxy()
    servers += [registry, proxy]
    env = {"https_proxy": f"http://us%40er:p%3Ass@{proxy.host}"}
    client = transport(registry.host, tls=True, ca_bundle=str(ca_file), proxy_env=env)
    for _ in range(2):
        assert client.fetch_manifest("acme/pack", "1.0.0").data == MANIFEST
    [(line, headers)] = proxy.seen  # one tunnel, kept alive
    assert line.startswith(f"CONNECT {registry.host} HTTP/")
    assert headers["Proxy-Authorization"] == "Basic dXNAZXI6cDpzcw=="  # us@er:p:ss
    assert len(registry.seen) == 2
    client.close()


def test_without_a_bundle_a_ca_the_system_trusts_is_trusted(
    servers: list[Server | ConnectProxy], certificates: tuple[Path, ssl.SSLContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The oras transport reads through this client: a CA that oras trusts through OpenSSL's defaults
    (here SSL_CERT_FILE, as a corporate CA in the system store) verifies without REQUESTS_CA_BUNDLE."""
    ca_file, context = certificates
    registry = Server(context)
    servers.append(registry)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    client = transport(registry.host, tls=True)
    assert client.fetch_manifest("acme/pack", "1.0.0").data == MANIFEST
    client.close()


def test_credentials_never_follow_a_scheme_change_to_clear_text() -> None:
    """An upload `Location` on http:// from a registry reached over TLS gets no Authorization header."""
    from pack_publisher.registry.credentials import Credentials
    from pack_publisher.runtime.redact import SecretStr

    client = HttpTransport("registry.example", Credentials("bot", SecretStr("pw"), "test"), False)
    client.auth._headers["scope"] = "Basic Ym90OnB3"  # as after answering the registry's challenge
    sent: list[dict[str, str]] = []

    class Recorder:
        def request(self, method: str, url: str, *, headers: dict[str, str], **kwargs: object) -> object:
            sent.append(headers)
            raise OSError("recorded")

        def close(self) -> None:
            pass

    client._client = Recorder()  # type: ignore[assignment]
    for url in ("https://registry.example/v2/a/blobs/uploads/1", "http://registry.example/v2/a/blobs/uploads/1"):
        with pytest.raises(Transient):
            client._send("PUT", url, "scope")
    assert [h.get("Authorization") for h in sent] == ["Basic Ym90OnB3", None]
