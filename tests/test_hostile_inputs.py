"""Hostile local inputs (issue 12): each is refused with one clear line, fast, before anything is written."""

from __future__ import annotations

import base64
import json
import os
import signal
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from pack_publisher.config import environment, settings
from pack_publisher.oci.names import (
    DIGEST_RE,
    PATH_COMPONENT_RE,
    REGISTRY_RE,
    REPOSITORY_PATH_RE,
    TAG_RE,
    is_semver,
    semver_problem,
)
from pack_publisher.registry import credentials
from pack_publisher.runtime.errors import ConfigError, PublisherError
from pack_publisher.runtime.redact import Redactor, is_secret_env_name, secret_env_values
from pack_publisher.sources import builder, packs
from pack_publisher.sources.archive import inspect_gtpack
from pack_publisher.state import lockfile

from .conftest import make_executable, publish_options, runner
from .gtpacks import good_files, patch_entry, write

GOOD = "pack_id: demo\nversion: 0.1.0\nkind: provider\npublisher: Greentic\n"
PREFIX = "acme/greentic-packs"


def make_pack(packs_dir: Path, name: str = "demo", text: str = GOOD) -> Path:
    folder = packs_dir / name
    folder.mkdir(parents=True)
    (folder / "pack.yaml").write_text(text)
    return folder


def refusal(packs_dir: Path, wanted: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        packs.select(packs_dir, wanted, PREFIX, packs_dir.parent)
    assert "\n" not in info.value.message
    return info.value.message


def lockfile_bytes(*names: object) -> bytes:
    content = {
        "version": "1.2.3",
        "generated_at": "2026-01-01T00:00:00Z",
        "git_sha": "0" * 40,
        "registry": "ghcr.io",
        "org": "acme",
        "repo": "greentic-packs",
        "dry_run": False,
        "packs": [{"name": n, "file": "x.gtpack", "oci_ref": "r", "digest": "d"} for n in names],
    }
    return json.dumps(content).encode()


# item 2: a lockfile pack name is a pack folder name, never a path


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../../../tmp/evil", "is not a valid OCI repository name component"),
        ("/etc/cron.d/x", "is not a valid OCI repository name component"),
        ("demo\n", "is not a valid OCI repository name component"),
        ("", "is not a valid OCI repository name component"),
        ("a" * 200, "over the 128-character limit"),
        (7, "7 is not a string"),
        (None, "None is not a string"),
    ],
)
def test_lockfile_refuses_pack_names_that_are_not_folder_names(name: object, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        lockfile.read("packs.lock.json", lockfile_bytes("good", name))
    assert info.value.message.startswith("packs.lock.json: pack name ")
    assert why in info.value.message


def test_lockfile_accepts_pack_names() -> None:
    assert [p["name"] for p in lockfile.read("l", lockfile_bytes("a-pack", "b.pack_2"))["packs"]] == [
        "a-pack",
        "b.pack_2",
    ]


# item 6: Basic-auth forms of a password are masked


def test_redactor_masks_basic_auth_forms() -> None:
    redact = Redactor()
    redact.add_credentials("robot", "s3cr3t-t0ken")
    pair = b"robot:s3cr3t-t0ken"
    forms = [
        "s3cr3t-t0ken",
        base64.b64encode(b"s3cr3t-t0ken").decode(),
        base64.b64encode(pair).decode(),
        base64.b64encode(pair).decode().rstrip("="),
        base64.urlsafe_b64encode(pair).decode(),
    ]
    for form in forms:
        assert redact(f"echo: Authorization: Basic {form}!") == "echo: Authorization: Basic ***!", form
    assert redact("user robot logged in") == "user robot logged in"  # a user name is not a secret


def test_redactor_masks_url_safe_base64_of_a_pair_that_needs_it() -> None:
    redact = Redactor()
    redact.add_credentials("me", "pa>>ss??")  # its base64 holds '+' and '/', the URL-safe form '-' and '_'
    standard = base64.b64encode(b"me:pa>>ss??").decode()
    url_safe = base64.urlsafe_b64encode(b"me:pa>>ss??").decode()
    assert standard != url_safe
    assert redact(standard) == "***" and redact(url_safe) == "***"


def test_redactor_masks_a_url_encoded_password() -> None:
    redact = Redactor()
    redact.add_credentials("robot", "p@ss/w:rd")
    assert redact("POST /token body=password=p%40ss%2Fw%3Ard&x=1") == "POST /token body=password=***&x=1"


def test_redactor_ignores_missing_or_tiny_passwords() -> None:
    redact = Redactor()
    redact.add_credentials("robot", None)
    redact.add_credentials("robot", "abc")
    assert redact("robot abc") == "robot abc"


# item 7: tracebacks become one line


def test_symlink_loop_between_two_links(tmp_path: Path) -> None:
    src = make_pack(tmp_path / "packs")
    os.symlink("loop2", src / "loop1")
    os.symlink("loop1", src / "loop2")
    pack = packs.select(tmp_path / "packs", None, PREFIX, tmp_path)[0]
    with pytest.raises(ConfigError, match=r"^pack 'demo': symlink loop1 makes a loop$"):
        packs.stage(pack, tmp_path / "out" / "stage" / "demo", "1.0.0")


def test_symlink_loop_across_two_folders(tmp_path: Path) -> None:
    src = make_pack(tmp_path / "packs")
    (src / "a").mkdir()
    (src / "c").mkdir()
    os.symlink("../c", src / "a" / "b")
    os.symlink("../a", src / "c" / "d")
    pack = packs.select(tmp_path / "packs", None, PREFIX, tmp_path)[0]
    with pytest.raises(ConfigError, match=r"makes a loop"):
        packs.stage(pack, tmp_path / "out" / "stage" / "demo", "1.0.0")


@pytest.mark.parametrize(
    "text",
    [
        "pack_id: &id demo\nversion: 0.1.0\nkind: provider\npublisher: *id\n",
        "a: &a [*a]\n" + GOOD,
        # a billion laughs: nine levels of nine aliases, 387 million strings if expanded
        "x0: &x0 [lol]\n" + "".join(f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 9)}]\n" for i in range(1, 10)) + GOOD,
    ],
    ids=["alias", "recursive-alias", "alias-bomb"],
)
def test_yaml_aliases_are_refused(tmp_path: Path, text: str) -> None:
    make_pack(tmp_path / "packs", text=text)
    started = time.monotonic()
    message = refusal(tmp_path / "packs")
    assert time.monotonic() - started < 2
    assert message.startswith("packs/demo/pack.yaml: invalid YAML at line ")
    assert message.endswith(": aliases (*name) are not allowed in pack.yaml")


