"""Bad input: each case is one clear `error:` line, a non-zero exit, no traceback, nothing pushed."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from testsupport.registries import Registry

from .conftest import RunInvoke, git

PACK = "messaging-provider-bundle"


def add_folder(
    name: str, pack_yaml: str | None = "pack_id: x\nversion: 0.1.0\nkind: provider\npublisher: G\n"
) -> Callable[[Path], None]:
    def setup(repo: Path) -> None:
        folder = repo / "packs" / name
        folder.mkdir(parents=True)
        if pack_yaml is not None:
            (folder / "pack.yaml").write_text(pack_yaml)

    return setup


def write_pack_yaml(text: str) -> Callable[[Path], None]:
    def setup(repo: Path) -> None:
        (repo / "packs" / PACK / "pack.yaml").write_text(text)

    return setup


def empty_packs_dir(repo: Path) -> None:
    (repo / "nothing-here").mkdir()


def symlink_out(repo: Path) -> None:
    (repo / "secret.txt").write_text("not for publishing")
    os.symlink(repo / "secret.txt", repo / "packs" / PACK / "leak.txt")


def tag_not_semver(repo: Path) -> None:
    git(repo, "tag", "v1.2")


def write_pack_bytes(data: bytes) -> Callable[[Path], None]:
    def setup(repo: Path) -> None:
        (repo / "packs" / PACK / "pack.yaml").write_bytes(data)

    return setup


def symlink_loop(repo: Path) -> None:
    os.symlink("loop2", repo / "packs" / PACK / "loop1")
    os.symlink("loop1", repo / "packs" / PACK / "loop2")


def pack_folder_symlinked_out(repo: Path) -> None:
    outside = repo.parent / "elsewhere" / "evil"
    outside.mkdir(parents=True)
    (outside / "pack.yaml").write_text("pack_id: evil\nversion: 0.1.0\nkind: provider\npublisher: G\n")
    os.symlink(outside, repo / "packs" / "evil")


SOURCE_YAML = (Path(__file__).resolve().parent.parent / "packs" / PACK / "pack.yaml").read_text()


@dataclass
class Case:
    id: str
    message: str  # what the error line starts with, after "error: "
    env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    setup: Callable[[Path], None] | None = None
    code: int = 2


CASES = [
    Case("no-packs", "no packs found under", env={"PACKS_DIR": "nothing-here"}, setup=empty_packs_dir),
    Case("unknown-pack", f"unknown pack 'nope'; known packs: {PACK}", args=("--pack", "nope")),
    Case(
        "folder-uppercase",
        "pack folder 'Bad-Pack' is not a valid OCI repository name component",
        setup=add_folder("Bad-Pack"),
    ),
    Case(
        "folder-space",
        "pack folder 'bad pack' is not a valid OCI repository name component",
        setup=add_folder("bad pack"),
    ),
    Case(
        "folder-leading-dash",
        "pack folder '-bad' is not a valid OCI repository name component",
        setup=add_folder("-bad"),
    ),
    Case("folder-dots", "pack folder 'a..b' is not a valid OCI repository name component", setup=add_folder("a..b")),
    Case("org-space", "OCI_ORG: 'bad org' is not a valid OCI repository path component", env={"OCI_ORG": "bad org"}),
    Case("org-dots", "OCI_ORG: '..' is not a valid OCI repository path component", env={"OCI_ORG": ".."}),
    Case("org-leading-dash", "OCI_ORG: '-acme' is not a valid OCI repository path component", env={"OCI_ORG": "-acme"}),
    Case(
        "repo-uppercase",
        "OCI_REPO: 'Greentic-Packs' is not a valid OCI repository path (it must be lowercase)",
        env={"OCI_REPO": "Greentic-Packs"},
    ),
    Case("repo-space", "OCI_REPO: 'my packs' is not a valid OCI repository path", env={"OCI_REPO": "my packs"}),
    Case("repo-dots", "OCI_REPO: '../packs' is not a valid OCI repository path", env={"OCI_REPO": "../packs"}),
    Case("repo-leading-dash", "OCI_REPO: '-packs' is not a valid OCI repository path", env={"OCI_REPO": "-packs"}),
    Case("pack-yaml-missing", "pack folder", args=("--pack", "no-yaml"), setup=add_folder("no-yaml", None)),
    Case("pack-yaml-empty", f"packs/{PACK}/pack.yaml: is empty", setup=write_pack_yaml("")),
    Case(
        "pack-yaml-malformed",
        f"packs/{PACK}/pack.yaml: invalid YAML at line",
        setup=write_pack_yaml("pack_id: [oops\nversion: 1\n"),
    ),
    Case(
        "pack-yaml-missing-field",
        f"packs/{PACK}/pack.yaml: missing required field 'publisher'",
        setup=write_pack_yaml("pack_id: x\nversion: 0.1.0\nkind: provider\n"),
    ),
    Case(
        "pack-yaml-not-semver",
        f"packs/{PACK}/pack.yaml: field 'version': 'one' is not a semantic version",
        setup=write_pack_yaml("pack_id: x\nversion: one\nkind: provider\npublisher: G\n"),
    ),
    Case("version-malformed", "PACK_VERSION: '1.2.x' is not a semantic version", env={"PACK_VERSION": "1.2.x"}),
    Case(
        "version-build-metadata",
        "PACK_VERSION: '1.2.3+build.9' carries build metadata",
        env={"PACK_VERSION": "1.2.3+build.9"},
    ),
    Case(
        "v-tag-not-semver",
        "git tag 'v1.2' on HEAD is not a release tag vX.Y.Z",
        env={"PACK_VERSION": ""},
        setup=tag_not_semver,
    ),
    Case("symlink-outside", f"pack '{PACK}': symlink leak.txt points outside the pack", setup=symlink_out),
    Case(
        "builder-no-archive",
        f"pack '{PACK}': the builder exited 0 but wrote no archive",
        env={"FAKE_GREENTIC_PACK_MODE": "no-output"},
        code=1,
    ),
    Case(
        "archive-corrupt",
        f"invalid .gtpack {PACK}.gtpack: not a zip archive",
        env={"FAKE_GREENTIC_PACK_MODE": "corrupt"},
        code=1,
    ),
    Case(
        "archive-traversal",
        f"invalid .gtpack {PACK}.gtpack: entry '../outside.txt' escapes the archive",
        env={"FAKE_GREENTIC_PACK_MODE": "traversal"},
        code=1,
    ),
    Case(
        "archive-duplicate",
        f"invalid .gtpack {PACK}.gtpack: duplicate entry",
        env={"FAKE_GREENTIC_PACK_MODE": "duplicate"},
        code=1,
    ),
    Case(
        "archive-oversize",
        f"invalid .gtpack {PACK}.gtpack: entry 'assets/huge.bin' is 16777217 bytes",
        env={"FAKE_GREENTIC_PACK_MODE": "oversize"},
        code=1,
    ),
    Case(
        "archive-no-manifest",
        f"invalid .gtpack {PACK}.gtpack: manifest.cbor is missing",
        env={"FAKE_GREENTIC_PACK_MODE": "no-manifest"},
        code=1,
    ),
    Case(
        "archive-sbom-mismatch",
        f"invalid .gtpack {PACK}.gtpack: sbom.cbor hash of 'pack.lock.cbor' does not match",
        env={"FAKE_GREENTIC_PACK_MODE": "sbom-mismatch"},
        code=1,
    ),
    Case(
        "pack-yaml-alias",
        f"packs/{PACK}/pack.yaml: invalid YAML at line 5: aliases (*name) are not allowed",
        setup=write_pack_yaml("pack_id: &id x\nversion: 0.1.0\nkind: provider\npublisher: G\nname: *id\n"),
    ),
    Case(
        "pack-yaml-bom",
        f"packs/{PACK}/pack.yaml: starts with a byte order mark (BOM)",
        setup=write_pack_bytes(b"\xef\xbb\xbf" + SOURCE_YAML.encode()),
    ),
    Case(
        "pack-yaml-duplicate-key",
        f"packs/{PACK}/pack.yaml: invalid YAML at line",
        setup=write_pack_yaml(SOURCE_YAML + "version: 9.9.9\n"),
    ),
    Case(
        "pack-yaml-huge",
        f"packs/{PACK}/pack.yaml: is over 1024 KiB",
        setup=write_pack_yaml(SOURCE_YAML + ("# padding\n" * 110_000)),
    ),
    Case(
        "folder-too-long",
        f"pack folder {'p' * 40!r}... is 200 characters, over the 128-character limit",
        setup=add_folder("p" * 200),
    ),
    Case("folder-trailing-newline", "pack folder 'x\\n' is not a valid", setup=add_folder("x\n")),
    Case("pack-folder-symlink-out", "pack folder 'evil' is a symlink to", setup=pack_folder_symlinked_out),
    Case("symlink-loop", f"pack '{PACK}': symlink loop1 makes a loop", setup=symlink_loop),
    Case("out-dir-in-pack", "OUT_DIR: ", env={"OUT_DIR": f"packs/{PACK}/out"}),
    Case(
        "source-date-epoch-huge",
        "SOURCE_DATE_EPOCH: 99999999999999999 is after 253402300799",
        env={"SOURCE_DATE_EPOCH": "99999999999999999"},
    ),
    Case("repo-trailing-newline", "OCI_REPO: 'greentic-packs\\n' is not", env={"OCI_REPO": "greentic-packs\n"}),
    Case(
        "lock-file-not-a-lockfile",
        "LOCK_FILE: ",
        env={"LOCK_FILE": "tasks.py"},
        args=("--dry-run",),
    ),
    Case(
        "jobs-zero", "PUBLISH_JOBS / --jobs: '0': input should be greater than or equal to 1", env={"PUBLISH_JOBS": "0"}
    ),
    Case(
        "client-unknown", "OCI_CLIENT: 'curl': input should be 'auto', 'oras' or 'python'", env={"OCI_CLIENT": "curl"}
    ),
    # the built-in client, which both transports read through, speaks to http:// proxies only: said up front
    Case("proxy-tls", "HTTP_PROXY / ALL_PROXY: a https:// proxy for 127.0.0.1:", env={"HTTP_PROXY": "https://p:3129"}),
    Case("proxy-socks", "HTTP_PROXY / ALL_PROXY: a socks5:// proxy for ", env={"ALL_PROXY": "socks5://p:1080"}),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input(project_copy: Path, run_invoke: RunInvoke, registry: Registry, case: Case) -> None:
    if case.setup is not None:
        case.setup(project_copy)
        if git(project_copy, "status", "--porcelain"):  # committed: the case is the input, not a dirty tree
            git(project_copy, "add", "-A")
            git(project_copy, "commit", "-q", "-m", "bad input")
    env = {
        "OCI_REGISTRY": registry.host,
        "OCI_ORG": "acme",
        "PACK_VERSION": "1.2.3",
        "OCI_CLIENT": "python",
        **case.env,
    }
    env = {k: v for k, v in env.items() if v != ""}
    result = run_invoke(project_copy, "release", *case.args, **env)
    assert result.returncode == case.code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"error: {case.message}"), errors[0]
    assert registry.storage_files() == 0, "something was pushed"
    assert not (project_copy / "packs.lock.json").exists()


def test_lock_file_pointing_at_a_source_file_leaves_it_alone(project_copy: Path, run_invoke: RunInvoke) -> None:
    for target in ("tasks.py", f"packs/{PACK}/pack.yaml"):
        before = (project_copy / target).read_bytes()
        result = run_invoke(
            project_copy, "release", "--dry-run", PACK_VERSION="1.2.3", OCI_ORG="acme", LOCK_FILE=target
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines()[-1].startswith("error: LOCK_FILE: "), result.stderr
        assert (project_copy / target).read_bytes() == before


def test_out_dir_inside_a_pack_copies_nothing_into_it(project_copy: Path, run_invoke: RunInvoke) -> None:
    pack = project_copy / "packs" / PACK
    before = sorted(p.relative_to(pack) for p in pack.rglob("*") if not p.is_dir())
    result = run_invoke(project_copy, "build", PACK_VERSION="1.2.3", OCI_ORG="acme", OUT_DIR=f"packs/{PACK}/out")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.relative_to(pack) for p in pack.rglob("*") if not p.is_dir()) == before


def test_secrets_in_other_spellings_stay_out_of_the_builder(project_copy: Path, run_invoke: RunInvoke) -> None:
    result = run_invoke(
        project_copy,
        "build",
        PACK_VERSION="1.2.3",
        OCI_ORG="acme",
        FAKE_GREENTIC_PACK_MODE="echo-env",
        OCI_USERNAME="robot",
        oci_password="canary-lower-1234",
        Github_Token="canary-mixed-5678",
    )
    assert result.returncode == 1, result.stderr
    assert "FAKE_GREENTIC_PACK_MODE=echo-env" in result.stderr  # the builder's environment was printed
    output = result.stdout + result.stderr
    assert "canary-lower" not in output and "canary-mixed" not in output
    assert "oci_password=" not in output and "Github_Token=" not in output  # not masked: never passed
