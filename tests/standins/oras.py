"""Test stand-in for the ORAS CLI, which cannot be installed here.

It records every call (argv, stdin, cwd, whether any secret-looking variable was in its environment)
as a JSON line in FAKE_ORAS_LOG, and emulates the subcommands the oras transport uses on a
directory "registry" (FAKE_ORAS_STORE): login, push --oci-layout, cp --from-oci-layout, resolve,
manifest fetch, blob fetch. Manifests are serialised the way ORAS 1.3.3 does (Go encoding/json).
FAKE_ORAS_MODE=other-manifest makes `push` compose a different manifest, as an incompatible oras would;
FAKE_ORAS_MODE=leaky-login makes `login` fail with the password in its error text.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path


def log(stdin: str | None) -> None:
    if path := os.environ.get("FAKE_ORAS_LOG"):
        entry = {
            "argv": sys.argv[1:],
            "stdin": stdin,
            "cwd": os.getcwd(),
            "secret_env": sorted(k for k in os.environ if k in {"OCI_PASSWORD", "GITHUB_TOKEN"}),
        }
        with open(path, "a") as fh:
            fh.write(json.dumps(entry) + "\n")


def go_json(value: object) -> bytes:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, esc in {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}.items():
        text = text.replace(char, esc)
    return text.encode()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def store() -> Path:
    return Path(os.environ["FAKE_ORAS_STORE"])


def split_ref(ref: str) -> tuple[str, str]:
    path = ref.split("/", 1)[1]  # drop the registry host
    if "@" in path:
        return tuple(path.split("@", 1))  # type: ignore[return-value]
    repo, _, tag = path.rpartition(":")
    return repo, tag


def die(message: str) -> None:
    print(f"Error: {message}", file=sys.stderr)
    sys.exit(1)


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def positional(args: list[str]) -> list[str]:
    takes_value = {
        "--oci-layout",
        "--artifact-type",
        "--annotation-file",
        "--export-manifest",
        "--format",
        "-u",
        "--output",
    }
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in takes_value:
            skip = True
        elif not arg.startswith("-"):
            out.append(arg)
    return out


def push(args: list[str]) -> None:
    layout, tag = option(args, "--oci-layout").rsplit(":", 1)
    file_arg, media_type = positional(args)[1].rsplit(":", 1)
    data = Path(file_arg).read_bytes()
    annotations = json.loads(Path(option(args, "--annotation-file")).read_text())["$manifest"]
    if os.environ.get("FAKE_ORAS_MODE") == "other-manifest":
        annotations["org.opencontainers.image.created"] = "2099-01-01T00:00:00Z"
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": option(args, "--artifact-type"),
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha(b"{}"), "size": 2, "data": "e30="},
        "layers": [
            {
                "mediaType": media_type,
                "digest": sha(data),
                "size": len(data),
                "annotations": {"org.opencontainers.image.title": file_arg},
            }
        ],
        "annotations": dict(sorted(annotations.items())),
    }
    body = go_json(manifest)
    blobs = Path(layout) / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for blob in (data, b"{}", body):
        (blobs / sha(blob)[7:]).write_bytes(blob)
    (Path(layout) / "index.json").write_text(json.dumps({"tags": {tag: sha(body)}}))
    Path(option(args, "--export-manifest")).write_bytes(body)
    print(
        json.dumps(
            {
                "reference": f"{layout}@{sha(body)}",
                "digest": sha(body),
                "size": len(body),
                "mediaType": manifest["mediaType"],
                "artifactType": manifest["artifactType"],
                "annotations": manifest["annotations"],
            }
        )
    )


def cp(args: list[str]) -> None:
    source, target = positional(args)[1:3]
    layout, tag = source.rsplit(":", 1)
    digest = json.loads((Path(layout) / "index.json").read_text())["tags"][tag]
    repo, tags = split_ref(target)
    dest = store() / repo
    (dest / "blobs").mkdir(parents=True, exist_ok=True)
    (dest / "tags").mkdir(exist_ok=True)
    for blob in (Path(layout) / "blobs" / "sha256").iterdir():
        shutil.copyfile(blob, dest / "blobs" / f"sha256:{blob.name}")
    for t in tags.split(","):
        (dest / "tags" / t).write_text(digest)
    print(f"Copied [registry] {source} => {target}")


def lookup(ref: str) -> tuple[Path, str]:
    repo, reference = split_ref(ref)
    folder = store() / repo
    if not reference.startswith("sha256:"):
        tag_file = folder / "tags" / reference
        if not tag_file.exists():
            die(f"{ref}: not found")
        reference = tag_file.read_text()
    if not (folder / "blobs" / reference).exists():
        die(f"{ref}: not found")
    return folder, reference


def main() -> None:
    args = sys.argv[1:]
    stdin = sys.stdin.read() if "--password-stdin" in args else None
    log(stdin)
    command = args[0] if args else ""
    if command == "login":
        if os.environ.get("FAKE_ORAS_MODE") == "leaky-login":  # a CLI that echoes what it was given
            die(f"credentials {stdin} rejected")
        print("Login Succeeded")
    elif command == "push":
        push(args)
    elif command == "cp":
        cp(args)
    elif command == "resolve":
        print(lookup(positional(args)[1])[1])
    elif args[:2] == ["manifest", "fetch"]:
        folder, digest = lookup(positional(args)[2])
        sys.stdout.buffer.write((folder / "blobs" / digest).read_bytes())
    elif args[:2] == ["blob", "fetch"]:
        folder, digest = lookup(positional(args)[2])
        if "--output" in args:
            shutil.copyfile(folder / "blobs" / digest, option(args, "--output"))
        else:
            print(json.dumps({"digest": digest}))
    else:
        die(f"unknown command {args!r}")


if __name__ == "__main__":
    main()
