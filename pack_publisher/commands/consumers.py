"""What Greentic's consumers get beside each pack: its SBOM, written, attached and checked, and a proof
that they can pull it anonymously.

The SBOM (issue 22): at build, the archive's `sbom.cbor` becomes `OUT_DIR/<pack>.cdx.json`
(`sources.sbom`) and the referrer manifest attaching it to the pack's manifest is composed
(`oci.referrers.compose_sbom_referrer`): both digests are known before anything is pushed. At push,
after the pack is proven, the referrer is attached unless the registry already lists it (a re-run adds
nothing; a pack published before SBOMs existed gets one, since a version tag is immutable but its
referrers may grow), then listed again to prove it landed. `verify` finds it, downloads the document,
and compares it with the archive's `sbom.cbor`.

Anonymous pulls (issue 20): greentic-dist and greentic-bundle pull anonymously (`OciPackFetcher`:
"Anonymous HTTPS pulls only"), and GHCR creates every new package private. So after a real push each
published pack's manifest is fetched by its digest with no credentials at all (the registry's token
dance included, as a consumer would). A pack that cannot be fetched so is named in a warning, with
GHCR's settings page where its visibility is changed; REQUIRE_PUBLIC=1 (or --require-public) turns
that into a failed release, after the packs are published and the lockfile is written.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from pack_publisher.config.run import Run
from pack_publisher.oci.descriptor import Descriptor, describe, digest_of
from pack_publisher.oci.manifest import CREATED, Artifact
from pack_publisher.oci.referrers import (
    CYCLONEDX_MEDIA_TYPE,
    Referrer,
    check_sbom_referrer,
    compose_sbom_referrer,
    lists,
)
from pack_publisher.registry.retry import RetryPolicy
from pack_publisher.registry.transport import AttachRequest, NotFound
from pack_publisher.registry.verified import VerifiedRegistry
from pack_publisher.runtime.errors import AccessError, PublisherError
from pack_publisher.runtime.parallel import beside
from pack_publisher.state.records import BuiltPack, PublishedPack, write_atomic

if TYPE_CHECKING:
    from pack_publisher.registry.http import HttpTransport
    from pack_publisher.sources.archive import ArchiveFacts

MAX_SBOM_BYTES = 16 * 1024 * 1024  # far above the SBOM of a 64 MiB pack; read whole by verify
ATTACH_ATTEMPTS = 3  # attach-and-list cycles: another writer of the referrers index may drop the entry once


def sbom_file_name(pack: str) -> str:
    """The SBOM's file name beside the archive, and its title in the registry."""
    return f"{pack}.cdx.json"


def prepare(
    run: Run, name: str, gtpack: Path, facts: ArchiveFacts, pack: Artifact
) -> tuple[Descriptor, Referrer] | None:
    """Write OUT_DIR/<pack>.cdx.json from the archive's sbom.cbor and compose its referrer; None without one."""
    from pack_publisher.sources import sbom  # cbor2 and the archive reader: only where an SBOM is read

    s = run.settings
    path = gtpack.parent / sbom_file_name(name)
    files = sbom.read_sbom(gtpack)
    if files is None:
        path.unlink(missing_ok=True)  # an SBOM of an earlier build must not pass for this one's
        run.warn(f"pack {name!r}: the archive holds no {sbom.SBOM_ENTRY}; no SBOM is written or attached")
        return None
    identity = sbom.PackIdentity(
        pack_id=facts.pack_id,
        version=facts.version,
        manifest_digest=pack.descriptor.digest,
        gtpack_digest=facts.layer.digest,
        repository_url=f"{s.registry}/{s.repository(name)}",
        created=s.created,
    )
    document = sbom.cyclonedx(files, identity)
    write_atomic(path, document)
    described = describe(CYCLONEDX_MEDIA_TYPE, document)
    return described, compose_sbom_referrer(described, path.name, pack.descriptor, s.created)


def document_path(built: BuiltPack) -> Path:
    return built.gtpack.parent / sbom_file_name(built.name)


def load_referrer(built: BuiltPack, pack: Artifact) -> Referrer | None:
    """The build's referrer, composed again from the SBOM file and the pack manifest, refusing either changed."""
    if built.sbom is None or built.sbom_referrer is None:
        return None
    path = document_path(built)
    try:
        document = path.read_bytes()
    except OSError as exc:
        raise PublisherError(f"pack {built.name!r}: cannot read {path} ({exc.strerror}); rebuild it") from None
    if describe(CYCLONEDX_MEDIA_TYPE, document) != built.sbom:
        raise PublisherError(f"pack {built.name!r}: {path} changed since the build; rebuild it")
    created = json.loads(pack.manifest)["annotations"][CREATED]
    referrer = compose_sbom_referrer(built.sbom, path.name, pack.descriptor, created)
    if referrer.descriptor != built.sbom_referrer:
        raise PublisherError(f"pack {built.name!r}: its SBOM referrer no longer composes to the build's; rebuild it")
    return referrer


