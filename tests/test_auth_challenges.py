"""Auth answers a registry should not give: each is one clear error, never a traceback or a hang."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pack_publisher.registry.credentials import Credentials
from pack_publisher.registry.http import HttpTransport
from pack_publisher.registry.retry import RetryPolicy
from pack_publisher.runtime.errors import PublisherError
from pack_publisher.runtime.redact import SecretStr
from testsupport.serving import serve_in_thread

from .test_retry import FakeClock

Answer = Callable[[BaseHTTPRequestHandler], None]


@pytest.fixture
def server() -> Iterator[Callable[[Answer], str]]:
    servers: list[ThreadingHTTPServer] = []

    def start(answer: Answer) -> str:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return None

            def do_GET(self) -> None:
                answer(self)

            do_HEAD = do_GET

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        serve_in_thread(httpd)
        servers.append(httpd)
        return f"127.0.0.1:{httpd.server_address[1]}"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def reply(status: int, headers: dict[str, str], body: bytes = b"") -> Answer:
    def answer(req: BaseHTTPRequestHandler) -> None:
        req.send_response(status)
        for key, value in headers.items():
            req.send_header(key, value.replace("{host}", req.headers["Host"]))
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    return answer


def client(host: str, plain_http: bool = True) -> HttpTransport:
    creds = Credentials("user", SecretStr("pw-secret"), "test")
    return HttpTransport(host, creds, plain_http, RetryPolicy(attempts=2, clock=FakeClock()))


def error_of(host: str) -> str:
    with pytest.raises(PublisherError) as info:
        client(host).resolve("acme/pack", "1.0.0")
    assert "pw-secret" not in info.value.message
    return info.value.message


def test_401_without_challenge(server: Callable[[Answer], str]) -> None:
    host = server(reply(401, {}))
    assert error_of(host) == f"{host}: 401 Unauthorized without an auth challenge"


def test_unsupported_challenge(server: Callable[[Answer], str]) -> None:
    host = server(reply(401, {"WWW-Authenticate": 'Negotiate realm="x"'}))
    assert error_of(host) == f"{host}: unsupported auth challenge 'negotiate'"


def test_token_service_without_token(server: Callable[[Answer], str]) -> None:
    def answer(req: BaseHTTPRequestHandler) -> None:
        if req.path.startswith("/token"):
            reply(200, {"Content-Type": "application/json"}, json.dumps({"nothing": 1}).encode())(req)
        else:
            reply(401, {"WWW-Authenticate": 'Bearer realm="http://{host}/token",service="s"'})(req)

    host = server(answer)
    assert error_of(host) == f"{host}: the token service answered without a token"


def test_token_service_down(server: Callable[[Answer], str]) -> None:
    def answer(req: BaseHTTPRequestHandler) -> None:
        if req.path.startswith("/token"):
            reply(503, {"Content-Type": "text/html"}, b"<html>down</html>")(req)
        else:
            reply(401, {"WWW-Authenticate": 'Bearer realm="http://{host}/token",service="s"'})(req)

    host = server(answer)
    message = error_of(host)
    assert message.startswith(f"{host}: resolving acme/pack:1.0.0 failed after 2 attempt(s)")
    assert message.endswith("token service: HTTP 503")


def test_token_realm_over_plain_http_is_refused_for_a_tls_registry() -> None:
    """Credentials never go to a plain-HTTP token realm when the registry itself is reached over TLS."""
    transport = client("registry.example", plain_http=False)
    with pytest.raises(PublisherError) as info:
        transport.auth.answer('Bearer realm="http://evil.example/token",service="s"', "repository:a:pull")
    assert info.value.message == (
        "registry.example: the registry sends credentials to a token realm over plain HTTP "
        "(http://evil.example/token); refused"
    )
