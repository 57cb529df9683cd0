"""Reading files that change: re-reads, the changed mark, sparse runs, refusals."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raidd.store.chunker import Chunk, Chunker
from raidd.store.reader import FileReader, find_sqlite_sidecars
from tests.store.conftest import run_as_nobody

KEY = bytes(32)


def collect(reader: FileReader, path: Path) -> tuple[object, list[Chunk]]:
    chunks: list[Chunk] = []

    def consume(chunk: Chunk) -> int:
        chunks.append(chunk)
        return len(chunks) - 1

    return reader.read(os.fsencode(path), consume), chunks


def test_stable_file_read_once(tmp_path: Path) -> None:
    path = tmp_path / "data"
    payload = os.urandom(3 << 20)
    path.write_bytes(payload)
    result, chunks = collect(FileReader(Chunker(KEY)), path)
    assert b"".join(chunk.data for chunk in chunks) == payload
    assert result.attempts == 1
    assert not result.changed_during_read
    assert result.size == len(payload)
    assert result.extents == ((0, len(payload)),)
    assert [ref.ref for ref in result.chunks] == list(range(len(chunks)))
    assert sum(ref.length for ref in result.chunks) == len(payload)
    assert result.identity.inode == path.stat().st_ino


def test_empty_file_has_no_chunks(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    result, chunks = collect(FileReader(Chunker(KEY)), path)
    assert chunks == []
    assert result.size == 0
    assert not result.changed_during_read


def test_change_during_first_read_rereads(tmp_path: Path) -> None:
    path = tmp_path / "growing"
    path.write_bytes(b"a" * 100_000)
    writes = []

    def consume(chunk: Chunk) -> None:
        if not writes:
            with open(path, "ab") as handle:
                handle.write(b"b" * 5000)
            writes.append(1)

    result = FileReader(Chunker(KEY)).read(os.fsencode(path), consume)
    assert result.attempts == 2
    assert not result.changed_during_read
    assert result.size == 105_000


def test_always_changing_file_marked(tmp_path: Path) -> None:
    path = tmp_path / "busy"
    path.write_bytes(b"a" * 100_000)

    def consume(chunk: Chunk) -> None:
        with open(path, "ab") as handle:
            handle.write(b"b")

    result = FileReader(Chunker(KEY), max_attempts=4).read(os.fsencode(path), consume)
    assert result.changed_during_read
    assert result.attempts == 4


def test_truncation_during_read_detected(tmp_path: Path) -> None:
    path = tmp_path / "shrinking"
    path.write_bytes(os.urandom(4 << 20))
    calls = []

    def consume(chunk: Chunk) -> None:
        calls.append(chunk.offset)
        if len(calls) == 1:
            os.truncate(path, 1000)

    result = FileReader(Chunker(KEY), max_attempts=1).read(os.fsencode(path), consume)
    assert result.changed_during_read


def test_rewrite_with_same_mtime_detected(tmp_path: Path) -> None:
    """Restoring the mtime after a write does not hide it: ctime still moves."""
    path = tmp_path / "sneaky"
    path.write_bytes(b"x" * 10_000)
    stamp = path.stat().st_mtime_ns
    done = []

    def consume(chunk: Chunk) -> None:
        if not done:
            time.sleep(0.01)
            with open(path, "r+b") as handle:
                handle.write(b"y")
            os.utime(path, ns=(stamp, stamp))
            done.append(1)

    result = FileReader(Chunker(KEY)).read(os.fsencode(path), consume)
    assert result.attempts == 2


def test_replaced_by_rename_detected(tmp_path: Path) -> None:
    path = tmp_path / "doc"
    path.write_bytes(b"old" * 1000)
    done = []

    def consume(chunk: Chunk) -> bytes:
        if not done:
            (tmp_path / "doc.new").write_bytes(b"new" * 1000)
            os.replace(tmp_path / "doc.new", path)
            done.append(1)
        return chunk.data

    result = FileReader(Chunker(KEY)).read(os.fsencode(path), consume)
    assert result.attempts == 2
    assert b"".join(ref.ref for ref in result.chunks) == b"new" * 1000


def test_writer_process_marks_file(tmp_path: Path) -> None:
    """A second process appending without pause gets the file marked, never passed as good."""
    path = tmp_path / "log"
    path.write_bytes(os.urandom(1 << 20))
    stop = tmp_path / "stop"
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys\n"
            "path, stop = sys.argv[1], sys.argv[2]\n"
            "with open(path, 'ab', buffering=0) as f:\n"
            "    while not os.path.exists(stop):\n"
            "        f.write(b'z' * 512)\n",
            str(path),
            str(stop),
        ]
    )
    try:
        deadline = time.monotonic() + 10
        while path.stat().st_size == 1 << 20 and time.monotonic() < deadline:
            time.sleep(0.01)

        def consume(chunk: Chunk) -> None:
            time.sleep(0.005)

        result = FileReader(Chunker(KEY), max_attempts=2).read(os.fsencode(path), consume)
    finally:
        stop.write_bytes(b"")
        writer.wait(timeout=10)
    assert result.changed_during_read
    assert result.attempts == 2


def test_sparse_file_reads_data_runs(tmp_path: Path) -> None:
    path = tmp_path / "sparse"
    data = os.urandom(1 << 20)
    with open(path, "wb") as handle:
        handle.truncate(1 << 30)
        handle.seek(512 << 20)
        handle.write(data)
    result, chunks = collect(FileReader(Chunker(KEY)), path)
    assert result.size == 1 << 30
    assert result.extents == ((512 << 20, 1 << 20),)
    assert b"".join(chunk.data for chunk in chunks) == data
    assert chunks[0].offset == 512 << 20
    assert not result.changed_during_read


def test_symlink_not_followed(tmp_path: Path) -> None:
    (tmp_path / "target").write_bytes(b"t")
    os.symlink(tmp_path / "target", tmp_path / "link")
    with pytest.raises(OSError):
        collect(FileReader(Chunker(KEY)), tmp_path / "link")


def test_fifo_rejected_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(OSError, match="not a regular file"):
        collect(FileReader(Chunker(KEY)), tmp_path / "pipe")


def test_vanished_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        collect(FileReader(Chunker(KEY)), tmp_path / "absent")


def test_unreadable_file_raises(shared_tmp: Path) -> None:
    path = shared_tmp / "secret"
    path.write_bytes(b"secret")
    os.chmod(path, 0o600)
    code = (
        "reader = FileReader(Chunker(bytes(32)))\n"
        "try:\n"
        f"    reader.read({os.fsencode(path)!r}, lambda chunk: None)\n"
        "    print(json.dumps('read'))\n"
        "except PermissionError as error:\n"
        "    print(json.dumps(error.strerror))\n"
    )
    imports = "from raidd.store.reader import FileReader\nfrom raidd.store.chunker import Chunker"
    assert run_as_nobody(imports, code) == "Permission denied"


def test_sidecars_found_beside_databases(tmp_path: Path) -> None:
    import sqlite3

    connection = sqlite3.connect(tmp_path / "crm.db")
    connection.execute("CREATE TABLE t (x)")
    connection.commit()
    connection.close()
    (tmp_path / "notes.txt").write_bytes(b"plain")
    paths = [
        b"crm.db",
        b"crm.db-wal",
        b"crm.db-shm",
        b"crm.db-journal",
        b"notes.txt",
        b"notes.txt-wal",
        b"orphan.db-wal",
    ]
    sidecars = find_sqlite_sidecars(paths, os.fsencode(tmp_path))
    assert sidecars == {b"crm.db-wal", b"crm.db-shm", b"crm.db-journal"}


def test_read_leaves_atime_alone(tmp_path: Path) -> None:
    path = tmp_path / "old"
    path.write_bytes(b"x" * 10_000)
    os.utime(path, ns=(1_000_000_000, 2_000_000_000))
    collect(FileReader(Chunker(KEY)), path)
    assert path.stat().st_atime_ns == 1_000_000_000


def test_unowned_file_read_without_noatime(shared_tmp: Path) -> None:
    """A reader that does not own the file falls back from O_NOATIME (EPERM) and reads it."""
    path = shared_tmp / "public"
    path.write_bytes(b"public data")
    os.chmod(path, 0o644)
    code = (
        "parts = []\n"
        "reader = FileReader(Chunker(bytes(32)))\n"
        f"reader.read({os.fsencode(path)!r}, lambda chunk: parts.append(chunk.data))\n"
        "print(json.dumps(b''.join(parts).decode()))\n"
    )
    imports = "from raidd.store.reader import FileReader\nfrom raidd.store.chunker import Chunker"
    assert run_as_nobody(imports, code) == "public data"
