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
import re
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from pack_publisher.oci import layout as layout_files
from pack_publisher.oci.descriptor import Descriptor, is_digest
from pack_publisher.oci.referrers import INDEX_MEDIA_TYPE
from pack_publisher.registry.credentials import Credentials, PrivateRegistryConfig
from pack_publisher.registry.http_referrers import index_cycle, read_index
from pack_publisher.registry.retry import TRANSIENT_STATUS, RetryPolicy, Transient, retrying
from pack_publisher.registry.transport import (
    AttachRequest,
    FetchedManifest,
    LikelyPush,
    NotFound,
    PushOutcome,
    PushRequest,
    SinkFactory,
)
from pack_publisher.runtime import cleanup
from pack_publisher.runtime.errors import AccessError, PublisherError
from pack_publisher.runtime.processes import Commands, HeldCommands, Started
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
    """Safe to share between threads: its only state, the copies `prepare` started, is kept under a lock."""

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
        self._held = HeldCommands()  # (repository, tags, with referrer): an `oras cp` at its gate (`prepare`)

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
        stdin: bytes | None = None,
        first: Started | None = None,
    ) -> bytes:
        """One oras command under the retry policy: its stdout, or nothing when streamed into a new sink per
        attempt; `first`: the command already started (`prepare`), which is the first attempt."""
        seconds = timeout or self._small_timeout()
        renewed = False
        started = [first] if first is not None else []

        def attempt() -> bytes:
            nonlocal renewed
            try:
                if started:
                    return self._once(args, operation, seconds, None, stdin, started.pop())
                if open_sink is None:
                    return self._once(args, operation, seconds, None, stdin)
                with open_sink() as sink:
                    return self._once(args, operation, seconds, sink, stdin)
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
        stdin: bytes | None = None,
        started: Started | None = None,
    ) -> bytes:
        try:
            if started is not None:
                done = started.finish(timeout)
            else:
                done = self.commands.run(
                    [self.oras, *args],
                    timeout=timeout,
                    stdout=sink or True,
                    env=self.env,
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
        """`oras cp` of a layout written here (the exact bytes composed here; files linked) to the registry: the
        first manifest under `tags` (none: by digest), `-r` with a referrer of it; the deadline allows for every
        blob but `already_sent`. The copy `prepare` started for it is let through its gate, else one starts."""
        root, recursive = manifests[0][0], len(manifests) > 1
        near = next(source for _, source in blobs if isinstance(source, Path)).parent
        held = self._held.take((repository, tuple(tags), recursive))
        work, started = held or (cleanup.scratch_folder(near, LAYOUT_PREFIX), None)
        try:
            layout = work / "layout"
            if started is None:
                layout_files.start_layout(layout, gated=False)
            layout_files.add_blobs(layout, blobs, manifests)
            index = layout_files.index_of(manifests, tags[0] if tags else None)
            if started is not None and not layout_files.open_gate(layout, index, started, self._small_timeout()):
                started.abandon()  # ended, or never came to its gate: stopped before the file below can start it
                started = None
            layout_files.write_index(layout, index)  # for any later attempt (and in place of the gate)
            size = sum(blob.size for blob, _ in blobs if blob.digest not in already_sent)
            args = self._copy_args(layout, repository, tags, root.digest, recursive)
            self._run(args, operation, timeout=self._small_timeout() + size / MIN_UPLOAD_RATE, first=started)
        finally:
            if started is not None:
                started.abandon()  # an error before it was let through (once finished: nothing)
            cleanup.remove_folder(work)

    def _copy_args(self, layout: Path, repository: str, tags: list[str], root: str, recursive: bool) -> list[str]:
        source = f"{layout}:{tags[0]}" if tags else f"{layout}@{root}"
        target = f"{self.registry}/{repository}" + (f":{','.join(tags)}" if tags else f"@{root}")
        to_remote = ["--to-registry-config", str(self.config.path), *(["--to-plain-http"] if self.plain_http else [])]
        return ["cp", *(["-r"] if recursive else []), "--from-oci-layout", *to_remote, source, target]

    def prepare(self, likely: LikelyPush) -> None:
        """Start the `oras cp` this push will run, held at its layout's gate (`oci.layout`) until `_copy` knows
        it is wanted, so oras' start-up overlaps the plan; where no gate can be made, the push starts it later."""
        if not likely.tags:
            return
        try:
            work = cleanup.scratch_folder(likely.folder, LAYOUT_PREFIX)
        except OSError:
            return  # the push says why, if it comes
        try:
            layout_files.start_layout(work / "layout", gated=True)
            args = self._copy_args(work / "layout", likely.repository, likely.tags, "", likely.with_referrer)
            started = self.commands.start([self.oras, *args], env=self.env, pass_fds=self.config.pass_fds)
        except OSError:
            cleanup.remove_folder(work)
            return
        self._held.hold((likely.repository, tuple(likely.tags), likely.with_referrer), work, started)

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
        self._held.drop_all()  # prepared for a push that did not come (already published, another plan)
        self.config.remove()  # the run's private registry config goes with the transport
        self.reader.close()