def test_yaml_anchor_without_alias_is_fine(tmp_path: Path) -> None:
    make_pack(tmp_path / "packs", text=GOOD + "extra: &unused 1\n")
    assert packs.select(tmp_path / "packs", None, PREFIX, tmp_path)[0].meta.pack_id == "demo"


@pytest.mark.parametrize("depth", [packs.MAX_YAML_DEPTH, packs.MAX_YAML_DEPTH + 1])
def test_pack_yaml_nesting_limit(tmp_path: Path, depth: int) -> None:
    """libyaml composes in C without a recursion limit: nesting is counted from the events first."""
    make_pack(tmp_path / "packs", text=GOOD + "deep: " + "[" * (depth - 1) + "]" * (depth - 1) + "\n")
    if depth <= packs.MAX_YAML_DEPTH:  # the document's own mapping is the first level
        assert packs.select(tmp_path / "packs", None, PREFIX, tmp_path)[0].fields["deep"] is not None
    else:
        assert refusal(tmp_path / "packs") == "packs/demo/pack.yaml: invalid YAML: nested too deeply"


def test_deeply_nested_pack_yaml(tmp_path: Path) -> None:
    make_pack(tmp_path / "packs", text=GOOD + "deep: " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert refusal(tmp_path / "packs") == "packs/demo/pack.yaml: invalid YAML: nested too deeply"


def test_pack_folder_name_too_long_for_file_names(tmp_path: Path) -> None:
    name = "p" * 200  # the repository acme/greentic-packs/ppp... stays under 255; temp file names would not
    make_pack(tmp_path / "packs", name)
    message = refusal(tmp_path / "packs")
    assert message.startswith(f"pack folder {name[:40]!r}... is 200 characters, over the 128-character limit")


def test_out_dir_inside_a_pack_is_refused_up_front(tmp_path: Path) -> None:
    src = make_pack(tmp_path / "packs")
    with pytest.raises(ConfigError, match=r"^OUT_DIR: .* is inside PACKS_DIR "):
        packs.check_out_dir(src / "dist" / "packs", tmp_path / "packs")
    with pytest.raises(ConfigError, match=r"^OUT_DIR: .* holds PACKS_DIR "):
        packs.check_out_dir(tmp_path, tmp_path / "packs")
    packs.check_out_dir(tmp_path / "dist" / "packs", tmp_path / "packs")  # the usual layout


def test_stage_never_copies_a_pack_into_itself(tmp_path: Path) -> None:
    src = make_pack(tmp_path / "packs")
    (src / "flows").mkdir()
    (src / "flows" / "main.ygtc").write_text("id: main\n")
    before = sorted(p.relative_to(src) for p in src.rglob("*"))
    pack = packs.select(tmp_path / "packs", None, PREFIX, tmp_path)[0]
    with pytest.raises(ConfigError, match=r"^OUT_DIR: the staging folder .* overlaps the folder of pack 'demo' "):
        packs.stage(pack, src / "out" / "stage" / "demo", "1.0.0")
    assert sorted(p.relative_to(src) for p in src.rglob("*")) == before


def test_stage_never_deletes_the_pack_it_would_replace(tmp_path: Path) -> None:
    # PACKS_DIR=dist/packs/stage with OUT_DIR=dist/packs: the stage folder of a pack is the pack itself
    src = make_pack(tmp_path / "dist" / "packs" / "stage")
    pack = packs.select(src.parent, None, PREFIX, tmp_path)[0]
    with pytest.raises(ConfigError, match=r"overlaps the folder of pack 'demo'"):
        packs.stage(pack, src, "1.0.0")
    assert (src / "pack.yaml").read_text() == GOOD


def test_huge_source_date_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "99999999999999999")
    with pytest.raises(ConfigError) as info:
        environment.read_environment()
    assert info.value.message == (
        "SOURCE_DATE_EPOCH: 99999999999999999 is after 253402300799 (9999-12-31T23:59:59Z), "
        "the last time a date can hold"
    )
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(environment.MAX_EPOCH))
    assert settings.format_created(environment.read_environment().source_date_epoch or 0) == "9999-12-31T23:59:59Z"


