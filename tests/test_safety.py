"""Every task safe and explicit: dry runs never write, tags move only as planned and named, a dirty tree
is refused, configuration is checked before the first build, and every external command can be shown."""

from __future__ import annotations

import ast
import fcntl
import json
import shutil
from pathlib import Path

import pytest

from testsupport.registries import Registry

from .conftest import PROJECT, RunInvoke, git
from .test_publish import PACK, REPO, add_pack, env_for, lock_of


def annotations_of(registry: Registry, tag: str) -> dict[str, str]:
    return json.loads(registry.raw_manifest(REPO, tag).content)["annotations"]  # type: ignore[no-any-return]


# --- DRY_RUN is honoured by every task that could write to a registry ---------------------------


@pytest.mark.parametrize("how", ["env", "flag"])
def test_dry_run_push_writes_nothing(project_copy: Path, run_invoke: RunInvoke, registry: Registry, how: str) -> None:
    env = env_for(registry)
    assert run_invoke(project_copy, "build", **env).returncode == 0
    args, extra = (["push"], {"DRY_RUN": "1"}) if how == "env" else (["push", "--dry-run"], {})
    result = run_invoke(project_copy, *args, **env, **extra)
    assert result.returncode == 0, result.stderr
    assert registry.storage_files() == 0
    assert f"plan {registry.host}/{REPO}:1.2.3: would publish (new tag): sha256:" in result.stdout  # it was asked
    assert f"would publish {registry.host}/{REPO}:1.2.3 (manifest digest sha256:" in result.stdout


