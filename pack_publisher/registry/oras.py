"""The oras CLI transport: every write is one oras command, retried under the policy; reads are requests.

Publishing writes an OCI image layout itself (the archive hard-linked, the exact manifest bytes composed
here) and runs `oras cp -r --from-oci-layout` to copy the pack and its SBOM referrer byte for byte: no
second composition to compare, no copy of the archive (see `push` for when the archive goes first).
Every read (the plan's resolve, the read-back, the blob checks, the referrers) is the built-in client's,
with the same credentials: a request costs a ms where an oras process costs 15-40, and a client other than
the writer proves what was written.

Credentials live in the run's private registry config (`credentials.PrivateRegistryConfig`: in memory
on Linux), never in the user's Docker config, which oras never reads; it is written directly rather
than by `oras login`, which may hand the password to a native credential store. Before oras gets the
credentials, the built-in client answers the registry's challenge once (`connect.probe_token_realm`),
whose rules decide where they may go. Each oras command dies with this process (`runtime.launch`).

oras reports everything on stderr as text; the classification below reads only its stable parts
(`response status code NNN`, the registry's error codes as oras prints them, oras-go's
`<ref>: not found`, Go's network error texts), and anything it cannot place is a final error, never
"not found". A digest mismatch while reading is tampering (final); a 401 after the credentials were
accepted is an expired token (one more command). A command is many requests, so its attempts are
bounded by the time budget (at most `WHOLE_COMMAND_ATTEMPTS`), not by one request's count.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from pack_publisher.oci.descriptor import Descriptor, is_digest
from pack_publisher.oci.referrers import INDEX_MEDIA_TYPE
from pack_publisher.registry.credentials import Credentials, PrivateRegistryConfig
from pack_publisher.registry.http_referrers import index_cycle, read_index
from pack_publisher.registry.retry import TRANSIENT_STATUS, RetryPolicy, Transient, retrying
from pack_publisher.registry.transport import (
    AttachRequest,
    FetchedManifest,
    NotFound,
    PushOutcome,
    PushRequest,
    SinkFactory,
)
from pack_publisher.runtime import cleanup
from pack_publisher.runtime.errors import AccessError, PublisherError
from pack_publisher.runtime.processes import Commands
from pack_publisher.runtime.redact import Redactor

if TYPE_CHECKING:
    from pack_publisher.registry.http import HttpTransport

MIN_UPLOAD_RATE = 256 * 1024  # bytes/s below which an upload command is cut off (wall clock, on average)
# How oras words a failure; compiled on first use (the `re` module's cache): a push that works never needs them.
_NOT_FOUND = r"^Error response from registry: .*: not found$"
_STATUS = r"response status code (\d{3})"
_NETWORK = (
    r"(?i)connection reset|connection refused|broken pipe|unexpected EOF|\bEOF\b|i/o timeout|timeout|"
    r"no such host|server misbehaving|invalid response|server closed"
)
# Content that is not what was asked for: tampering (or a broken registry), never an outage to retry.
_TAMPERED = r"(?i)digest mismatch|size mismatch|mismatched (digest|size)"
# The registry's own error codes for 503 / 429 / 500 (its JSON error body): oras prints them without a status.
_REGISTRY_TRANSIENT = r"(?:^|: )(unavailable|toomanyrequests|unknown): "
_DENIED = r": (unauthorized|denied|forbidden): "
_UNAUTHORIZED = r"(?:^|: )unauthorized: "
WHOLE_COMMAND_ATTEMPTS = 10  # a command is many requests, each may fail once in turn: the time budget bounds it
_QUERY = r"\?[^\"\s]*"  # upload URLs carry long state tokens: not worth showing
LAYOUT_PREFIX = ".oras-layout-"
Answer = TypeVar("Answer")


class Unauthorized(AccessError):
    """A 401: on a command after the credentials were accepted, a token that expired mid-way (retried once)."""


class OrasTransport:
    """Safe to share between threads: it holds no per-request state."""

    name = "oras CLI"

    def __init__(
        self,
        oras: str,
        registry: str,
        config: PrivateRegistryConfig,
        credentials: Credentials | None,
        plain_http: bool,
        commands: Commands,
        env: dict[str, str],
        redactor: Redactor,
        policy: RetryPolicy | None = None,
        *,
        reader: HttpTransport,
    ) -> None:
        self.oras = oras
        self.reader = reader  # the built-in client, with the same credentials: every read goes through it
        self.registry = registry
        self.config = config
        self.who = f"as {credentials.username}" if credentials else "anonymously"
        self.plain_http = plain_http
        self.commands = commands
        self.env = env
        self.redact = redactor
        self.policy = policy or RetryPolicy()
        self._accepted = False  # some command got past the registry's auth: a later 401 is an expired token

    # --- running oras -----------------------------------------------------------------------------

    def _remote(self) -> list[str]:
        return ["--registry-config", str(self.config.path), *(["--plain-http"] if self.plain_http else [])]

    def _ref(self, repository: str, reference: str) -> str:
        sep = "@" if is_digest(reference) else ":"
        return f"{self.registry}/{repository}{sep}{reference}"

    def _small_timeout(self) -> float:
        # one request's read timeout of the built-in client (oras' own 5xx retries, ~7 s, fit in it)
        return self.policy.read_timeout

    def _run(
        self,
        args: list[str],
        operation: str,
        *,
        timeout: float | None = None,
        open_sink: SinkFactory | None = None,
        cwd: Path | None = None,
        stdin: bytes | None = None,
    ) -> bytes:
        """One oras command under the retry policy: its stdout, or nothing when streamed into a new sink per attempt."""
        seconds = timeout or self._small_timeout()
        renewed = False

        def attempt() -> bytes:
            nonlocal renewed
            try:
                if open_sink is None:
                    return self._once(args, operation, seconds, None, cwd, stdin)
                with open_sink() as sink:
                    return self._once(args, operation, seconds, sink, cwd, stdin)
            except Unauthorized as exc:
                if renewed or not self._accepted:
                    raise
                renewed = True  # a new oras command fetches a new token, as the built-in client re-authenticates
                raise Transient(f"{exc.message} (after the credentials were accepted: trying once more)") from None

        return retrying(
            self.policy, self.registry, operation, attempt, attempt_seconds=seconds, attempts=WHOLE_COMMAND_ATTEMPTS
        )

    def _once(
        self,
        args: list[str],
        operation: str,
        timeout: float,
        sink: IO[bytes] | None,
        cwd: Path | None = None,
        stdin: bytes | None = None,
    ) -> bytes:
        try:
            done = self.commands.run(
                [self.oras, *args],
                timeout=timeout,
                stdout=sink or True,
                env=self.env,
                cwd=cwd,
                stdin=stdin,
                pass_fds=self.config.pass_fds,
            )
        except OSError as exc:
            raise PublisherError(f"cannot run {self.oras}: {exc.strerror}") from None
        if done.expired:
            raise Transient(f"oras {args[0]} ran over {timeout:.0f} s")
        if done.returncode == 0:
            self._accepted = True
            return done.stdout
        pushing = args[0] == "cp" or args[:2] == ["blob", "push"]  # the read-back proves what a push wrote
        error = self._classify(done.stderr_tail, done.returncode, operation, pushing=pushing)
        if isinstance(error, NotFound):
            self._accepted = True  # the registry looked: the credentials got through
        raise error

    def _classify(self, stderr: str, code: int, operation: str, *, pushing: bool = False) -> Exception:
        """What oras' error says: NotFound, Transient, a final error (a digest mismatch when reading is
        tampering: final; when pushing, the registry's answer is retried and the read-back proves content)."""
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("Error")]  # oras may add a hint line after it
        last = (errors or lines or [f"exit {code}"])[-1]
        cause = self.redact(re.sub(_QUERY, "", last))[:400]
        status = re.search(_STATUS, last)
        if re.match(_NOT_FOUND, last) and status is None:
            return NotFound(cause)
        if re.search(_TAMPERED, last) and not pushing:
            return PublisherError(f"{self.registry}: {operation}: the registry served other content ({cause})")
        if status is not None:
            number = int(status.group(1))
            if number in TRANSIENT_STATUS:
                return Transient(cause)
            if number == 401:
                return Unauthorized(f"{self.registry}: {operation}: access denied {self.who} ({cause})")
            if number == 403:
                return AccessError(f"{self.registry}: {operation}: access denied {self.who} ({cause})")
            return PublisherError(f"{self.registry}: {operation}: {cause}")
        if re.search(_REGISTRY_TRANSIENT, last.removeprefix("Error response from registry: ")):
            return Transient(cause)
        if re.search(_UNAUTHORIZED, last.removeprefix("Error response from registry: ")):
            return Unauthorized(f"{self.registry}: {operation}: access denied {self.who} ({cause})")
        if "credential not found" in last:
            return AccessError(
                f"{self.registry}: {operation}: the registry requires credentials; set OCI_USERNAME and OCI_PASSWORD "
                "or log in with `oras login` / `docker login`"
            )
        if re.search(_DENIED, last):  # registry error codes UNAUTHORIZED / DENIED, as oras words them
            return AccessError(f"{self.registry}: {operation}: access denied {self.who} ({cause})")
        if "x509:" in last or "certificate" in last:
            return AccessError(f"{self.registry}: {operation}: TLS failed ({cause})")
        if re.search(_NETWORK, last) or (pushing and re.search(_TAMPERED, last)):
            return Transient(cause)
        return PublisherError(f"{self.registry}: {operation}: {cause}")

    # --- the storage primitives -------------------------------------------------------------------

    # Reads go through the built-in client (`reader`): a request costs about a millisecond where an oras
    # process costs 15-40 ms of start-up, and a pack's proofs are four reads (resolve, read back, the
    # blobs, the referrers). It also proves what oras wrote with a second, independent client.

    def _read(self, read: Callable[[], Answer]) -> Answer:
        """A read of the built-in client; its answer (or "not found") shows the credentials got through."""
        try:
            answer = read()
        except NotFound:
            self._accepted = True
            raise
        self._accepted = True
        return answer

    def resolve(self, repository: str, reference: str) -> Descriptor:
        return self._read(lambda: self.reader.resolve(repository, reference))

    def fetch_manifest(self, repository: str, reference: str) -> FetchedManifest:
        return self._read(lambda: self.reader.fetch_manifest(repository, reference))

    def blob_exists(self, repository: str, digest: str) -> bool:
        return self._read(lambda: self.reader.blob_exists(repository, digest))

    def blob_served(self, repository: str, digest: str) -> tuple[str, int] | None:
        return self._read(lambda: self.reader.blob_served(repository, digest))

    def fetch_blob(self, repository: str, digest: str, open_sink: SinkFactory) -> None:
        self._read(lambda: self.reader.fetch_blob(repository, digest, open_sink))

    def push(self, request: PushRequest) -> PushOutcome:
        """`oras cp` of a layout holding the pack and its referrer (`-r`): the graph by digest, the tags last.

        oras-go copies that graph one step after another: fourteen round trips. While other packs wait
        for the slot (`slot_wanted`, in a `staged` push), only the archive goes in it (`oras blob push`
        by the build's digest: three round trips, and the registry refuses other bytes), and the copy is
        the outcome's `commit`, run by the caller beside the next packs' uploads once the archive is
        proven: oras-go finds the archive there and sends the rest, the tags still last.
        """
        artifact = request.artifact
        blobs: list[tuple[Descriptor, Path | bytes]] = [(artifact.layer, request.gtpack), (artifact.blobs[0], b"{}")]
        manifests = [(artifact.descriptor, artifact.manifest)]
        if request.referrer is not None:
            referrer = request.referrer.referrer
            blobs.append((referrer.layer, request.referrer.document))
            manifests.append((referrer.descriptor, referrer.manifest))  # listed untagged: `-r` finds it
        operation = f"copying {request.repository}:{','.join(request.tags)} to the registry"
        written = request.referrer is not None

        layer = artifact.layer

        def copy(sent: frozenset[str] = frozenset()) -> PushOutcome:
            self._copy(request.repository, blobs, manifests, request.tags, operation, already_sent=sent)
            return PushOutcome(uploaded_blobs=None, referrer_written=written)

        if not (request.staged and request.slot_wanted):
            return copy()
        self._run(
            ["blob", "push", *self._remote(), self._ref(request.repository, layer.digest), str(request.gtpack)],
            f"uploading {request.repository}@{layer.short}",
            timeout=self._small_timeout() + layer.size / MIN_UPLOAD_RATE,
        )
        sent = frozenset([layer.digest])  # oras-go finds it there and skips it
        return PushOutcome(uploaded_blobs=None, referrer_written=written, commit=lambda: copy(sent))

    def _copy(
        self,
        repository: str,
        blobs: list[tuple[Descriptor, Path | bytes]],
        manifests: list[tuple[Descriptor, bytes]],
        tags: list[str],
        operation: str,
        already_sent: frozenset[str] = frozenset(),
    ) -> None:
        """`oras cp` of a layout written here (the exact bytes composed here; files linked, not copied) to
        the registry: its first manifest under `tags`, or by digest when there are none; with a second
        manifest (a referrer of the first), `-r`; its deadline allows for every blob but `already_sent`."""
        gtpack_or_document = next(source for _, source in blobs if isinstance(source, Path))
        cleanup.sweep_stale(gtpack_or_document.parent, LAYOUT_PREFIX)  # left by a run killed outright
        work = Path(tempfile.mkdtemp(prefix=f"{LAYOUT_PREFIX}{os.getpid()}-", dir=gtpack_or_document.parent))
        cleanup.register_folder(work)
        try:
            root = manifests[0][0]
            layout = _write_layout(work, blobs, manifests, tags[0] if tags else None)
            source = f"{layout}:{tags[0]}" if tags else f"{layout}@{root.digest}"
            target = f"{self.registry}/{repository}" + (f":{','.join(tags)}" if tags else f"@{root.digest}")
            recursive = ["-r"] if len(manifests) > 1 else []
            to_remote = ["--to-registry-config", str(self.config.path)]
            to_remote += ["--to-plain-http"] if self.plain_http else []
            size = sum(blob.size for blob, _ in blobs if blob.digest not in already_sent)
            self._run(
                ["cp", *recursive, "--from-oci-layout", *to_remote, source, target],
                operation,
                timeout=self._small_timeout() + size / MIN_UPLOAD_RATE,
            )
        finally:
            cleanup.remove_folder(work)

    def referrers(self, repository: str, subject: str) -> list[dict[str, Any]]:
        return self._read(lambda: self.reader.referrers(repository, subject))

    def attach(self, request: AttachRequest) -> None:
        """One `oras cp` of a layout holding the referrer, by its digest: the bytes composed here
        (`referrers.compose_sbom_referrer`), so no oras version can compose another manifest than the one
        the dry run and the lockfile predict. oras-go puts what the registry lacks (its subject must be
        there) and, where the registry has no referrers API, adds it to the subject's tag-schema index.
        """
        referrer = request.referrer
        blobs: list[tuple[Descriptor, Path | bytes]] = [(referrer.layer, request.document), (referrer.blobs[0], b"{}")]
        what = f"attaching {referrer.descriptor.short} to {request.repository}@{referrer.subject.short}"
        self._copy(request.repository, blobs, [(referrer.descriptor, referrer.manifest)], [], what)

    def index_referrer(self, request: AttachRequest) -> None:
        """The tag-schema index by read-modify-write: read by the built-in client, written by `oras manifest push`.

        `oras cp` of a referrer whose manifest the registry already holds pushes nothing, so oras-go
        indexes nothing: a referrer stored but missing from the index (removed from it by another writer,
        or left by a run stopped in between) is added here.
        """
        repository = request.repository

        def write(tag: str, index: bytes) -> None:
            self._run(
                [
                    "manifest",
                    "push",
                    "--media-type",
                    INDEX_MEDIA_TYPE,
                    *self._remote(),
                    self._ref(repository, tag),
                    "-",
                ],
                f"writing the referrers index {repository}:{tag}",
                stdin=index,
            )

        read = functools.partial(read_index, self.reader, repository)
        index_cycle(read, write, request.referrer, f"{self.registry}/{repository}")

    def close(self) -> None:
        self.config.remove()  # the run's private registry config goes with the transport
        self.reader.close()


def _write_layout(
    work: Path, blobs: list[tuple[Descriptor, Path | bytes]], manifests: list[tuple[Descriptor, bytes]], tag: str | None
) -> Path:
    """An OCI image layout holding exactly these manifests and their blobs, the first tagged `tag` in the
    layout if given (the others untagged); files are linked, not copied."""
    layout = work / "layout"
    folder = layout / "blobs" / "sha256"
    folder.mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}', encoding="utf-8")
    for blob, source in [*blobs, *manifests]:
        path = folder / blob.digest.split(":", 1)[1]
        if isinstance(source, Path):
            _link(source, path)
        elif not path.exists():  # the empty config, once
            path.write_bytes(source)
    entries: list[dict[str, Any]] = []
    for descriptor, _ in manifests:
        entries.append({"mediaType": descriptor.media_type, "digest": descriptor.digest, "size": descriptor.size})
    if tag is not None:
        entries[0]["annotations"] = {"org.opencontainers.image.ref.name": tag}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": entries}), encoding="utf-8")
    return layout


def _link(source: Path, blob: Path) -> None:
    try:
        os.link(source, blob)
    except OSError:  # another file system, or links not allowed: a copy is correct, only slower
        shutil.copyfile(source, blob)
