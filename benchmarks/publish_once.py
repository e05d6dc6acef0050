"""Publish one prepared blob once and print wall time and peak RSS as JSON (one process per run).

Modes: `project` (the publisher's built-in client: resolve, push, verify, as `invoke push` does),
`oras` (the publisher's oras transport), `baseline` (the simplest possible client: POST, PUT, PUT).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path
from urllib.parse import urljoin

import requests

from pack_publisher.artifact import EMPTY_CONFIG, EMPTY_CONFIG_BYTES, GTPACK_MEDIA_TYPE, compose
from pack_publisher.commands import Commands
from pack_publisher.content import VerifiedRegistry
from pack_publisher.descriptor import file_descriptor
from pack_publisher.redact import Redactor
from pack_publisher.settings import PublishOptions
from pack_publisher.transports import PushRequest, Transports


def baseline(host: str, repo: str, blob: Path, digest: str, manifest: bytes) -> None:
    """The raw reference: a few lines of plain requests, no checks, no retries."""
    base = f"http://{host}/v2/{repo}/"
    with requests.Session() as s:
        for data, dgst, size in ((EMPTY_CONFIG_BYTES, EMPTY_CONFIG.digest, 2), (None, digest, blob.stat().st_size)):
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
    parser.add_argument("sha256", help="ignored: the digest is taken from the blob itself")
    parser.add_argument("--oras")
    args = parser.parse_args()
    layer = file_descriptor(GTPACK_MEDIA_TYPE, args.blob)
    artifact = compose(layer, args.blob.name, {"org.opencontainers.image.version": "1.0.0"})
    started = time.perf_counter()
    if args.mode == "baseline":
        baseline(args.host, args.repo, args.blob, artifact.layer.digest, artifact.manifest)
    else:
        options = PublishOptions(
            client="oras" if args.mode == "oras" else "python",
            oras_bin=args.oras,
            plain_http=True,
            oras_experimental=False,
            latest=False,
            jobs=1,
            timeout=15.0,
            child_env=dict(os.environ),
        )
        commands = Commands(options.child_env, print)
        with Transports(args.host, options, Redactor(), commands, use_credentials=False) as transports:
            registry = VerifiedRegistry(transports.get(), args.host)
            if registry.resolve(args.repo, "1.0.0") is not None:
                raise SystemExit("benchmark repository not empty")
            registry.push(PushRequest(args.repo, ["1.0.0"], args.blob, artifact))
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


if __name__ == "__main__":
    main()
