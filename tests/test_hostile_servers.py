"""Registries that answer in bad faith, against the built-in client: each ends quickly, in one clear line,
and no credential goes anywhere but the registry and its token realm.

Every test runs a `HostileServer` (testsupport/hostile.py), which records what it was sent. One attempt
and a 1 s read timeout keep each test within a couple of seconds; nothing sleeps through a retry.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from pack_publisher.oci.descriptor import describe
from pack_publisher.oci.manifest import EMPTY_CONFIG, GTPACK_MEDIA_TYPE, compose
from pack_publisher.registry.auth import Authenticator
from pack_publisher.registry.client import Client
from pack_publisher.registry.credentials import Credentials
from pack_publisher.registry.http import HttpTransport
from pack_publisher.registry.retry import RetryPolicy
from pack_publisher.registry.transport import PushRequest
from pack_publisher.runtime.errors import ConfigError, PublisherError
from pack_publisher.runtime.proxies import proxies_for
from pack_publisher.runtime.redact import Redactor, SecretStr
from testsupport.hostile import Answer, HostileServer, Seen, reply

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
MANIFEST = b'{"schemaVersion": 2}'
PASSWORD = "pw-secret-4711"
CREDS = Credentials("user", SecretStr(PASSWORD), "test")
BASIC = "Basic " + base64.b64encode(f"user:{PASSWORD}".encode()).decode()
TOKEN = "tok-9f8e7d6c5b4a"
SECRETS = (PASSWORD, BASIC.removeprefix("Basic "), TOKEN)
SCOPE = "repository:acme/pack:pull"
OTHER_HOST = "127.0.0.2"  # another host name as far as the client can tell

Serve = Callable[..., HostileServer]


@pytest.fixture
def serve() -> Iterator[Serve]:
    servers: list[HostileServer] = []

    def start(answer: Answer, address: str = "127.0.0.1") -> HostileServer:
        servers.append(HostileServer(answer, address))
        return servers[-1]

    yield start
    for each in servers:
        each.close()


def transport(host: str, credentials: Credentials | None = None, **kwargs: Any) -> HttpTransport:
    return HttpTransport(host, credentials, True, RetryPolicy(attempts=1, read_timeout=1.0), **kwargs)


def failure(call: Callable[[], object]) -> str:
    """The one-line message `call` fails with, checking it took no time to say so."""
    started = time.monotonic()
    with pytest.raises(PublisherError) as info:
        call()
    assert time.monotonic() - started < 3
    assert "\n" not in info.value.message
    return info.value.message


def authorizations(server: HostileServer) -> list[str | None]:
    return [seen.headers.get("Authorization") for seen in server.seen]


def carries_no_secret(seen: list[Seen]) -> bool:
    return not any(secret in str(request) for request in seen for secret in SECRETS)


def manifest(req: BaseHTTPRequestHandler) -> None:
    reply(200, {"Content-Type": MANIFEST_TYPE}, MANIFEST)(req)


def token_service(req: BaseHTTPRequestHandler) -> None:
    """A token realm: a token for the right Basic credentials, else 401."""
    if req.headers.get("Authorization") == BASIC:
        reply(200, {"Content-Type": "application/json"}, json.dumps({"token": TOKEN}).encode())(req)
    else:
        reply(401)(req)


def bearer_registry(realm: str, then: Answer) -> Answer:
    """A registry asking for a token from `realm`, and answering `then` once it has it."""

    def answer(req: BaseHTTPRequestHandler) -> None:
        if req.headers.get("Authorization") == f"Bearer {TOKEN}":
            then(req)
        else:
            reply(401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="s"'})(req)

    return answer


def basic_registry(then: Answer) -> Answer:
    def answer(req: BaseHTTPRequestHandler) -> None:
        if req.headers.get("Authorization") == BASIC:
            then(req)
        else:
            reply(401, {"WWW-Authenticate": 'Basic realm="r"'})(req)

    return answer


def redirect(to: str) -> Answer:
    return lambda req: reply(307, {"Location": f"http://{to}{req.path}"})(req)


def trickle(head: bytes) -> Answer:
    """Writes `head` a byte every 0.2 s: each byte well within the 1 s read timeout, the whole far beyond it."""

    def answer(req: BaseHTTPRequestHandler) -> None:
        for byte in head:
            req.wfile.write(bytes([byte]))
            req.wfile.flush()
            time.sleep(0.2)

    return answer


SLOW_HEAD = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nX-Padding: " + b"a" * 40 + b"\r\n\r\n"


def no_timer_left() -> bool:
    return not [thread for thread in threading.enumerate() if isinstance(thread, threading.Timer)]


# --- where credentials go ---------------------------------------------------------------------------


def test_the_password_goes_only_to_the_token_realm_and_the_token_only_to_the_registry(serve: Serve) -> None:
    """The realm is on another host (allowed: the registry names it); a redirect target gets neither."""
    mirror = serve(manifest, OTHER_HOST)
    realm = serve(token_service, OTHER_HOST)
    registry = serve(bearer_registry(f"http://{realm.host}/token", redirect(mirror.host)))

    fetched = transport(registry.host, CREDS).fetch_manifest("acme/pack", "1.0.0")

    assert fetched.data == MANIFEST
    assert authorizations(registry) == [None, f"Bearer {TOKEN}"]
    assert authorizations(realm) == [BASIC]
    assert realm.seen[0].target == "/token?scope=repository%3Aacme%2Fpack%3Apull&service=s"
    assert authorizations(mirror) == [None]
    assert carries_no_secret(mirror.seen)
    assert no_timer_left()


@pytest.mark.parametrize("credentials", [CREDS, None], ids=["with-credentials", "anonymous"])
@pytest.mark.parametrize("what", ["blob", "manifest"])
def test_a_redirect_to_another_host_is_followed_without_the_authorization(
    serve: Serve, what: str, credentials: Credentials | None
) -> None:
    blob = b"gtpack bytes"
    mirror = serve(reply(200, {"Content-Type": MANIFEST_TYPE}, blob if what == "blob" else MANIFEST), OTHER_HOST)
    registry = serve(basic_registry(redirect(mirror.host)) if credentials else redirect(mirror.host))
    client = transport(registry.host, credentials)

    if what == "blob":
        sink = io.BytesIO()
        client.fetch_blob("acme/pack", describe(GTPACK_MEDIA_TYPE, blob).digest, lambda: nullcontext(sink))
        assert sink.getvalue() == blob
    else:
        assert client.fetch_manifest("acme/pack", "1.0.0").data == MANIFEST

    assert authorizations(registry) == ([None, BASIC] if credentials else [None])
    assert authorizations(mirror) == [None]
    assert carries_no_secret(mirror.seen)


@pytest.mark.parametrize("between", ["itself", "two hosts"])
def test_a_redirect_loop_ends_with_one_line(serve: Serve, between: str) -> None:
    registry = serve(reply(500))
    other = serve(redirect(registry.host), OTHER_HOST)
    registry.answer = redirect(registry.host if between == "itself" else other.host)

    message = failure(lambda: transport(registry.host, CREDS).fetch_manifest("acme/pack", "1.0.0"))

    url = f"http://{registry.host}/v2/acme/pack/manifests/1.0.0"
    assert message == f"{registry.host}: GET {url}: Exceeded 30 redirects."
    assert len(registry.seen) + len(other.seen) == 31


def test_a_token_realm_that_redirects_gets_no_second_request(serve: Serve) -> None:
    elsewhere = serve(token_service, OTHER_HOST)
    realm = serve(redirect(elsewhere.host))
    registry = serve(bearer_registry(f"http://{realm.host}/token", manifest))

    message = failure(lambda: transport(registry.host, CREDS).fetch_manifest("acme/pack", "1.0.0"))

    assert message == f"{registry.host}: authentication as user (test) was refused (HTTP 307)"
    assert elsewhere.seen == []


@pytest.mark.parametrize("tls", [True, False], ids=["tls-registry", "plain-registry"])
def test_a_plain_http_realm_gets_no_credentials_from_a_tls_registry(serve: Serve, tls: bool) -> None:
    """The same challenge, answered by an authenticator for a TLS registry and for a plain-HTTP one."""
    realm = serve(token_service)
    client = Client(None, {}, "test")
    with contextlib.closing(client):
        auth = Authenticator("registry.example", CREDS, tls, functools.partial(client.request, "GET", timeout=(5, 5)))
        challenge = f'Bearer realm="http://{realm.host}/token",service="s"'
        if tls:
            with pytest.raises(PublisherError) as info:
                auth.answer(challenge, SCOPE)
            assert info.value.message == (
                "registry.example: the registry sends credentials to a token realm over plain HTTP "
                f"(http://{realm.host}/token); refused"
            )
            assert realm.seen == []
            assert auth.header(SCOPE) is None
        else:  # the control: this realm would have been asked, with the credentials
            auth.answer(challenge, SCOPE)
            assert authorizations(realm) == [BASIC]
            assert auth.header(SCOPE) == f"Bearer {TOKEN}"


@pytest.mark.parametrize("realm", ["file:///etc/passwd", "ftp://127.0.0.1/token", "/token", "http:///token"])
def test_a_realm_that_is_not_an_http_url_is_refused(realm: str) -> None:
    auth = Authenticator("registry.example", CREDS, True, lambda *a, **k: pytest.fail("nothing may be sent"))
    with pytest.raises(PublisherError) as info:
        auth.answer(f'Bearer realm="{realm}",service="s"', SCOPE)
    assert info.value.message == f"registry.example: the auth challenge names an invalid token realm {realm!r}"


# --- deadlines --------------------------------------------------------------------------------------


def push_request(tmp_path: Path) -> PushRequest:
    gtpack = tmp_path / "pack.gtpack"
    gtpack.write_bytes(b"gtpack bytes")
    layer = describe(GTPACK_MEDIA_TYPE, gtpack.read_bytes())
    return PushRequest("acme/pack", ["1.0.0"], gtpack, compose(layer, "pack.gtpack", {}))


UPLOADING = f"uploading blob {EMPTY_CONFIG.short} to acme/pack"


@pytest.mark.parametrize(
    ("slow", "operation", "cause"),
    [
        ("HEAD", "resolving acme/pack:1.0.0", "timed out (no complete status line and headers within 1 s)"),
        ("GET", "reading manifest acme/pack:1.0.0", "timed out (no complete status line and headers within 1 s)"),
        ("POST", UPLOADING, "timed out (no complete status line and headers within 1 s)"),
        ("PUT", UPLOADING, "timed out (no complete status line and headers within 1 s)"),
        ("token GET", "reading manifest acme/pack:1.0.0", "token service: timed out"),
    ],
)
@pytest.mark.slow  # a real 1 s deadline
def test_trickling_headers_are_cut_off_at_the_deadline(
    serve: Serve, tmp_path: Path, slow: str, operation: str, cause: str
) -> None:
    def answer(req: BaseHTTPRequestHandler) -> None:
        if slow == "token GET":
            if req.path.startswith("/token"):
                trickle(SLOW_HEAD)(req)
            else:
                reply(401, {"WWW-Authenticate": 'Bearer realm="http://{host}/token"'})(req)
        elif req.command == slow:
            trickle(SLOW_HEAD)(req)
        elif req.command == "HEAD":
            reply(404)(req)  # the blob is not there yet: upload it
        elif req.command == "POST":
            reply(202, {"Location": "/v2/acme/pack/blobs/uploads/1"})(req)

    registry = serve(answer)
    client = transport(registry.host, CREDS)
    call = {
        "HEAD": lambda: client.resolve("acme/pack", "1.0.0"),
        "POST": lambda: client.push(push_request(tmp_path)),
        "PUT": lambda: client.push(push_request(tmp_path)),
    }.get(slow, lambda: client.fetch_manifest("acme/pack", "1.0.0"))

    message = failure(call)

    assert re.fullmatch(
        rf"{registry.host}: {operation} failed after 1 attempt\(s\) in [12] s: {re.escape(cause)}", message
    )
    assert registry.seen[-1].method == slow.removeprefix("token ")
    assert no_timer_left()


@pytest.mark.slow  # a real 1 s deadline
def test_the_headers_deadline_holds_in_each_of_several_threads(serve: Serve) -> None:
    registry = serve(trickle(SLOW_HEAD))
    messages: list[str] = []

    def fetch() -> None:
        with pytest.raises(PublisherError) as info:
            transport(registry.host).fetch_manifest("acme/pack", "1.0.0")
        messages.append(info.value.message)

    started = time.monotonic()
    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert time.monotonic() - started < 3
    assert len(messages) == 4
    assert all(m.endswith("timed out (no complete status line and headers within 1 s)") for m in messages)
    assert no_timer_left()


@pytest.mark.slow  # a real 1 s deadline
@pytest.mark.parametrize("what", ["manifest", "token answer"])
def test_a_trickling_body_is_cut_off_at_its_deadline(serve: Serve, what: str) -> None:
    body = json.dumps({"schemaVersion": 2, "token": TOKEN}).encode() + b" " * 40

    def answer(req: BaseHTTPRequestHandler) -> None:
        if what == "token answer" and not req.path.startswith("/token"):
            reply(401, {"WWW-Authenticate": 'Bearer realm="http://{host}/token"'})(req)
            return
        req.send_response(200)
        req.send_header("Content-Type", MANIFEST_TYPE)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        trickle(body)(req)

    registry = serve(answer)
    message = failure(lambda: transport(registry.host, CREDS).fetch_manifest("acme/pack", "1.0.0"))
    expected = "manifest 1.0.0" if what == "manifest" else "the token answer"
    assert message.endswith(f": {expected} took over 1 s to arrive")


# --- huge answers -----------------------------------------------------------------------------------


def huge(status: int, start: bytes, *, declared: bool, content_type: str = "application/json") -> Answer:
    """`start` then 8 MiB of `A`, announced in Content-Length or just streamed until the client hangs up."""
    size = 8 * 1024 * 1024

    def answer(req: BaseHTTPRequestHandler) -> None:
        req.send_response(status)
        req.send_header("Content-Type", content_type)
        if declared:
            req.send_header("Content-Length", str(len(start) + size))
        req.end_headers()
        req.wfile.write(start)
        for _ in range(size // 65536):
            req.wfile.write(b"A" * 65536)

    return answer


def test_a_huge_manifest_is_refused_unread(serve: Serve) -> None:
    def answer(req: BaseHTTPRequestHandler) -> None:
        req.send_response(200)
        req.send_header("Content-Type", MANIFEST_TYPE)
        req.send_header("Content-Length", str(1536 * 1024 * 1024))  # 1.5 GiB announced, never sent
        req.end_headers()

    registry = serve(answer)
    message = failure(lambda: transport(registry.host).fetch_manifest("acme/pack", "1.0.0"))
    assert message == f"{registry.host}: manifest 1.0.0 is 1610612736 bytes, over the 4194304-byte limit"


@pytest.mark.parametrize("declared", [True, False], ids=["announced", "streamed"])
def test_a_huge_error_answer_is_read_no_further_than_its_cap(serve: Serve, declared: bool) -> None:
    registry = serve(huge(400, b'{"errors": [{"code": "DENIED", "message": "', declared=declared))
    message = failure(lambda: transport(registry.host).fetch_manifest("acme/pack", "1.0.0"))
    assert message == f"{registry.host}: reading manifest 1.0.0: HTTP 400 (application/json body, not a registry error)"


def test_a_long_registry_error_is_shortened(serve: Serve) -> None:
    errors = {"errors": [{"code": "DENIED", "message": "x" * 50_000}]}
    registry = serve(reply(400, {"Content-Type": "application/json"}, json.dumps(errors).encode()))
    message = failure(lambda: transport(registry.host).fetch_manifest("acme/pack", "1.0.0"))
    assert message == f"{registry.host}: reading manifest 1.0.0: " + ("DENIED: " + "x" * 50_000)[:300]


@pytest.mark.parametrize("declared", [True, False], ids=["announced", "streamed"])
def test_a_huge_token_answer_is_refused(serve: Serve, declared: bool) -> None:
    realm = serve(huge(200, b'{"token": "', declared=declared))
    registry = serve(bearer_registry(f"http://{realm.host}/token", manifest))
    message = failure(lambda: transport(registry.host, CREDS).fetch_manifest("acme/pack", "1.0.0"))
    size = "is 8388619 bytes, over" if declared else "is over"
    assert message == f"{registry.host}: the token answer {size} the 1048576-byte limit"


# --- registries that echo the credentials back ------------------------------------------------------


def echo_authorization(pad: int) -> Answer:
    """403 with a registry error quoting the Authorization header, after `pad` characters of text."""

    def answer(req: BaseHTTPRequestHandler) -> None:
        text = "x" * pad + f"bad header {req.headers.get('Authorization')}"
        body = json.dumps({"errors": [{"code": "DENIED", "message": text}]}).encode()
        reply(403, {"Content-Type": "application/json"}, body)(req)

    return answer


@pytest.mark.parametrize("pad", [0, 264], ids=["whole", "straddling-the-300-character-cut"])
@pytest.mark.parametrize("scheme", ["Basic", "Bearer"])
def test_an_echoed_authorization_header_never_reaches_the_message(serve: Serve, scheme: str, pad: int) -> None:
    """What the registry echoes is masked by the client before the message is shortened (a secret cut
    in half would escape any later redaction), and the run's Redactor leaves nothing to find."""
    echo = echo_authorization(pad)
    if scheme == "Basic":
        registry = serve(basic_registry(echo))
    else:
        realm = serve(token_service, OTHER_HOST)
        registry = serve(bearer_registry(f"http://{realm.host}/token", echo))

    message = failure(lambda: transport(registry.host, CREDS).fetch_manifest("acme/pack", "1.0.0"))

    assert authorizations(registry)[-1] == (BASIC if scheme == "Basic" else f"Bearer {TOKEN}")
    redactor = Redactor()
    redactor.add_credentials("user", PASSWORD)
    shown = redactor(message)
    assert not [secret for secret in SECRETS if secret[:8] in shown]
    if pad == 0:
        expected = f"access denied as user (DENIED: bad header {scheme} ***)"
        assert shown == message == f"{registry.host}: reading manifest 1.0.0: {expected}"


