"""Real OCI registries for tests: Debian's docker-registry on a free loopback port, anonymous, with
htpasswd Basic auth, or with Bearer token auth through a small token server (the GHCR flow).

`RegistryPool` keeps one process of each kind for a whole test session (one per xdist worker) and
empties its storage before each test, so every test starts from a registry holding nothing.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import bcrypt
import jwt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .serving import serve_in_thread

MANIFEST_ACCEPT = "application/vnd.oci.image.manifest.v1+json"
USER, PASSWORD = "publisher", "s3cret-Passw0rd"
SERVICE, ISSUER = "test-registry", "test-token-issuer"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def registry_binary() -> str:
    found = shutil.which("docker-registry")
    if found is None:
        pytest.fail("docker-registry is not installed: `apt-get install docker-registry` (CI's .ci/run does)")
    return found


class TokenServer:
    """Answers `GET /token?service=..&scope=..` after checking Basic credentials, with an ES256 JWT."""

    def __init__(self, folder: Path, users: dict[str, str]) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test token issuer")])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(self.key, hashes.SHA256())
        )
        self.bundle = folder / "token-cert.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.users = users
        self.requests: list[dict[str, Any]] = []
        self.private: set[str] = set()  # repositories anonymous users may not pull (GHCR's private packages)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return None

            def do_GET(self) -> None:
                server.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        serve_in_thread(self.httpd)

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        query = parse_qs(urlparse(request.path).query)
        header = request.headers.get("Authorization", "")
        user = None
        if header.startswith("Basic "):
            name, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if self.users.get(name) != password:
                request.send_response(401)
                request.end_headers()
                return
            user = name
        self.requests.append({"user": user, "scope": query.get("scope", [])})
        access = []
        for scope in query.get("scope", []):
            kind, repo, actions = scope.split(":")
            granted = set(actions.split(",")) if user else {"pull"} & set(actions.split(",")) - self._private(repo)
            access.append({"type": kind, "name": repo, "actions": sorted(granted)})
        now = int(time.time())
        der = self.cert.public_bytes(serialization.Encoding.DER)
        token = jwt.encode(
            {
                "iss": ISSUER,
                "aud": SERVICE,
                "sub": user or "",
                "exp": now + 300,
                "nbf": now - 10,
                "iat": now,
                "jti": f"{now}-{len(self.requests)}",
                "access": access,
            },
            self.key,
            algorithm="ES256",
            headers={"x5c": [base64.b64encode(der).decode()]},
        )
        body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def _private(self, repository: str) -> set[str]:
        return {"pull"} if repository in self.private else set()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Registry:
    """A running docker-registry; `host` is what OCI_REGISTRY takes."""

    folder: Path
    auth: str = "none"  # none | htpasswd | token
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    token_server: TokenServer | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> Registry:
        storage = self.folder / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
            "http": {"addr": self.host},
        }
        if self.auth == "htpasswd":
            htpasswd = self.folder / "htpasswd"
            htpasswd.write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()}\n")
            config["auth"] = {"htpasswd": {"realm": "test-realm", "path": str(htpasswd)}}
        elif self.auth == "token":
            self.token_server = TokenServer(self.folder, {USER: PASSWORD})
            config["auth"] = {
                "token": {
                    "realm": self.token_server.url,
                    "service": SERVICE,
                    "issuer": ISSUER,
                    "rootcertbundle": str(self.token_server.bundle),
                }
            }
        path = self.folder / "config.yml"
        path.write_text(json.dumps(config))  # JSON is YAML
        log = (self.folder / "registry.log").open("wb")
        self.process = subprocess.Popen([registry_binary(), "serve", str(path)], stdout=log, stderr=log)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"docker-registry exited: {(self.folder / 'registry.log').read_text()[-2000:]}")
            try:
                if requests.get(f"{self.url}/v2/", timeout=1).status_code in (200, 401):
                    return self
            except requests.ConnectionError:
                time.sleep(0.05)
        pytest.fail("docker-registry did not become ready within 15 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        if self.token_server is not None:
            self.token_server.close()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def empty(self) -> None:
        """Forget everything stored (docker-registry keeps no cache unless configured to), as a new registry."""
        storage = self.folder / "storage"
        for entry in list(storage.iterdir()) if storage.is_dir() else []:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        if self.token_server is not None:
            self.token_server.requests.clear()

    def storage_files(self) -> int:
        """How many files the registry stores (blobs and links): a re-release must not add any."""
        return sum(1 for p in (self.folder / "storage").rglob("*") if p.is_file())

    # --- independent reads: raw HTTP, not the project's client ----------------------------------

    def _auth(self, repository: str) -> dict[str, str]:
        if self.auth == "htpasswd":
            return {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
        if self.auth == "token":
            assert self.token_server is not None
            answer = requests.get(
                self.token_server.url,
                params={"service": SERVICE, "scope": f"repository:{repository}:pull"},
                auth=(USER, PASSWORD),
                timeout=5,
            )
            return {"Authorization": f"Bearer {answer.json()['token']}"}
        return {}

    def raw_manifest(self, repository: str, reference: str, accept: str = MANIFEST_ACCEPT) -> requests.Response:
        return requests.get(
            f"{self.url}/v2/{repository}/manifests/{reference}",
            headers={"Accept": accept, **self._auth(repository)},
            timeout=10,
        )

    def raw_blob_sha256(self, repository: str, digest: str) -> str:
        response = requests.get(
            f"{self.url}/v2/{repository}/blobs/{digest}", headers=self._auth(repository), timeout=30
        )
        response.raise_for_status()
        return "sha256:" + hashlib.sha256(response.content).hexdigest()

    def skopeo_raw(self, repository: str, reference: str) -> bytes:
        sep = "@" if reference.startswith("sha256:") else ":"
        args = [
            "skopeo",
            "inspect",
            "--raw",
            "--tls-verify=false",
            f"docker://{self.host}/{repository}{sep}{reference}",
        ]
        if self.auth != "none":
            authfile = self.folder / "skopeo-auth.json"
            token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            authfile.write_text(json.dumps({"auths": {self.host: {"auth": token}}}))
            args[3:3] = ["--authfile", str(authfile)]
        return subprocess.run(args, check=True, capture_output=True, timeout=60).stdout

    def raw_get(self, path: str) -> requests.Response:
        repository = path.split("/v2/", 1)[1].rsplit("/", 2)[0] if "/v2/_catalog" not in path else "catalog"
        headers = self._auth(repository) if self.auth != "token" or repository != "catalog" else {}
        return requests.get(f"{self.url}{path}", headers=headers, timeout=10)

    def raw_head(self, path: str) -> int:
        repository = path.split("/v2/", 1)[1].rsplit("/", 2)[0]
        return requests.head(f"{self.url}{path}", headers=self._auth(repository), timeout=10).status_code


class RegistryPool:
    """One registry per kind (none, htpasswd, token) for a test session, started when first asked for.

    `fresh(kind)` hands it to the next test emptied; a registry that died is replaced by a new one.
    Tests of one worker run one after another, so a test never sees another test's repositories.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.running: dict[str, Registry] = {}

    def fresh(self, auth: str) -> Registry:
        current = self.running.get(auth)
        if current is not None and not current.running():
            current.stop()
            current = None
        if current is None:
            folder = self.folder / f"{auth}-{len(list(self.folder.iterdir()))}"
            current = self.running[auth] = Registry(folder, auth=auth).start()
        else:
            current.empty()
        return current

    def stop_all(self) -> None:
        for running in self.running.values():
            running.stop()
        self.running.clear()
