"""Test stand-in for the ORAS CLI, kept only for what a real oras cannot be made to show.

It fails every command and echoes the credentials it finds in its `--registry-config` file, as a
careless CLI might: the publisher must mask them in what it relays. Each call's argv is logged to
FAKE_ORAS_LOG.
"""

from __future__ import annotations

import base64
import json
import os
import sys


def main() -> None:
    args = sys.argv[1:]
    if path := os.environ.get("FAKE_ORAS_LOG"):
        with open(path, "a") as fh:
            fh.write(json.dumps(args) + "\n")
    flag = "--to-registry-config" if "--to-registry-config" in args else "--registry-config"
    config = json.load(open(args[args.index(flag) + 1]))  # noqa: SIM115 - a one-shot read
    auth = next(iter(config["auths"].values()))["auth"]
    print(f"Error: credentials {base64.b64decode(auth).decode()} ({auth}) rejected", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    main()
