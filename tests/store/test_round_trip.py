"""Backup and restore through every store module, with objects kept in memory.

The array engine and crypto/ are not needed here: chunks go into a dict by
a keyed BLAKE2b id, which is the part of the data path they replace. Each
commit's delta goes through its byte form, and a second index rebuilt from
those bytes alone (the state directory lost) restores the same files.
"""

import hashlib
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from raidd.config import prepare_state_directory
from raidd.store.catalog import CatalogIndex
from raidd.store.catalog_format import CommitDelta, Deletion, Version, decode_delta, encode_delta
from raidd.store.chunker import Chunk, Chunker
from raidd.store.compress import Compressor, decode_chunk
from raidd.store.reader import FileReader, find_sqlite_sidecars
from raidd.store.restore_writer import RestoreReport, RestoreWriter
from raidd.store.scan import EntryType, Excluder, ScanProblem, scan_root
from raidd.store.snapshot import HardLinkGroups, is_unchanged, restore_entries, version_from
from raidd.store.sqlite_copy import journal_mode_of

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
MAKE_CRM = SHARED / "tools" / "make-crm-dataset"
ID_KEY = bytes(range(32, 64))
ROOT = "crm"
SECOND = 1_000_000_000


@dataclass
class MemoryStore:
    """Objects by keyed id, and every commit's delta in its byte form."""

    objects: dict[bytes, bytes] = field(default_factory=dict)
    deltas: list[bytes] = field(default_factory=list)
    compressor: Compressor = field(default_factory=Compressor)

    def put(self, chunk: Chunk) -> bytes:
        chunk_id = hashlib.blake2b(chunk.data, key=ID_KEY, digest_size=32).digest()
        if chunk_id not in self.objects:
            self.objects[chunk_id] = self.compressor.encode(chunk.data).to_bytes()
        return chunk_id

    def stored_bytes(self) -> int:
        return sum(len(data) for data in self.objects.values())


@dataclass
class Backup:
    delta: CommitDelta
    problems: list[ScanProblem]
    reads: int


def backup(
    index: CatalogIndex, store: MemoryStore, reader: FileReader, root: Path, now: int
) -> Backup:
    raw = os.fsencode(root)
    problems: list[ScanProblem] = []
    entries = list(scan_root(root, Excluder(["*.tmp"]), problems))
    sidecars = find_sqlite_sidecars([entry.path for entry in entries], raw)
    current = index.current(ROOT)
    delta = index.next_commit([ROOT], now_ns=now * SECOND)
    groups = HardLinkGroups(delta.sequence)
    records: list[Version | Deletion] = []
    seen = set()
    reads = 0
    for entry in entries:
        if entry.path in sidecars:
            continue
        seen.add(entry.path)
        if is_unchanged(entry, current.get(entry.path)):
            continue
        read = None
        if entry.type is EntryType.FILE:
            read = reader.read(raw + b"/" + entry.path, store.put)
            reads += 1
            if read.skipped_recent_copy:
                continue
        records.append(version_from(ROOT, entry, read, groups.assign(entry)))
    records += [Deletion(ROOT, path) for path in current if path not in seen]
    encoded = encode_delta(replace(delta, records=tuple(records)))
    store.deltas.append(encoded)
    decoded = decode_delta(encoded)
    index.apply(decoded)
    return Backup(decoded, problems, reads)


def restore(index: CatalogIndex, store: MemoryStore, sequence: int, target: Path) -> RestoreReport:
    def source(version: Version) -> Iterable[tuple[int, bytes]]:
        for chunk in version.chunks:
            yield chunk.offset, decode_chunk(store.objects[chunk.chunk_id], chunk.length)

    with RestoreWriter(target) as writer:
        for entry, version in restore_entries(index.state(ROOT, sequence), ROOT.encode()):
            writer.restore(entry, lambda version=version: source(version))
        return writer.finish()


