"""A newcomer's first hour (issue 23): nothing surprising, nothing silent.

Forgotten flag values, plans that say what they will do, refusals that say why, long work that shows
it is alive, help that names the settings, the documented local round trip, and no litter.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pack_publisher.commands import tools
from pack_publisher.commands.build import build
from pack_publisher.commands.push import publish
from pack_publisher.commands.select import select_packs
from pack_publisher.config.environment import read_environment
from pack_publisher.config.run import Run
from pack_publisher.config.settings import resolve_settings
from pack_publisher.oci.descriptor import file_descriptor
from pack_publisher.oci.manifest import GTPACK_MEDIA_TYPE, compose
from pack_publisher.oci.manifest_changes import compare
from pack_publisher.registry.connect import connect
from pack_publisher.registry.http import HttpTransport
from pack_publisher.registry.transport import PushRequest
from pack_publisher.runtime.errors import PublisherError
from pack_publisher.runtime.progress import Heartbeat, SentBytes
from pack_publisher.runtime.progress import size as shown_size
from pack_publisher.sources.builder import find_builder
from pack_publisher.sources.git import describe_origin
from testsupport.registries import Registry, free_port

from .conftest import PROJECT, RunInvoke, git, oras_path, runner
from .test_publish import PACK, REPO, add_pack, env_for, lock_of
from .test_tools import FileServer, fake_cargo

DRY_LOCK = "dry-run.lock.json"  # the name the lockfile refusal suggests
TARGET_SETTINGS = ("PACK_VERSION", "OCI_REGISTRY", "OCI_ORG", "OCI_REPO", "OCI_CLIENT")


@pytest.mark.parametrize(
    "args",
    [
        ("build", "--pack"),
        ("build", "--pack", ""),
        ("build", "--pack="),
        ("build", "-p", "--jobs", "2"),
        ("release", "--pack", "--dry-run"),
        ("release", "--dry-run", "--pack", PACK, "--pack"),
        ("push", "--pack", " "),
        ("lock", "--pack"),
        ("matrix", "--pack"),
        ("verify", "--pack"),
        ("build", "--pack", PACK, "release", "--pack"),
    ],
    ids=lambda args: " ".join(repr(a) if not a.strip() else a for a in args),
)
def test_an_empty_pack_is_refused_before_anything_runs(
    project_copy: Path, run_invoke: RunInvoke, args: tuple[str, ...]
) -> None:
    result = run_invoke(project_copy, *args, OCI_ORG="acme", PACK_VERSION="1.0.0")
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("error: --pack was given ") and "a pack folder name under PACKS_DIR" in line
    assert "Traceback" not in result.stderr and "built" not in result.stdout
    assert not (project_copy / "dist").exists() and not (project_copy / "packs.lock.json").exists()


@pytest.mark.parametrize("given", ["/", "//"])
def test_a_pack_name_that_is_only_a_slash_is_refused(project_copy: Path, run_invoke: RunInvoke, given: str) -> None:
    result = run_invoke(project_copy, "build", "--pack", given, OCI_ORG="acme", PACK_VERSION="1.0.0")
    assert result.returncode == 2 and "built" not in result.stdout
    assert result.stderr.strip().splitlines()[-1].startswith("error: --pack: ")
    assert not (project_copy / "dist").exists()


def test_tools_into_a_folder_that_cannot_be_made_is_one_error(project_copy: Path, run_invoke: RunInvoke) -> None:
    result = run_invoke(project_copy, "tools", "--tool", "oras", "--bin-dir", "/proc/no-such/bin")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "error: --bin-dir: cannot create /proc/no-such/bin (No such file or directory)"


def test_shell_completion_of_a_half_typed_pack_still_works(project_copy: Path, run_invoke: RunInvoke) -> None:
    flags = run_invoke(project_copy, "--complete", "--", "invoke", "build", "--pa")
    assert flags.returncode == 0 and "--pack" in flags.stdout.split() and flags.stderr == ""
    value = run_invoke(project_copy, "--complete", "--", "invoke", "build", "--pack")
    assert value.returncode == 0 and value.stderr == ""  # the shell completes the value (a folder name)


def test_an_empty_tool_is_refused(project_copy: Path, run_invoke: RunInvoke) -> None:
    result = run_invoke(project_copy, "tools", "--tool")
    assert result.returncode == 2
    assert result.stderr.startswith("error: --tool was given without its value: it takes a pinned tool name")


@pytest.mark.parametrize("task", ["build", "push", "release", "verify"])
def test_help_names_the_pack_value_and_the_target_settings(
    project_copy: Path, run_invoke: RunInvoke, task: str
) -> None:
    result = run_invoke(project_copy, task, "--help")
    assert result.returncode == 0, result.stderr
    assert "-p NAME, --pack=NAME" in result.stdout and "--pack NAME" in result.stdout
    for name in TARGET_SETTINGS:
        assert name in result.stdout, name


# --- the placeholder org and an origin that is a path -------------------------------------------------


class _Listener:
    """A loopback port that counts the connections made to it: proof that nothing was contacted."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()


