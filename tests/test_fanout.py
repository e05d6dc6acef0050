"""A release spread over runners, run for real on one machine: shards as concurrent processes against
one registry, lock fragments merged and verified, lost and mismatched fragments refused, a failed
shard re-run; `--changed-since` with renamed and deleted packs; parallel builds."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pack_publisher.commands import matrix as shards
from testsupport.registries import Registry

from .conftest import RunInvoke, clean_env, git
from .test_publish import PACK, add_pack

NAMES = [PACK, *(f"pack-{i}" for i in range(1, 8))]  # eight packs


@pytest.fixture
def eight_packs(project_copy: Path) -> Path:
    for i, name in enumerate(NAMES[1:], start=1):
        add_pack(project_copy, name)
        (project_copy / "packs" / name / "flows" / "padding.ygtc").write_text("# " + "x" * 1000 * i + "\n")
    git(project_copy, "add", "-A")
    git(project_copy, "commit", "-qm", "eight packs")
    return project_copy


# --- shards, in-process ------------------------------------------------------------------------------


def test_shards_are_balanced_complete_and_stable() -> None:
    costs = {"a": 900, "b": 800, "c": 300, "d": 300, "e": 200, "f": 100, "g": 100, "h": 50}
    split = shards.split(costs, 3)
    assert split == shards.split(dict(reversed(costs.items())), 3)  # input order does not matter
    assert sorted(n for s in split for n in s) == sorted(costs)  # every pack exactly once
    loads = [sum(costs[n] for n in s) for s in split]
    assert max(loads) - min(loads) <= max(costs.values())
    assert split == [["a", "g"], ["b", "f", "h"], ["c", "d", "e"]]  # 2, 3, 3 packs: counts first
    big = shards.split({"huge": 10**9, **{f"p{i}": 1 for i in range(8)}}, 3)
    assert sorted(len(s) for s in big) == [3, 3, 3]  # one huge pack never leaves the others in one shard


@pytest.mark.parametrize(("packs", "max_jobs", "expected"), [(0, 4, 0), (1, 4, 1), (3, 4, 1), (4, 4, 2), (8, 3, 3)])
def test_one_job_is_enough_for_three_packs_or_fewer(packs: int, max_jobs: int, expected: int) -> None:
    assert shards.shard_count(packs, max_jobs) == expected


# --- invoke matrix -------------------------------------------------------------------------------------


def matrix_of(run_invoke: RunInvoke, repo: Path, *args: str, **env: str) -> dict[str, list[dict[str, object]]]:
    result = run_invoke(repo, "matrix", *args, OCI_ORG="acme", **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]  # stdout is the JSON alone


def test_matrix_prints_balanced_shards_alone_on_stdout(eight_packs: Path, run_invoke: RunInvoke) -> None:
    matrix = matrix_of(run_invoke, eight_packs, "--max-jobs", "3", CI="true")  # CI echoes git: to stderr
    include = matrix["include"]
    assert [s["name"] for s in include] == ["shard-1", "shard-2", "shard-3"]
    assert sorted(p for s in include for p in s["packs"]) == sorted(NAMES)  # type: ignore[attr-defined]
    assert matrix == matrix_of(run_invoke, eight_packs, "--max-jobs", "3")
    few = matrix_of(run_invoke, eight_packs, "--pack", "pack-1", "--pack", "pack-2/")
    assert few == {"include": [{"name": "shard-1", "packs": ["pack-1", "pack-2"]}]}
    bad = run_invoke(eight_packs, "matrix", "--max-jobs", "0", OCI_ORG="acme")
    assert bad.returncode == 2 and "error: --max-jobs: 0 must be at least 1" in bad.stderr


# --- the fan-out, for real -------------------------------------------------------------------------------


def start_shard(repo: Path, env: dict[str, str], name: str, packs: list[str], **extra: str) -> subprocess.Popen[str]:
    args = [a for p in packs for a in ("--pack", p)]
    shard_env = {**env, "OUT_DIR": f"dist/{name}", "LOCK_FILE": f"locks/{name}.json", **extra}
    return subprocess.Popen(
        [sys.executable, "-m", "invoke", "release", *args],
        cwd=repo,
        env=shard_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_shards(repo: Path, env: dict[str, str], include: list[dict[str, object]], **extra: str) -> list[int]:
    running = [start_shard(repo, env, str(s["name"]), list(s["packs"]), **extra) for s in include]  # type: ignore[call-overload]
    codes = []
    for process in running:
        out, err = process.communicate(timeout=120)
        assert "Traceback" not in out + err
        codes.append(process.returncode)
    return codes


@pytest.mark.subprocess  # each shard is a `python -m invoke` of its own, as in CI
def test_a_three_shard_release_merges_into_one_verified_lockfile(
    eight_packs: Path, run_invoke: RunInvoke, registry: Registry, builder_bin: Path, tmp_path: Path
) -> None:
    repo = eight_packs
    env = clean_env(builder_bin, tmp_path / "home", OCI_REGISTRY=registry.host, OCI_ORG="acme", PACK_VERSION="1.2.3")
    (tmp_path / "home").mkdir(exist_ok=True)
    include = matrix_of(run_invoke, repo, "--max-jobs", "3")["include"]
    assert len(include) == 3

    # shard-2 fails the first time (its builder breaks for one of its packs)
    failing = str(include[1]["packs"][0])  # type: ignore[index]
    assert run_shards(repo, env, include, FAKE_GREENTIC_PACK_FAIL_FOR=failing) == [0, 1, 0]
    lost = run_invoke(repo, "lock", "--merge", "locks")
    assert lost.returncode == 2
    missing = ", ".join(sorted(str(p) for p in include[1]["packs"]))  # type: ignore[attr-defined]
    assert f"error: --merge: no fragment holds {missing} (a shard failed" in lost.stderr

    # re-run only the failed shard, as GitHub's "re-run failed jobs" does; then the merge succeeds
    assert run_shards(repo, env, [include[1]]) == [0]
    merged = run_invoke(repo, "lock", "--merge", "locks")
    assert merged.returncode == 0, merged.stderr
    lock = json.loads((repo / "packs.lock.json").read_text())
    assert list(lock) == [
        *("version", "generated_at", "git_sha", "registry", "org", "repo", "dry_run", "dirty", "packs"),
        *("schema_version", "components"),
    ]
    # greentic-dist's part: one pinned oci:// component per pack, in pack order (unsigned: no key in this run)
    assert [(c["name"], c["digest"]) for c in lock["components"]] == [(p["name"], p["digest"]) for p in lock["packs"]]
    assert all(
        c["reference"] == "oci://" + p["pinned_ref"] for c, p in zip(lock["components"], lock["packs"], strict=True)
    )
    assert [p["name"] for p in lock["packs"]] == sorted(NAMES) and lock["dry_run"] is False
    verified = run_invoke(repo, "verify", OCI_REGISTRY=registry.host)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.count("ok ") == 8

    # a fragment of another version, a pack twice, a dry run among real ones: refused, naming the files
    fragment = json.loads((repo / "locks" / "shard-1.json").read_text())
    for change, message in (
        ({"version": "9.9.9"}, "the fragments disagree on version: "),
        ({"dry_run": True}, "the fragments disagree on dry run and real release: "),
    ):
        other = tmp_path / "other"
        shutil.copytree(repo / "locks", other, dirs_exist_ok=True)
        (other / "zz-extra.json").write_text(json.dumps({**fragment, **change, "packs": []}))
        result = run_invoke(repo, "lock", "--merge", str(other))
        assert result.returncode == 2 and message in result.stderr, result.stderr
        shutil.rmtree(other)
    # dry-run fragments never replace the real lockfile; the target is never one of the fragments
    dry = tmp_path / "dry"
    dry.mkdir()
    (dry / "shard-1.json").write_text(json.dumps({**fragment, "dry_run": True}))
    result = run_invoke(repo, "lock", "--merge", str(dry), "--pack", str(fragment["packs"][0]["name"]))
    assert result.returncode == 2 and "a dry run does not replace it" in result.stderr, result.stderr
    inside = run_invoke(repo, "lock", "--merge", "locks", LOCK_FILE="locks/packs.lock.json")
    assert inside.returncode == 2 and "is among the fragments in" in inside.stderr
    unknown = run_invoke(repo, "lock", "--merge", "locks", "--pack", "nope")
    assert unknown.returncode == 2 and "error: --pack: unknown pack 'nope'" in unknown.stderr
    (tmp_path / "zero").mkdir()
    (tmp_path / "zero" / "z.json").symlink_to("/dev/zero")
    endless = run_invoke(repo, "lock", "--merge", str(tmp_path / "zero"))
    assert endless.returncode == 2 and "z.json is a character device, not a regular file" in endless.stderr

    twice = tmp_path / "twice"
    shutil.copytree(repo / "locks", twice)
    shutil.copy(twice / "shard-1.json", twice / "shard-1-copy.json")
    result = run_invoke(repo, "lock", "--merge", str(twice))
    assert result.returncode == 2 and "is in both shard-1-copy.json and shard-1.json" in result.stderr


@pytest.mark.subprocess  # each shard is a `python -m invoke` of its own, as in CI
def test_one_shard_is_one_job_and_merges_alone(
    project_copy: Path, run_invoke: RunInvoke, registry: Registry, builder_bin: Path, tmp_path: Path
) -> None:
    """The workflow's one-job path: a few packs make one shard, whose fragment alone is the lockfile."""
    for name in ("pack-1", "pack-2"):
        add_pack(project_copy, name)
    git(project_copy, "add", "-A")
    git(project_copy, "commit", "-qm", "three packs")
    include = matrix_of(run_invoke, project_copy, "--max-jobs", "4")["include"]
    assert include == [{"name": "shard-1", "packs": sorted([PACK, "pack-1", "pack-2"])}]
    (tmp_path / "home").mkdir(exist_ok=True)
    env = clean_env(builder_bin, tmp_path / "home", OCI_REGISTRY=registry.host, OCI_ORG="acme", PACK_VERSION="2.0.0")
    assert run_shards(project_copy, env, include) == [0]
    merged = run_invoke(project_copy, "lock", "--merge", "locks")
    assert merged.returncode == 0, merged.stderr
    fragment = json.loads((project_copy / "locks" / "shard-1.json").read_text())
    lock = json.loads((project_copy / "packs.lock.json").read_text())
    assert {k: v for k, v in lock.items() if k != "generated_at"} == {
        k: v for k, v in fragment.items() if k != "generated_at"
    }
    verified = run_invoke(project_copy, "verify", OCI_REGISTRY=registry.host)
    assert verified.returncode == 0 and verified.stdout.count("ok ") == 3


