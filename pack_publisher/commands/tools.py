"""The pinned tools a release needs, as data, and `invoke tools`, which installs them into the venv.

One table (`PINNED`) that the workflows, the README and a developer's machine agree with, so local
and CI builds use the same oras and the same Greentic builder. A download is installed only once its
sha256 matches the recorded one; where no sha256 is recorded nothing is downloaded: oras is refused,
and the builder goes through cargo-binstall restricted to the upstream release asset (no third-party
binaries, no unlocked source build, no telemetry), then `cargo install --locked`.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from pack_publisher.runtime.errors import ConfigError, PublisherError
from pack_publisher.runtime.frozen import frozen

CHUNK = 1 << 20
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 60
# What the workflows set for cargo-binstall: only the upstream release asset, nothing reported.
BINSTALL_ENV = {"BINSTALL_DISABLE_STRATEGIES": "quick-install,compile", "BINSTALL_DISABLE_TELEMETRY": "true"}
NOT_RECORDED = "not recorded"


@frozen
class Asset:
    """One downloadable archive of a tool for one platform; `sha256` None means not recorded yet."""

    url: str | None
    sha256: str | None
    note: str = ""


@frozen
class Tool:
    name: str  # the executable's name, also the name `--tool` takes
    version: str
    assets: dict[str, Asset] = field(default_factory=dict)  # platform ("linux_amd64") -> asset
    crate: str | None = None  # installed through cargo-binstall when no sha256 is recorded
    where: str = ""  # what installs it in the workflows


def _oras_url(version: str, plat: str) -> str:
    return f"https://github.com/oras-project/oras/releases/download/v{version}/oras_{version}_{plat}.tar.gz"


ORAS_VERSION = "1.3.3"
ORAS = Tool(
    name="oras",
    version=ORAS_VERSION,
    assets={
        "linux_amd64": Asset(
            _oras_url(ORAS_VERSION, "linux_amd64"),
            "9ce999f8d2de03fc03968b29d743077a58783e545e5eaa53917ca177352d0e59",
        ),
        # Slots for the other release archives: their sha256 has not been recorded from the official
        # release yet, so `invoke tools` refuses them rather than trusting whatever is downloaded.
        "linux_arm64": Asset(_oras_url(ORAS_VERSION, "linux_arm64"), None),
        "darwin_amd64": Asset(_oras_url(ORAS_VERSION, "darwin_amd64"), None),
        "darwin_arm64": Asset(_oras_url(ORAS_VERSION, "darwin_arm64"), None),
    },
    where="oras-project/setup-oras (url + checksum)",
)
BUILDER = Tool(
    name="greentic-pack",
    version="1.1.3",
    assets={
        # The release carries greentic-pack-<target>.tgz, but its address and sha256 could not be read
        # from this project's machines: fill both in from the official release to download it directly.
        "linux_amd64": Asset(None, None, "upstream asset not fetched here; URL and sha256 to be recorded"),
    },
    crate="greentic-pack",
    where="cargo binstall (upstream asset only), else cargo install --locked",
)
CARGO_BINSTALL = Tool(name="cargo-binstall", version="1.22.0", where="cargo-bins/cargo-binstall (workflows only)")
PINNED = (ORAS, BUILDER)
TABLE = (ORAS, BUILDER, CARGO_BINSTALL)


def current_platform() -> str:
    """This machine as release archives name it: `linux_amd64`, `darwin_arm64`, ..."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return f"{platform.system().lower()}_{arch}"


def markdown_table() -> str:
    """The README's "Pinned tools" table, rendered from the data above (a test keeps them equal)."""
    lines = [
        "| tool | version | platform | download | sha256 | installed in the workflows by |",
        "|---|---|---|---|---|---|",
    ]
    for tool in TABLE:
        if not tool.assets:
            lines.append(f"| {tool.name} | {tool.version} | any | - | - | {tool.where} |")
        for plat, asset in tool.assets.items():
            url = f"<{asset.url}>" if asset.url else NOT_RECORDED
            digest = f"`{asset.sha256}`" if asset.sha256 else NOT_RECORDED
            if asset.note:
                digest += f" ({asset.note})"
            lines.append(f"| {tool.name} | {tool.version} | {plat} | {url} | {digest} | {tool.where} |")
    return "\n".join(lines) + "\n"


def default_bin_dir() -> Path:
    """The virtual environment's `bin/` (the folder of this Python); refused outside a venv."""
    if sys.prefix == sys.base_prefix:
        raise ConfigError(
            "not in a virtual environment: activate the project's .venv (README, set-up) or pass --bin-dir"
        )
    return Path(sys.executable).parent


