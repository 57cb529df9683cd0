"""The Store on real image-file arrays: backup, restore, dedup, rebuild and hard cases."""

import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from raidd.errors import ArrayBusyError, ArrayFullError, KeyUnlockError
from raidd.store.pipeline import run_backup
from raidd.store.restore import restore, select
from raidd.store.store import Store, UnlockKey
from tests.store.storekit import Setup, describe_tree, make_setup


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Setup:
    monkeypatch.setenv("RAIDD_LOCK_DIR", str(tmp_path / "lock"))
    return make_setup(tmp_path / "array")


def restore_all(store: Store, target: Path, sequence: int) -> None:
    result = restore(store, target, select(store, []), sequence)
    assert result.report.ok, (result.report.conflicts, result.report.errors)
    assert not result.lost


def test_backup_restore_hard_cases(setup: Setup, tmp_path: Path) -> None:
    """Newlines and 0xff in names, links, a symlink loop, xattrs and an empty directory."""
    data = setup.data
    odd = os.fsencode(data) + b"/line\nbreak\xff.txt"
    with open(odd, "wb") as handle:
        handle.write(b"odd name\n")
    (data / "docs").mkdir()
    (data / "docs" / "report.txt").write_text("quarterly " * 5000)
    os.link(data / "docs" / "report.txt", data / "hardlink.txt")
    os.symlink("loop-b", data / "loop-a")
    os.symlink("loop-a", data / "loop-b")
    (data / "empty").mkdir()
    (data / "tagged").write_bytes(b"with xattr")
    os.setxattr(data / "tagged", b"user.origin", b"crm")
    os.chmod(data / "docs" / "report.txt", 0o640)
    expected = describe_tree(data)
    with Store.open(setup.config()) as store:
        result = run_backup(store)
        assert result.problems == []
        assert result.sequence == 1
        restore_all(store, tmp_path / "out", 1)
    restored = tmp_path / "out" / "data"
    assert describe_tree(restored) == expected
    assert os.getxattr(restored / "tagged", b"user.origin") == b"crm"
    assert (
        os.stat(restored / "hardlink.txt").st_ino == os.stat(restored / "docs/report.txt").st_ino
    )


def test_dedup_and_unchanged_files(setup: Setup) -> None:
    block = os.urandom(300_000)
    (setup.data / "one").write_bytes(block)
    (setup.data / "two").write_bytes(block)
    with Store.open(setup.config()) as store:
        first = run_backup(store)
        assert first.files_read == 2
        assert first.chunks_new == 1
        again = run_backup(store)
        assert again.sequence is None
        assert again.files_unchanged == 2
        assert again.bytes_read == 0


def test_sparse_file_restores_with_holes(setup: Setup, tmp_path: Path) -> None:
    sparse = setup.data / "disk.img"
    with open(sparse, "wb") as handle:
        handle.truncate(1 << 30)
        handle.seek(512 << 20)
        handle.write(os.urandom(1 << 20))
    with Store.open(setup.config()) as store:
        result = run_backup(store)
        assert result.bytes_read == 1 << 20
        restore_all(store, tmp_path / "out", 1)
    restored = tmp_path / "out" / "data" / "disk.img"
    assert restored.stat().st_size == 1 << 30
    assert restored.stat().st_blocks * 512 < 8 << 20
    with open(sparse, "rb") as a, open(restored, "rb") as b:
        a.seek(512 << 20)
        b.seek(512 << 20)
        assert a.read(1 << 20) == b.read(1 << 20)


def test_state_directory_deleted(setup: Setup, tmp_path: Path) -> None:
    (setup.data / "file").write_text("version one")
    with Store.open(setup.config()) as store:
        run_backup(store)
    (setup.data / "file").write_text("version two, longer")
    with Store.open(setup.config()) as store:
        run_backup(store)
    expected = describe_tree(setup.data)
    shutil.rmtree(setup.base / "state")
    with Store.open_members(setup.members, UnlockKey(keyfile=setup.keyfile)) as store:
        assert [c.sequence for c in store.snapshots()] == [2, 1]
        restore_all(store, tmp_path / "out", 2)
        restore_all(store, tmp_path / "old", 1)
    assert describe_tree(tmp_path / "out" / "data") == expected
    assert (tmp_path / "old" / "data" / "file").read_text() == "version one"
    with Store.open(setup.config()) as store:
        # The rebuilt index still has the files' versions, so they are not read again.
        assert run_backup(store).sequence is None