def is_listed(registry: VerifiedRegistry, repository: str, referrer: Referrer) -> bool:
    """Whether the registry lists `referrer` among the referrers of its subject."""
    return lists(registry.transport.referrers(repository, referrer.subject.digest), referrer.descriptor.digest)


def attach_unlisted(
    registry: VerifiedRegistry, repository: str, referrer: Referrer, document: Path, written: bool = False
) -> str:
    """Attach a referrer just found not listed, and prove it listed; `written`: it went up with the pack.

    A referrer written with the pack (`PushRequest.referrer`) but not listed (its manifest was stored,
    the index was not updated or another writer dropped the entry) is indexed again. Returns "attached".
    """
    transport = registry.transport
    subject, digest = referrer.subject.digest, referrer.descriptor.digest
    request = AttachRequest(repository=repository, referrer=referrer, document=document)
    for attempt in range(ATTACH_ATTEMPTS):
        # NotFound: oras-go deleting the old index another writer deleted first; look, then try again
        with contextlib.suppress(NotFound):
            if attempt == 0 and not written:
                transport.attach(request)
            else:  # stored but not listed: its manifest was already there, or another writer dropped it
                transport.index_referrer(request)
        if lists(transport.referrers(repository, subject), digest):
            return "attached"
    raise PublisherError(
        f"{registry.registry}/{repository}: SBOM referrer {referrer.descriptor.short} is not listed among the "
        f"referrers of {referrer.subject.short} after {ATTACH_ATTEMPTS} attempts"
    )


def verify_sbom(registry: VerifiedRegistry, repository: str, digest: str, gtpack: Path, pinned: str | None) -> str:
    """Check the pack's SBOM referrer against the archive's sbom.cbor; what was found, for the `ok` line."""
    from pack_publisher.sources import sbom  # cbor2 and the archive reader: only where an SBOM is read

    files = sbom.read_sbom(gtpack)
    if files is None:
        if pinned:
            raise PublisherError(f"the lockfile names SBOM referrer {pinned}, but the archive holds no sbom.cbor")
        return "no sbom.cbor, so no SBOM"
    listed = [
        r for r in registry.transport.referrers(repository, digest) if r.get("artifactType") == CYCLONEDX_MEDIA_TYPE
    ]
    if pinned:
        listed = [r for r in listed if r.get("digest") == pinned]
        if not listed:
            raise PublisherError(f"SBOM referrer {pinned} is not among the referrers of {digest}")
    if not listed:
        raise PublisherError(
            f"no SBOM ({CYCLONEDX_MEDIA_TYPE}) refers to {digest}; a re-run of the release attaches it"
        )
    found = str(listed[0].get("digest"))
    layer = check_sbom_referrer(registry.manifest(repository, found), found, digest)
    if layer.size > MAX_SBOM_BYTES:
        raise PublisherError(f"SBOM {found} is {layer.size} bytes, over the {MAX_SBOM_BYTES}-byte limit")
    target = gtpack.with_suffix(".cdx.json")
    registry.blob_to_file(repository, layer, target)
    published = sbom.files_of_cyclonedx(target.read_bytes(), f"SBOM {layer.short}")
    if published != files:
        archived, listed_files = {f.path: f for f in files}, {f.path: f for f in published}
        differing = sorted(p for p in archived.keys() | listed_files.keys() if archived.get(p) != listed_files.get(p))
        shown = ", ".join(differing[:3]) + (f" and {len(differing) - 3} more" if len(differing) > 3 else "")
        raise PublisherError(f"SBOM {found} does not match the archive's sbom.cbor (it differs for {shown})")
    return f"sbom {found[:19]}, {len(files)} files"


GHCR = "ghcr.io"
# Asked once more if the answer is transient; an anonymous read is small and never worth a long wait.
ANONYMOUS_POLICY = RetryPolicy(attempts=2, total_seconds=10.0, connect_timeout=5.0, read_timeout=10.0)
CHECK_JOBS = 16  # packs checked at once, as many as planning consults


def settings_pages(org: str, repo: str, pack: str) -> tuple[str, str]:
    """GHCR's package settings page (org-owned, then user-owned): every nested path is its own package."""
    package = quote(f"{repo}/{pack}", safe="")
    return (
        f"https://github.com/orgs/{org}/packages/container/{package}/settings",
        f"https://github.com/users/{org}/packages/container/{package}/settings",
    )