# --- the environment: proxies and CA bundle come from the caller, never from os.environ ------------


@pytest.mark.parametrize(
    ("url", "env", "expected"),
    [
        ("https://r.example/v2/", {"HTTPS_PROXY": "http://p:3128"}, {"https": "http://p:3128"}),
        ("http://r.example/v2/", {"HTTPS_PROXY": "http://p:3128"}, {}),
        ("http://r.example/v2/", {"HTTP_PROXY": "http://p:3128"}, {"http": "http://p:3128"}),
        ("https://r.example/v2/", {"ALL_PROXY": "http://all:1"}, {"https": "http://all:1"}),
        ("https://r.example/v2/", {"all_proxy": "http://all:1", "https_proxy": "http://s:1"}, {"https": "http://s:1"}),
        (
            "https://r.example/v2/",
            {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:1"},
            {"https": "http://lower:1"},
        ),
        ("https://r.example/v2/", {"HTTPS_PROXY": "http://upper:1", "https_proxy": ""}, {}),
        ("https://r.example/v2/", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "r.example"}, {}),
        ("https://r.example/v2/", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "x.test, R.Example"}, {}),
        ("https://r.example/v2/", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*"}, {}),
        ("https://a.r.example/v2/", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "r.example"}, {}),
        ("https://a.r.example/v2/", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".r.example"}, {}),
        ("https://a.r.example/v2/", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*.r.example"}, {}),
        ("https://ar.example/v2/", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "r.example"}, {"https": "http://p:1"}),
        ("https://r.example/v2/", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "r.example:443"}, {}),
        ("https://r.example/v2/", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "r.example:5000"}, {"https": "http://p:1"}),
        ("https://r.example:5000/v2/", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "r.example:5000"}, {}),
        ("https://10.1.2.3/v2/", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "10.0.0.0/8"}, {}),
        ("https://11.1.2.3/v2/", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "10.0.0.0/8"}, {"https": "http://p:1"}),
        ("http://[::1]:5000/v2/", {"HTTP_PROXY": "http://p:1", "NO_PROXY": "[::1]:5000"}, {}),
        ("http://[::1]:5000/v2/", {"HTTP_PROXY": "http://p:1", "NO_PROXY": "::1"}, {}),
        ("https://r.example/v2/", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "other", "no_proxy": "r.example"}, {}),
        (
            "https://r.example/v2/",
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "r.example", "no_proxy": ""},
            {"https": "http://p:1"},
        ),
    ],
)
def test_proxies_for_a_url_come_from_the_snapshot(url: str, env: dict[str, str], expected: dict[str, str]) -> None:
    assert proxies_for(url, env) == expected