def manifest(root: Path) -> dict[bytes, tuple[object, ...]]:
    """Everything a restore must reproduce, with SQLite WAL databases by their dump."""
    raw = os.fsencode(root)
    result: dict[bytes, tuple[object, ...]] = {}
    inodes: dict[int, bytes] = {}
    for entry in scan_root(root, Excluder(["*.tmp"])):
        if entry.name.endswith((b"-wal", b"-shm", b"-journal")):
            continue
        content: object = None
        if entry.type is EntryType.FILE:
            path = raw + b"/" + entry.path
            with open(path, "rb") as handle:
                data = handle.read()
            if journal_mode_of(data[:100]) == "wal":
                content = ("dump", tuple(sqlite_dump(path)))
            else:
                content = hashlib.sha256(data).hexdigest()
        link = inodes.setdefault(entry.inode, entry.path) if entry.nlink > 1 else None
        result[entry.path] = (
            entry.type,
            entry.mode,
            entry.mtime_ns,
            entry.size if content is None or isinstance(content, str) else None,
            entry.link_target,
            entry.xattrs,
            content,
            link,
        )
    return result


def sqlite_dump(path: bytes) -> list[str]:
    """Dump a database from a private copy, since opening a WAL database in place
    creates its -wal and -shm and so moves its directory's mtime."""
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "copy.db"
        shutil.copyfile(os.fsdecode(path), copy)
        connection = sqlite3.connect(copy)
        try:
            assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            return list(connection.iterdump())
        finally:
            connection.close()


@pytest.fixture(scope="module")
def pristine_crm() -> Iterator[Path]:
    """A CRM data directory from the dataset builder, on tmpfs when there is one.

    The builder commits each statement of its SQL script, which takes over ten
    seconds on a disk and under one on tmpfs. Tests work on copies of it.
    """
    if not MAKE_CRM.exists():
        pytest.skip(f"the dataset builder {MAKE_CRM} is absent")
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    holder = Path(tempfile.mkdtemp(prefix="raidd-crm-", dir=base))
    try:
        root = holder / "crm"
        subprocess.run([str(MAKE_CRM), "build", str(root)], check=True, capture_output=True)
        yield root
    finally:
        shutil.rmtree(holder)


@pytest.fixture
def crm_root(pristine_crm: Path) -> Iterator[Path]:
    holder = Path(tempfile.mkdtemp(prefix="raidd-crm-", dir=pristine_crm.parent.parent))
    try:
        root = holder / "crm"
        shutil.copytree(pristine_crm, root, symlinks=True)
        yield root
    finally:
        shutil.rmtree(holder)


def add_odd_entries(root: Path) -> None:
    raw = os.fsencode(root)
    with open(raw + b"/attachments/new\nline \xff.txt", "wb") as handle:
        handle.write(b"odd name\n")
    os.link(root / "attachments" / "erd.png", root / "attachments" / "erd-link.png")
    os.symlink("../db/northwind.db", root / "attachments" / "db-link")
    (root / "empty-dir").mkdir()
    (root / "scratch.tmp").write_bytes(b"excluded")
    os.setxattr(root / "exports" / "customers.csv", "user.origin", b"crm")
    with open(root / "sparse.img", "wb") as handle:
        handle.truncate(32 << 20)
        handle.seek(20 << 20)
        handle.write(os.urandom(1 << 20))
    wal = root / "db" / "wal.db"
    shutil.copyfile(root / "db" / "northwind.db", wal)
    connection = sqlite3.connect(wal)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("UPDATE Customers SET City = 'Bonn' WHERE CustomerID = 'ALFKI'")
    connection.commit()
    connection.close()


def mutate(root: Path, seed: int) -> None:
    subprocess.run(
        [str(MAKE_CRM), "mutate", "--seed", str(seed), str(root)], check=True, capture_output=True
    )
    if (root / "db" / "wal.db").exists():
        connection = sqlite3.connect(root / "db" / "wal.db")
        values = (f"S{seed}", "1")
        connection.execute("INSERT INTO Shippers (CompanyName, Phone) VALUES (?, ?)", values)
        connection.commit()
        connection.close()