def test_a_dry_run_with_the_placeholder_org_contacts_no_registry(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke
) -> None:
    listener = _Listener()
    try:
        result = run_invoke(
            project_copy, "release", "--dry-run", OCI_REGISTRY=listener.host, PACK_VERSION="1.0.0", **client
        )
    finally:
        listener.sock.close()
    assert result.returncode == 0, result.stderr
    assert listener.accepted == 0
    assert (
        f"registry not consulted (the org 'local' is a placeholder: no registry was contacted; set OCI_ORG to ask "
        f"{listener.host}): the plan assumes every tag is new" in result.stdout
    )
    assert f"would publish {listener.host}/local/greentic-packs/{PACK}:1.0.0 (manifest digest sha256:" in result.stdout


def test_an_org_named_local_on_purpose_is_asked_about(
    project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    result = run_invoke(
        project_copy, "release", "--dry-run", OCI_REGISTRY=registry.host, OCI_ORG="local", PACK_VERSION="1.0.0"
    )
    assert result.returncode == 0, result.stderr
    assert "registry not consulted" not in result.stdout and "would publish (new tag)" in result.stdout


def test_an_origin_that_is_a_path_is_named_as_such(project_copy: Path, run_invoke: RunInvoke, tmp_path: Path) -> None:
    clone = tmp_path / "clone-of-a-clone"
    subprocess.run(["git", "clone", "-q", str(project_copy), str(clone)], check=True)
    dry = run_invoke(clone, "release", "--dry-run", PACK_VERSION="1.0.0")
    assert dry.returncode == 0, dry.stderr
    named = f"the origin remote '{project_copy}' (a local path, not a GitHub remote)"
    assert f"warning: no OCI_ORG or GITHUB_REPOSITORY_OWNER, and {named}: the dry run uses the org 'local'" in (
        dry.stderr
    )
    assert f"warning: no GITHUB_REPOSITORY and {named}: the source annotation is left out" in dry.stderr
    assert "no origin remote" not in dry.stderr
    real = run_invoke(clone, "release", PACK_VERSION="1.0.0")
    assert real.returncode == 2
    assert real.stderr.strip() == f"error: OCI_ORG: not set: no OCI_ORG or GITHUB_REPOSITORY_OWNER, and {named}; " + (
        "set OCI_ORG (a dry run uses 'local')"
    )


@pytest.mark.parametrize(
    ("url", "what"),
    [
        ("../elsewhere", "a local path"),
        ("file:///srv/git/packs.git", "a local path"),
        ("https://user:secret@example.com", "not a URL naming a host, an owner and a repository"),
    ],
)
def test_origins_that_name_no_owner_are_described(url: str, what: str) -> None:
    described = describe_origin(url)
    assert described.endswith(f"({what}, not a GitHub remote)") and "secret" not in described


# --- what a dry run says it would do ----------------------------------------------------------------


def _release(project: Path, run_invoke: RunInvoke, registry: Registry, client: dict[str, str], *args: str) -> str:
    dry = {"LOCK_FILE": DRY_LOCK} if "--dry-run" in args else {}  # a dry run never replaces a real lockfile
    result = run_invoke(project, "release", *args, **env_for(registry, **client, **dry))
    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout + result.stderr


def test_dry_run_plans_say_what_would_happen(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    ref = f"{registry.host}/{REPO}:1.2.3"
    new = _release(project_copy, run_invoke, registry, client, "--dry-run")
    assert f"plan {ref}: would publish (new tag): sha256:" in new and f"would publish {ref} (manifest digest" in new
    assert "would push" not in new
    _release(project_copy, run_invoke, registry, client)
    digest = lock_of(project_copy)["packs"][0]["digest"]  # type: ignore[index]

    again = _release(project_copy, run_invoke, registry, client, "--dry-run", "--latest")
    assert f"plan {ref}: would skip (already published): holds {digest}" in again
    assert f"plan {ref.replace(':1.2.3', ':latest')}: would move (new tag, at 1.2.3): nothing -> {digest}" in again
    assert f"would skip (already published), would move latest to it {ref} (manifest digest {digest})" in again
    skipped = _release(project_copy, run_invoke, registry, client, "--dry-run")
    assert f"would skip (already published) {ref} (manifest digest {digest})" in skipped
    assert "would push" not in skipped and "would publish" not in skipped

    git(project_copy, "commit", "-q", "--allow-empty", "-m", "a later commit")
    refused = run_invoke(project_copy, "release", "--dry-run", **env_for(registry, **client, LOCK_FILE=DRY_LOCK))
    assert refused.returncode == 1
    assert f"plan {ref}: would refuse (release tags are immutable; the archive is byte-identical; " in refused.stdout
    assert f"would refuse (release tags are immutable) {ref} (holds {digest}; manifest digest sha256:" in (
        refused.stdout
    )
    assert "would push" not in refused.stdout and "would publish" not in refused.stdout
    forced = _release(project_copy, run_invoke, registry, client, "--dry-run", "--force")
    assert f"plan {ref}: would overwrite (--force; the archive is byte-identical; the annotations differ: revision" in (
        forced
    )
    assert f"would overwrite (--force) {ref} (holds {digest}; manifest digest sha256:" in forced


# --- a refusal says what differs and the way out ----------------------------------------------------


def test_a_refusal_after_a_later_commit_names_the_revision_and_the_way_out(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    published_at = git(project_copy, "rev-parse", "HEAD")
    _release(project_copy, run_invoke, registry, client)
    git(project_copy, "commit", "-q", "--allow-empty", "-m", "docs only")
    later = git(project_copy, "rev-parse", "HEAD")
    refused = run_invoke(project_copy, "release", **env_for(registry, **client))
    assert refused.returncode == 1
    [line] = [line for line in refused.stdout.splitlines() if line.startswith(f"plan {registry.host}/{REPO}:1.2.3:")]
    assert "REFUSED: holds " in line
    assert (
        f"(release tags are immutable; the archive is byte-identical; the annotations differ: "
        f"revision ({published_at[:12]}… -> {later[:12]}…): release 1.2.3 from the commit it was published from "
        f"({published_at[:12]}, e.g. `git checkout v1.2.3`), or publish a new version, or pass --force to overwrite)"
    ) in line


def test_a_refusal_of_a_changed_archive_names_the_layer(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    _release(project_copy, run_invoke, registry, client)
    layer = lock_of(project_copy)["packs"][0]["gtpack_sha256"]  # type: ignore[index]
    (project_copy / "packs" / PACK / "assets").mkdir()
    (project_copy / "packs" / PACK / "assets" / "new.txt").write_text("changed\n")
    git(project_copy, "add", "-A")
    git(project_copy, "commit", "-qm", "a changed pack")
    refused = run_invoke(project_copy, "release", **env_for(registry, **client))
    assert refused.returncode == 1
    [line] = [line for line in refused.stdout.splitlines() if line.startswith(f"plan {registry.host}/{REPO}:1.2.3:")]
    assert f"the archive changed (layer {layer} -> sha256:" in line
    assert "the annotations differ: revision (" in line
    assert line.endswith(": publish a new version, or pass --force to overwrite)")


def test_changes_between_manifests_are_named() -> None:
    def manifest(layer: str, **notes: str) -> bytes:
        annotations = {f"org.opencontainers.image.{k}": v for k, v in notes.items()}
        return json.dumps({"layers": [{"digest": layer}], "annotations": annotations}).encode()

    base = {"revision": "a" * 40, "created": "2026-01-01T00:00:00Z", "source": "https://github.com/acme/packs"}
    moved = {**base, "created": "2026-02-01T00:00:00Z", "source": "https://github.com/other/packs"}
    changes = compare(manifest("sha256:1", **base), manifest("sha256:1", **moved), "1.2.3")
    assert changes.what.startswith("the archive is byte-identical; the annotations differ: created (")
    assert "source (https://github.com/acme/packs -> https://github.com/other/packs)" in changes.what
    assert changes.remedy.startswith("release 1.2.3 from the commit it was published from (aaaaaaaaaaaa")
    assert "with the source https://github.com/acme/packs (GITHUB_REPOSITORY)" in changes.remedy
    titled = compare(manifest("sha256:1", **base), manifest("sha256:1", **base, title="New"), "1.2.3")
    assert titled.what.endswith("title (none -> New)") and titled.remedy == "publish a new version"
    assert compare(b"[]", manifest("sha256:1"), "1.2.3").remedy == "publish a new version"
    hostile = {"revision": "\x1b[2J\nREFUSED nothing", **{f"k{i}": "x" for i in range(10)}}
    shown = compare(manifest("sha256:\x1b[31m", **hostile), manifest("sha256:2", **base), "1.2.3").what
    assert shown.isprintable() and "\x1b" not in shown and "and 7 more" in shown


# --- long work shows it is alive --------------------------------------------------------------------


class DrivenTime:
    """A clock that moves only when the heartbeat waits: `beats` waits return at once, 10 s later each."""

    def __init__(self, beats: int, *, after_the_work: bool = False) -> None:
        self.now = 1000.0
        self.beats = beats
        self.after_the_work = after_the_work  # beat only once the work has ended: what it reports is final

    def clock(self) -> float:
        return self.now

    def wait(self, done: threading.Event, timeout: float) -> bool:
        if self.beats > 0:
            if self.after_the_work:
                done.wait(60)
            self.beats -= 1
            self.now += timeout
            return False
        return done.wait()  # no more beats: until the work ends


def test_a_heartbeat_tells_the_elapsed_time_and_the_detail() -> None:
    lines: list[str] = []
    time = DrivenTime(beats=7)
    heartbeat = Heartbeat(lines.append, clock=time.clock, wait=time.wait)
    with heartbeat.alive("uploading big", lambda: "1.0 MiB of 60.0 MiB sent"):
        pass
    assert lines[0] == "still uploading big: 10 s elapsed, 1.0 MiB of 60.0 MiB sent"
    assert lines[5:] == [
        "still uploading big: 1 min 00 s elapsed, 1.0 MiB of 60.0 MiB sent",
        "still uploading big: 1 min 10 s elapsed, 1.0 MiB of 60.0 MiB sent",
    ]
    quiet: list[str] = []
    with Heartbeat(quiet.append, interval=60.0).alive("building quick"):
        pass  # work shorter than one interval prints nothing
    assert quiet == []
    sent = SentBytes(3 * 1024 * 1024)
    assert sent.describe() == "3.0 MiB to send"  # oras does not report what it sent
    sent.update(1024 * 1024)
    assert sent.describe() == "1.0 MiB of 3.0 MiB sent"
    assert SentBytes(1002).describe() == "1002 B to send" and SentBytes(20 * 1024).describe() == "20.0 KiB to send"


def _in_process_run(project: Path, builder_bin: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> Run:
    monkeypatch.setenv("PATH", f"{builder_bin}{os.pathsep}{os.environ['PATH']}")
    for name in ("CI", "GITHUB_ACTIONS", "DRY_RUN", "LOCK_FILE", "OUT_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {"OCI_ORG": "acme", "PACK_VERSION": "1.2.3", **env}.items():
        monkeypatch.setenv(name, value)
    settings = resolve_settings(project, {}, runner())
    return Run(read_environment(), project, {}, echo=False, echo_format="{command}", settings=settings)


def test_a_long_build_says_it_started_and_is_alive(
    project_copy: Path, builder_bin: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _in_process_run(project_copy, builder_bin, monkeypatch)
    time = DrivenTime(beats=3)
    run.heartbeat = Heartbeat(run.say, clock=time.clock, wait=time.wait)
    selected = select_packs(run, [PACK])
    build(run, selected, find_builder(None, run.settings.publish.search_path))
    lines = capsys.readouterr().out.splitlines()
    assert lines[:4] == [
        f"building {PACK}…",
        f"still building {PACK}: 10 s elapsed",
        f"still building {PACK}: 20 s elapsed",
        f"still building {PACK}: 30 s elapsed",
    ]
    assert lines[4].startswith(f"built {PACK}: ") and len(lines) == 5


def test_a_long_upload_is_alive_and_tells_the_bytes_sent(
    client: dict[str, str],
    project_copy: Path,
    builder_bin: Path,
    registry: Registry,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = _in_process_run(project_copy, builder_bin, monkeypatch, OCI_REGISTRY=registry.host, **client)
    selected = select_packs(run, [PACK])
    built = build(run, selected, find_builder(None, run.settings.publish.search_path))
    time = DrivenTime(beats=1, after_the_work=True)
    run.heartbeat = Heartbeat(run.say, clock=time.clock, wait=time.wait)
    with connect(registry.host, run.settings.publish, run.redact, run.commands) as access:
        publish(run, built, access, force=False)
    size = shown_size(built[0].layer.size)
    [alive] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("still ")]
    detail = f"{size} of {size} sent" if client["OCI_CLIENT"] == "python" else f"{size} to send"
    assert alive.startswith(f"still uploading {PACK}: 10 s elapsed, ") and alive.endswith(detail)
    assert registry.raw_manifest(REPO, "1.2.3").status_code == 200


def test_the_builtin_client_reports_the_bytes_of_each_attempt(registry: Registry, tmp_path: Path) -> None:
    blob = tmp_path / "big.gtpack"
    blob.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    art = compose(file_descriptor(GTPACK_MEDIA_TYPE, blob), blob.name, {})
    seen: list[int] = []
    transport = HttpTransport(registry.host, None, True)
    try:
        transport.push(PushRequest("acme/big", ["1.0.0"], blob, art, on_sent=seen.append))
    finally:
        transport.close()
    assert seen[0] == 0 and seen[-1] == blob.stat().st_size and seen == sorted(seen) and len(seen) > 2
    assert registry.raw_blob_sha256("acme/big", art.layer.digest) == art.layer.digest


# --- invoke tools tries every tool and sums up ------------------------------------------------------


def test_tools_tries_every_tool_and_sums_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = tmp_path / "served"
    served.mkdir()
    (served / "oras_1.3.3_linux_amd64.tar.gz").write_bytes(b"not the archive whose sha256 is recorded")
    server = FileServer(served)
    try:
        oras = tools.Tool(
            "oras", "1.3.3", {"linux_amd64": tools.Asset("https://x.invalid/oras_1.3.3_linux_amd64.tar.gz", "0" * 64)}
        )
        log, bin_dir = tmp_path / "cargo.log", tmp_path / "bin"
        monkeypatch.setenv("PATH", fake_cargo(tmp_path / "fake", log, binstall_ok=False, with_binstall=False))
        said: list[str] = []
        with pytest.raises(PublisherError) as failed:
            tools.install([oras, tools.BUILDER], bin_dir, tmp_path / "cache", said.append, server.url, "linux_amd64")
    finally:
        server.stop()
    assert failed.value.message.startswith("oras 1.3.3: ") and failed.value.exit_code == 1  # its own error
    assert said[0].startswith("FAILED oras 1.3.3: ") and "nothing installed" in said[0]
    assert said[-2].startswith(f"installed greentic-pack 1.1.3 -> {bin_dir / 'greentic-pack'} (cargo install --locked")
    assert said[-1] == "summary: installed greentic-pack 1.1.3; could not install oras 1.3.3"

    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    said.clear()
    with pytest.raises(PublisherError) as both:
        tools.install(
            [oras, tools.BUILDER], bin_dir, tmp_path / "cache", said.append, "http://127.0.0.1:9", "linux_amd64"
        )
    assert both.value.message == "2 of 2 tool(s) not installed: oras 1.3.3, greentic-pack 1.1.3 (see above)"
    assert [line.split(":")[0] for line in said] == ["FAILED oras 1.3.3", "FAILED greentic-pack 1.1.3", "summary"]
    assert said[-1] == "summary: installed nothing; could not install oras 1.3.3, greentic-pack 1.1.3"


# --- nothing left behind ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "builder", "message"),
    [
        (("release",), {}, False, "error: the Greentic builder was not found"),
        (("release",), {"OCI_USERNAME": "someone"}, True, "error: OCI_PASSWORD: not set, but OCI_USERNAME is"),
        (("release", "--dry-run", "--pack", "nope"), {}, True, "error: "),
        (("build", "--pack", "nope"), {"OUT_DIR": "out/deeper/packs"}, True, "error: "),
    ],
    ids=["no-builder", "half-credentials", "unknown-pack-dry-run", "unknown-pack-deep-out-dir"],
)
def test_a_refused_run_leaves_nothing_behind(
    project_copy: Path,
    run_invoke: RunInvoke,
    registry: Registry,
    args: tuple[str, ...],
    env: dict[str, str],
    builder: bool,
    message: str,
) -> None:
    given = {**env_for(registry), "LOCK_FILE": "locks/shard-1.json", **env}
    result = run_invoke(project_copy, *args, builder=builder, **given)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(message)
    assert git(project_copy, "status", "--porcelain", "--ignored") == ""  # not even an ignored file
    assert sorted(p.name for p in project_copy.iterdir()) == [".git", "packs", "tasks.py"]


def test_no_run_leaves_its_out_dir_lock_and_a_refusal_keeps_earlier_output(
    project_copy: Path, run_invoke: RunInvoke
) -> None:
    env = {"OCI_ORG": "acme", "PACK_VERSION": "1.0.0", "OCI_REGISTRY": "127.0.0.1:9"}  # nothing listens there
    chained = run_invoke(project_copy, "build", "push", "lock", **env, DRY_RUN="1")
    assert chained.returncode == 0, chained.stderr
    out = project_copy / "dist" / "packs"
    assert (out / f"{PACK}.gtpack").is_file() and not (out / ".publisher.lock").exists()
    refused = run_invoke(project_copy, "build", "--pack", "nope", **env)
    assert refused.returncode == 2
    assert (out / f"{PACK}.gtpack").is_file() and not (out / ".publisher.lock").exists()


def test_the_suggested_dry_run_lockfile_is_ignored_by_git() -> None:
    suggested = subprocess.run(
        ["grep", "-rhoE", r"LOCK_FILE=[a-z.-]+\.json", str(PROJECT / "pack_publisher")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert f"LOCK_FILE={DRY_LOCK}" in suggested
    for name in {s.removeprefix("LOCK_FILE=") for s in suggested}:
        ignored = subprocess.run(["git", "-C", str(PROJECT), "check-ignore", "-q", name], check=False)
        assert ignored.returncode == 0, f"{name} is not ignored by git"


# --- the documented local round trip ----------------------------------------------------------------


def documented_commands() -> str:
    """The first `sh` block of docs/local-round-trip.md, exactly as written (README's round trip is the same)."""
    text = (PROJECT / "docs" / "local-round-trip.md").read_text(encoding="utf-8")
    return text.split("```sh\n", 1)[1].split("\n```", 1)[0] + "\n"


def test_the_readme_round_trip_is_the_tested_one() -> None:
    readme = (PROJECT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## A local round trip") :]
    assert section.split("```sh\n", 1)[1].split("\n```", 1)[0] + "\n" == documented_commands()


def test_the_documented_local_round_trip_works_as_written(
    client: dict[str, str], project_copy: Path, builder_bin: Path, tmp_path: Path
) -> None:
    tools_bin = tmp_path / "tools-bin"
    tools_bin.mkdir()
    (tools_bin / "oras").symlink_to(oras_path())  # the real oras, named as a user has it
    path = os.pathsep.join([str(builder_bin), str(tools_bin), str(Path(sys.executable).parent), "/usr/bin", "/bin"])
    registry_dir = tmp_path / "registry"
    host = f"127.0.0.1:{free_port()}"
    env = {"PATH": path, "HOME": str(tmp_path), "LANG": "C.UTF-8", "REGISTRY": host, "REGISTRY_DIR": str(registry_dir)}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", documented_commands()],
        cwd=project_copy,
        env={**env, "OCI_CLIENT": client["OCI_CLIENT"]},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [entry] = lock_of(project_copy)["packs"]  # type: ignore[misc]
    assert f"round trip ok: {host}/{REPO}@{entry['digest']}" in result.stdout
    assert f"ok {host}/{REPO}:1.2.3 @ {entry['digest']}" in result.stdout
    # what landed, read from the registry's own storage: the tag links the digest the lockfile pins
    link = registry_dir / "data/docker/registry/v2/repositories" / REPO / "_manifests/tags/1.2.3/current/link"
    assert link.read_text() == entry["digest"]
    built = (project_copy / "dist" / "packs" / f"{PACK}.gtpack").read_bytes()
    for how in ("by-tag", "by-digest"):
        assert (project_copy / "pulled" / how / f"{PACK}.gtpack").read_bytes() == built
    assert "sha256:" + hashlib.sha256(built).hexdigest() == entry["gtpack_sha256"]


def test_a_stream_that_cannot_hold_an_ellipsis_still_gets_the_line(
    project_copy: Path, run_invoke_process: RunInvoke
) -> None:
    # a real child: PYTHONIOENCODING sets the encoding of the process's own stdout
    result = run_invoke_process(project_copy, "build", OCI_ORG="acme", PACK_VERSION="1.0.0", PYTHONIOENCODING="ascii")
    assert result.returncode == 0, result.stderr
    assert f"building {PACK}...\n" in result.stdout and f"built {PACK}: " in result.stdout


def test_verify_checks_only_the_packs_named(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    add_pack(project_copy, "second-pack")
    git(project_copy, "add", "-A")
    git(project_copy, "commit", "-qm", "a second pack")
    _release(project_copy, run_invoke, registry, client)
    one = run_invoke(project_copy, "verify", "--pack", "second-pack", **env_for(registry, **client))
    assert one.returncode == 0, one.stderr
    assert [line.split(" @ ")[0] for line in one.stdout.splitlines() if line.startswith("ok ")] == [
        f"ok {registry.host}/acme/greentic-packs/second-pack:1.2.3"
    ]
    unknown = run_invoke(project_copy, "verify", "--pack", "nope", **env_for(registry, **client))
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == (f"error: --pack: 'nope' is not in packs.lock.json (it lists {PACK}, second-pack)")