@pytest.mark.parametrize("case", ["proxied", "no_proxy", "redirected past no_proxy"])
def test_a_proxy_in_proxy_env_is_used_and_no_proxy_bypasses_it(serve: Serve, case: str) -> None:
    """The proxy is a recording server that answers in place of the registry (a forward proxy's request
    line carries the absolute URL); each hop of a redirect gets its own decision."""
    proxy = serve(manifest)
    mirror = serve(reply(500), OTHER_HOST)  # reached only through the proxy
    registry = serve(redirect(mirror.host) if case == "redirected past no_proxy" else manifest)
    env = {"http_proxy": f"http://{proxy.host}"} | ({} if case == "proxied" else {"NO_PROXY": "127.0.0.1"})

    assert transport(registry.host, proxy_env=env).fetch_manifest("acme/pack", "1.0.0").data == MANIFEST

    path = "/v2/acme/pack/manifests/1.0.0"
    if case == "proxied":
        assert [(s.method, s.target) for s in proxy.seen] == [("GET", f"http://{registry.host}{path}")]
        assert registry.seen == []
    elif case == "no_proxy":
        assert [s.target for s in registry.seen] == [path]
        assert proxy.seen == []
    else:
        assert [s.target for s in registry.seen] == [path]
        assert [s.target for s in proxy.seen] == [f"http://{mirror.host}{path}"]
    assert mirror.seen == []


def test_the_process_environment_is_not_read(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = serve(reply(500))
    registry = serve(manifest)
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, f"http://{proxy.host}")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/nonexistent/ca.pem")

    assert transport(registry.host).fetch_manifest("acme/pack", "1.0.0").data == MANIFEST
    assert proxy.seen == []
    assert len(registry.seen) == 1


def test_a_missing_ca_bundle_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        transport("registry.example", ca_bundle=str(tmp_path / "ca.pem"))
    assert info.value.message == f"the CA bundle {tmp_path / 'ca.pem'} does not exist"