def test_crm_round_trip_every_version(crm_root: Path, tmp_path: Path) -> None:
    add_odd_entries(crm_root)
    store = MemoryStore()
    reader = FileReader(Chunker(bytes(32)), state_directory=tmp_path / "state")
    expected = []
    prepare_state_directory(tmp_path / "state")
    with CatalogIndex(tmp_path / "state" / "index.sqlite") as index:
        # The manifest is taken before each backup: copying a WAL database
        # creates and removes its -wal and -shm, which moves db/'s mtime.
        wanted = manifest(crm_root)
        first = backup(index, store, reader, crm_root, now=1000)
        expected.append((first.delta.sequence, wanted))
        for seed in (1, 2):
            mutate(crm_root, seed)
            wanted = manifest(crm_root)
            result = backup(index, store, reader, crm_root, now=1000 + seed * 3600)
            expected.append((result.delta.sequence, wanted))
            changed = {record.path for record in result.delta.records}
            assert b"sparse.img" not in changed
            assert b"attachments/erd.png" not in changed
            assert b"db/northwind.db" in changed
        assert first.problems == []
        for sequence, wanted in expected:
            target = tmp_path / f"restore-{sequence}"
            report = restore(index, store, sequence, target)
            assert report.ok, (report.conflicts, report.errors)
            assert manifest(target / ROOT) == wanted, f"commit {sequence} differs"
            sparse = (target / ROOT / "sparse.img").stat()
            assert sparse.st_blocks * 512 < 4 << 20
        again = restore(index, store, expected[-1][0], tmp_path / f"restore-{expected[-1][0]}")
        assert again.written == []
        assert again.ok


def test_no_change_backup_reads_nothing(crm_root: Path, tmp_path: Path) -> None:
    store = MemoryStore()
    reader = FileReader(Chunker(bytes(32)), state_directory=tmp_path / "state")
    with CatalogIndex(":memory:") as index:
        backup(index, store, reader, crm_root, now=1000)
        objects = len(store.objects)
        second = backup(index, store, reader, crm_root, now=2000)
    assert second.reads == 0
    assert second.delta.records == ()
    assert len(store.objects) == objects


def test_state_directory_lost_restores_from_deltas(crm_root: Path, tmp_path: Path) -> None:
    """An index rebuilt from the stored deltas alone restores the same files."""
    store = MemoryStore()
    reader = FileReader(Chunker(bytes(32)), state_directory=tmp_path / "state")
    prepare_state_directory(tmp_path / "state")
    with CatalogIndex(tmp_path / "state" / "index.sqlite") as index:
        backup(index, store, reader, crm_root, now=1000)
        mutate(crm_root, 1)
        wanted = manifest(crm_root)
        last = backup(index, store, reader, crm_root, now=5000)
    shutil.rmtree(tmp_path / "state")
    with CatalogIndex(":memory:") as rebuilt:
        for data in store.deltas:
            rebuilt.apply(decode_delta(data))
        report = restore(rebuilt, store, last.delta.sequence, tmp_path / "restored")
    assert report.ok
    assert manifest(tmp_path / "restored" / ROOT) == wanted


def test_deleted_file_absent_from_later_snapshot(crm_root: Path, tmp_path: Path) -> None:
    store = MemoryStore()
    reader = FileReader(Chunker(bytes(32)))
    with CatalogIndex(":memory:") as index:
        first = backup(index, store, reader, crm_root, now=1000)
        os.unlink(crm_root / "exports" / "orders.csv")
        second = backup(index, store, reader, crm_root, now=2000)
        assert second.delta.records[-1] == Deletion(ROOT, b"exports/orders.csv")
        old = {v.path for v in index.state(ROOT, first.delta.sequence)}
        new = {v.path for v in index.state(ROOT, second.delta.sequence)}
    assert old - new == {b"exports/orders.csv"}