def test_created_time_out_of_range_from_git() -> None:
    with pytest.raises(ConfigError, match=r"^SOURCE_DATE_EPOCH / HEAD commit time: 10000000000000 is outside"):
        settings.format_created(10**13)


@pytest.mark.parametrize(
    ("patch", "why"),
    [
        ({"flags": 0x1}, "entry 'assets/a.txt' is encrypted"),
        ({"method": 99}, "entry 'assets/a.txt' uses compression method 99 (only stored or deflated)"),
    ],
    ids=["encrypted", "method-99"],
)
def test_archive_entries_zipfile_cannot_read(tmp_path: Path, patch: dict[str, int], why: str) -> None:
    path = patch_entry(write(tmp_path / "x.gtpack", good_files()), "assets/a.txt", **patch)  # type: ignore[arg-type]
    with pytest.raises(PublisherError) as info:
        inspect_gtpack(path)
    assert info.value.message == f"invalid .gtpack x.gtpack: {why}"


def test_archive_encrypted_manifest(tmp_path: Path) -> None:
    path = patch_entry(write(tmp_path / "x.gtpack", good_files()), "manifest.cbor", flags=0x1)
    with pytest.raises(PublisherError, match=r"entry 'manifest.cbor' is encrypted$"):
        inspect_gtpack(path)


def test_archive_empty_entry_name(tmp_path: Path) -> None:
    path = patch_entry(write(tmp_path / "x.gtpack", [*good_files(), ("x", b"data")]), "x", unname=True)
    assert "" in zipfile.ZipFile(path).namelist()  # the archive really holds an empty name
    with pytest.raises(PublisherError) as info:
        inspect_gtpack(path)
    assert info.value.message == "invalid .gtpack x.gtpack: an entry has an empty name"


def test_deeply_nested_json_lockfile() -> None:
    with pytest.raises(ConfigError) as info:
        lockfile.read("packs.lock.json", b"[" * 200_000 + b"]" * 200_000)
    assert info.value.message == "packs.lock.json: not a packs.lock.json (JSON nested too deeply)"