def how_to_publish(registry: str, org: str, repo: str, pack: str) -> str:
    if registry != GHCR:
        return f"make {registry}/{org}/{repo}/{pack} readable without credentials on {registry}"
    org_page, user_page = settings_pages(org, repo, pack)
    return f"make the package public (Change visibility) at {org_page} (or, if {org} is a user account, {user_page})"


def anonymous_problem(transport: HttpTransport, repository: str, digest: str) -> str | None:
    """Why an anonymous consumer cannot fetch the manifest `digest`, or None when it can."""
    try:
        fetched = transport.fetch_manifest(repository, digest)
    except NotFound:
        return "the registry answers 'not found' without credentials (private packages look absent)"
    except AccessError as exc:
        return exc.message.split(";")[0]  # without the advice to set credentials: consumers have none
    except PublisherError as exc:
        return f"could not be checked: {exc.message}"
    if digest_of(fetched.data) != digest:
        return f"the registry served other bytes than {digest} without credentials"
    return None


class AnonymousCheck:
    """Fetch every published pack anonymously, each as soon as the registry holds it: the checks of the first
    packs run while the last ones are still being pushed, so the release waits for the last pack's only.

    A pack's check starts when its manifest is written (`start`), beside the proof that it landed, and is
    reported once that proof holds (`add`): a pack that fails its proof is never reported as pullable. A
    check made before its proof that finds a problem is made again at the end, after the proof: a registry
    slow to serve what it just stored (read-after-write lag) does not get a pack named as private.
    """

    def __init__(self, run: Run, transport: HttpTransport, submit: Callable[..., Future[str | None]]) -> None:
        self.run = run
        self.transport = transport
        self.submit = submit
        self.checks: list[tuple[PublishedPack, Future[str | None], bool]] = []  # (pack, check, made before proof)
        self.started: dict[tuple[str, str], Future[str | None]] = {}  # (pack, manifest digest): its check
        self.lock = threading.Lock()  # `start` is called from the threads proving packs

    def _check(self, name: str, digest: str) -> Future[str | None]:
        return self.submit(anonymous_problem, self.transport, self.run.settings.repository(name), digest)

    def start(self, name: str, digest: str) -> None:
        """The registry holds pack `name` at `digest` (written now or before): check it while it is proven."""
        check = self._check(name, digest)
        with self.lock:
            self.started[(name, digest)] = check

    def add(self, pack: PublishedPack) -> None:
        """`pack` is proven published: its check (started beside the proof, or now) goes into the report."""
        with self.lock:
            early = self.started.pop((pack.name, pack.digest), None)
        self.checks.append((pack, early or self._check(pack.name, pack.digest), early is not None))

    def report(self) -> list[str]:
        """Warn for each pack that cannot be pulled, in pack order; the names that failed."""
        s = self.run.settings
        found = [(pack, check.result(), early) for pack, check, early in self.checks]
        again = {pack.name: self._check(pack.name, pack.digest) for pack, problem, early in found if problem and early}
        refused = []
        for pack, problem, _ in found:
            problem = again[pack.name].result() if pack.name in again else problem
            if problem is None:
                continue
            refused.append(pack.name)
            self.run.warn(
                f"pack {pack.name} cannot be pulled anonymously ({problem}); greentic-dist and greentic-bundle "
                f"pull without credentials: {how_to_publish(s.registry, s.org, s.repo, pack.name)}"
            )
        if self.checks and not refused:
            self.run.say(f"all {len(self.checks)} pack(s) can be pulled anonymously from {s.registry}")
        return refused


@contextlib.contextmanager
def anonymous_check(run: Run) -> Iterator[AnonymousCheck]:
    """An `AnonymousCheck` on the built-in client without credentials, as a consumer's client asks."""
    from pack_publisher.registry.http import HttpTransport

    s = run.settings
    options = s.publish
    transport = HttpTransport(
        s.registry,
        None,  # no credentials: the point of the check
        options.uses_plain_http(s.registry),
        ANONYMOUS_POLICY,
        ca_bundle=options.ca_bundle,
        proxy_env=options.proxy_env,
    )
    try:
        with beside(CHECK_JOBS, "anonymous") as submit:
            yield AnonymousCheck(run, transport, submit)
    finally:
        transport.close()


def enforce(run: Run, refused: list[str], *, lock_written: bool) -> None:
    """REQUIRE_PUBLIC=1: packs consumers cannot pull make the release fail (they stay published)."""
    if not refused or not run.settings.require_public:
        return
    s = run.settings
    then = (
        f"{s.relative(s.lock_file)} is written"
        if lock_written
        else "their push is recorded (`invoke lock` writes the lockfile)"
    )
    raise PublisherError(
        f"REQUIRE_PUBLIC: {len(refused)} pack(s) cannot be pulled anonymously: {', '.join(refused)}. They are "
        f"published and {then}; make them public (see the warnings above), then re-run: published packs are skipped"
    )
