"""Test stand-in for the Greentic builder CLI (`greentic-pack`), which cannot be installed here.

It honours the real contract: `build --in DIR --gtpack-out FILE [--no-update] [--offline]`, relative
output paths resolved against the pack folder, `pack.lock.cbor` (re)written into the pack folder with
absolute file:// paths, `wrote <path>` on stderr, non-zero exit on error, and a `.gtpack` in the real
format (stored zip entries dated 1980-01-01, mode 0644, fixed order, canonical-CBOR SBOM with BLAKE3).

FAKE_GREENTIC_PACK_MODE makes it misbehave for tests: fail, no-output, corrupt, wrong-version,
echo (prints FAKE_GREENTIC_PACK_ECHO on stderr, then fails), echo-env (prints its environment, then
fails), linger (builds, but leaves a child holding stderr open and writes its pid to
FAKE_GREENTIC_PACK_PIDFILE), hang (never exits), and one mode per archive reader rule broken: traversal,
duplicate, oversize, no-manifest, sbom-mismatch; no-sbom writes an archive without sbom.cbor (as builders
before the SBOM did).
FAKE_GREENTIC_PACK_FAIL_FOR (comma-separated pack ids) fails only for those packs.
FAKE_GREENTIC_PACK_DELAY (seconds) makes every build take that long, as a real Rust/WASM build does.
FAKE_GREENTIC_PACK_LOG names a file to which it appends its argv as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any

import blake3
import cbor2
import yaml

NEVER_PACKED = {"components", "flows", "dist", "target", ".git", ".github", "node_modules"}
VERSION = "greentic-pack 0.4.99 (test stand-in)"


def fail(message: str) -> None:
    print(f"Error: {message}", file=sys.stderr)
    sys.exit(1)


def media_type(path: str) -> str:
    if path.endswith(".cbor"):
        return "application/cbor"
    if path.endswith(".wasm"):
        return "application/wasm"
    return "application/octet-stream"


def collect(pack_dir: Path, meta: dict[str, Any]) -> list[tuple[str, bytes]]:
    entries: list[tuple[str, bytes]] = []
    components = []
    comp_dir = pack_dir / "components"
    for wasm in sorted(comp_dir.rglob("*.wasm")) if comp_dir.is_dir() else []:
        cid = wasm.stem
        components.append(cid)
        entries.append((f"components/{cid}.wasm", wasm.read_bytes()))
        entries.append((f"components/{cid}.manifest.cbor", cbor2.dumps({"id": cid}, canonical=True)))
    others = []
    for path in sorted(pack_dir.rglob("*")):
        rel = path.relative_to(pack_dir)
        top = rel.parts[0]
        if len(rel.parts) < 2 or top in NEVER_PACKED or top.startswith("."):
            continue
        if any(p.startswith(".") for p in rel.parts):
            continue
        if path.is_file():
            others.append((rel.as_posix(), path.read_bytes()))
    manifest = {
        "schema_version": "pack-v1",
        "pack_id": 0,
        "version": meta["version"],
        "kind": meta["kind"],
        "publisher": meta["publisher"],
        "symbols": {"component_ids": components, "node_ids": [], "capability_names": [], "pack_ids": [meta["pack_id"]]},
        "components": [{"id": i} for i in range(len(components))],
        "flows": [{"id": f.get("id"), "entrypoints": f.get("entrypoints", [])} for f in meta.get("flows") or []],
        "dependencies": [],
        "capabilities": [],
        "signatures": {"signatures": []},
    }
    if meta.get("name"):
        manifest["name"] = meta["name"]
    if os.environ.get("FAKE_GREENTIC_PACK_MODE") == "wrong-version":
        manifest["version"] = "9.9.9"
    lock = cbor2.dumps(
        {"components": {c: f"file://{comp_dir}/{c}.wasm" for c in components}, "pack": f"file://{pack_dir}"},
        canonical=True,
    )
    (pack_dir / "pack.lock.cbor").write_bytes(lock)
    files = [("manifest.cbor", cbor2.dumps(manifest, canonical=True)), *entries, *others, ("pack.lock.cbor", lock)]
    sbom = {
        "files": [
            {"path": p, "size": len(b), "media_type": media_type(p), "hash_blake3": blake3.blake3(b).hexdigest()}
            for p, b in sorted(files)
        ],
        "format": "greentic-sbom-v1",
    }
    return [*files, ("sbom.cbor", cbor2.dumps(sbom, canonical=True))]


def break_rule(mode: str, files: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The archive's entries with one Greentic reader rule broken, as the mode asks."""
    if mode == "traversal":
        return [*files, ("../outside.txt", b"escaped")]
    if mode == "duplicate":
        return [*files, files[-2]]
    if mode == "oversize":
        return [*files[:-1], ("assets/huge.bin", b"\0" * (16 * 1024 * 1024 + 1))]
    if mode == "no-manifest":
        return files[1:]
    if mode == "no-sbom":
        return [(name, data) for name, data in files if name != "sbom.cbor"]
    if mode == "sbom-mismatch":
        return [(name, data + b"tampered" if name == "pack.lock.cbor" else data) for name, data in files]
    return files