# item 8: hangs


@pytest.mark.slow  # 60,000 zip entries, and a bound in real seconds
def test_duplicate_entry_check_is_linear(tmp_path: Path) -> None:
    path = tmp_path / "many.gtpack"
    count = 60_000
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in good_files():
            zf.writestr(name, data)
        for i in range(count):
            zf.writestr(f"assets/{i}", b"")
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr(f"assets/{count - 1}", b"")
    started = time.monotonic()
    with pytest.raises(PublisherError, match=rf"duplicate entry 'assets/{count - 1}'$"):
        inspect_gtpack(path)
    assert time.monotonic() - started < 3  # a list.count() per name took about 30 s here


@pytest.fixture
def staged(tmp_path: Path) -> Path:
    folder = tmp_path / "stage" / "demo"
    folder.mkdir(parents=True)
    (folder / "pack.yaml").write_text(GOOD)
    return folder


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow  # the stand-in's grandchild lingers for real
def test_builder_grandchild_holding_stderr_does_not_hold_the_build(
    builder_bin: Path, staged: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pidfile = tmp_path / "grandchild.pid"
    monkeypatch.setenv("FAKE_GREENTIC_PACK_MODE", "linger")
    monkeypatch.setenv("FAKE_GREENTIC_PACK_PIDFILE", str(pidfile))
    out = tmp_path / "demo.gtpack"
    started = time.monotonic()
    builder.build_gtpack(runner(), str(builder_bin / "greentic-pack"), "demo", staged, out)
    assert time.monotonic() - started < 20
    assert out.is_file()
    grandchild = int(pidfile.read_text())
    try:
        deadline = time.monotonic() + 5
        while alive(grandchild) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(grandchild), "the builder's grandchild was left running"
    finally:
        if alive(grandchild):
            os.kill(grandchild, signal.SIGKILL)


@pytest.mark.slow  # a real 1 s deadline
def test_builder_timeout_kills_it(
    builder_bin: Path, staged: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_GREENTIC_PACK_MODE", "hang")
    monkeypatch.setattr(builder, "BUILD_TIMEOUT_SECONDS", 1)
    started = time.monotonic()
    with pytest.raises(PublisherError, match=r"^pack 'demo': the builder ran over 1 s$"):
        builder.build_gtpack(runner(), str(builder_bin / "greentic-pack"), "demo", staged, tmp_path / "demo.gtpack")
    assert time.monotonic() - started < 15


def test_builder_failure_tail_of_a_long_stderr(builder_bin: Path, staged: Path, tmp_path: Path) -> None:
    script = tmp_path / "noisy.py"
    script.write_text(
        "import sys\nsys.stderr.write('noise\\n' * 200_000)\nsys.stderr.write('Error: the last word\\n')\nsys.exit(3)\n"
    )
    noisy = make_executable(tmp_path / "noisy", script)
    with pytest.raises(PublisherError) as info:
        builder.build_gtpack(runner(), str(noisy), "demo", staged, tmp_path / "demo.gtpack")
    lines = info.value.message.splitlines()
    assert lines[0] == "pack 'demo': builder noisy failed (exit 3):"
    assert len(lines) == 1 + builder.STDERR_TAIL_LINES and lines[-1].strip() == "Error: the last word"


# item 9: accepted bad input


@pytest.mark.parametrize(
    ("pattern", "good"),
    [
        (PATH_COMPONENT_RE, "demo"),
        (REPOSITORY_PATH_RE, "acme/greentic-packs"),
        (TAG_RE, "1.2.3"),
        (REGISTRY_RE, "ghcr.io"),
        (DIGEST_RE, "sha256:" + "0" * 64),
    ],
)
def test_names_with_a_trailing_newline_are_refused(pattern: object, good: str) -> None:
    assert pattern.match(good)  # type: ignore[attr-defined]
    assert not pattern.match(good + "\n")  # type: ignore[attr-defined]


def test_versions_with_a_trailing_newline_are_refused() -> None:
    assert is_semver("1.2.3") and not is_semver("1.2.3\n")
    assert semver_problem("1.2.3\n") is not None


def test_settings_refuse_a_repo_with_a_trailing_newline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCI_REPO", "greentic-packs\n")
    with pytest.raises(ConfigError, match=r"^OCI_REPO: 'greentic-packs\\n' is not a valid OCI repository path"):
        environment.read_environment()


def test_pack_folder_with_a_trailing_newline_is_refused(tmp_path: Path) -> None:
    make_pack(tmp_path / "packs", "demo\n")
    assert refusal(tmp_path / "packs").startswith("pack folder 'demo\\n' is not a valid OCI repository name")


def test_lock_target_refuses_files_that_are_not_lockfiles(tmp_path: Path) -> None:
    packs_dir = tmp_path / "packs"
    src = make_pack(packs_dir)
    with pytest.raises(ConfigError, match=r"^LOCK_FILE: .*/packs/demo/pack.yaml is inside PACKS_DIR "):
        lockfile.check_writable_target(src / "pack.yaml", packs_dir)
    with pytest.raises(ConfigError, match=r"^LOCK_FILE: .*/packs/new.json is inside PACKS_DIR "):
        lockfile.check_writable_target(packs_dir / "new.json", packs_dir)
    tasks = tmp_path / "tasks.py"
    tasks.write_text("from invoke import task\n")
    with pytest.raises(
        ConfigError, match=r"^LOCK_FILE: .*/tasks.py exists and is not a packs lockfile; not overwriting"
    ):
        lockfile.check_writable_target(tasks, packs_dir)
    with pytest.raises(ConfigError, match=r"^LOCK_FILE: .* is a directory$"):
        lockfile.check_writable_target(tmp_path, packs_dir)
    assert tasks.read_text() == "from invoke import task\n"


def test_lock_target_accepts_a_lockfile_an_empty_file_or_nothing(tmp_path: Path) -> None:
    packs_dir = tmp_path / "packs"
    packs_dir.mkdir()
    existing = tmp_path / "packs.lock.json"
    existing.write_bytes(lockfile_bytes("demo"))
    lockfile.check_writable_target(existing, packs_dir)
    (tmp_path / "empty.json").write_bytes(b"")
    lockfile.check_writable_target(tmp_path / "empty.json", packs_dir)
    lockfile.check_writable_target(tmp_path / "absent.json", packs_dir)


def test_lockfile_write_refuses_to_overwrite_another_file(tmp_path: Path) -> None:
    target = tmp_path / "tasks.py"
    target.write_text("keep me\n")
    fake = SimpleNamespace(lock_file=target, packs_dir=tmp_path / "packs")
    with pytest.raises(ConfigError, match=r"exists and is not a packs lockfile"):
        lockfile.write(fake, [])  # type: ignore[arg-type]
    assert target.read_text() == "keep me\n"


def test_pack_folder_symlinked_out_of_packs_dir(tmp_path: Path) -> None:
    outside = make_pack(tmp_path / "elsewhere")
    (tmp_path / "packs").mkdir()
    os.symlink(outside, tmp_path / "packs" / "demo")
    assert refusal(tmp_path / "packs").startswith(f"pack folder 'demo' is a symlink to {outside.resolve()}, outside")


def test_pack_folder_symlinked_inside_packs_dir_is_fine(tmp_path: Path) -> None:
    make_pack(tmp_path / "packs", "real")
    os.symlink("real", tmp_path / "packs" / "alias")
    assert [p.name for p in packs.select(tmp_path / "packs", ["alias"], PREFIX, tmp_path)] == ["alias"]


def test_secret_names_in_any_spelling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("oci_password", "lower-secret")
    monkeypatch.setenv("Github_Token", "mixed-secret")
    monkeypatch.setenv("OCI_USERNAME", "robot")
    assert is_secret_env_name("gh_token") and not is_secret_env_name("OCI_USERNAME")
    env = environment.child_environment()
    assert "lower-secret" not in env.values() and "mixed-secret" not in env.values()
    assert env["OCI_USERNAME"] == "robot"
    assert {"lower-secret", "mixed-secret"} <= set(secret_env_values())
    assert Redactor(secret_env_values())("a lower-secret and a mixed-secret") == "a *** and a ***"


def test_credential_helper_gets_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    seen = tmp_path / "helper-env.json"
    helper = tmp_path / "helper.py"
    helper.write_text(
        "import json, os, sys\n"
        f"json.dump(dict(os.environ), open({str(seen)!r}, 'w'))\n"
        "json.dump({'Username': 'robot', 'Secret': 'from-helper'}, sys.stdout)\n"
    )
    make_executable(bin_dir / "docker-credential-fake", helper)
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "config.json").write_text(json.dumps({"credsStore": "fake"}))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("GITHUB_TOKEN", "ours-not-the-helpers")
    monkeypatch.setenv("oci_password", "nor-this-one")
    found = credentials.resolve_credentials("registry.example", publish_options(), runner())
    assert found is not None and found.password.get_secret_value() == "from-helper"
    values = json.loads(seen.read_text()).values()
    assert "ours-not-the-helpers" not in values and "nor-this-one" not in values
    assert os.environ["PATH"] in values  # everything else is passed through


# item 10, local parts: pack.yaml that is ambiguous, misnamed or huge


def test_pack_yaml_with_a_bom(tmp_path: Path) -> None:
    folder = make_pack(tmp_path / "packs")
    (folder / "pack.yaml").write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    assert refusal(tmp_path / "packs") == (
        "packs/demo/pack.yaml: starts with a byte order mark (BOM); save it as UTF-8 without one"
    )


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        (GOOD + "version: 0.2.0\n", 5, "'version'"),
        (GOOD + "flows:\n  - id: main\n    id: other\n", 7, "'id'"),
    ],
)
def test_pack_yaml_with_duplicate_keys(tmp_path: Path, text: str, line: int, key: str) -> None:
    make_pack(tmp_path / "packs", text=text)
    assert refusal(tmp_path / "packs") == f"packs/demo/pack.yaml: invalid YAML at line {line}: duplicate key {key}"