def default_cache_dir() -> Path:
    """Verified downloads live in the venv, so deleting the venv deletes them too."""
    return Path(sys.prefix) / "cache" / "pinned-tools"


def select(names: Iterable[str] | None) -> list[Tool]:
    known = {tool.name: tool for tool in PINNED}
    chosen = list(dict.fromkeys(names or known))
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise ConfigError(f"--tool: unknown tool {unknown[0]!r} (pinned: {', '.join(known)})")
    return [known[name] for name in chosen]


def install(
    tools: Iterable[Tool],
    bin_dir: Path,
    cache_dir: Path,
    say: Callable[[str], None],
    base_url: str | None = None,
    plat: str | None = None,
    show: Callable[[list[str]], None] | None = None,
) -> None:
    """Install each selected pinned tool into `bin_dir`, trying every one, then say what was and was not installed.

    One tool that cannot be installed fails with its own error (and exit code); several, each on a
    `FAILED` line, with one error naming them.
    """
    tools = list(tools)
    plat = plat or current_platform()
    if base_url is not None:
        _check_url("--base-url", base_url)
    try:
        bin_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--bin-dir: cannot create {bin_dir} ({exc.strerror})") from None
    installed, failed = [], []
    for tool in tools:
        try:
            try:
                say(_install_one(tool, bin_dir, cache_dir, say, base_url, plat, show))
            except OSError as exc:  # a cache or bin folder that cannot be written, a build that left no binary
                raise PublisherError(f"{tool.name} {tool.version}: {exc.strerror}: {exc.filename}") from None
            installed.append(tool)
        except PublisherError as exc:
            failed.append((tool, exc))
            if len(tools) > 1:
                say(f"FAILED {exc.message}")
    done = ", ".join(f"{t.name} {t.version}" for t in installed) or "nothing"
    missing = ", ".join(f"{t.name} {t.version}" for t, _ in failed)
    say(f"summary: installed {done}" + (f"; could not install {missing}" if failed else ""))
    if len(failed) == 1:
        raise failed[0][1]
    if failed:
        raise PublisherError(f"{len(failed)} of {len(tools)} tool(s) not installed: {missing} (see above)")


def _install_one(
    tool: Tool,
    bin_dir: Path,
    cache_dir: Path,
    say: Callable[[str], None],
    base_url: str | None,
    plat: str,
    show: Callable[[list[str]], None] | None,
) -> str:
    """Install one tool; the line saying where it went."""
    asset = tool.assets.get(plat)
    if asset is not None and asset.url and asset.sha256:
        archive = fetch_verified(tool, asset.url, asset.sha256, cache_dir, base_url)
        target = extract_executable(tool, archive, bin_dir)
        return f"installed {tool.name} {tool.version} -> {target} (sha256 {asset.sha256})"
    if tool.crate is not None:
        target, how = cargo_install(tool, bin_dir, show, say)
        return f"installed {tool.name} {tool.version} -> {target} ({how})"
    raise ConfigError(
        f"{tool.name} {tool.version}: no sha256 recorded for {plat} in pack_publisher/commands/tools.py; "
        f"install it yourself from its official release (oras: then set ORAS_BIN)"
    )