def test_stale_index_is_rebuilt(setup: Setup, tmp_path: Path) -> None:
    (setup.data / "file").write_text("one")
    with Store.open(setup.config()) as store:
        run_backup(store)
    saved = tmp_path / "saved-state"
    shutil.copytree(setup.base / "state", saved)
    (setup.data / "file").write_text("two")
    with Store.open(setup.config()) as store:
        run_backup(store)
    shutil.rmtree(setup.base / "state")
    shutil.copytree(saved, setup.base / "state")
    with Store.open(setup.config(), read_only=True) as store:
        assert [c.sequence for c in store.snapshots()] == [2, 1]


def test_wrong_key_and_busy_array(setup: Setup, tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    import crypto

    crypto.write_new_keyfile(other)
    before = [Path(m).read_bytes() for m in setup.members]
    with pytest.raises(KeyUnlockError):
        Store.open(setup.config(), key=UnlockKey(keyfile=other))
    assert [Path(m).read_bytes() for m in setup.members] == before
    with Store.open(setup.config()), pytest.raises(ArrayBusyError, match=f"pid {os.getpid()}"):
        Store.open(setup.config())


class _GrowingOnFstat:
    """Stands in for the reader's `os` module: each fstat of one file appends to it first.

    The file so changes between the fstat before and the fstat after every
    read attempt, whatever the scheduling, which a writer thread cannot
    promise on a loaded machine.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.inode = path.stat().st_ino

    def __getattr__(self, name: str) -> object:
        return getattr(os, name)

    def fstat(self, fd: int) -> os.stat_result:
        info = os.fstat(fd)
        if info.st_ino == self.inode:
            with open(self.path, "ab") as handle:
                handle.write(b"line\n" * 100)
        return info


def test_file_growing_while_read(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    import raidd.store.reader as reader

    growing = setup.data / "growing.log"
    growing.write_bytes(b"start\n")
    monkeypatch.setattr(reader, "os", _GrowingOnFstat(growing))
    with Store.open(setup.config()) as store:
        result = run_backup(store)
    monkeypatch.undo()
    kinds = {(p.path, p.kind) for p in result.problems}
    assert (b"growing.log", "changed_during_read") in kinds
    with Store.open(setup.config(), read_only=True) as store:
        (version,) = [v for v in store.ls("data", 1) if v.path == b"growing.log"]
        assert version.changed_during_read
        assert version.size > 0


def test_vanished_journal_not_reported(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """A -journal removed between the listing and its stat belongs to a database: no problem."""
    import raidd.store.scan as scan

    database = sqlite3.connect(setup.data / "crm.db")
    database.execute("CREATE TABLE t (x)")
    database.commit()
    database.close()
    (setup.data / "crm.db-journal").write_bytes(b"")
    (setup.data / "notes.txt").write_text("gone")

    class VanishingStat:
        def __getattr__(self, name: str) -> object:
            return getattr(os, name)

        def stat(self, name: object, *args: object, **kwargs: object) -> os.stat_result:
            if name in (b"crm.db-journal", b"notes.txt"):
                raise FileNotFoundError(2, "No such file or directory")
            return os.stat(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(scan, "os", VanishingStat())
    with Store.open(setup.config()) as store:
        result = run_backup(store)
    assert [(p.path, p.kind) for p in result.problems] == [(b"notes.txt", "vanished")]


@pytest.mark.parametrize("journal_mode", ["delete", "truncate", "persist", "wal"])
def test_live_sqlite_database(setup: Setup, tmp_path: Path, journal_mode: str) -> None:
    database = setup.data / "crm.db"
    connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    connection.execute(f"PRAGMA journal_mode = {journal_mode}")
    connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    connection.executemany("INSERT INTO notes (body) VALUES (?)", [("x" * 100,)] * 500)
    stop = threading.Event()
    writing = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            while not stop.is_set():
                connection.execute("INSERT INTO notes (body) VALUES ('during backup')")
                writing.set()
                # A pause between writes, as a CRM makes, so the copy gets the lock.
                time.sleep(0.01)
        except BaseException as error:
            errors.append(error)
            writing.set()

    writer = threading.Thread(target=write)
    writer.start()
    # The backup starts once the writer is busy, not after some guessed delay.
    assert writing.wait(timeout=30)
    try:
        with Store.open(setup.config()) as store:
            result = run_backup(store)
    finally:
        stop.set()
        writer.join()
        connection.close()
    assert errors == []
    assert result.problems == []
    with Store.open(setup.config(), read_only=True) as store:
        stored = {v.path for v in store.ls("data", 1)}
        assert stored == {b"", b"crm.db"}
        restore_all(store, tmp_path / "out", 1)
    copy = sqlite3.connect(tmp_path / "out" / "data" / "crm.db")
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert copy.execute("SELECT count(*) FROM notes").fetchone()[0] >= 500
    copy.close()


def test_array_full_then_forget_and_gc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAIDD_LOCK_DIR", str(tmp_path / "lock"))
    setup = make_setup(
        tmp_path / "array",
        level=1,
        members=2,
        size=16 << 20,
        retention="[watch.retention]\nkeep_last = 1\n",
    )
    (setup.data / "small").write_text("kept")
    with Store.open(setup.config()) as store:
        run_backup(store)
        (setup.data / "big").write_bytes(os.urandom(20 << 20))
        with pytest.raises(ArrayFullError, match="is full"):
            run_backup(store)
    (setup.data / "big").unlink()
    with Store.open(setup.config()) as store:
        restore_all(store, tmp_path / "out", 1)
        assert (tmp_path / "out" / "data" / "small").read_text() == "kept"
    from raidd.store.maintenance import check, forget, gc

    (setup.data / "medium").write_bytes(os.urandom(1 << 20))
    with Store.open(setup.config()) as store:
        run_backup(store)
        (setup.data / "medium").unlink()
        run_backup(store)
        before = store.array.free_stripe_count()
        assert forget(store).sequence is not None
        freed = gc(store)
        assert freed.freed_stripes
        # Freed stripes become writable two commits later.
        store.array.commit_state()
        store.array.commit_state()
        assert store.array.free_stripe_count() > before
        assert check(store, read_data=True).errors == []


def test_store_methods_delegate(setup: Setup, tmp_path: Path) -> None:
    """The Store's own methods, which the daemon calls, give the same results."""
    (setup.data / "file").write_text("via methods")
    with Store.open(setup.config()) as store:
        assert store.backup().sequence == 1
        entries = list(store.restore_entries(select(store, [b"data"]), 1))
        assert [entry.path for entry, _ in entries] == [b"data", b"data/file"]
        _, source = entries[1]
        assert source is not None
        assert b"".join(piece for _, piece in source()) == b"via methods"
        result = store.restore(tmp_path / "out", [], 1)
        assert result.report.written == [b"data", b"data/file"]
        assert store.check(read_data=True).errors == []
        assert store.forget().sequence is None
        assert store.gc(dry_run=True).dry_run


def test_raid0_metadata_has_two_copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On RAID0 a lost strip under the first copy of each metadata object costs nothing."""
    monkeypatch.setenv("RAIDD_LOCK_DIR", str(tmp_path / "lock"))
    setup = make_setup(tmp_path / "array", level=0, members=2, size=16 << 20)
    (setup.data / "file").write_text("on a stripe set")
    with Store.open(setup.config()) as store:
        run_backup(store)
        assert store.root is not None
        refs = [store.root.manifest, *store.manifest_refs()]
        first_copies = {piece.stripe for ref in refs for piece in ref.copies[0]}
        second_copies = {piece.stripe for ref in refs for piece in ref.copies[1]}
        assert all(len(ref.copies) == 2 for ref in refs)
        assert not first_copies & second_copies
        offsets = [store.array.io.strip_offset(stripe) for stripe in first_copies]
        strip = store.array.geometry.strip_size
    for member_path in setup.members:
        with open(member_path, "r+b") as member:
            for offset in offsets:
                member.seek(offset)
                member.write(bytes(strip))
    shutil.rmtree(setup.base / "state")
    with Store.open_members(setup.members, UnlockKey(keyfile=setup.keyfile)) as store:
        restore_all(store, tmp_path / "out", 1)
    assert (tmp_path / "out" / "data" / "file").read_text() == "on a stripe set"


def test_failed_pre_backup_skips_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAIDD_LOCK_DIR", str(tmp_path / "lock"))
    setup = make_setup(tmp_path / "array", retention='pre_backup = "echo dump failed; exit 3"\n')
    (setup.data / "file").write_text("not committed")
    with Store.open(setup.config()) as store:
        result = run_backup(store)
        assert result.sequence is None
        assert [p.kind for p in result.problems] == ["pre_backup_failed"]
        assert "dump failed" in result.problems[0].message
        assert store.snapshots() == []
