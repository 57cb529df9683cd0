"""Seal blocks in a child process for the nonce-reuse tests.

Run as ``python -m tests.crypto.seal_worker STATE LOG COUNT [options]``. The
worker unlocks the master key from STATE/key.bin and STATE/keyslots.bin,
appends COUNT sealed blocks of one fixed plaintext to LOG (each prefixed
with its u32 length), and exits, or with --hang waits to be killed.

--salt-source replaces the kernel salt source with a flawed one that the
tests must catch: "seeded" (a userspace generator with a fixed seed, like a
generator state copied from identical start-up state), "counter-at-exit"
(a counter saved only at a clean exit) and "counter" (a counter made durable
before each use, which breaks only when its file is restored from an old
copy).
"""

import argparse
import atexit
import os
import random
import signal
import struct
import sys
from collections.abc import Callable
from pathlib import Path

import crypto
from crypto import sealing

PLAINTEXT = b"the same plaintext every time, so a reused key and nonce shows" * 4
ASSOCIATED_DATA = b"array 00000000-0000-4000-8000-000000000001|object 1"


def counter_source(path: Path, durable_before_use: bool) -> Callable[[int], bytes]:
    value = int(path.read_text()) if path.exists() else 0

    def save() -> None:
        path.write_text(str(value))
        if durable_before_use:
            with path.open("rb") as file:
                os.fsync(file.fileno())

    def next_salt(size: int) -> bytes:
        nonlocal value
        value += 1
        if durable_before_use:
            save()
        return value.to_bytes(size, "little")

    if not durable_before_use:
        atexit.register(save)
    return next_salt


def install_salt_source(name: str, state: Path) -> None:
    if name == "seeded":
        sealing._salt_source = random.Random(20261204).randbytes
    elif name == "counter-at-exit":
        sealing._salt_source = counter_source(state / "counter", durable_before_use=False)
    elif name == "counter":
        sealing._salt_source = counter_source(state / "counter", durable_before_use=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("state", type=Path)
    parser.add_argument("log", type=Path)
    parser.add_argument("count", type=int)
    parser.add_argument("--hang", action="store_true")
    parser.add_argument(
        "--salt-source", choices=["kernel", "seeded", "counter-at-exit", "counter"]
    )
    args = parser.parse_args()
    secret = crypto.read_keyfile(args.state / "key.bin")
    area = crypto.KeyslotArea.from_bytes((args.state / "keyslots.bin").read_bytes())
    subkeys = crypto.derive_subkeys(area.unlock_keyfile(secret))
    install_salt_source(args.salt_source or "kernel", args.state)
    with args.log.open("ab", buffering=0) as log:
        for _ in range(args.count):
            sealed = crypto.seal(subkeys.chunk, PLAINTEXT, ASSOCIATED_DATA)
            log.write(struct.pack("<I", len(sealed)) + sealed)
    if args.hang:
        print("hanging", flush=True)
        signal.pause()
    sys.exit(0)


if __name__ == "__main__":
    main()