def _check_url(what: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ConfigError(f"{what}: {url!r} is not an http(s) URL")


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_verified(tool: Tool, url: str, sha256: str, cache_dir: Path, base_url: str | None = None) -> Path:
    """The archive at `url` (or the same file name under `base_url`), in the cache, its sha256 checked.

    A cached copy is reused only if it still hashes to `sha256`; a download that does not is deleted
    and refused, so nothing unverified is ever installed or kept.
    """
    name = url.rsplit("/", 1)[-1]
    source = f"{base_url.rstrip('/')}/{name}" if base_url else url
    cached = cache_dir / sha256 / name
    if cached.is_file() and _sha256_of(cached) == sha256:
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    handle, partial_name = tempfile.mkstemp(dir=cached.parent, prefix=f".{name}.")
    partial = Path(partial_name)
    try:
        with os.fdopen(handle, "wb") as out:
            actual = _download(tool, source, out)
        if actual != sha256:
            raise PublisherError(
                f"{tool.name} {tool.version}: {source} has sha256 {actual}, expected {sha256}; nothing installed"
            )
        os.replace(partial, cached)
    finally:
        partial.unlink(missing_ok=True)
    return cached


def _download(tool: Tool, url: str, out: BinaryIO) -> str:
    """The archive at `url` into `out`, its sha256 returned. As `requests.get` did, the proxy variables and
    REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE of the process apply (a developer's machine, not a release)."""
    import http.client  # imported late: `invoke --list` need not pay for it

    from pack_publisher import __version__
    from pack_publisher.registry.client import Client, ClientError, kind_of
    from pack_publisher.runtime.proxies import PROXY_VARIABLES

    env = os.environ
    proxy_env = {name: env[name] for name in PROXY_VARIABLES if name in env}
    client = Client(
        env.get("REQUESTS_CA_BUNDLE") or env.get("CURL_CA_BUNDLE"), proxy_env, f"greentic-pack-publisher/{__version__}"
    )
    digest = hashlib.sha256()
    try:
        with client.request("GET", url, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)) as response:
            if response.status_code != 200:
                raise PublisherError(
                    f"{tool.name} {tool.version}: download of {url} failed: HTTP {response.status_code}"
                )
            while chunk := response.read1(CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except (ClientError, OSError, http.client.HTTPException) as exc:
        raise PublisherError(f"{tool.name} {tool.version}: download of {url} failed: {kind_of(exc)}") from None
    finally:
        client.close()
    return digest.hexdigest()


def extract_executable(tool: Tool, archive: Path, bin_dir: Path) -> Path:
    """Copy the one regular file named `tool.name` out of a verified tarball into `bin_dir`, atomically."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.isfile() and Path(m.name).name == tool.name]
            if len(members) != 1:
                raise PublisherError(
                    f"{tool.name} {tool.version}: {archive.name} holds {len(members)} files named {tool.name}"
                )
            source = tar.extractfile(members[0])
            if source is None:  # never for a regular file; keeps the types honest
                raise PublisherError(f"{tool.name} {tool.version}: {archive.name}: cannot read {members[0].name}")
            target = bin_dir / tool.name
            handle, partial_name = tempfile.mkstemp(dir=bin_dir, prefix=f".{tool.name}.")
            partial = Path(partial_name)
            try:
                with os.fdopen(handle, "wb") as out:
                    shutil.copyfileobj(source, out)
                partial.chmod(0o755)
                os.replace(partial, target)
            finally:
                partial.unlink(missing_ok=True)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise PublisherError(f"{tool.name} {tool.version}: cannot unpack {archive.name}: {exc}") from None
    return target


def cargo_install(
    tool: Tool,
    bin_dir: Path,
    show: Callable[[list[str]], None] | None = None,
    say: Callable[[str], None] = print,
) -> tuple[Path, str]:
    """cargo-binstall with the hardened strategies, else `cargo install --locked`, into `bin_dir`.

    Without cargo-binstall on PATH it goes straight to `cargo install --locked` (a source build, as the
    README and the workflows fall back to). cargo's output goes straight to the terminal (a source build
    takes minutes); `show` echoes each command first, as the run's other external commands are.
    Returns where it went and how.
    """
    echo = show or (lambda _argv: None)
    spec = f"{tool.crate or tool.name}@{tool.version}"
    cargo = shutil.which("cargo")
    if cargo is None:
        raise ConfigError(
            f"{tool.name} {tool.version}: no sha256 recorded for its release asset, so it is installed with "
            "cargo (cargo-binstall, else cargo install --locked), but cargo is not on PATH (install Rust with "
            f"rustup, then optionally `cargo install --locked cargo-binstall@{CARGO_BINSTALL.version}`)"
        )
    env = {**os.environ, **BINSTALL_ENV}
    if shutil.which("cargo-binstall") is not None:
        binstall = [cargo, "binstall", "--no-confirm", "--locked", "--install-path", str(bin_dir), spec]
        echo(binstall)
        if subprocess.run(binstall, env=env, check=False).returncode == 0:
            return bin_dir / tool.name, "cargo-binstall, upstream release asset only"
        why = "cargo binstall failed"
    else:
        why = "cargo-binstall is not on PATH"
    say(f"{tool.name} {tool.version}: {why}; building it from source with `cargo install --locked` (minutes)")
    with tempfile.TemporaryDirectory(prefix="cargo-root-") as root:
        source_build = [cargo, "install", "--locked", "--root", root, spec]
        echo(source_build)
        built = subprocess.run(source_build, env=env, check=False)
        if built.returncode != 0:
            raise PublisherError(f"{tool.name} {tool.version}: {why}, and cargo install --locked failed too")
        target = bin_dir / tool.name
        shutil.copy2(Path(root) / "bin" / tool.name, target)
    return target, "cargo install --locked, built from source"
