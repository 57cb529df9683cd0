"""Sealing never reuses a GCM key and nonce: across forks, processes, crashes and restores.

The scheme has no counter: each block's key and nonce derive from a 192-bit
salt read from the kernel. It would fail if the salt came from state inside
the process (copied by fork, rebuilt identically at start-up, lost or
rolled back on a crash or a restore), or if the derivation ignored part of
the salt. Each harness below is first shown to catch such a flawed salt
source, then run with the real one.
"""

import os
import random
import shutil
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import crypto
from crypto import sealing
from tests.crypto.conftest import TEST_SCRYPT
from tests.crypto.seal_worker import ASSOCIATED_DATA, PLAINTEXT

REPOSITORY = Path(__file__).resolve().parents[2]
BLOCKS_PER_PROCESS = 40


def reused(key: crypto.SecretKey, blocks: list[bytes]) -> list[bytes]:
    """Return the ciphertexts that occur more than once among seals of one plaintext.

    Under a fresh key and nonce, equal plaintexts never give equal
    ciphertexts, so a repeat is a reused (key, nonce) pair. Every block must
    also open, so that a broken block cannot hide a repeat.
    """
    seen: set[bytes] = set()
    repeats: list[bytes] = []
    for block in blocks:
        assert crypto.open(key, block, ASSOCIATED_DATA) == PLAINTEXT
        body = bytes(block[sealing.HEADER_SIZE :])
        if body in seen:
            repeats.append(body)
        seen.add(body)
    return repeats


