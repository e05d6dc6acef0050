"""After a real push: can a consumer pull each pack without credentials, as Greentic's tools do?

greentic-dist and greentic-bundle pull anonymously (`OciPackFetcher`: "Anonymous HTTPS pulls only"),
and GHCR creates every new package private. So each published pack's manifest is fetched by its
digest with no credentials at all (the registry's token dance included, as a consumer would). A pack
that cannot be fetched so is named in a warning, with GHCR's settings page where its visibility is
changed; REQUIRE_PUBLIC=1 (or --require-public) turns that into a failed release, after the packs are
published and the lockfile is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import quote

from pack_publisher.config.run import Run
from pack_publisher.oci.descriptor import digest_of
from pack_publisher.registry.retry import RetryPolicy
from pack_publisher.registry.transport import NotFound

if TYPE_CHECKING:
    from pack_publisher.registry.http import HttpTransport
from pack_publisher.runtime.errors import AccessError, PublisherError
from pack_publisher.state.records import PublishedPack

GHCR = "ghcr.io"
# Asked once more if the answer is transient; an anonymous read is small and never worth a long wait.
ANONYMOUS_POLICY = RetryPolicy(attempts=2, total_seconds=10.0, connect_timeout=5.0, read_timeout=10.0)


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


def check_published(run: Run, published: Iterable[PublishedPack]) -> list[str]:
    """Fetch every published pack anonymously; warn for each one that fails. The names that failed."""
    # The built-in client on either transport: it asks as a consumer's HTTP client does, and it is
    # imported only now, after a real push (the oras path's start-up never pays for requests).
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
    refused = []
    checked = 0
    try:
        for pack in published:
            checked += 1
            problem = anonymous_problem(transport, s.repository(pack.name), pack.digest)
            if problem is None:
                continue
            refused.append(pack.name)
            run.warn(
                f"pack {pack.name} cannot be pulled anonymously ({problem}); greentic-dist and greentic-bundle "
                f"pull without credentials: {how_to_publish(s.registry, s.org, s.repo, pack.name)}"
            )
    finally:
        transport.close()
    if checked and not refused:
        run.say(f"all {checked} pack(s) can be pulled anonymously from {s.registry}")
    return refused


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