def test_dry_run_chained_tasks_write_a_dry_run_lockfile(
    project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    result = run_invoke(project_copy, "build", "push", "--latest", "lock", **env_for(registry, DRY_RUN="1"))
    assert result.returncode == 0, result.stderr
    assert registry.storage_files() == 0
    lock = lock_of(project_copy)
    entry = lock["packs"][0]  # type: ignore[index]
    assert lock["dry_run"] is True and entry["digest"] == "DRY_RUN" and entry["tags"] == ["1.2.3", "latest"]


def test_dry_run_without_a_registry_says_it_was_not_consulted(project_copy: Path, run_invoke: RunInvoke) -> None:
    closed = "127.0.0.1:9"  # discard port: nothing listens
    result = run_invoke(project_copy, "release", "--dry-run", OCI_REGISTRY=closed, OCI_ORG="acme", PACK_VERSION="1.0.0")
    assert result.returncode == 0, result.stderr
    assert "registry not consulted (" in result.stdout and "the plan assumes every tag is new" in result.stdout
    assert f"plan {closed}/{REPO}:1.0.0: would publish (registry not consulted): sha256:" in result.stdout


# --- tags move only as planned, and every move is named -----------------------------------------


def test_latest_moves_forward_only_and_every_move_is_recorded(
    project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    first = run_invoke(project_copy, "release", "--latest", **env_for(registry, PACK_VERSION="1.2.4"))
    assert first.returncode == 0, first.stderr
    newer = registry.raw_manifest(REPO, "1.2.4").headers["Docker-Content-Digest"]
    assert lock_of(project_copy)["packs"][0]["tags"] == ["1.2.4", "latest"]  # type: ignore[index]

    older = run_invoke(project_copy, "release", "--latest", **env_for(registry, PACK_VERSION="1.2.3"))
    assert older.returncode == 0, older.stderr
    assert f"plan {registry.host}/{REPO}:latest: leave at {newer} (it holds 1.2.4, newer than 1.2.3" in older.stdout
    assert registry.raw_manifest(REPO, "latest").headers["Docker-Content-Digest"] == newer
    entry = lock_of(project_copy)["packs"][0]  # type: ignore[index]
    assert entry["tags"] == ["1.2.3"] and entry["replaced"] == {}

    forced = run_invoke(project_copy, "push", "--latest", "--force", **env_for(registry, PACK_VERSION="1.2.3"))
    assert forced.returncode == 0, forced.stderr
    digest = registry.raw_manifest(REPO, "1.2.3").headers["Docker-Content-Digest"]
    assert f":latest: move {newer} -> {digest} (backwards 1.2.4 -> 1.2.3, --force)" in forced.stdout
    assert f"latest was {newer}" in forced.stdout
    assert registry.raw_manifest(REPO, "latest").headers["Docker-Content-Digest"] == digest

    pre = run_invoke(project_copy, "release", "--latest", **env_for(registry, PACK_VERSION="2.0.0-rc.1"))
    assert pre.returncode == 0, pre.stderr
    assert f":latest: leave at {digest} (2.0.0-rc.1 is a pre-release; a pre-release never moves latest)" in pre.stdout
    assert registry.raw_manifest(REPO, "latest").headers["Docker-Content-Digest"] == digest


# --- a dirty tree --------------------------------------------------------------------------------


def make_dirty(repo: Path) -> None:
    (repo / ".gitignore").write_text("*.ignored\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-qm", "ignore")
    (repo / "packs" / PACK / "notes.ignored").write_text("ignored files do not count\n")
    with (repo / "packs" / PACK / "pack.yaml").open("a") as fh:
        fh.write("# edited\n")
    (repo / "packs" / PACK / "untracked.txt").write_text("new\n")


def test_a_real_release_refuses_uncommitted_changes(
    project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    make_dirty(project_copy)
    result = run_invoke(project_copy, "release", **env_for(registry))
    assert result.returncode == 2
    sha = git(project_copy, "rev-parse", "HEAD")
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: uncommitted changes under packs: packs/{PACK}/pack.yaml, packs/{PACK}/untracked.txt; "
        f"commit them, or pass --allow-dirty (ALLOW_DIRTY=1) to publish them marked as {sha[:12]}-dirty"
    )
    assert "built " not in result.stdout and registry.storage_files() == 0

    dry = run_invoke(project_copy, "release", "--dry-run", **env_for(registry))
    assert dry.returncode == 0, dry.stderr
    assert "warning: uncommitted changes under packs: " in dry.stderr

    allowed = run_invoke(project_copy, "release", "--allow-dirty", **env_for(registry))
    assert allowed.returncode == 0, allowed.stderr
    assert f"(uncommitted changes: revision {sha[:12]}-dirty)" in allowed.stdout
    assert annotations_of(registry, "1.2.3")["org.opencontainers.image.revision"] == f"{sha}-dirty"
    lock = lock_of(project_copy)
    assert lock["dirty"] is True and lock["packs"][0]["revision"] == f"{sha}-dirty"  # type: ignore[index]


def test_push_refuses_a_dirty_build(project_copy: Path, run_invoke: RunInvoke, registry: Registry) -> None:
    make_dirty(project_copy)
    built = run_invoke(project_copy, "build", **env_for(registry))
    assert built.returncode == 0 and "warning: uncommitted changes" in built.stderr  # building is fine
    pushed = run_invoke(project_copy, "push", **env_for(registry))
    assert pushed.returncode == 2 and "was built from uncommitted changes" in pushed.stderr
    assert registry.storage_files() == 0


# --- preflight: before the first build ------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OCI_USERNAME": "robot"}, "error: OCI_PASSWORD: not set, but OCI_USERNAME is"),
        ({"OCI_PASSWORD": "secret-value"}, "error: OCI_USERNAME: not set, but OCI_PASSWORD is"),
        ({"OCI_CLIENT": "oras", "ORAS_BIN": "/nowhere/oras"}, "error: ORAS_BIN: '/nowhere/oras' is not an executable"),
        ({"LOCK_FILE": "dist"}, "error: LOCK_FILE: "),
        (
            {
                "OCI_REGISTRY": "registry.example:5000",
                "OCI_PLAIN_HTTP": "1",
                "OCI_USERNAME": "u",
                "OCI_PASSWORD": "pw12",
            },
            "error: OCI_PLAIN_HTTP: would send the credentials from OCI_USERNAME/OCI_PASSWORD to registry.example:5000 "
            "in clear text; use TLS, or set OCI_PLAIN_HTTP_CREDENTIALS=1 as well to accept that",
        ),
    ],
)
def test_preflight_stops_before_the_first_build(
    project_copy: Path, run_invoke: RunInvoke, registry: Registry, env: dict[str, str], message: str
) -> None:
    (project_copy / "dist").mkdir(exist_ok=True)
    result = run_invoke(project_copy, "release", **{**env_for(registry), **env})
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(message)
    assert "built " not in result.stdout and not (project_copy / "dist" / "packs" / f"{PACK}.gtpack").exists()