def test_pack_yaml_version_not_on_its_own_line(tmp_path: Path) -> None:
    make_pack(tmp_path / "packs", text="{pack_id: demo, version: 0.1.0, kind: provider, publisher: G}\n")
    assert refusal(tmp_path / "packs").startswith("packs/demo/pack.yaml: needs exactly one top-level 'version: X.Y.Z'")


def test_pack_id_other_than_folder_name_warns(tmp_path: Path) -> None:
    make_pack(tmp_path / "packs", "demo", GOOD.replace("pack_id: demo", "pack_id: other"))
    make_pack(tmp_path / "packs", "same")
    (tmp_path / "packs" / "same" / "pack.yaml").write_text(GOOD.replace("pack_id: demo", "pack_id: same"))
    demo, same = packs.select(tmp_path / "packs", None, PREFIX, tmp_path)
    assert demo.warnings == (
        "packs/demo/pack.yaml: pack_id 'other' differs from the folder name 'demo', which names the OCI "
        "repository and demo.gtpack",
    )
    assert same.warnings == ()


def test_pack_yaml_over_the_size_cap(tmp_path: Path) -> None:
    make_pack(tmp_path / "packs", text=GOOD + "#" * packs.MAX_PACK_FILE_BYTES + "\n")
    assert refusal(tmp_path / "packs") == "packs/demo/pack.yaml: is over 1024 KiB; a pack.yaml is a few kilobytes"


def test_pack_yaml_is_parsed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_pack(tmp_path / "packs", text=GOOD + "notes: [" + ", ".join(["x"] * 5_000) + "]\n")
    parsed: list[str] = []
    real = packs._parse
    monkeypatch.setattr(packs, "_parse", lambda text: parsed.append(text) or real(text))
    pack = packs.select(tmp_path / "packs", None, PREFIX, tmp_path)[0]
    staged = packs.stage(pack, tmp_path / "out" / "demo", "2.0.0")
    assert (staged / "pack.yaml").read_text() == pack.text.replace("0.1.0", "2.0.0")
    # once for the source; once for the staged copy, to prove only the version changed
    assert [t == pack.text for t in parsed] == [True, False]


def test_stage_writes_the_text_that_was_checked(tmp_path: Path) -> None:
    src = make_pack(tmp_path / "packs")
    pack = packs.select(tmp_path / "packs", None, PREFIX, tmp_path)[0]
    (src / "pack.yaml").write_text("changed: after the check\n")  # a race with an editor, say
    staged = packs.stage(pack, tmp_path / "out" / "demo", "2.0.0")
    assert (staged / "pack.yaml").read_text() == GOOD.replace("0.1.0", "2.0.0")