@pytest.mark.subprocess  # each shard is a `python -m invoke` of its own, as in CI
def test_a_dry_run_fan_out_merges_too(
    eight_packs: Path, run_invoke: RunInvoke, builder_bin: Path, tmp_path: Path
) -> None:
    (tmp_path / "home").mkdir(exist_ok=True)
    env = clean_env(builder_bin, tmp_path / "home", OCI_ORG="acme", OCI_REGISTRY="127.0.0.1:9", DRY_RUN="1")
    include = matrix_of(run_invoke, eight_packs, "--max-jobs", "2")["include"]
    assert run_shards(eight_packs, env, include) == [0, 0]
    merged = run_invoke(eight_packs, "lock", "--merge", "locks")
    assert merged.returncode == 0, merged.stderr
    lock = json.loads((eight_packs / "packs.lock.json").read_text())
    assert lock["dry_run"] is True and {p["digest"] for p in lock["packs"]} == {"DRY_RUN"}
    expected_one = run_invoke(eight_packs, "lock", "--merge", "locks", "--pack", PACK)
    assert expected_one.returncode == 2 and "not expected" in expected_one.stderr


# --- --changed-since -----------------------------------------------------------------------------------


def test_changed_since_follows_renames_deletions_and_shared_inputs(eight_packs: Path, run_invoke: RunInvoke) -> None:
    repo = eight_packs
    base = git(repo, "rev-parse", "HEAD")
    git(repo, "mv", "packs/pack-2", "packs/pack-2b")
    pack_yaml = repo / "packs" / "pack-2b" / "pack.yaml"
    pack_yaml.write_text(pack_yaml.read_text().replace("pack_id: pack-2", "pack_id: pack-2b"))
    git(repo, "rm", "-rq", "packs/pack-3")
    (repo / "packs" / "pack-4" / "flows" / "main.ygtc").write_text("id: main\ntype: messaging\nnodes: {a: {}}\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "rename, delete, change")
    (repo / "packs" / "pack-5" / "new.txt").write_text("not committed yet\n")  # the working tree counts

    result = run_invoke(repo, "matrix", "--changed-since", base, OCI_ORG="acme")
    assert result.returncode == 0, result.stderr
    [shard] = json.loads(result.stdout)["include"]
    assert shard["packs"] == ["pack-2b", "pack-4", "pack-5"]
    assert "pack 'pack-2' changed since" in result.stderr and "pack 'pack-3' changed since" in result.stderr

    built = run_invoke(repo, "build", "--changed-since", base, OCI_ORG="acme", PACK_VERSION="1.0.0")
    assert built.returncode == 0, built.stderr
    assert sorted(line.split(":")[0] for line in built.stdout.splitlines() if line.startswith("built ")) == [
        "built pack-2b",
        "built pack-4",
        "built pack-5",
    ]
    head = git(repo, "rev-parse", "HEAD")
    (repo / "packs" / "pack-5" / "new.txt").unlink()
    none = run_invoke(repo, "release", "--dry-run", "--changed-since", head, OCI_ORG="acme")
    assert none.returncode == 0 and f"no pack changed since {head}: nothing to release" in none.stdout

    with (repo / "tasks.py").open("a") as fh:
        fh.write("# a shared input changed\n")
    everything = run_invoke(repo, "matrix", "--changed-since", head, "--max-jobs", "1", OCI_ORG="acme")
    assert len(json.loads(everything.stdout)["include"][0]["packs"]) == 7  # eight, minus the deleted one
    assert "tasks.py changed since" in everything.stderr

    unknown = run_invoke(repo, "matrix", "--changed-since", "no-such-ref", OCI_ORG="acme")
    assert (
        unknown.returncode == 2 and "--changed-since: 'no-such-ref' is not a commit in this checkout" in unknown.stderr
    )


def test_shards_with_their_own_out_dir_build_the_same_bytes(eight_packs: Path, run_invoke: RunInvoke) -> None:
    digests = []
    for out_dir in ("dist/packs", "dist/shard-1", "elsewhere/out"):
        built = run_invoke(eight_packs, "build", "--pack", PACK, OCI_ORG="acme", PACK_VERSION="1.0.0", OUT_DIR=out_dir)
        assert built.returncode == 0, built.stderr
        digests.append(
            json.loads((eight_packs / out_dir / "records" / f"{PACK}.built.json").read_text())["manifest_descriptor"]
        )
    assert digests[0] == digests[1] == digests[2]  # STAGE_DIR, not OUT_DIR, is where the builder works


def test_changed_since_needs_packs_git_can_answer_for(eight_packs: Path, run_invoke: RunInvoke, tmp_path: Path) -> None:
    shutil.copytree(eight_packs / "packs", tmp_path / "outside")
    result = run_invoke(
        eight_packs, "matrix", "--changed-since", "HEAD", OCI_ORG="acme", PACKS_DIR=str(tmp_path / "outside")
    )
    assert result.returncode == 2 and "is not in this git checkout" in result.stderr
    (eight_packs / "packs" / "README.md").write_text("about the packs\n")
    readme = run_invoke(eight_packs, "matrix", "--changed-since", "HEAD", OCI_ORG="acme")
    assert readme.returncode == 0 and json.loads(readme.stdout) == {"include": []}
    assert "gone" not in readme.stderr  # a file beside the packs is no pack


# --- parallel builds -----------------------------------------------------------------------------------


def test_parallel_builds_report_every_pack_in_order(eight_packs: Path, run_invoke_process: RunInvoke) -> None:
    env = {"OCI_ORG": "acme", "PACK_VERSION": "1.0.0"}
    ok = run_invoke_process(eight_packs, "build", "--jobs", "4", **env)
    assert ok.returncode == 0, ok.stderr
    outcomes = [line for line in ok.stdout.splitlines() if not line.startswith("building ")]
    assert [line.split(":")[0] for line in outcomes] == [f"built {n}" for n in sorted(NAMES)]
    assert sorted(line for line in ok.stdout.splitlines() if line.startswith("building ")) == [
        f"building {n}…" for n in sorted(NAMES)
    ]
    failing = run_invoke_process(
        eight_packs, "build", "--jobs", "4", FAKE_GREENTIC_PACK_FAIL_FOR="pack-2,pack-6", **env
    )
    assert failing.returncode == 1
    lines = [line for line in failing.stdout.splitlines() if not line.startswith((" ", "building "))]
    assert [line.split(":")[0] for line in lines] == [
        ("FAILED " if n in ("pack-2", "pack-6") else "built ") + n for n in sorted(NAMES)
    ]
    assert "error: 2 of 8 pack(s) failed to build: pack-2, pack-6" in failing.stderr
    not_a_number = run_invoke_process(eight_packs, "build", "--jobs", "many", **env)
    assert not_a_number.returncode == 2 and not_a_number.stderr.strip() == "error: 'many' is not a whole number"