def write_zip(out: Path, files: list[tuple[str, bytes]]) -> None:
    with warnings.catch_warnings(), zipfile.ZipFile(out, "w") as zf:
        warnings.simplefilter("ignore")  # the duplicate mode writes a duplicate on purpose
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = 0o100644 << 16
            zf.writestr(info, data)


def build(args: argparse.Namespace) -> None:
    pack_dir = Path(args.input).resolve()
    pack_file = pack_dir / "pack.yaml"
    if not pack_file.is_file():
        fail(f"pack.yaml not found in {pack_dir}")
    try:
        meta = yaml.safe_load(pack_file.read_text())
    except yaml.YAMLError as exc:
        fail(f"failed to parse {pack_file}: {exc}")
    for key in ("pack_id", "version", "kind", "publisher"):
        if not isinstance(meta, dict) or key not in meta:
            fail(f"{pack_file}: missing field `{key}`")
    if not args.no_update:  # the real builder syncs pack.yaml with components/ and flows/
        pack_file.write_text(yaml.safe_dump(meta, sort_keys=False))
    out = Path(args.gtpack_out)
    if not out.is_absolute():
        out = pack_dir / out  # the real builder resolves relative outputs against the pack folder
    mode = os.environ.get("FAKE_GREENTIC_PACK_MODE", "")
    if delay := os.environ.get("FAKE_GREENTIC_PACK_DELAY"):
        time.sleep(float(delay))
    if str(meta.get("pack_id")) in os.environ.get("FAKE_GREENTIC_PACK_FAIL_FOR", "").split(","):
        mode = "fail"
    if mode == "echo":
        fail(f"registry said: {os.environ.get('FAKE_GREENTIC_PACK_ECHO', '')}")
    if mode == "echo-env":
        for key, value in sorted(os.environ.items()):
            print(f"{key}={value}", file=sys.stderr)
        fail("dumped the environment")
    if mode == "fail":
        print("   Compiling flows", file=sys.stderr)
        fail("component `missing` referenced by flow `main` was not found")
    if mode == "no-output":
        return
    if mode == "hang":
        time.sleep(3600)
    if mode == "linger":  # a grandchild that inherits stderr and outlives the builder
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        Path(os.environ["FAKE_GREENTIC_PACK_PIDFILE"]).write_text(str(child.pid))
    out.parent.mkdir(parents=True, exist_ok=True)
    if mode == "corrupt":
        out.write_bytes(b"PK\x03\x04 this is not really a zip archive")
    else:
        write_zip(out, break_rule(mode, collect(pack_dir, meta)))
    print(f"wrote {out}", file=sys.stderr)


def main() -> None:
    if log := os.environ.get("FAKE_GREENTIC_PACK_LOG"):
        with open(log, "a") as fh:
            fh.write(json.dumps(sys.argv[1:]) + "\n")
    parser = argparse.ArgumentParser(prog="greentic-pack")
    parser.add_argument("--version", action="version", version=VERSION)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("--in", dest="input", required=True)
    b.add_argument("--gtpack-out", required=True)
    b.add_argument("--no-update", action="store_true")
    b.add_argument("--offline", action="store_true")
    args = parser.parse_args()
    build(args)


if __name__ == "__main__":
    main()