def seal_in_forked_children(key: crypto.SecretKey, children: int) -> list[bytes]:
    """Fork children after the key is loaded; each seals PLAINTEXT and pipes its blocks back."""
    crypto.seal(key, PLAINTEXT, ASSOCIATED_DATA)  # warm any state the parent has
    readers: list[tuple[int, int]] = []
    for _ in range(children):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            status = 1
            try:
                blocks = [crypto.seal(key, PLAINTEXT, ASSOCIATED_DATA) for _ in range(8)]
                with os.fdopen(write_end, "wb") as pipe:
                    pipe.write(b"".join(blocks))
                status = 0
            finally:
                os._exit(status)
        os.close(write_end)
        readers.append((pid, read_end))
    blocks: list[bytes] = []
    for pid, read_end in readers:
        with os.fdopen(read_end, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        size = len(PLAINTEXT) + crypto.SEAL_OVERHEAD
        blocks += [data[offset : offset + size] for offset in range(0, len(data), size)]
    assert len(blocks) == children * 8
    return blocks


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A state directory as raidd keeps it: a key file and the keyslot area that it opens."""
    directory = tmp_path / "state"
    directory.mkdir()
    crypto.write_new_keyfile(directory / "key.bin")
    master = crypto.MasterKey.generate()
    area = crypto.KeyslotArea.create(
        master, keyfile_secret=crypto.read_keyfile(directory / "key.bin"), scrypt=TEST_SCRYPT
    )
    (directory / "keyslots.bin").write_bytes(area.to_bytes())
    return directory


def chunk_key(state: Path) -> crypto.SecretKey:
    area = crypto.KeyslotArea.from_bytes((state / "keyslots.bin").read_bytes())
    return crypto.derive_subkeys(area.unlock_keyfile(crypto.read_keyfile(state / "key.bin"))).chunk


def worker(state: Path, log: Path, count: int, salt_source: str, hang: bool = False) -> "Worker":
    command = [sys.executable, "-m", "tests.crypto.seal_worker", str(state), str(log), str(count)]
    command += ["--salt-source", salt_source] + (["--hang"] if hang else [])
    return Worker(command)


class Worker:
    """A seal_worker child process."""

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(
            command, cwd=REPOSITORY, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    def wait(self) -> None:
        _, stderr = self.process.communicate(timeout=60)
        assert self.process.returncode == 0, stderr.decode()

    def crash_after_sealing(self) -> None:
        """Wait until the worker has sealed its blocks, then SIGKILL it (no exit handlers run)."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line == b"hanging\n", self.process.communicate(timeout=60)[1].decode()
        self.process.kill()
        self.process.wait(timeout=60)
        assert self.process.returncode == -9


def read_log(log: Path) -> Iterator[bytes]:
    data = log.read_bytes()
    offset = 0
    while offset < len(data):
        (size,) = struct.unpack_from("<I", data, offset)
        yield data[offset + 4 : offset + 4 + size]
        offset += 4 + size


def test_forked_children_catch_copied_generator(
    subkeys: crypto.Subkeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A userspace generator copied by fork repeats salts, and the fork harness sees it."""
    monkeypatch.setattr(sealing, "_salt_source", random.Random(1).randbytes)
    assert reused(subkeys.chunk, seal_in_forked_children(subkeys.chunk, children=3))


def test_forked_children_never_repeat(subkeys: crypto.Subkeys) -> None:
    blocks = seal_in_forked_children(subkeys.chunk, children=4)
    blocks += [crypto.seal(subkeys.chunk, PLAINTEXT, ASSOCIATED_DATA) for _ in range(8)]
    assert reused(subkeys.chunk, blocks) == []


@pytest.mark.parametrize(("salt_source", "expect_reuse"), [("seeded", True), ("kernel", False)])
def test_processes_from_identical_state(
    state: Path, tmp_path: Path, salt_source: str, expect_reuse: bool
) -> None:
    """Two processes unlock the same key file and area at once and seal under one master key."""
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    workers = [worker(state, log, BLOCKS_PER_PROCESS, salt_source) for log in logs]
    for running in workers:
        running.wait()
    blocks = [block for log in logs for block in read_log(log)]
    assert len(blocks) == 2 * BLOCKS_PER_PROCESS
    assert bool(reused(chunk_key(state), blocks)) is expect_reuse


@pytest.mark.parametrize(
    ("salt_source", "expect_reuse"), [("counter-at-exit", True), ("kernel", False)]
)
def test_crash_and_restart(
    state: Path, tmp_path: Path, salt_source: str, expect_reuse: bool
) -> None:
    """A worker killed with SIGKILL and restarted from the same state seals on."""
    log = tmp_path / "blocks.log"
    worker(state, log, BLOCKS_PER_PROCESS, salt_source, hang=True).crash_after_sealing()
    worker(state, log, BLOCKS_PER_PROCESS, salt_source).wait()
    blocks = list(read_log(log))
    assert len(blocks) == 2 * BLOCKS_PER_PROCESS
    assert bool(reused(chunk_key(state), blocks)) is expect_reuse


@pytest.mark.parametrize(("salt_source", "expect_reuse"), [("counter", True), ("kernel", False)])
def test_state_restored_from_old_copy(
    state: Path, tmp_path: Path, salt_source: str, expect_reuse: bool
) -> None:
    """After the state directory is restored from a copy taken before a run, sealing goes on.

    A counter that is durable before each use is correct until its file is
    rolled back; the kernel salt source keeps no state to roll back.
    """
    snapshot = tmp_path / "snapshot"
    shutil.copytree(state, snapshot)
    log = tmp_path / "blocks.log"
    worker(state, log, BLOCKS_PER_PROCESS, salt_source).wait()
    shutil.rmtree(state)
    shutil.copytree(snapshot, state)
    worker(state, log, BLOCKS_PER_PROCESS, salt_source).wait()
    blocks = list(read_log(log))
    assert len(blocks) == 2 * BLOCKS_PER_PROCESS
    assert bool(reused(chunk_key(state), blocks)) is expect_reuse


def test_threads_never_repeat(subkeys: crypto.Subkeys) -> None:
    results: list[list[bytes]] = [[] for _ in range(4)]

    def seal_many(index: int) -> None:
        results[index] = [
            crypto.seal(subkeys.chunk, PLAINTEXT, ASSOCIATED_DATA) for _ in range(200)
        ]

    threads = [threading.Thread(target=seal_many, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    blocks = [block for result in results for block in result]
    assert len(blocks) == 800
    assert reused(subkeys.chunk, blocks) == []


def test_every_salt_byte_matters(subkeys: crypto.Subkeys) -> None:
    """The derivation uses all 24 salt bytes: a derivation that dropped some would
    turn distinct salts into one key and nonce."""
    salt = bytes(range(24))
    base = sealing.seal_with_salt(subkeys.chunk, salt, PLAINTEXT, ASSOCIATED_DATA)
    for position in range(len(salt)):
        changed = bytearray(salt)
        changed[position] ^= 0x01
        other = sealing.seal_with_salt(subkeys.chunk, changed, PLAINTEXT, ASSOCIATED_DATA)
        assert other[sealing.HEADER_SIZE :] != base[sealing.HEADER_SIZE :], position