def test_a_second_run_on_the_same_out_dir_fails_at_once(project_copy: Path, run_invoke: RunInvoke) -> None:
    out = project_copy / "dist" / "packs"
    out.mkdir(parents=True)
    with (out / ".publisher.lock").open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("pid 4242 (invoke release)\n")
        held.flush()
        result = run_invoke(project_copy, "build", OCI_ORG="acme", PACK_VERSION="1.0.0")
        locking = run_invoke(project_copy, "lock", OCI_ORG="acme", PACK_VERSION="1.0.0")
    assert locking.returncode == 2 and "is in use by pid 4242" in locking.stderr  # lock reads records: held too
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: OUT_DIR: dist/packs is in use by pid 4242 (invoke release); "
        "wait for it to finish, or give this run its own OUT_DIR"
    )
    again = run_invoke(project_copy, "build", "lock", OCI_ORG="acme", PACK_VERSION="1.0.0", DRY_RUN="1")
    assert "in use" not in again.stderr  # released with its holder; chained tasks share one lock


def test_packs_outside_the_checkout_cannot_be_called_clean(
    project_copy: Path, run_invoke: RunInvoke, registry: Registry, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    shutil.copytree(project_copy / "packs", outside / "packs")
    env = env_for(registry, PACKS_DIR=str(outside / "packs"))
    real = run_invoke(project_copy, "release", **env)
    assert real.returncode == 2 and registry.storage_files() == 0
    assert "error: PACKS_DIR: git cannot tell whether" in real.stderr
    dry = run_invoke(project_copy, "release", "--dry-run", **env)
    assert dry.returncode == 0 and "warning: git cannot tell whether" in dry.stderr


def test_an_unwritable_lock_file_is_found_before_the_build(
    project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    result = run_invoke(project_copy, "release", **env_for(registry, LOCK_FILE="/proc/packs.lock.json"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: LOCK_FILE: cannot write in /proc (")
    assert "built " not in result.stdout and registry.storage_files() == 0


def test_a_dry_run_never_replaces_a_real_release_lockfile(
    project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    assert run_invoke(project_copy, "release", **env_for(registry)).returncode == 0
    before = (project_copy / "packs.lock.json").read_bytes()
    dry = run_invoke(project_copy, "release", "--dry-run", **env_for(registry))
    assert dry.returncode == 2
    assert "records a real release (1.2.3); a dry run does not replace it" in dry.stderr
    assert (project_copy / "packs.lock.json").read_bytes() == before
    elsewhere = run_invoke(project_copy, "release", "--dry-run", **env_for(registry, LOCK_FILE="dry.lock.json"))
    assert elsewhere.returncode == 0, elsewhere.stderr


def test_a_build_without_a_version_never_pushes_a_dev_version(
    project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    built = run_invoke(project_copy, "build", OCI_REGISTRY=registry.host, OCI_ORG="acme")
    assert built.returncode == 0, built.stderr
    assert "no registry is written: this task uses 0.0.0-dev." in built.stderr
    chained = run_invoke(project_copy, "build", "push", OCI_REGISTRY=registry.host, OCI_ORG="acme")
    assert chained.returncode == 2 and "error: PACK_VERSION is not set" in chained.stderr
    assert registry.storage_files() == 0


def test_stage_dir_is_checked_and_taken_by_one_run(project_copy: Path, run_invoke: RunInvoke) -> None:
    inside = run_invoke(project_copy, "build", OCI_ORG="acme", PACK_VERSION="1.0.0", STAGE_DIR=f"packs/{PACK}/stage")
    assert inside.returncode == 2 and "error: STAGE_DIR: " in inside.stderr and "is inside PACKS_DIR" in inside.stderr
    stage = project_copy / "dist" / "packs" / "stage"
    stage.mkdir(parents=True)
    with (stage / f".{PACK}.lock").open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        taken = run_invoke(project_copy, "build", OCI_ORG="acme", PACK_VERSION="1.0.0", OUT_DIR="dist/other")
    assert taken.returncode == 1
    assert f"error: pack '{PACK}': another run is building it in dist/packs/stage right now" in taken.stderr


# --- builds are for one target ----------------------------------------------------------------------


def test_a_build_for_one_registry_is_not_pushed_to_another(
    project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    assert run_invoke(project_copy, "build", **env_for(registry, OCI_REGISTRY="registry-a.example")).returncode == 0
    pushed = run_invoke(project_copy, "push", **env_for(registry))
    assert pushed.returncode == 2
    assert f"is for registry-a.example/{REPO}:1.2.3, not {registry.host}/{REPO}:1.2.3" in pushed.stderr, pushed.stderr
    assert registry.storage_files() == 0

    assert run_invoke(project_copy, "release", **env_for(registry)).returncode == 0
    other_org = run_invoke(project_copy, "lock", **env_for(registry, OCI_ORG="someone-else"))
    assert other_org.returncode == 2 and "the last push was to" in other_org.stderr


# --- hidden echo -------------------------------------------------------------------------------------


def test_every_external_command_is_shown_in_ci_with_secrets_masked(
    project_copy: Path, run_invoke: RunInvoke, registry: Registry, builder_bin: Path, oras: str
) -> None:
    secret = "s3cret-in-a-path"
    hidden = builder_bin.parent / secret
    hidden.mkdir()
    (hidden / "greentic-pack").symlink_to(builder_bin / "greentic-pack")
    env = env_for(registry, CI="true", PACKC=str(hidden / "greentic-pack"), OCI_PASSWORD=secret, OCI_USERNAME="bot")
    result = run_invoke(project_copy, "release", OCI_CLIENT="oras", ORAS_BIN=oras, **env)
    assert result.returncode == 0, result.stderr
    shown = [line for line in result.stdout.splitlines() if line.startswith("\x1b[1;37m")]
    assert any(line.startswith("\x1b[1;37mgit -C ") and "rev-parse" in line for line in shown)
    assert any("/***/greentic-pack build --in " in line for line in shown), shown
    assert any(" cp -r --from-oci-layout " in line for line in shown)  # one pack: with its SBOM referrer
    assert secret not in result.stdout + result.stderr


def test_invoke_echo_shows_commands_and_quiet_by_default(project_copy: Path, run_invoke_process: RunInvoke) -> None:
    quiet = run_invoke_process(project_copy, "build", OCI_ORG="acme", PACK_VERSION="1.0.0")
    assert quiet.returncode == 0 and " build --in " not in quiet.stdout
    shown = run_invoke_process(project_copy, "--echo", "build", OCI_ORG="acme", PACK_VERSION="1.0.0")
    assert shown.returncode == 0, shown.stderr
    assert "greentic-pack build --in " in shown.stdout and "--gtpack-out" in shown.stdout


# --- one environment boundary ----------------------------------------------------------------------

# Modules that may read the process environment, and why: config/environment.py is the boundary; redact hides
# secret variables when the settings themselves could not be read; tools installs the pinned tools.
ENVIRONMENT_READERS = {"environment.py", "redact.py", "tools.py"}


def test_nothing_below_the_settings_reads_the_environment() -> None:
    offenders = []
    for path in sorted((PROJECT / "pack_publisher").rglob("*.py")):
        if path.name in ENVIRONMENT_READERS:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv", "environb", "home"}:
                offenders.append(f"{path.relative_to(PROJECT)}:{node.lineno}: {node.attr}")
            is_which = isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "which"
            if is_which and not any(k.arg == "path" for k in node.keywords):  # type: ignore[attr-defined]
                offenders.append(f"{path.relative_to(PROJECT)}:{node.lineno}: which() without path=")
    assert offenders == []


def test_second_pack_keeps_its_plan_line(project_copy: Path, run_invoke: RunInvoke, registry: Registry) -> None:
    add_pack(project_copy, "second-pack")
    git(project_copy, "add", "-A")
    git(project_copy, "commit", "-qm", "second")
    result = run_invoke(project_copy, "release", "--jobs", "4", **env_for(registry))
    assert result.returncode == 0, result.stderr
    plans = [line for line in result.stdout.splitlines() if line.startswith("plan ")]
    published = [line for line in result.stdout.splitlines() if line.startswith("published ")]
    assert len(plans) == 2 and len(published) == 2
    assert all(line.count(" digest=") == 1 for line in published)  # one whole line per pack
    assert [line.split()[1] for line in published] == sorted(line.split()[1] for line in published)  # pack order


@pytest.fixture
def oras() -> str:
    from .conftest import oras_path

    return oras_path()
