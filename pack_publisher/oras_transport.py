"""The oras CLI transport: pack into a local OCI layout, check the bytes, then copy to the registry.

Packing first (`oras push --oci-layout`) lets us compare oras' manifest with the one composed here
before anything reaches the registry; `oras cp` then copies it byte for byte under every tag.
Digests come from `--format json`, `--export-manifest` and `oras resolve`, never from human text.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from pathlib import Path

from .archive import file_sha256
from .artifact import GTPACK_MEDIA_TYPE
from .credentials import Credentials
from .errors import PublisherError
from .redact import Redactor
from .settings import child_environment
from .transport import PushOutcome, PushRequest

COMMAND_TIMEOUT_SECONDS = 900


class OrasTransport:
    name = "oras CLI"

    def __init__(
        self,
        oras: str,
        registry: str,
        credentials: Credentials | None,
        plain_http: bool,
        experimental: bool,
        redactor: Redactor,
    ) -> None:
        self.oras = oras
        self.registry = registry
        self.plain_http = plain_http
        self.redact = redactor
        self.env = child_environment()
        if experimental:
            self.env["ORAS_EXPERIMENTAL"] = "1"
        # credentials from Docker's config are read by oras itself; only env credentials need a login
        if credentials is not None and credentials.origin in {"OCI_USERNAME/OCI_PASSWORD", "GITHUB_ACTOR/GITHUB_TOKEN"}:
            self._login(credentials)

    def _run(
        self,
        args: list[str],
        what: str,
        *,
        stdin: str | None = None,
        cwd: Path | None = None,
        not_found_ok: bool = False,
    ) -> subprocess.CompletedProcess[bytes] | None:
        try:
            result = subprocess.run(
                [self.oras, *args],
                input=stdin.encode() if stdin is not None else None,
                stdin=None if stdin is not None else subprocess.DEVNULL,
                capture_output=True,
                cwd=cwd,
                env=self.env,
                timeout=COMMAND_TIMEOUT_SECONDS,
                check=False,
            )
        except OSError as exc:
            raise PublisherError(f"cannot run {self.oras}: {exc.strerror}") from None
        except subprocess.TimeoutExpired:
            raise PublisherError(f"{self.registry}: oras {what} ran over {COMMAND_TIMEOUT_SECONDS} s") from None
        if result.returncode != 0:
            stderr = result.stderr.decode("utf-8", "replace").strip()
            if not_found_ok and "not found" in stderr.lower():
                return None
            last = stderr.splitlines()[-1] if stderr else f"exit {result.returncode}"
            raise PublisherError(self.redact(f"{self.registry}: oras {what} failed: {last}"))
        return result

    def _remote(self) -> list[str]:
        return ["--plain-http"] if self.plain_http else []

    def _login(self, credentials: Credentials) -> None:
        self._run(
            ["login", *self._remote(), self.registry, "-u", credentials.username, "--password-stdin"],
            "login",
            stdin=credentials.password.get_secret_value(),
        )

    def _ref(self, repository: str, reference: str) -> str:
        sep = "@" if reference.startswith("sha256:") else ":"
        return f"{self.registry}/{repository}{sep}{reference}"

    def resolve(self, repository: str, reference: str) -> str | None:
        result = self._run(["resolve", *self._remote(), self._ref(repository, reference)], "resolve", not_found_ok=True)
        return None if result is None else result.stdout.decode().strip()

    def fetch_manifest(self, repository: str, reference: str) -> bytes | None:
        result = self._run(
            ["manifest", "fetch", *self._remote(), self._ref(repository, reference)],
            "manifest fetch",
            not_found_ok=True,
        )
        return None if result is None else result.stdout

    def blob_exists(self, repository: str, digest: str) -> bool:
        result = self._run(
            ["blob", "fetch", *self._remote(), "--descriptor", self._ref(repository, digest)],
            "blob fetch --descriptor",
            not_found_ok=True,
        )
        return result is not None

    def fetch_blob(self, repository: str, digest: str, destination: Path) -> None:
        self._run(
            ["blob", "fetch", *self._remote(), "--output", str(destination), self._ref(repository, digest)],
            "blob fetch",
        )
        if "sha256:" + file_sha256(destination) != digest:
            raise PublisherError(f"{self.registry}: blob {digest[:19]} arrived with other content")

    def push(self, request: PushRequest) -> PushOutcome:
        annotations = json.loads(request.manifest).get("annotations", {})
        with tempfile.TemporaryDirectory(prefix="oras-", dir=request.gtpack.parent) as tmp:
            work = Path(tmp)
            (work / "annotations.json").write_text(json.dumps({"$manifest": annotations}), encoding="utf-8")
            layout = f"{work / 'layout'}:{request.tags[0]}"
            result = self._run(
                [
                    "push",
                    "--oci-layout",
                    layout,
                    f"{request.gtpack.name}:{GTPACK_MEDIA_TYPE}",
                    "--artifact-type",
                    GTPACK_MEDIA_TYPE,
                    "--annotation-file",
                    str(work / "annotations.json"),
                    "--export-manifest",
                    str(work / "manifest.json"),
                    "--format",
                    "json",
                ],
                "push --oci-layout",
                cwd=request.gtpack.parent,  # the relative file name becomes the layer title
            )
            packed = _json_digest(result.stdout if result is not None else b"")
            exported = (work / "manifest.json").read_bytes()
            if exported != request.manifest or packed != request.digest:
                actual = "sha256:" + hashlib.sha256(exported).hexdigest()
                raise PublisherError(
                    f"oras composed {request.repository} as {actual}, not the expected {request.digest}; "
                    "nothing was pushed (is this oras version byte-compatible with 1.3.3?)"
                )
            target = f"{self.registry}/{request.repository}:{','.join(request.tags)}"
            to_remote = ["--to-plain-http"] if self.plain_http else []
            self._run(["cp", "--from-oci-layout", *to_remote, layout, target], "cp")
        digest = self.resolve(request.repository, request.tags[0])
        if digest is None:
            raise PublisherError(f"{self.registry}: {request.repository}:{request.tags[0]} is missing after oras cp")
        return PushOutcome(digest=digest, uploaded_blobs=None)

    def close(self) -> None:
        return None


def _json_digest(stdout: bytes) -> str:
    """The manifest digest from `oras push --format json` output."""
    try:
        data = json.loads(stdout)
        digest = data["digest"]
    except (ValueError, KeyError, TypeError):
        raise PublisherError("oras push --format json printed something that is not its JSON result") from None
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise PublisherError(f"oras push reported an unexpected digest {digest!r}")
    return digest
