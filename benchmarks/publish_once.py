"""Publish one prepared blob once and print wall time and peak RSS as JSON (one process per run).

Modes: `project` (the publisher's built-in client: resolve, push, verify, as `invoke push` does),
`oras` (the publisher's oras transport), `baseline` (the simplest possible client: POST, PUT, PUT).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from urllib.parse import urljoin

import requests

from pack_publisher.artifact import EMPTY_CONFIG_BYTES, EMPTY_CONFIG_DIGEST, compose
from pack_publisher.publish import verify_landed
from pack_publisher.records import BuiltPack
from pack_publisher.redact import Redactor
from pack_publisher.transport import PushRequest, PythonTransport, Transport


def baseline(host: str, repo: str, blob: Path, digest: str, manifest: bytes) -> None:
    """The raw reference: a few lines of plain requests, no checks, no retries."""
    base = f"http://{host}/v2/{repo}/"
    with requests.Session() as s:
        for data, dgst, size in ((EMPTY_CONFIG_BYTES, EMPTY_CONFIG_DIGEST, 2), (None, digest, blob.stat().st_size)):
            location = urljoin(base, s.post(base + "blobs/uploads/").headers["Location"])
            body = data if data is not None else blob.open("rb")
            s.put(f"{location}&digest={dgst}", data=body, headers={"Content-Length": str(size)}).raise_for_status()
        s.put(
            base + "manifests/1.0.0",
            data=manifest,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        ).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["project", "oras", "baseline"])
    parser.add_argument("host")
    parser.add_argument("repo")
    parser.add_argument("blob", type=Path)
    parser.add_argument("sha256")
    parser.add_argument("--oras")
    args = parser.parse_args()
    size = args.blob.stat().st_size
    artifact = compose(args.sha256, size, args.blob.name, {"org.opencontainers.image.version": "1.0.0"})
    manifest_path = args.blob.with_suffix(".manifest.json")
    manifest_path.write_bytes(artifact.manifest)
    started = time.perf_counter()
    if args.mode == "baseline":
        baseline(args.host, args.repo, args.blob, artifact.layer_digest, artifact.manifest)
    else:
        transport: Transport
        if args.mode == "oras":
            from pack_publisher.oras_transport import OrasTransport

            transport = OrasTransport(args.oras, args.host, None, True, False, Redactor())
        else:
            transport = PythonTransport(args.host, None, True)
        built = BuiltPack(
            name="bench",
            pack_id="bench",
            version="1.0.0",
            git_sha="0" * 40,
            gtpack=args.blob,
            size=size,
            sha256=args.sha256,
            manifest=manifest_path,
            manifest_digest=artifact.digest,
            reference=f"{args.host}/{args.repo}:1.0.0",
        )
        if transport.resolve(args.repo, "1.0.0") is not None:
            raise SystemExit("benchmark repository not empty")
        transport.push(
            PushRequest(
                args.repo, ["1.0.0"], args.blob, artifact.layer_digest, size, artifact.manifest, artifact.digest
            )
        )
        verify_landed(transport, args.repo, ["1.0.0"], built)
        transport.close()
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


if __name__ == "__main__":
    main()
